"""The `pipeline` study (docs/pipeline.md §1, §10): the searched space declared to the engine,
and the reports as plain data: largest trainable model, per-device breakdown, memory timeline,
sensitivity sweeps."""

from __future__ import annotations

import dataclasses

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from explore.search.space import Param, Space
from explore.search.study import Evaluation, Metric, Objective

from ..errors import ExploreError, InfeasibleError, InputError
from ..shapes import ModelShape
from ..units import GiB
from . import schedules
from .chronos import no_faster, solve
from .config import (OFFLOAD, RECOMPUTE, Hardware, Layout, Policy, parse_pipeline_layout,
                     stage_layers)
from .memory import SELECTIVE_DEFAULT, check_modules, check_modules_apply
from .costs import Terms
from .evaluate import Outcome, object_bytes
from .moe import a2a_overlap_refusal, check_imbalance, check_supported
from .simulator import CATEGORIES


@dataclass(frozen=True)
class Workload:
    """What is trained and on what: model (layer count included), hardware, sequence length,
    global batch, sequence parallelism and flash attention."""
    model: ModelShape
    hw: Hardware
    seq: int = 4096
    global_batch: int = 256
    sp: bool = False
    flash: bool = True
    tb_ratio: float = 1.0
    tw_ratio: float = 1.0
    etp: int | None = None             # expert tensor parallelism of an MoE model (None: TP)
    moe_imbalance: float = 1.0         # routed tokens of the busiest GPU over the mean
    first_layers: int | None = None    # decoder layers of the first / last pipeline stage
    last_layers: int | None = None     # (None: even, or balanced when even cannot be)
    cp_comm: str = "p2p"               # context parallelism: ring (p2p) or all-to-all (a2a)
    pipeline_layout: str | None = None  # Megatron's --pipeline-model-parallel-layout
    recompute_modules: tuple[str, ...] = SELECTIVE_DEFAULT   # what 'selective' recomputes

    def __post_init__(self) -> None:
        if self.seq < 1 or self.global_batch < 1:
            raise InputError("--seq and --global-batch must be >= 1")
        if self.etp is not None and not self.model.is_moe:
            raise InputError(f"{self.model.name} has no experts: --etp applies to MoE models")
        check_supported(self.model, self.hw)
        check_imbalance(self.moe_imbalance)
        check_modules_apply(self.model, check_modules(self.recompute_modules))

    def layout(self, tp: int, pp: int, mbs: int, vpp: int = 1, dp: int | None = None,
               ep: int = 1, cp: int = 1) -> Layout:
        if dp is None:
            if min(tp, pp, cp) < 1 or self.hw.gpus % (tp * pp * cp):
                what = f"TP {tp} x PP {pp}" + (f" x CP {cp}" if cp != 1 else "")
                raise InputError(f"{what} does not divide the {self.hw.gpus} GPUs")
            dp = self.hw.gpus // (tp * pp * cp)
        return Layout(tp, pp, dp, self.seq, mbs, self.global_batch, vpp, self.sp, self.flash,
                      self.tb_ratio, self.tw_ratio, ep, self.etp, self.moe_imbalance,
                      self.first_layers, self.last_layers, cp, self.cp_comm,
                      self.pipeline_layout)

    def policy(self, schedule: str, cap: int | None = None, recompute: str = "none",
               recompute_layers: int | None = None, offload: str = "none",
               optimizer: str = "none") -> Policy:
        return Policy(schedule, cap, recompute, recompute_layers, offload, optimizer,
                      recompute_modules=self.recompute_modules)

    def terms(self, layout: Layout, policy: Policy, layers: int | None = None) -> Terms:
        model = self.model if layers is None else self.model.with_layers(layers)
        return Terms(model, layout, self.hw, policy)

    def layout_vpp(self, pp: int) -> int:
        """Chunks per device a --pipeline-layout implies on `pp` stages (1 without one)."""
        if self.pipeline_layout is None:
            return 1
        return max(1, len(parse_pipeline_layout(self.pipeline_layout)) // pp)

    @property
    def selective_inert(self) -> bool:
        """Selective recompute changes nothing: only core_attn, under flash attention."""
        return self.flash and set(self.recompute_modules) <= {"core_attn"}

    def with_layers(self, layers: int) -> "Workload":
        return replace(self, model=self.model.with_layers(layers))


# ---- the search study ------------------------------------------------------------------------

METRICS = (
    Metric("tokens_per_s", "tokens/s", "tok/s", fmt=",.0f"),
    Metric("mfu", "MFU", "%", scale=100, fmt=".1f"),
    Metric("hfu", "HFU", "%", scale=100, fmt=".1f"),
    Metric("iteration_s", "iteration", "s", fmt=".2f"),
    Metric("bubble", "bubble", "%", scale=100, fmt=".1f"),
    Metric("recompute_frac", "recompute", "%", scale=100, fmt=".1f"),
    Metric("stall_s", "stall", "s", fmt=".2f"),
    Metric("peak_max_bytes", "max peak", "GiB", scale=1 / GiB, fmt=".1f"),
    Metric("peak_min_bytes", "min peak", "GiB", scale=1 / GiB, fmt=".1f"),
    Metric("host_bytes", "host RAM/node", "GiB", scale=1 / GiB, fmt=".0f"),
    Metric("dp", "DP", "", fmt=".0f"),
    Metric("m", "micro-batches", "", fmt=".0f"),
    Metric("cap", "C", "chunks", fmt=".0f"),
)
OBJECTIVES = (Objective("tokens_per_s", "maximize"), Objective("mfu", "maximize"),
              Objective("peak_max_bytes", "minimize"), Objective("iteration_s", "minimize"))
PARAMS = ("tp", "pp", "vpp", "mbs", "schedule", "recompute", "offload", "optimizer", "ep",
          "cp")


def metrics_of(out: Outcome) -> dict[str, float]:
    t = out.terms
    return {"tokens_per_s": out.tokens_per_s, "mfu": out.mfu, "hfu": out.hfu,
            "iteration_s": out.iteration_s, "bubble": out.bubble,
            "recompute_frac": out.recompute_fraction, "stall_s": out.stall_s,
            "peak_max_bytes": max(out.peaks), "peak_min_bytes": min(out.peaks),
            "host_bytes": out.host_bytes_per_node, "dp": t.layout.dp, "m": t.m,
            "cap": out.ops.cap if out.ops.cap is not None else np.nan}


@dataclass(frozen=True)
class Summary:
    """What a search keeps of a simulated point: its numbers, not its timelines, so a search's
    memory does not grow with the micro-batch count (the full outcome is simulated again when
    asked for)."""
    metrics: dict
    fits: bool
    iteration_s: float
    cap: int | None
    saved: bool                  # anything recomputed or offloaded
    binding: str                 # the binding constraint, for a point that does not fit

    @classmethod
    def of(cls, out: Outcome) -> "Summary":
        return cls(metrics_of(out), out.fits, out.iteration_s, out.ops.cap,
                   bool(out.plan.marks or out.plan.transfers),
                   "" if out.fits else binding_text(out))


def binding_text(out: Outcome) -> str:
    """The constraint that binds: host RAM, or device / category / op at the peak."""
    if not out.host_ok:
        return (f"host RAM: {out.host_bytes_per_node / GiB:.0f} GiB per node > "
                f"{out.terms.hw.host_ram_bytes / GiB:.0f} GiB usable")
    b = out.binding()
    text = (f"device {b['device']}, {b['category']}, at {b['op']}: "
            f"{b['peak_bytes'] / GiB:.1f} GiB of {b['usable_bytes'] / GiB:.1f} usable")
    if out.plan.host_limited and not out.fits:
        hw = out.terms.hw
        text += (f"; host RAM limits offload ({out.plan.host_limited / GiB:.1f} GiB per GPU "
                 f"wanted, {hw.host_ram_bytes / hw.gpus_per_node / GiB:.1f} GiB per GPU "
                 f"pinned)")
    return text


SEARCHED_TP = (1, 2, 4, 8, 16)
# every layer recomputed ('full') only costs time where the fewest that fit ('full-fit') suffice
SEARCHED_RECOMPUTE = tuple(r for r in RECOMPUTE if r != "full")
SEARCHED_MBS = (1, 2, 4, 8)
SEARCHED_CP = (1, 2, 4, 8)
CP_MIN_TOKENS = 8192             # a search splits a sequence no finer (§12)


def search_space(work: Workload, tp=None, pp=None, vpp=None, mbs=None, schedule=None,
                 recompute=None, offload=None, optimizer=None, ep=None,
                 cp=None) -> dict[str, tuple]:
    """The searched values of every parameter (§10): the given ones, else every value that can
    divide. TP: 1-16 in powers of two within a node, dividing the heads and the GPUs; PP:
    dividing the GPUs, at most the layers (uneven end stages where the layers do not divide,
    §11.5); vpp 1 and 2 when interleaved is searched, else 1;
    micro-batch 1, 2, 4, 8; every schedule, recompute and offload policy; optimizer none, and
    the distributed optimizer too when some layout leaves DP > 1; EP (MoE) the powers of two
    dividing the experts and the GPUs, 1 for a dense model; CP 1, and for sequences of 16K
    tokens and more the powers of two up to 8 that leave each GPU at least 8K of them (§12).
    EP multiplies an MoE model's space, so by default it searches the schedules Megatron-Core
    runs (GPipe, 1F1B, interleaved) and DeepSeek's DualPipeV, no Chronos savers; --schedule /
    --recompute / --offload add the others."""
    def given(values, default):
        return default if values is None else tuple(values)

    model, hw = work.model, work.hw
    tps = given(tp, tuple(t for t in SEARCHED_TP if t <= hw.gpus_per_node
                          and model.heads % t == 0 and hw.gpus % t == 0))
    pps = given(pp, tuple(p for p in range(1, min(model.layers, hw.gpus) + 1)
                          if hw.gpus % p == 0 and _splits(work, p)))
    # EP multiplies the space: MoE keeps to Megatron-Core's schedules and DualPipeV. DualPipe
    # on PP p with DP d runs DualPipeV's timeline on PP p/2 with DP 2d (§5.5): only when asked
    moe = model.is_moe
    scheds = given(schedule, tuple(s for s in schedules.SCHEDULES if s != "dualpipe" and not (
        moe and s in schedules.SPLIT and s != "dualpipev")))
    vpps = given(vpp, (1, 2) if "interleaved" in scheds else (1,))
    if work.pipeline_layout is not None:       # its virtual stages fix PP x VPP
        n = len(parse_pipeline_layout(work.pipeline_layout))
        pps = tuple(p for p in pps if n % p == 0)
        vpps = given(vpp, tuple(sorted({n // p for p in pps})))
    opts = given(optimizer, ("none", "dist-opt") if hw.gpus > max(pps) * min(tps)
                 else ("none",))
    if ep is not None and not model.is_moe and set(ep) != {1}:
        raise InputError(f"{model.name} has no experts: --ep applies to MoE models")
    eps = given(ep, tuple(e for e in (2 ** i for i in range(12)) if model.experts % e == 0
                          and hw.gpus % e == 0) if model.is_moe else (1,))
    cps = given(cp, tuple(c for c in SEARCHED_CP if c == 1 or (
        work.seq // c >= CP_MIN_TOKENS and work.seq % (2 * c) == 0 and hw.gpus % c == 0
        and not model.local_attention)))
    return {"tp": tps, "pp": pps, "vpp": vpps, "mbs": given(mbs, SEARCHED_MBS),
            "schedule": scheds,
            "recompute": given(recompute, tuple(r for r in SEARCHED_RECOMPUTE
                                                if not (moe and r == "chronos"))),
            "offload": given(offload, tuple(o for o in OFFLOAD if not (moe and o == "chronos"))),
            "optimizer": opts, "ep": eps, "cp": cps}


def _splits(work: Workload, pp: int) -> bool:
    """The layers split over `pp` stages (evenly, as given, or balanced: §11.5)."""
    if work.pipeline_layout is not None:
        return len(parse_pipeline_layout(work.pipeline_layout)) % pp == 0
    try:
        stage_layers(work.model, work.seq, pp, "1f1b", 1, work.first_layers, work.last_layers)
    except InputError:
        return False
    return True


class PipelineStudy:
    """Search (tp, pp, vpp, mbs, schedule, recompute, offload, optimizer, ep, cp) for one
    workload;
    DP and the micro-batch count follow from the GPUs and the global batch.

    Exact for the best `keep` distinct configurations, pruned elsewhere: every valid point has
    a closed-form lower bound on its iteration time (Terms.iteration_lower_bound; with memory
    savers, also the plain configuration's simulated time), points are simulated in bound
    order, and once `keep` distinct feasible results exist a point whose bound cannot beat the
    keep-th best is reported as pruned. Only the time objectives prune (keep=None: simulate
    everything). A point whose policy cannot change anything (selective recompute of the
    attention core under flash attention, a distributed optimizer with DP 1, savers on a
    fixed schedule that already fits) is reported as redundant with the configuration it
    equals. With
    chronos_savers_everywhere off, Chronos-Recomp and Chronos-Offload are searched with the
    chronos schedule only (the other schedules keep selective/full recompute and optimizer
    offload)."""
    name = "pipeline"
    metrics = METRICS
    objectives = OBJECTIVES
    tie_breakers = (Objective("peak_max_bytes", "minimize"),)   # within 0.1 %: less memory

    def __init__(self, workload: Workload, tps, pps, vpps, mbss, schedule_names, recomputes,
                 offloads, optimizers, cap: int | None = None, keep: int | None = 10,
                 chronos_savers_everywhere: bool = True, eps=(1,), cps=(1,)):
        self.workload = workload
        self.cap = cap
        self.keep = keep
        self.savers_everywhere = chronos_savers_everywhere
        self.space = Space((
            Param("tp", tuple(tps), "tensor parallel", "GPUs"),
            Param("pp", tuple(pps), "pipeline stages", "GPUs"),
            Param("vpp", tuple(vpps), "chunks per device (interleaved)", ""),
            Param("mbs", tuple(mbss), "micro-batch", "seq"),
            Param("schedule", tuple(schedules.canonical(s) for s in schedule_names),
                  "schedule", ""),
            Param("recompute", tuple(recomputes), "recompute", ""),
            Param("offload", tuple(offloads), "offload", ""),
            Param("optimizer", tuple(optimizers), "optimizer sharding", ""),
            Param("ep", tuple(eps), "expert parallel", "GPUs"),
            Param("cp", tuple(cps), "context parallel", "GPUs")))
        self._cache: dict[tuple, Summary] = {}
        self._bounds: dict[tuple, float | str] = {}
        self._top: list[float] = []          # iteration seconds of distinct feasible results
        self.counts = {"simulated": 0, "pruned": 0, "redundant": 0, "invalid": 0}

    # ---- one point ----------------------------------------------------------------------
    def terms(self, key: tuple) -> Terms:
        tp, pp, vpp, mbs, sched, rec, off, opt, ep, cp = key
        lay = self.workload.layout(tp, pp, mbs, vpp, ep=ep, cp=cp)
        pol = self.workload.policy(sched, self.cap if sched == "chronos" else None, rec, None,
                                   off, opt)
        return self.workload.terms(lay, pol)

    def bound(self, key: tuple) -> float | str:
        """Lower bound on the iteration time, or why the point is not a valid layout; shared
        by every point with the same layout, schedule family and optimizer."""
        tp, pp, vpp, mbs, sched, rec, off, opt, ep, cp = key
        if vpp != 1 and sched != "interleaved":
            return "vpp > 1 applies to interleaved only"
        if not self.savers_everywhere and sched != "chronos" and "chronos" in (rec, off):
            return ("not searched: Chronos-Recomp/Offload go with the chronos schedule (pass "
                    "--recompute/--offload to apply them to others)")
        why = self.workload.hw.time.overlap_moe_a2a and a2a_overlap_refusal(
            ep, pp, sched, rec, self.workload.recompute_modules)
        if why:
            return why
        family = sched if sched in ("interleaved", *schedules.DUAL) else (   # own rules
            "v" if sched in schedules.V_SHAPED else "linear")
        slow_sel = rec == "selective" and not self.workload.selective_inert
        # Chronos savers have layout rules of their own (every chunk alike): a key of its own
        small = (tp, pp, vpp, mbs, family, slow_sel, opt, ep, cp, "chronos" in (rec, off))
        if small not in self._bounds:
            try:
                self._bounds[small] = self.terms(key).iteration_lower_bound
            except ExploreError as e:
                self._bounds[small] = str(e)
        return self._bounds[small]

    def same_as(self, key: tuple) -> tuple | None:
        """The simpler point this one equals whatever happens (rule-based), if any."""
        tp, pp, vpp, mbs, sched, rec, off, opt, ep, cp = key
        if rec == "selective" and self.workload.selective_inert:
            return (tp, pp, vpp, mbs, sched, "none", off, opt, ep, cp)
        # with DP 1 the distributed optimizer shards nothing (experts: unless EDP > 1)
        if opt == "dist-opt" and self.workload.hw.gpus == tp * pp \
                and not self.workload.model.is_moe:
            return (tp, pp, vpp, mbs, sched, rec, off, "none", ep, cp)
        return None

    def plain_key(self, key: tuple) -> tuple | None:
        """The point without adaptive savers (full recompute of the fewest layers that fit,
        Chronos-Recomp, offload) when it differs."""
        tp, pp, vpp, mbs, sched, rec, off, opt, ep, cp = key
        if rec in ("none", "full-fit", "chronos") and (rec, off) != ("none", "none"):
            return (tp, pp, vpp, mbs, sched, "none", "none", opt, ep, cp)
        return None

    def outcome(self, key: tuple) -> Outcome:
        """The full simulated outcome of a valid point (its timelines included), simulated
        again: the search keeps only summaries."""
        out = solve(self.terms(key)).outcome
        assert out is not None          # no incumbent: solve always returns an outcome
        return out

    def summary(self, key: tuple, incumbent_s: float | None = None) -> Summary | None:
        """A valid point simulated once and remembered by its numbers, or None when the
        incumbent prunes it."""
        if key not in self._cache:
            sol = solve(self.terms(key), incumbent_s=incumbent_s, timelines=False)
            if sol.outcome is None:
                return None
            self._cache[key] = Summary.of(sol.outcome)
            self.counts["simulated"] += 1
        return self._cache[key]

    def _incumbent(self) -> float | None:
        if self.keep is None or len(self._top) < self.keep:
            return None
        return self._top[self.keep - 1]

    def _record(self, out: Summary) -> None:
        if out.fits:
            self._top = sorted(self._top + [out.iteration_s])[: self.keep or None]

    def _classify(self, key: tuple, bound: float):
        """(outcome or None, reason). reason starts with 'same as' for redundant points and
        'pruned' for pruned ones."""
        inc = self._incumbent()
        simpler = self.same_as(key)
        if simpler is not None:
            return None, "same as " + _describe_key(simpler, key)
        plain = self.plain_key(key)
        fixed = key[4] != "chronos" or self.cap is not None
        if plain is not None:
            base = self.summary(plain, inc) if plain in self._cache or inc is None \
                or bound < inc else None
            if base is not None and fixed and base.fits:
                return None, "same as " + _describe_key(plain, key) + " (it fits: nothing " \
                                                                     "to save)"
            if base is not None and fixed and inc is not None and no_faster(base.iteration_s, inc):
                return None, f"pruned: at least {base.iteration_s:.2f} s per iteration"
        if inc is not None and no_faster(bound, inc):
            return None, f"pruned: at least {bound:.2f} s per iteration"
        out = self.summary(key, inc)
        if out is None:
            return None, "pruned: no cap C beats the best found"
        if plain is not None and not out.saved \
                and plain in self._cache and self._cache[plain].cap == out.cap:
            return None, "same as " + _describe_key(plain, key) + " (nothing recomputed or " \
                                                                 "offloaded)"
        return out, ""

    # ---- the engine's interface --------------------------------------------------------
    def fingerprint(self) -> dict:
        """The fixed inputs: a stored search resumes only with the same ones."""
        return {"workload": dataclasses.asdict(self.workload), "cap": self.cap,
                "keep": self.keep}

    def evaluate(self, points: dict[str, np.ndarray]) -> Evaluation:
        n = len(points["tp"])
        metrics = {m.name: np.full(n, np.nan) for m in METRICS}
        layout, memory, host = np.zeros(n), np.zeros(n), np.zeros(n)
        skipped = np.full(n, "", dtype=object)
        reasons = np.full(n, "", dtype=object)
        usable = self.workload.hw.usable_bytes
        keys = list(zip(*(np.asarray(points[p]).tolist() for p in PARAMS)))  # Python values
        bounds = np.full(n, np.inf)
        for i, key in enumerate(keys):
            b = self.bound(key)
            if isinstance(b, str):
                layout[i], reasons[i] = 1.0, b
                self.counts["invalid"] += 1
            else:
                bounds[i] = b
        # cheap points (one simulation) first: they set the incumbent the planner and the
        # greedy savers are then measured against
        costly = np.asarray([k[4] == "chronos" or k[5] in ("full", "full-fit", "chronos")
                             or k[6] != "none" for k in keys])
        for i in np.lexsort((bounds, costly)):
            if layout[i]:
                continue
            out, why = self._classify(keys[i], bounds[i])
            if out is None:
                skipped[i] = "redundant" if why.startswith("same") else "pruned"
                reasons[i] = why
                self.counts[skipped[i]] += 1
                continue
            self._record(out)
            for k, v in out.metrics.items():
                metrics[k][i] = v
            memory[i] = out.metrics["peak_max_bytes"] / usable - 1.0
            host[i] = out.metrics["host_bytes"] / max(self.workload.hw.host_ram_bytes, 1.0) \
                - 1.0
            if not out.fits:
                reasons[i] = out.binding
        return Evaluation(metrics, {"layout": layout, "memory": memory, "host_ram": host},
                          reasons.astype(str), skipped)


def _describe_key(simple: tuple, key: tuple) -> str:
    names = PARAMS
    diff = [f"{n} {a}" for n, a, b in zip(names, simple, key) if a != b]
    return ", ".join(diff)


# ---- per-device breakdown and timeline (§10) -------------------------------------------------

def describe(out: Outcome) -> dict:
    """The configuration of an outcome as plain data."""
    t = out.terms
    lay, pol = t.layout, t.policy
    marks = out.plan.marks
    return {"model": t.shape.name, "layers": t.shape.layers,
            "params": t.shape.total_params, "tp": lay.tp, "pp": lay.pp, "dp": lay.dp,
            "vpp": lay.vpp, "chunks_per_device": t.chunks, "layers_per_chunk": t.layers_per_chunk,
            "stage_layers": list(t.stage_layers), "pipeline_layout": lay.pipeline_layout,
            "mtp_layers": t.shape.mtp_layers,
            "sp": lay.sp, "flash": lay.flash, "seq": lay.seq, "mbs": lay.mbs,
            "cp": lay.cp, "cp_comm": lay.cp_comm,
            "experts": t.shape.experts, "ep": lay.ep, "etp": lay.moe.expert_tp,
            "edp": lay.moe.edp,
            "global_batch": lay.global_batch, "m": t.m, "schedule": pol.schedule,
            "model_copies": t.copies, "cap": out.ops.cap, "recompute": pol.recompute,
            "recompute_modules": list(pol.recompute_modules), "offload": pol.offload,
            "optimizer": pol.optimizer, "state_bytes_per_param": t.state_bytes.total,
            "state_scheme": t.state_bytes.scheme,
            "recomputed_layer_passes": int(sum(marks.values())),
            "recompute_layers": int(max(marks.values(), default=0)),
            "offloaded": {w: sum(1 for x in out.plan.transfers if x.what == w)
                          for w in ("optimizer", "activations", "held", "weights")}}


def performance(out: Outcome) -> dict:
    hw = out.terms.hw
    power = hw.gpus * hw.gpu.tdp_w          # a first estimate: every GPU at its board power
    return {"iteration_s": out.iteration_s, "makespan_s": out.makespan,
            "power_w": power or None,
            "energy_j": power * out.iteration_s if power else None,
            "dp_s": out.terms.dp_s, "step_s": out.terms.step_s,
            "tokens_per_s": out.tokens_per_s, "mfu": out.mfu, "hfu": out.hfu,
            "bubble": out.bubble, "recompute_fraction": out.recompute_fraction,
            "stall_s": out.stall_s, "host_bytes_per_node": out.host_bytes_per_node,
            "fits": out.fits, "binding": binding_text(out),
            "usable_bytes": out.terms.hw.usable_bytes}


def breakdown(out: Outcome) -> dict:
    """Device x category bytes at each device's peak, activations per chunk with in-flight
    counts, the peak instant and op (§10 breakdown)."""
    t = out.terms
    rows = []
    for d in range(t.p):
        cats = out.category_bytes(d)
        opt_off = t.optimizer(d) if out.optimizer_offloaded[d] else 0.0
        chunks = []
        peak_t = out.memory[d].peak_time
        for vs in out.ops.vs_of(d):
            live = held = 0
            nbytes = 0.0
            for j in range(t.vs_micro_batches):
                f = out.program.index[(schedules.F, vs, j)]
                b = out.program.index[(schedules.B, vs, j)]
                w = out.program.index.get((schedules.W, vs, j), b)
                k = out.plan.marks.get((vs, j), 0)
                stored, _, hold = object_bytes(t, out.plan.shared, vs, k)
                if out.start[f] <= peak_t < out.end[b]:
                    live += 1
                    nbytes += float(stored)
                elif out.end[b] <= peak_t < out.end[w] and w != b:
                    held += 1
                    nbytes += float(hold)
            chunks.append({"vs": vs, "layers": int(t.chunk_sizes[vs]), "in_flight": live,
                           "held_for_w": held, "bytes": nbytes * t.hw.fragmentation})
        mem_d = out.memory[d]
        rows.append({
            "device": d, "weights": cats["weights"], "grads": cats["grads"],
            "optimizer_resident": cats["optimizer"], "optimizer_offloaded": opt_off,
            "activations": cats["activations"], "held_for_w": cats["held for W"],
            "recompute": cats["recompute"], "working": cats["working"],
            "stage_extras": cats["stage extras"],
            "reload_in_flight": cats["optimizer reload"] + cats["weights reload"],
            "reserve": t.hw.reserve_bytes, "peak": out.peaks[d],
            "total_with_reserve": out.peaks[d] + t.hw.reserve_bytes,
            "peak_time_s": mem_d.peak_time,
            "peak_op": out.peak_label(d),
            "chunks": chunks, "host_bytes_per_gpu": out.host_bytes_per_gpu[d],
            "busy_s": float(out.timing.busy[d]),
            "stall_s": float(out.timing.stall[d])})
    return {"devices": rows, "binding": out.binding(), "binding_text": binding_text(out)}


def timeline(out: Outcome, devices: list[int] | None = None) -> list[tuple[float, int, str, float]]:
    """(time_s, device, category, bytes) after every memory event; model states are constant
    rows at time 0. Dynamic categories carry the fragmentation factor."""
    t = out.terms
    frag = t.hw.fragmentation
    rows = []
    for d in (range(t.p) if devices is None else devices):
        rows += [(0.0, d, "weights", t.weights(d) - out.weights_offloaded[d]),
                 (0.0, d, "grads", t.grads(d)),
                 (0.0, d, "optimizer", 0.0 if out.optimizer_offloaded[d] else t.optimizer(d))]
        mem = out.memory[d]
        level = mem.initial.copy()
        for c in np.flatnonzero(level):
            rows.append((0.0, d, CATEGORIES[c], frag * float(level[c])))
        for i in range(len(mem.times)):
            row = mem.rows[i]
            level = level + row
            for c in np.flatnonzero(row):
                rows.append((float(mem.times[i]), d, CATEGORIES[c], frag * float(level[c])))
    return rows


def op_list(out: Outcome) -> list[dict]:
    """Every op with its device, resource, start and end (the op-list export)."""
    prog = out.program
    return [{"op": prog.label(o), "kind": "FBWROL"[prog.kind[o]], "device": prog.dev[o],
             "resource": ("compute" if prog.res[o] < prog.p else
                          ("d2h" if (prog.res[o] - prog.p) % 2 == 0 else "h2d")),
             "start_s": float(out.start[o]), "end_s": float(out.end[o])}
            for o in sorted(range(prog.n), key=lambda o: (out.start[o], prog.dev[o]))]


def profile(out: Outcome, bins: int = 60) -> list[dict]:
    """Per device: total bytes (states + dynamic) sampled at `bins` instants, for a text plot."""
    t = out.terms
    grid = np.linspace(0.0, out.makespan, bins)
    out_rows = []
    for d in range(t.p):
        mem = out.memory[d]
        idx = np.searchsorted(mem.times, grid, side="right") - 1
        levels = np.where(idx >= 0, mem.levels[np.maximum(idx, 0)], mem.initial.sum())
        out_rows.append({"device": d, "bytes": (out.states(d) + t.hw.fragmentation * levels
                                                ).tolist()})
    return out_rows


# ---- largest trainable model (§1 question 1, §8) ---------------------------------------------

@dataclass
class MaxSize:
    """Largest trainable layer count on the partition grid, interpolated L* (§8)."""
    schedule: str
    label: str
    step: int
    l_fit: int                      # largest fitting grid L (0: none)
    l_fail: int | None              # smallest failing grid L
    l_star: float
    params_star: float
    fit: Outcome | None
    fail: Outcome | None
    binding: str
    mfu_star: float
    evaluated: list                 # (L, fits, peak bytes, iteration s, MFU)

    def as_dict(self) -> dict:
        f = self.fit
        return {"schedule": self.schedule, "label": self.label, "grid_step": self.step,
                "l_fit": self.l_fit, "l_fail": self.l_fail, "l_star": self.l_star,
                "params_star": self.params_star, "binding": self.binding,
                "peak_bytes_fit": f.peak if f else None,
                "peak_bytes_fail": self.fail.peak if self.fail else None,
                "binding_device": self.fail.binding_device if self.fail else None,
                "tokens_per_s": f.tokens_per_s if f else None, "mfu": f.mfu if f else None,
                "hfu": f.hfu if f else None, "mfu_star": self.mfu_star,
                "cap": f.ops.cap if f else None,
                "recompute_fraction": f.recompute_fraction if f else None,
                "evaluated": [{"layers": L, "fits": ok, "peak_bytes": pk, "iteration_s": it,
                               "mfu": mfu} for L, ok, pk, it, mfu in self.evaluated]}


def params_at(model: ModelShape, layers: float) -> float:
    """Parameters at a (possibly fractional) layer count: linear in L."""
    one = model.with_layers(1).total_params
    return one + (layers - 1) * model.dense_layer_params


def max_size(work: Workload, tp: int, pp: int, mbs: int, policy: Policy, vpp: int = 1,
             floor_mfu: float | None = None, l_max: int = 1024, label: str = "") -> MaxSize:
    """Largest L on the partition grid (multiples of p x chunks) that fits under the HBM cap
    and meets the MFU floor when given (§8). Every grid L is 'ok', 'slow' (fits, below the
    floor: small models, where the LM head weighs most, or too much recompute) or 'oom'; the
    search doubles until 'oom', then bisects for the largest 'ok'. L* interpolates peak memory
    linearly between the largest fitting and the smallest failing grid L; when the floor binds
    instead, it interpolates MFU down to the floor."""
    step = pp * schedules.chunks_per_device(policy.schedule, vpp)
    lay = work.layout(tp, pp, mbs, vpp)
    seen: dict[int, tuple[str, Outcome]] = {}
    hw = work.hw

    def status(k: int) -> str:
        L = k * step
        if L not in seen:
            terms = work.terms(lay, policy, L)
            floor_s = None if floor_mfu is None else \
                terms.model_flops / (floor_mfu * hw.gpus * hw.peak_flops)
            out = solve(terms, floor_s).outcome
            assert out is not None    # no incumbent given: solve never prunes
            st = "oom" if not out.fits else (
                "slow" if floor_s is not None and out.iteration_s > floor_s * (1 + 1e-9)
                else "ok")
            seen[L] = (st, out)
        return seen[L][0]

    probes, k = [], 1
    while k * step <= l_max:
        probes.append((k, status(k)))
        if probes[-1][1] == "oom":
            break
        k *= 2
    oks = [k for k, st in probes if st == "ok"]
    if not oks:                        # an ok region between probes? walk up to the first oom
        k = 1
        while k * step <= l_max and status(k) != "oom" and status(k) != "ok":
            k += 1
        oks = [k] if k * step <= l_max and status(k) == "ok" else []
    lo = max(oks) if oks else 0
    later = [k for k, _ in probes if k > lo]
    hi = min(later) if later else (lo + 1 if lo and (lo + 1) * step <= l_max else None)
    if hi is not None and lo:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if status(mid) == "ok":
                lo = mid
            else:
                hi = mid
    if hi is not None and (hi * step) not in seen and hi * step <= l_max:
        status(hi)
    l_fit = lo * step
    fit = seen[l_fit][1] if lo else None
    l_fail = hi * step if hi is not None and hi * step in seen else None
    fail_st, fail = seen[l_fail] if l_fail else ("", None)
    l_star = float(l_fit)
    mfu_star = fit.mfu if fit else float("nan")
    if fail is None:
        binding = "none below the search limit" if fit else "no grid size fits"
    elif fail_st == "slow":
        assert floor_mfu is not None  # "slow" is only assigned when a floor is given
        binding = f"throughput floor: MFU {fail.mfu:.1%} < {floor_mfu:.1%} at L = {l_fail}"
        if fit is not None and fit.mfu > fail.mfu:
            frac = (fit.mfu - floor_mfu) / (fit.mfu - fail.mfu)
            l_star = l_fit + step * min(max(frac, 0.0), 1.0)
            mfu_star = floor_mfu if frac < 1 else fail.mfu
    else:
        binding = binding_text(fail)
        if fit is not None and fail.peak > fit.peak and fail.host_ok:
            frac = (hw.usable_bytes - fit.peak) / (fail.peak - fit.peak)
            l_star = l_fit + step * min(max(frac, 0.0), 1.0)
            mfu_star = fit.mfu + (fail.mfu - fit.mfu) * (l_star - l_fit) / step
    evaluated = sorted((L, st == "ok", o.peak, o.iteration_s, o.mfu)
                       for L, (st, o) in seen.items())
    return MaxSize(policy.schedule, label or policy.schedule, step, l_fit, l_fail, l_star,
                   params_at(work.model, l_star) if l_star else 0.0, fit, fail, binding,
                   mfu_star, evaluated)


def comparable_floor(base: MaxSize, delta: float) -> float:
    """§8 "comparable throughput": MFU >= (1 - delta) x 1F1B's MFU at its own L*."""
    return (1 - delta) * base.mfu_star


MAX_SIZE_SCHEDULES = ("1f1b", "interleaved", "zb-h1", "zb-v", "v-half", "v-min", "chronos")


def default_degrees(hw: Hardware, tp: int | None = None, pp: int | None = None
                    ) -> tuple[int, int]:
    """(TP, PP) of a one-layout report (max-size, sweep) when not given: TP 8, at most a node
    and the GPUs; PP the GPUs left over (DP 1)."""
    t = min(8, hw.gpus_per_node, hw.gpus) if tp is None else tp
    return t, max(1, hw.gpus // t) if pp is None else pp


def max_size_table(work: Workload, tp: int, pp: int, mbs: int, vpp: int,
                   schedule_names: tuple[str, ...], optimizer: str, recompute: str | None,
                   offload: str | None, delta: float | None, l_max: int,
                   progress: Callable[[str], None] = lambda what: None
                   ) -> tuple[float | None, list[MaxSize]]:
    """Largest trainable size per schedule family (`max-size`): 1F1B first (it sets the
    throughput floor when delta is given), then each schedule with Chronos-Recomp/Offload on
    the chronos schedule unless recompute/offload say otherwise. `progress(label)` is told
    as each family's search starts."""
    progress("1F1B")
    base = max_size(work, tp, pp, mbs, work.policy("1f1b", optimizer=optimizer), l_max=l_max,
                    label="1F1B")
    floor = None if delta is None else comparable_floor(base, delta)
    rows = []
    for s in schedule_names:
        chronos = s == "chronos"
        rec = recompute or ("chronos" if chronos else "none")
        off = offload or ("chronos" if chronos else "none")
        if s == "1f1b" and (rec, off) == ("none", "none") and floor is None:
            rows.append(base)
            continue
        label = "ChronosPipe" if chronos and (rec, off) == ("chronos", "chronos") else s
        progress(label)
        rows.append(max_size(work, tp, pp, mbs, work.policy(s, None, rec, None, off, optimizer),
                             vpp if s == "interleaved" else 1, floor, l_max, label))
    return floor, rows


def sweep(work: Workload, tp: int, pp: int, mbs: int, policy: Policy, vpp: int, param: str,
          values, layers: int) -> list[dict]:
    """One varied parameter (seq, m, h2d-gbps) -> L*, peak and tokens/s at `layers`."""
    rows = []
    for v in values:
        w = work
        if param == "seq":
            w = replace(work, seq=int(v))
        elif param == "m":
            dp = work.hw.gpus // (tp * pp)
            w = replace(work, global_batch=int(v) * mbs * dp)
        elif param == "h2d-gbps":
            w = replace(work, hw=work.hw.with_(host_link_bandwidth=float(v) * 1e9))
        else:
            raise InputError(f"sweep parameter must be seq, m or h2d-gbps, not {param!r}")
        ms = max_size(w, tp, pp, mbs, policy, vpp)
        at: dict[str, float | bool | str]
        try:
            out = solve(w.terms(w.layout(tp, pp, mbs, vpp), policy, layers)).outcome
            assert out is not None    # no incumbent given: solve never prunes
            at = {"peak_bytes": out.peak, "tokens_per_s": out.tokens_per_s, "mfu": out.mfu,
                  "fits": out.fits, "stall_s": out.stall_s}
        except InfeasibleError as e:
            at = {"error": str(e)}
        rows.append({"value": v, "l_star": ms.l_star, "params_star": ms.params_star,
                     "binding": ms.binding, **at})
    return rows


def time_assumptions(work: Workload) -> list[dict]:
    """How op times were computed, as the output states it."""
    hw = work.hw
    t, gpu, node = hw.time, hw.gpu, hw.node
    p2p = {None: "interleaved only (Megatron-LM's default)", True: "on", False: "off"}
    overlaps = ", ".join(f"{name} {'on' if on else 'off'}" for name, on in (
        ("--overlap-grad-reduce", t.overlap_grad_reduce),
        ("--overlap-param-gather", t.overlap_param_gather),
        ("--tp-comm-overlap", t.tp_comm_overlap),
        ("--overlap-moe-expert-parallel-comm", t.overlap_moe_a2a))) \
        + f", --overlap-p2p-comm {p2p[t.overlap_p2p_comm]}"
    if t.kind == "flat":
        return [
            {"text": f"time model flat: compute at eta = {hw.eff:g} of "
                     f"{hw.peak_flops / 1e12:g} TFLOP/s; T_B = {work.tb_ratio:g} T_F and "
                     f"T_W = {work.tw_ratio:g} T_F (compute), TP communication exposed in F "
                     f"and B", "tag": "[design] §7.1"},
            {"text": f"TP/DP/P2P: alpha-beta ring collectives at the nominal "
                     f"{gpu.interconnect_bandwidth / 1e9:g} GB/s inside a "
                     f"{hw.gpus_per_node}-GPU node, {node.inter_node_bandwidth / 1e9:g} GB/s "
                     f"per GPU across nodes; {overlaps}", "tag": "[design] §7.1"}]
    scale = "" if t.gemm_scale == 1 else f", x {t.gemm_scale:g} (calibrated)"
    return [
        {"text": f"time model kernels: each GEMM (forward, input- and weight-gradient) on "
                 f"{gpu.name}'s efficiency curve, at most {gpu.gemm_efficiency:.1%} of "
                 f"{gpu.peak_flops / 1e12:g} TFLOP/s{scale} (tile and wave quantisation over "
                 f"{gpu.sm_count} SMs, memory-bound floor); norms, activations, softmax and "
                 f"dropout by bytes at {gpu.achieved_bandwidth / 1e12:.2f} TB/s; flash "
                 f"attention at {gpu.flash_fwd_efficiency:.0%} / {gpu.flash_bwd_efficiency:.0%}"
                 f" of peak (forward / backward)", "tag": "[design] §7.2, sources in the GPU "
                                                          "preset"},
        {"text": f"TP/DP/P2P: NCCL rings at {gpu.bus_bandwidth * t.comm_scale / 1e9:g} GB/s "
                 f"bus bandwidth inside a {hw.gpus_per_node}-GPU node; across nodes the "
                 f"group's NICs at {node.inter_node_bandwidth / 1e9:g} GB/s x "
                 f"{node.network_efficiency:g}; {overlaps}", "tag": "[design] §7.2"}] + ([] if
        t.gemm_format == "bf16" else [
        {"text": f"{t.gemm_format} GEMMs (Transformer Engine): linear GEMMs at the "
                 f"{t.gemm_format} peak on the bf16 efficiency curve, inputs cast by "
                 f"element-wise kernels, linear inputs saved and weights cached (rowwise + "
                 f"columnwise) quantised; MFU against the bf16 peak",
         "tag": "[assumed] §7.4, not validated on measured FP8 runs"}]) + ([] if
        not work.model.is_moe else [
        {"text": f"MoE layers: dropless routing, the busiest GPU at {work.moe_imbalance:g} x the "
                 f"mean routed tokens (--moe-imbalance), a {work.model.router} router "
                 f"{'with' if work.model.router_aux_loss else 'without'} the auxiliary loss "
                 "(the model's), the alltoall dispatcher's four all-to-alls per layer "
                 "and micro-batch exposed (no overlap), routed experts on the kernel curve at "
                 "their own token counts in bf16",
         "tag": "[design] §11; peak memory checked on measured Megatron-Core runs (explore "
                "validate pipeline), time not validated"}])


def assumptions(work: Workload) -> list[dict]:
    """The assumptions every output ends with, each with its tag (docs/pipeline.md)."""
    hw = work.hw
    return [
        {"text": "model states per parameter: Megatron bf16 weights + fp32 grads + Adam = 18 B "
                 "(16 B mixed-precision Adam; ZeRO-1/2/3 4+12/d, 2+14/d, 16/d; distributed "
                 "optimizer 6+12/d); embedding on the first, LM head on the last virtual stage",
         "tag": "[literature] ZeRO (arXiv 1910.02054), Megatron-LM; §3"},
        {"text": "activations by explicit per-tensor accounting (reproduces Korthikanti et al. "
                 "2022 for GPT); flash attention keeps fp32 softmax statistics; split backward "
                 "holds each linear's input and output gradient from B to W",
         "tag": "[design] §4.2, checked against [literature] §4.1"},
        {"text": f"HBM {hw.hbm_bytes / GiB:g} GiB, reserve {hw.reserve_bytes / GiB:g} GiB, "
                 f"fragmentation x{hw.fragmentation:g} on dynamic memory, one working layer "
                 f"while an op runs", "tag": "[design] §4.4"},
        *time_assumptions(work),
        {"text": "FLOPs per iteration: Megatron-LM num_floating_point_operations; MFU excludes "
                 "recompute, HFU includes it", "tag": "[literature] Narayanan et al. 2021; §7"},
        {"text": f"host link {hw.host_link_bandwidth / 1e9:g} GB/s per direction shared by "
                 f"{hw.link_share} GPU(s) -> {hw.link_bandwidth / 1e9:g} GB/s each; pinned host "
                 f"RAM {hw.host_ram_bytes / GiB:,.0f} GiB per node", "tag": "[design] §6.3"},
        {"text": "schedules: GPipe, 1F1B and interleaved 1F1B in their published orders; "
                 "ZB-H1/H2 and the V placements (ZB-V, V-Half, V-Min at their memory caps) from "
                 "one greedy split-backward list scheduler; Chronos-Pipe as defined in §5.3",
         "tag": "[literature] Narayanan et al. 2021, Qi et al. 2024; [design] §5.3"},
        {"text": "Chronos-Recomp (peak-directed greedy, shared checkpoints) and Chronos-Offload "
                 "(optimizer states, activations idle F->B and, with split backward, B->W, "
                 "weights) under link queues and host RAM; the planner tries C = 2p..2",
         "tag": "[design] §6.2-§6.3"},
        {"text": "one iteration = makespan + exposed DP reduction + optimizer step (synchronous: "
                 "ZB-H2's zero bubble, which needs the optimizer post-validation, is not "
                 "modelled)", "tag": "[design] §7"},
    ]
