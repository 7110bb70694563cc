"""Validation against the paper (docs/pipeline.md §8): the fixed fixture, the OOM/fit table at
L = 48, and the two ratio checks. A pure function returning rows, so that the table can be
mounted under any command (and an all-studies summary)."""

from __future__ import annotations

from dataclasses import dataclass

from ..shapes import ModelShape
from ..units import GiB, MiB
from . import memory as mem
from .chronos import solve
from .config import Hardware, Policy
from .study import MaxSize, Workload, comparable_floor, max_size

SOURCE_PAPER = "ChronosPipe abstract (arXiv 2503.03182)"
SOURCE_FIXTURE = "docs/pipeline.md §8 fixture"


@dataclass(frozen=True)
class Fixture:
    """The §8 fixture: never tuned per schedule."""
    model: ModelShape                 # LLaMA2-70B-shaped layers; `layers` overrides its depth
    hw: Hardware
    layers: int = 48
    tp: int = 8
    pp: int = 8
    dp: int = 1
    seq: int = 4096
    mbs: int = 4
    global_batch: int = 256
    sp: bool = False
    flash: bool = True
    vpp: int = 2                      # the interleaved baseline
    delta: float = 0.10               # "comparable throughput": MFU >= (1 - delta) x 1F1B's
    check1: tuple[float, float] = (2.4, 0.4)
    check2: tuple[float, float] = (1.5, 0.25)

    @property
    def work(self) -> Workload:
        return Workload(self.model, self.hw, self.seq, self.global_batch, self.sp, self.flash)


def _row(check, reference, ours, error, tolerance, status, source):
    return {"check": check, "reference": reference, "ours": ours, "error": error,
            "tolerance": tolerance, "status": status, "source": source}


def m0_mib(fx: Fixture, layers: int) -> float:
    """§8 closed form of rank-0 1F1B memory (MiB): states + activations per model layer,
    embedding states, one working layer, reserve (the 1 MiB of token ids of §4.4 left out)."""
    w = fx.work
    lay = w.layout(fx.tp, fx.pp, fx.mbs, dp=fx.dp)
    a = mem.layer_activation_bytes(fx.model, fx.seq, fx.mbs, fx.tp, fx.sp, fx.flash)
    sp_ = mem.state_bytes(0, False, fx.dp).total
    per_layer = (sp_ * fx.model.dense_layer_params / (fx.tp * fx.pp) + a * min(lay.m, fx.pp)
                 / fx.pp)
    const = sp_ * fx.model.embedding_params / fx.tp + a + fx.hw.reserve_bytes
    return (per_layer * layers + const) / MiB


def validate(fx: Fixture) -> dict:
    """Rows (check, reference, ours, error/ratio, tolerance, PASS/WARN/FAIL/INFO, source) and
    the max-size details behind them. Hard checks: the fixture table and check 1."""
    w = fx.work
    lay = w.layout(fx.tp, fx.pp, fx.mbs, dp=fx.dp)
    rows = []
    cap = fx.hw.usable_bytes

    def at_l(policy: Policy, vpp: int = 1):
        layout = w.layout(fx.tp, fx.pp, fx.mbs, vpp, dp=fx.dp)
        return solve(w.terms(layout, policy, fx.layers)).outcome

    # ---- fixture table at L = 48 -------------------------------------------------------
    one = at_l(Policy("1f1b"))
    m0 = m0_mib(fx, fx.layers)
    ours = (one.peaks[0] + fx.hw.reserve_bytes) / MiB
    rows.append(_row(f"1F1B rank-0 memory at L = {fx.layers} (M0)", f"{m0:,.0f} MiB",
                     f"{ours:,.1f} MiB", f"{ours - m0:+.1f} MiB", "<= 2 MiB (token ids)",
                     "PASS" if abs(ours - m0) <= 2 else "FAIL", SOURCE_FIXTURE))
    inter = at_l(Policy("interleaved"), fx.vpp)
    chron = at_l(Policy("chronos", recompute="chronos", offload="chronos"))
    for name, out, expect in ((f"1F1B at L = {fx.layers}", one, False),
                              (f"interleaved 1F1B (v = {fx.vpp}) at L = {fx.layers}", inter,
                               False),
                              (f"ChronosPipe at L = {fx.layers}", chron, True)):
        peak = (out.peak + fx.hw.reserve_bytes) / MiB
        rows.append(_row(name, "fits" if expect else "OOM",
                         f"{'fits' if out.fits else 'OOM'} ({peak:,.0f} MiB)",
                         f"{(out.peak - cap) / GiB:+.1f} GiB vs cap", "qualitative",
                         "PASS" if out.fits == expect else "FAIL", SOURCE_PAPER))

    # ---- ratio checks ------------------------------------------------------------------
    base = max_size(w, fx.tp, fx.pp, fx.mbs, Policy("1f1b"), label="1F1B")
    rows.append(_row("1F1B largest model L* (continuous)", "46.86 layers",
                     f"{base.l_star:.2f} layers", f"{base.l_star - 46.86:+.2f}", "0.05",
                     "PASS" if abs(base.l_star - 46.86) <= 0.05 else "FAIL", SOURCE_FIXTURE))
    floor = comparable_floor(base, fx.delta)
    chronos = max_size(w, fx.tp, fx.pp, fx.mbs,
                       Policy("chronos", recompute="chronos", offload="chronos"),
                       floor_mfu=floor, label="ChronosPipe")
    ratio1 = chronos.params_star / base.params_star
    ref1, tol1 = fx.check1
    rows.append(_row("check 1: trainable size vs 1F1B at comparable throughput",
                     f"{ref1:g}x", f"{ratio1:.2f}x", f"{ratio1 - ref1:+.2f}", f"+/- {tol1:g}",
                     "PASS" if abs(ratio1 - ref1) <= tol1 else "FAIL", SOURCE_PAPER))
    ref2, tol2 = fx.check2
    baselines = []
    for label, pol in (("selective", Policy("1f1b", recompute="selective")),
                       ("full-uniform, k layers/stage", Policy("1f1b", recompute="full-fit"))):
        b = max_size(w, fx.tp, fx.pp, fx.mbs, pol, floor_mfu=floor,
                     label=f"1F1B + {label} recompute")
        baselines.append(b)
        r = chronos.params_star / b.params_star if b.params_star else float("inf")
        rows.append(_row(f"check 2: vs 1F1B + {label} recompute", f"{ref2:g}x", f"{r:.2f}x",
                         f"{r - ref2:+.2f}", f"+/- {tol2:g}",
                         "PASS" if abs(r - ref2) <= tol2 else "WARN", SOURCE_PAPER))
    # the alternative reading: throughput at ChronosPipe's size
    alt = None
    if chronos.fit is not None:
        L = chronos.l_fit
        rec = solve(w.terms(lay, Policy("1f1b", recompute="full-fit"), L)).outcome
        assert rec is not None    # no incumbent given: solve never prunes
        alt = {"layers": L, "chronos_tokens_per_s": chronos.fit.tokens_per_s,
               "baseline_tokens_per_s": rec.tokens_per_s, "baseline_fits": rec.fits,
               "ratio": chronos.fit.tokens_per_s / rec.tokens_per_s}
        rows.append(_row(f"alt. reading: throughput vs 1F1B + full recompute at L = {L}",
                         "1.5x (if read as throughput)", f"{alt['ratio']:.2f}x"
                         + ("" if rec.fits else " (baseline OOM)"), "", "report only", "INFO",
                         SOURCE_PAPER))
    hard_fail = any(r["status"] == "FAIL" for r in rows)
    return {"rows": rows, "floor_mfu": floor, "hard_fail": hard_fail,
            "max_size": [m.as_dict() for m in (base, chronos, *baselines)],
            "alternative": alt,
            "fixture": {"model": fx.model.name, "layers": fx.layers, "tp": fx.tp, "pp": fx.pp,
                        "dp": fx.dp, "seq": fx.seq, "mbs": fx.mbs, "m": lay.m,
                        "global_batch": fx.global_batch, "sp": fx.sp, "flash": fx.flash,
                        "hbm_bytes": fx.hw.hbm_bytes, "reserve_bytes": fx.hw.reserve_bytes,
                        "fragmentation": fx.hw.fragmentation,
                        "host_link_bandwidth": fx.hw.link_bandwidth, "eff": fx.hw.eff,
                        "peak_flops": fx.hw.peak_flops, "delta": fx.delta}}


def summary(ms: MaxSize) -> str:
    return (f"{ms.label}: L* = {ms.l_star:.2f} ({ms.params_star / 1e9:.2f} B parameters), "
            f"binding: {ms.binding}")
