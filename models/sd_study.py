"""The `sd` study: a deployment, an acceptance rate and a (batch, gamma) space, declared to the
search engine, plus the report of docs/sd.md §8 as plain data (the CLI renders it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from explore.search.space import Param, Space
from explore.search.study import Evaluation, Metric, Objective

from . import sd
from .errors import InfeasibleError, InputError
from .hardware import GpuSpec
from .sd_draft import check_rates, check_tree
from .sd_fit import Calibration
from .shapes import ModelShape
from .units import GiB, MS

TP_CHOICES = (1, 2, 4, 8)


@dataclass(frozen=True)
class SdSetup:
    target: sd.Deployment
    draft: sd.Draft
    alpha: float                        # i.i.d. acceptance (the first position's with rates)
    ctx: int = 512
    verify: str = "gamma+1"
    correlation: float = 0.0
    overlap: str = "none"
    memory_fraction: float = 0.9        # of HBM usable for weights + KV (vLLM's default)
    max_latency_s: float | None = None  # per generated token with SD
    calibration: Calibration | None = None
    engine: sd.EngineProfile = sd.DEFAULT_ENGINE
    rates: tuple[float, ...] = ()       # per-position acceptance rates (MTP heads), §3.1
    routing: tuple[float, ...] | None = None   # the target's per-expert frequencies, §4.1
    topk: int = 1                       # a token tree's branches (§3.2); 1: a chain
    tree_tokens: int | None = None      # its verified positions per sequence

    def __post_init__(self) -> None:
        sd.check_alpha(self.alpha)
        if self.rates:
            check_rates(self.rates)
        check_tree(self.topk, self.tree_tokens)
        sd.verify_tokens(1, self.verify)
        if self.ctx < 0:
            raise InputError(f"--ctx must be >= 0 tokens, got {self.ctx}")
        if not 0 < self.memory_fraction <= 1:
            raise InputError("memory fraction must be in (0, 1]")
        if self.max_latency_s is not None and self.max_latency_s <= 0:
            raise InputError("--max-latency-ms must be > 0")

    @property
    def acceptance(self) -> tuple[float, ...]:
        """The per-position rates the rounds are evaluated with."""
        return self.rates or (self.alpha,)

    def evaluate(self, times, batch, gamma) -> sd.SdPoint:
        """§3 over (batch, gamma) for this setup's acceptance, verification and tree."""
        return sd.evaluate(times, self.acceptance, batch, gamma, self.verify, self.topk,
                           self.tree_tokens)

    def verify_width(self, gamma):
        """Positions the target scores per sequence in a round."""
        return sd.round_width(gamma, self.verify, self.topk, self.tree_tokens)

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    @property
    def mode(self) -> str:
        cal = self.calibration
        if cal is None:
            return "a-priori (uncalibrated, §5.1)"
        what = ("§5.1 with fitted efficiencies and overheads" if cal.mode == "physical" else
                f"§5.2 fitted {', '.join(cal.fitted_parts)}; the rest a-priori")
        return f"calibrated ({cal.mode} fit: {what})"

    def times(self):
        base = sd.PhysicalTimes(self.target, self.draft, self.ctx, self.correlation, self.overlap,
                                self.engine, self.routing)
        return self.calibration.times(base) if self.calibration else base

    def memory_per_gpu(self, batch, gamma):
        """Bytes on the busiest GPU (the one that also holds the draft): weights, KV cache for
        ctx + the verified positions of every sequence, for target and draft."""
        tokens = self.ctx + np.maximum(self.verify_width(gamma), np.asarray(gamma) + 1)
        return (self.target.weight_bytes_per_gpu + self.target.kv_bytes_per_gpu(batch, tokens)
                + self.draft.weight_bytes_per_gpu + self.draft.kv_bytes_per_gpu(batch, tokens))

    @property
    def usable_bytes(self) -> float:
        return self.target.gpu.hbm_bytes * self.memory_fraction


def smallest_tp(target: ModelShape, draft: sd.Draft, gpu: GpuSpec, max_batch: int, ctx: int,
                max_gamma: int, memory_fraction: float = 0.9) -> int:
    """The smallest TP degree (dividing the heads) whose GPUs hold weights and KV cache at the
    largest batch and draft length searched; InfeasibleError when none up to 8 does."""
    tried = []
    for tp in TP_CHOICES:
        if target.heads % tp:
            continue
        setup = SdSetup(sd.Deployment(target, gpu, tp), draft, 0.5, ctx,
                        memory_fraction=memory_fraction)
        need = float(setup.memory_per_gpu(max_batch, max_gamma))
        if need <= setup.usable_bytes:
            return tp
        tried.append(f"TP{tp} needs {need / GiB:.1f} GiB")
    raise InfeasibleError(
        f"{target.name} does not fit on up to 8 x {gpu.name} "
        f"({memory_fraction:.0%} of {gpu.hbm_bytes / GiB:.0f} GiB usable): {'; '.join(tried)} "
        f"at batch {max_batch}, ctx {ctx}")


METRICS = (
    Metric("speedup", "speedup", "x", fmt=".3f"),
    Metric("target_efficiency", "TE", "", fmt=".3f"),
    Metric("throughput", "throughput", "tok/s", fmt=",.0f"),
    Metric("throughput_ar", "AR throughput", "tok/s", fmt=",.0f"),
    Metric("latency_s", "latency", "ms/tok", scale=1 / MS, fmt=".2f"),
    Metric("latency_ar_s", "AR latency", "ms/tok", scale=1 / MS, fmt=".2f"),
    Metric("memory_bytes", "memory", "GiB/GPU", scale=1 / GiB, fmt=".1f"),
)
OBJECTIVES = (Objective("speedup", "maximize"), Objective("throughput", "maximize"),
              Objective("latency_s", "minimize"), Objective("target_efficiency", "maximize"))


class SdStudy:
    """Search space (batch size, draft length) over one deployment and acceptance rate."""
    name = "sd"
    metrics = METRICS
    objectives = OBJECTIVES

    def __init__(self, setup: SdSetup, batches, gammas):
        batches = tuple(int(b) for b in batches)
        gammas = tuple(int(g) for g in gammas)
        if min(batches) < 1:
            raise InputError("batch sizes must be >= 1")
        if min(gammas) < 1:
            raise InputError("draft length gamma must be >= 1")
        self.setup = setup
        self.times = setup.times()
        self.space = Space((Param("batch", batches, "batch size", "seq"),
                            Param("gamma", gammas, "draft length", "tokens")))

    def fingerprint(self) -> dict:
        """The fixed inputs: a stored search resumes only with the same ones."""
        return dataclasses.asdict(self.setup)

    def evaluate(self, points: dict[str, np.ndarray]) -> Evaluation:
        s = self.setup
        r = s.evaluate(self.times, points["batch"], points["gamma"])
        memory = s.memory_per_gpu(r.batch, r.gamma)
        metrics = {"speedup": r.speedup, "target_efficiency": r.target_efficiency,
                   "throughput": r.throughput_sd, "throughput_ar": r.throughput_ar,
                   "latency_s": r.latency_sd_s, "latency_ar_s": r.latency_ar_s,
                   "memory_bytes": memory}
        violations = {"memory": memory / s.usable_bytes - 1.0}
        if s.max_latency_s is not None:
            violations["max_latency"] = r.latency_sd_s / s.max_latency_s - 1.0
        reasons = np.where(violations["memory"] > 0, np.char.add(
            "memory: needs ", np.char.add(np.char.mod("%.1f", memory / GiB),
                                          f" GiB of {s.usable_bytes / GiB:.1f} usable per GPU")),
            "")
        if s.max_latency_s is not None:
            cap_ms = s.max_latency_s / MS
            lat = np.char.add("latency ", np.char.add(
                np.char.mod("%.2f", r.latency_sd_s / MS), f" ms > {cap_ms:g} ms"))
            reasons = np.where((reasons == "") & (violations["max_latency"] > 0), lat, reasons)
        return Evaluation(metrics, violations, reasons)


# ---------------------------------------------------------------------------------------------
# the §8 report as data


def batch_range(batches: np.ndarray, mask: np.ndarray) -> list[int] | None:
    """[first, last] batch size where mask holds (None if nowhere)."""
    hit = batches[mask]
    return [int(hit.min()), int(hit.max())] if len(hit) else None


def _terms_at(setup: SdSetup, batch: int, tokens: float) -> list[dict]:
    times = setup.times()
    if not isinstance(times, sd.PhysicalTimes):
        return [{"term": k, "seconds": float(v), "equation": "§5.2 Algorithm 1"}
                for k, v in times.target_terms(batch, tokens).items()]
    fwd = times.target_forward(batch, tokens)
    out = []
    for t in fwd.terms:
        row = {"term": t.label, "seconds": float(t.seconds), "bytes": float(np.asarray(t.bytes)),
               "flops": float(np.asarray(t.flops)), "equation": t.equation}
        if t.label in fwd.memory_bound:
            row["bound"] = "memory" if bool(fwd.memory_bound[t.label]) else "compute"
        out.append(row)
    return out


NEAR_BEST = 0.05   # "how flat is the optimum": the range within 5 % of the best speedup


def on_edge(value: int, searched: np.ndarray, floor: int = 1) -> str:
    """'upper' or 'lower' when the best value sits on an edge of a searched range that could be
    extended (not the floor of the parameter's domain), else ''."""
    if len(searched) < 2:
        return ""
    if value == searched.max():
        return "upper"
    return "lower" if value == searched.min() and value > floor else ""


def energy_per_token(setup: SdSetup, throughput_sd: float, throughput_ar: float) -> dict:
    """A first estimate of joules per generated token, with SD and without: every GPU the
    target and draft occupy at its board power (TDP) for the time per token. None when the
    GPU preset has no TDP."""
    gpus = max(setup.target.tp, setup.draft.tp)
    watts = gpus * setup.target.gpu.tdp_w
    if not watts:
        return {"energy_j_per_token": None, "energy_ar_j_per_token": None, "power_w": None}
    return {"energy_j_per_token": watts / throughput_sd,
            "energy_ar_j_per_token": watts / throughput_ar, "power_w": watts}


def report(setup: SdSetup, study: SdStudy, best_point: dict, ranked_rows: list[dict],
           dense: "SdSetup | None" = None) -> dict:
    """Everything `explore sd` shows, in SI units, JSON-ready."""
    batches = np.asarray(study.space["batch"].values, dtype=float)
    gammas = np.asarray(study.space["gamma"].values, dtype=float)
    times = study.times
    grid = setup.evaluate(times, batches[:, None], gammas[None, :])
    b, g = int(best_point["batch"]), int(best_point["gamma"])
    gi = int(np.flatnonzero(gammas == g)[0])
    bi = int(np.flatnonzero(batches == b)[0])
    curve = grid.speedup[:, gi]
    near = (1.0 - NEAR_BEST) * float(grid.speedup[bi, gi])
    near_gamma = gammas[grid.speedup[bi, :] >= near]
    peak = float(curve.max())
    v = float(setup.verify_width(g))
    one = setup.evaluate(times, b, g)
    m = setup.target.model
    n_ar, n_v = b, b * v

    out = {
        "mode": setup.mode,
        "best": {"batch": b, "gamma": g, **{k: float(getattr(one, a)) for k, a in (
            ("speedup", "speedup"), ("target_efficiency", "target_efficiency"),
            ("tokens_per_round", "tokens_per_round"), ("throughput", "throughput_sd"),
            ("throughput_ar", "throughput_ar"), ("latency_s", "latency_sd_s"),
            ("latency_ar_s", "latency_ar_s"))},
            "sigma": float(one.tokens_per_round) / (g + 1),
            "memory_bytes": float(setup.memory_per_gpu(b, g)),
            **energy_per_token(setup, float(one.throughput_sd), float(one.throughput_ar))},
        "top": ranked_rows,
        "grid": {"batch": batches.astype(int).tolist(), "gamma": gammas.astype(int).tolist(),
                 "speedup": grid.speedup.tolist(),
                 "target_efficiency": grid.target_efficiency.tolist()},
        "ranges": {"gamma": g, "peak_speedup": peak,
                   "peak_batch": int(batches[int(curve.argmax())]),
                   "effective": batch_range(batches, curve >= peak / np.sqrt(2)),
                   "speedup_above_1": batch_range(batches, curve >= 1.0),
                   "within": NEAR_BEST,
                   "near_best_batch": batch_range(batches, curve >= near),
                   "near_best_gamma": [int(near_gamma.min()), int(near_gamma.max())],
                   "best_on_edge": {"batch": on_edge(b, batches), "gamma": on_edge(g, gammas)}},
        "breakdown": {
            "target_ar": {"batch": b, "tokens_per_seq": 1, "terms": _terms_at(setup, b, 1)},
            "target_verify": {"batch": b, "tokens_per_seq": v, "terms": _terms_at(setup, b, v)},
            "round": [
                {"term": f"draft: {g} x T_D(B,1)" if setup.topk == 1 else
                 f"draft: T_D(B,1) + {g - 1} x T_D({setup.topk}B,1)",
                 "seconds": float(one.t_draft_round),
                 "equation": "§3 gamma * T_D(B,1), each step with the engine's draft-step "
                             "overhead (§5.3)" if setup.topk == 1 else
                             "§3.2 a tree's first step on B rows, the others on topk B"},
                {"term": f"verify: T_T(B,{v:g})", "seconds": float(one.t_verify),
                 "equation": "§3 T_T(B, verify tokens)"},
                {"term": "rejection + round overhead", "seconds": float(one.t_reject),
                 "equation": "§5.2 reject_bias + reject_k * B" if setup.calibration is not None
                 and "reject" in setup.calibration.fitted_parts
                 else "§5.3 reject_base + reject_per_seq * B + round_overhead"},
            ],
        },
    }
    if m.is_moe:
        out["experts"] = {
            "E": m.experts, "K": m.experts_per_token, "T_thres": sd.threshold_tokens(
                m.experts, m.experts_per_token),
            "N_decode": float(sd.experts_activated(n_ar, m.experts, m.experts_per_token)),
            "N_verify": float(sd.experts_activated(n_v, m.experts, m.experts_per_token)),
            "T_exp_decode": float(sd.tokens_per_expert(n_ar, m.experts, m.experts_per_token)),
            "T_exp_verify": float(sd.tokens_per_expert(n_v, m.experts, m.experts_per_token))}
    if dense is not None:
        dgrid = dense.evaluate(dense.times(), batches[:, None], gammas[None, :])
        out["dense"] = {"model": dense.target.model.name, "tp": dense.target.tp,
                        "speedup": dgrid.speedup[:, gi].tolist(),
                        "target_efficiency": dgrid.target_efficiency[:, gi].tolist(),
                        "moe_speedup": curve.tolist(), "batch": batches.astype(int).tolist(),
                        "gamma": g}
    return out

