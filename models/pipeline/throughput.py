"""Iteration time against measured Megatron-LM runs (docs/pipeline.md §7.3): the runs of
Narayanan et al. (SC'21) Table 1, each rebuilt as explore sees it, predicted a-priori (nothing
fitted on the table) and calibrated (the GEMM scale fitted on at most three named rows, the
rest only checked); and the same fit for anyone's own runs (`explore pipeline fit`).

Pure functions over rows already read from presets/validation/pipeline/."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..hardware import GpuSpec
from ..shapes import ModelShape
from .config import Hardware, Layout, NodeSpec, Policy
from .kernels import TimeModel

SOURCE_SC21 = "Narayanan et al. SC'21 Table 1 (arXiv 2104.04473), A100-80GB"
# How the SC'21 runs were launched, from Megatron-LM examples/academic_paper_scripts/sc21/
# run_table_1.sh (commit f2e72c8) and the code at the paper's commit 6985e58 (2021-08-18):
# PyTorch DDP (gradient all-reduce overlapped with the backward) below 39B, Megatron's local
# DDP (all-reduce after the backward) from 39B; --fp16 without
# --accumulate-allreduce-grads-in-fp32, so gradients are fp16; gradient-accumulation fusion
# arrived in 2022-02, so each micro-batch's weight gradient is added by a separate kernel;
# P2P overlap arrived in 2023-05, so send/recv block the compute stream.
SC21_TORCH_DDP_BELOW_B = 30.0
# Calibration rows, chosen by a rule before any fit: the smallest, a middle and the largest run
SC21_FIT_ROWS = ("narayanan21-table1-1.7B", "narayanan21-table1-145.6B",
                 "narayanan21-table1-1008.0B")
APRIORI_TOLERANCE = 0.08
CALIBRATED_MEAN_TOLERANCE = 0.05
CALIBRATED_MAX_TOLERANCE = 0.10
FIT_TERMS = ("gemm_scale", "comm_scale")
FIT_BOUNDS = (0.3, 2.0)


@dataclass(frozen=True)
class Run:
    """One measured run as the model needs it."""
    id: str
    label: str                 # the size the source names the model by
    shape: ModelShape
    layout: Layout
    policy: Policy
    gpus: int
    time: TimeModel
    measured_s: float


def make_run(id: str, shape: ModelShape, tp: int, pp: int, dp: int, seq: int, mbs: int,
             global_batch: int, measured_s: float, vpp: int = 1, sp: bool = False,
             flash: bool = True, schedule: str | None = None, recompute: str = "none",
             time: TimeModel = TimeModel()) -> Run:
    """One measured run from its layout; full recompute means every layer (Megatron's
    uniform full recomputation). InputError names what does not fit together."""
    from .config import check_layout

    if not (measured_s > 0 and np.isfinite(measured_s)):
        raise InputError(f"run {id}: the measured iteration time must be > 0, got {measured_s}")
    layout = Layout(tp, pp, dp, seq, mbs, global_batch, vpp, sp, flash)
    policy = Policy(schedule or ("interleaved" if vpp > 1 else "1f1b"), recompute=recompute,
                    recompute_layers=shape.layers // (pp * vpp) if recompute == "full" else None)
    check_layout(shape, layout, layout.gpus, policy.schedule)
    return Run(id, shape.name, shape, layout, policy, layout.gpus, time, float(measured_s))


def sc21_runs(data: dict) -> list[Run]:
    """The Table 1 cases as explore configurations (GPT shapes, full uniform recompute of every
    layer, the launch settings of the paper's scripts)."""
    out = []
    for c in data["cases"]:
        m = c["model"]
        shape = ModelShape(name=c["id"], layers=m["layers"], hidden=m["hidden"],
                           heads=m["heads"], kv_heads=m["heads"],
                           head_dim=m["hidden"] // m["heads"], intermediate=m["ffn"],
                           vocab=m["vocab"], gated_ffn=m["gated_ffn"], norm=m["norm"],
                           linear_bias=m["linear_bias"], tied_embeddings=m["tied"],
                           dropout=m["dropout"])
        layout = Layout(c["tp"], c["pp"], c["dp"], c["seq"], c["mbs"], c["global_batch"],
                        c["vpp"], c["sp"], c["flash"])
        per_chunk = m["layers"] // (c["pp"] * c["vpp"])
        policy = Policy("interleaved" if c["vpp"] > 1 else "1f1b", recompute="full",
                        recompute_layers=per_chunk, fp32_grads=False)
        torch_ddp = c["dp"] > 1 and m["params_B"] < SC21_TORCH_DDP_BELOW_B
        time = TimeModel(overlap_grad_reduce=torch_ddp, grad_accumulation="separate",
                         overlap_p2p_comm=False)
        out.append(Run(c["id"], f"{m['params_B']:g}B", shape, layout, policy, c["gpus"], time,
                       float(c["measured"]["iteration_s_derived"])))
    return out


def predict(run: Run, gpu: GpuSpec, node: NodeSpec, gemm_scale: float = 1.0,
            comm_scale: float = 1.0):
    """The run simulated: its Outcome (iteration_s, terms)."""
    from .chronos import solve
    from .costs import Terms

    time = dataclasses.replace(run.time, gemm_scale=gemm_scale, comm_scale=comm_scale)
    hw = Hardware.from_presets(gpu, node, run.gpus, time=time)
    out = solve(Terms(run.shape, run.layout, hw, run.policy), timelines=False).outcome
    assert out is not None          # no incumbent: solve always returns an outcome
    return out


def fit(runs: list[Run], gpu: GpuSpec, node: NodeSpec, fit_ids: tuple[str, ...],
        names: tuple[str, ...] = ("gemm_scale",)) -> dict[str, Any]:
    """Fit the named scales (gemm_scale, comm_scale) to the measured iteration times of the
    runs in fit_ids (relative residuals, bounded least squares); predictions for every run."""
    import time as clock

    from ..sd_fit import solve_bounded

    bad = [n for n in names if n not in FIT_TERMS]
    if bad or not names:
        raise InputError(f"unknown fit term {bad[0] if bad else ''!r}; fit any of "
                         f"{', '.join(FIT_TERMS)}")
    ids = [r.id for r in runs]
    missing = [i for i in fit_ids if i not in ids]
    if missing:
        raise InputError(f"no run {missing[0]!r} to fit on")
    fit_rows = [r for r in runs if r.id in fit_ids]
    if len(fit_rows) < len(names):
        raise InputError(f"{len(names)} terms need at least {len(names)} runs to fit on, got "
                         f"{len(fit_rows)}")
    measured = np.array([r.measured_s for r in fit_rows])

    def scales(x) -> dict[str, float]:
        return {"gemm_scale": 1.0, "comm_scale": 1.0, **dict(zip(names, map(float, x)))}

    def residuals(x):
        s = scales(x)
        return np.array([predict(r, gpu, node, **s).iteration_s for r in fit_rows]) \
            / measured - 1.0

    lo, hi = np.full(len(names), FIT_BOUNDS[0]), np.full(len(names), FIT_BOUNDS[1])
    start = clock.perf_counter()
    x, nfev, _ = solve_bounded(residuals, np.ones(len(names)), lo, hi)
    s = scales(x)
    params = [{"name": n, "value": float(v), "lower": FIT_BOUNDS[0], "upper": FIT_BOUNDS[1],
               "at_bound": "lower" if np.isclose(v, lo[0], atol=1e-6)
               else "upper" if np.isclose(v, hi[0], atol=1e-6) else ""}
              for n, v in zip(names, x)]
    return {"scales": s, "params": params, "evaluations": int(nfev),
            "fit_seconds": clock.perf_counter() - start}


def _stats(errors: list[float]) -> dict[str, float]:
    a = np.abs(errors)
    return {"runs": len(errors), "mean_abs_error": float(a.mean()),
            "max_abs_error": float(a.max()), "mean_signed_error": float(np.mean(errors))}


def fit_and_check(runs: list[Run], gpu: GpuSpec, node: NodeSpec, fit_ids: tuple[str, ...],
                  names: tuple[str, ...] = ("gemm_scale",)) -> dict[str, Any]:
    """Measured vs predicted iteration time per run, a-priori and with `names` fitted on
    fit_ids; the error statistics of all runs a-priori and of the others (held out) after the
    fit (None when every run was fitted on)."""
    cal = fit(runs, gpu, node, fit_ids, names)
    fitted_on = f"{', '.join(names)} fitted on {', '.join(fit_ids)}"
    rows = []
    for r in runs:
        a = predict(r, gpu, node).iteration_s
        c = predict(r, gpu, node, **cal["scales"]).iteration_s
        rows.append({
            "id": r.id, "model": r.label, "gpus": r.gpus,
            "tp": r.layout.tp, "pp": r.layout.pp, "dp": r.layout.dp, "vpp": r.layout.vpp,
            "mbs": r.layout.mbs, "measured_s": r.measured_s, "apriori_s": a,
            "apriori_error": a / r.measured_s - 1.0, "calibrated_s": c,
            "calibrated_error": c / r.measured_s - 1.0,
            "role": "fit" if r.id in fit_ids else "check", "fitted_on": fitted_on})
    held = [x["calibrated_error"] for x in rows if x["role"] == "check"]
    return {"rows": rows, "fit": cal,
            "apriori": _stats([x["apriori_error"] for x in rows]),
            "holdout": _stats(held) if held else None}


def validation(runs: list[Run], gpu: GpuSpec, node: NodeSpec,
               fit_ids: tuple[str, ...] = SC21_FIT_ROWS) -> dict[str, Any]:
    """The SC'21 comparison: a-priori, and with the GEMM scale fitted on fit_ids and checked
    on the others, with the tolerances of docs/pipeline.md §7.3."""
    res = fit_and_check(runs, gpu, node, fit_ids)
    cal = res["fit"]
    return {"rows": res["rows"], "gpu": gpu.name, "node": node.name,
            "apriori": {**res["apriori"], "tolerance": APRIORI_TOLERANCE},
            "calibrated": {**res["holdout"], "fit_runs": len(fit_ids),
                           "fitted_on": ", ".join(fit_ids), "params": cal["params"],
                           "fit_seconds": cal["fit_seconds"],
                           "tolerance": {"mean": CALIBRATED_MEAN_TOLERANCE,
                                         "max": CALIBRATED_MAX_TOLERANCE}},
            "source": SOURCE_SC21}


def check_rows(v: dict) -> list[dict]:
    """The two throughput checks as validation rows."""
    a, c = v["apriori"], v["calibrated"]
    ok_a = a["mean_abs_error"] <= APRIORI_TOLERANCE
    ok_c = (c["mean_abs_error"] <= CALIBRATED_MEAN_TOLERANCE
            and c["max_abs_error"] <= CALIBRATED_MAX_TOLERANCE)
    return [
        {"check": f"iteration time, {a['runs']} Megatron runs, a-priori (mean |error|)",
         "reference": "measured", "ours": f"{a['mean_abs_error']:.1%} (max "
         f"{a['max_abs_error']:.1%}, signed {a['mean_signed_error']:+.1%})",
         "error": a["mean_abs_error"], "tolerance": f"<= {APRIORI_TOLERANCE:.0%}",
         "status": "PASS" if ok_a else "WARN", "source": v["source"]},
        {"check": f"same, GEMM scale fitted on {c['fit_runs']} runs, checked on the other "
                  f"{c['runs']} (mean |error|)",
         "reference": "measured", "ours": f"{c['mean_abs_error']:.1%} (max "
         f"{c['max_abs_error']:.1%}, signed {c['mean_signed_error']:+.1%})",
         "error": c["mean_abs_error"], "tolerance": f"mean <= "
         f"{CALIBRATED_MEAN_TOLERANCE:.0%}, max <= {CALIBRATED_MAX_TOLERANCE:.0%}",
         "status": "PASS" if ok_c else "FAIL", "source": v["source"],
         "fitted_on": c["fitted_on"]},
    ]
