"""How far the SD model is from published and measured results (issue 3, docs/sd.md §7).

Pure functions over rows already read from the packaged CSVs (presets/validation/sd/):

1. the 60 published peak speedups of MoESD Tables 1-2 against the a-priori peak over B = 1..100
   for the same model, hardware, gamma and sigma, with the paper's orderings;
2. the H200 layer timings: measured vs predicted T_T(B,t)/T_T(B,1), a-priori and calibrated on a
   subset (component fit, every k-th row), scored on the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import sd, sd_fit
from .hardware import GpuSpec
from .shapes import ModelShape

PEAK_BATCHES = np.arange(1, 101)
H200_APRIORI_TOLERANCE = 0.15
H200_CALIBRATED_TOLERANCE = 0.05


@dataclass(frozen=True)
class CellSetup:
    """What the model needs for one published cell: target and draft on a GPU kind."""
    target: ModelShape
    draft: ModelShape
    gpu: GpuSpec
    gpus: int


def _peak(c: dict, setups: dict, alpha: float, ctx: int, verify: str, overlap: str,
          engine: sd.EngineProfile = sd.DEFAULT_ENGINE):
    """Predicted SD evaluation of one published cell over B = 1..100 at acceptance alpha."""
    s = setups[(c["model"], c["hardware"])]
    times = sd.PhysicalTimes(sd.Deployment(s.target, s.gpu, s.gpus),
                             sd.Deployment(s.draft, s.gpu, 1), ctx, 0.0, overlap, engine)
    return sd.evaluate(times, alpha, PEAK_BATCHES, int(c["gamma"]), verify)


def cell_alpha(c: dict) -> float:
    return float(sd.alpha_from_sigma(float(c["sigma"]), int(c["gamma"])))


def peak_speedups(cells: list[dict], setups: dict, ctx: int = 512, verify: str = "gamma+1",
                  overlap: str = "none",
                  engine: sd.EngineProfile = sd.DEFAULT_ENGINE) -> list[dict]:
    """One row per published cell: published and predicted peak speedup (max over B = 1..100)
    with alpha from the cell's sigma and gamma, the batch of the predicted peak, the relative
    error, and the extra time per draft step that would make our denominator match."""
    out = []
    for c in cells:
        gamma = int(c["gamma"])
        alpha = cell_alpha(c)
        r = _peak(c, setups, alpha, ctx, verify, overlap, engine)
        i = int(np.argmax(r.speedup))
        published = float(c["peak_speedup"])
        ours = float(r.speedup[i])
        # published denominator D = tokens/round / x; ours = T_round / T_AR at our peak
        implied = (float(r.tokens_per_round[i]) / published - float(r.t_round[i] / r.t_ar[i])) \
            * float(r.t_ar[i]) / gamma
        out.append({"table": c["table"], "model": c["model"], "hardware": c["hardware"],
                    "dataset": c["dataset"], "temperature": float(c["temperature"]),
                    "gamma": gamma, "sigma": float(c["sigma"]), "alpha": alpha,
                    "published": published, "ours": ours, "peak_batch": int(PEAK_BATCHES[i]),
                    "error": (ours - published) / published,
                    "implied_extra_draft_s": implied})
    return out


CELL_FIELDS = ("model", "hardware", "dataset", "temperature", "gamma")

# The engine of the MoESD measurements (vLLM V0 spec decode) costs time per round and per draft
# step that no datasheet shows (docs/research/engine-profiles.md: 1.5-4 ms per round, 1.5-5 ms
# per draft step in public reports). Both are fitted on one GPU set of one table and checked on
# every other cell; the fit never sees the check cells. They are fitted as fractions of the
# target's decode step: fitted in milliseconds instead, the H800 > A800 ordering fails in 12 of
# 12 pairs (a constant cost weighs more on the faster GPU) and the check error is larger.
ENGINE_TERMS = ("round_overhead_step", "draft_step_overhead_step")
ENGINE_BOUNDS = {"step": 1.0,   # fractions of T_T(B,1): [0, 1]
                 "s": 0.05}     # seconds: [0, 50 ms]
FIT_CELLS = ("T1", "2xA800")   # (table, hardware) of the cells the engine terms are fitted on
CHECK_MEAN_TOLERANCE = 0.10
CHECK_MAX_TOLERANCE = 0.25


def is_fit_cell(c: dict) -> bool:
    return (c["table"], c["hardware"]) == FIT_CELLS


def _engine_start(engine: sd.EngineProfile, names, lo, hi) -> np.ndarray:
    """The fit starts from the profile's own values (inside the bounds)."""
    return np.clip([getattr(engine, n) for n in names], lo, hi)


def fit_engine(cells: list[dict], setups: dict, engine: sd.EngineProfile,
               names: tuple[str, ...] = ENGINE_TERMS, ctx: int = 512, verify: str = "gamma+1",
               overlap: str = "none", fit_index=None) -> sd_fit.FitResult:
    """Peak-only fit: the named engine terms that make the model's own peak over B match the
    published peak speedups (relative residuals) of the fit cells (`fit_index`, default the
    FIT_CELLS); predictions for all cells. Cells carry model, hardware, gamma, sigma and
    peak_speedup."""
    import time
    from dataclasses import fields, replace

    known = {f.name for f in fields(sd.EngineProfile)}
    bad = [n for n in names if n not in known or n in ("name", "sources", "description")]
    if bad:
        from .errors import InputError
        raise InputError(f"unknown engine term {bad[0]!r}; fit any of "
                         f"{', '.join(sorted(known - {'name', 'sources', 'description'}))}")
    fit = np.flatnonzero([is_fit_cell(c) for c in cells]) if fit_index is None \
        else np.asarray(fit_index)
    hold = np.setdiff1d(np.arange(len(cells)), fit)
    measured = np.array([float(c["peak_speedup"]) for c in cells])

    def predict(x, rows):
        e = replace(engine, **dict(zip(names, map(float, x))))
        return np.array([float(_peak(cells[i], setups, cell_alpha(cells[i]), ctx, verify,
                                     overlap, e).speedup.max()) for i in rows])

    lo = np.zeros(len(names))
    hi = np.array([ENGINE_BOUNDS["s" if n.endswith("_s") else "step"] for n in names])
    x0 = _engine_start(engine, names, lo, hi)
    start = time.perf_counter()
    x, nfev, _ = sd_fit.solve_bounded(lambda x: predict(x, fit) / measured[fit] - 1.0, x0,
                                      lo, hi)
    return sd_fit.FitResult("peaks", names, x, lo, hi, fit, hold,
                            predict(x, np.arange(len(cells))), measured,
                            time.perf_counter() - start, [], "peak speedup", nfev,
                            "trust-region reflective least squares on the peak over B")


def _pairs(rows: list[dict], key: str, better, worse) -> list[tuple[dict, dict]]:
    """(better, worse) pairs of cells equal in every field but `key`."""
    def rest(r):
        return tuple(r[f] for f in CELL_FIELDS if f != key)
    by = {(rest(r), r[key]): r for r in rows}
    return [(r, by[(rest(r), worse)]) for r in rows
            if r[key] == better and (rest(r), worse) in by]


def orderings(rows: list[dict], setups: dict, ctx: int = 512, verify: str = "gamma+1",
              overlap: str = "none",
              engine: sd.EngineProfile = sd.DEFAULT_ENGINE) -> list[dict]:
    """The paper's orderings, pair by pair: H800 > A800 (2 GPUs), 2 GPUs > 4 GPUs (A800),
    longer gamma better on HumanEval at temperature 0. Hardware pairs are compared at the pair's
    mean alpha, so the claim tested is the hardware's, not the small sigma differences between
    the two published cells. An ordering holds when ours agrees in every pair where the
    published cells show it."""
    def peak(row, alpha):
        return float(_peak(row, setups, alpha, ctx, verify, overlap, engine).speedup.max())

    def hardware(better, worse):
        out = []
        for a, b in _pairs(rows, "hardware", better, worse):
            alpha = 0.5 * (a["alpha"] + b["alpha"])
            out.append((a["published"] > b["published"], peak(a, alpha) > peak(b, alpha)))
        return out

    he0 = [r for r in rows if r["dataset"] == "humaneval" and r["temperature"] == 0.0]
    gamma_pairs = _pairs(he0, "gamma", 3, 2) + _pairs(he0, "gamma", 4, 3)
    return [
        _ordering("H800 > A800 (2 GPUs, same alpha)", hardware("2xH800", "2xA800")),
        _ordering("2 GPUs > 4 GPUs (A800, same alpha)", hardware("2xA800", "4xA800")),
        _ordering("longer gamma better (HumanEval, T = 0)",
                  [(a["published"] > b["published"], a["ours"] > b["ours"])
                   for a, b in gamma_pairs]),
    ]


def _ordering(name: str, pairs: list[tuple[bool, bool]]) -> dict:
    """pairs: (published ordered as claimed, ours ordered as claimed)."""
    return {"ordering": name, "pairs": len(pairs),
            "published_holds": int(sum(p for p, _ in pairs)),
            "ours_holds": int(sum(o for _, o in pairs)),
            "holds": bool(pairs) and all(o for p, o in pairs if p)}


def summarise(rows: list[dict]) -> dict:
    e = np.abs([r["error"] for r in rows])
    return {"cells": len(rows), "mean_abs_error": float(e.mean()), "max_abs_error": float(e.max()),
            "mean_signed_error": float(np.mean([r["error"] for r in rows]))}


def engine_validation(cells: list[dict], setups: dict, engine: sd.EngineProfile,
                      kernels_only: sd.EngineProfile) -> dict:
    """The peak speedups side by side: kernels only (no engine cost), and with `engine` whose
    round and draft-step terms are fitted on the fit cells and checked on the others."""
    from dataclasses import replace

    fit = fit_engine(cells, setups, engine)
    terms: dict[str, Any] = dict(zip(fit.names, map(float, fit.values)))
    fitted = replace(engine, **terms)
    rows = peak_speedups(cells, setups, engine=fitted)
    bare = peak_speedups(cells, setups, engine=kernels_only)
    table, hardware = FIT_CELLS
    for r, b, c in zip(rows, bare, cells):
        # `ours` depends on the fitted terms: the record says so (and the regression compares
        # it at the fit's agreement, cli/regress.py)
        r.update(kernels_only=b["ours"], kernels_only_error=b["error"],
                 role="fit" if is_fit_cell(c) else "check",
                 fitted_on=f"engine terms fitted on Table {table[1:]}, {hardware}")
    check = [r for r in rows if r["role"] == "check"]
    return {"rows": rows, "engine": fitted.name,
            "kernels_only": {**summarise([{"error": r["kernels_only_error"]} for r in rows]),
                             "engine": kernels_only.name},
            "fitted": {"fitted_on": f"{len(fit.fit_index)} cells of MoESD Table "
                                    f"{table[1:]} on {hardware} (both models); the other "
                                    f"{len(check)} only checked",
                       "fit": summarise([r for r in rows if r["role"] == "fit"]),
                       "check": summarise(check), "params": fit.parameters(),
                       "fit_seconds": fit.seconds,
                       "tolerance": {"mean": CHECK_MEAN_TOLERANCE, "max": CHECK_MAX_TOLERANCE}}}


def h200_ratios(rows: list[dict], model: ModelShape, gpu: GpuSpec, fit_points: int = 21,
                overlap: str = "none") -> dict:
    """Measured vs predicted T_T(B,t)/T_T(B,1) for one model's rows (sorted by batch, tokens):
    a-priori on the H200 preset, and the component fit on every k-th row scored on the rest.
    Rows with t = 1 have ratio 1 by construction and are left out of the error statistics."""
    rows = sorted(rows, key=lambda r: (int(r["batch"]), int(r["tokens_per_seq"])))
    B = np.array([int(r["batch"]) for r in rows], dtype=float)
    t = np.array([int(r["tokens_per_seq"]) for r in rows], dtype=float)
    ctx = np.array([int(r["ctx"]) for r in rows], dtype=float)
    measured = np.array([float(r["step_ms"]) for r in rows]) * 1e-3
    apriori = sd.forward_time(sd.Deployment(model, gpu, 1), B, t, ctx, overlap=overlap).seconds
    fit = sd_fit.fit_component(B, t, measured, model, gpu, 1, fit_points=fit_points)
    e_ap = sd_fit.ratio_errors(B, t, measured, apriori)
    e_cal = sd_fit.ratio_errors(B, t, measured, fit.predicted)
    scored = t > 1
    hold = np.zeros(len(B), dtype=bool)
    hold[fit.holdout_index] = True

    def stats(e, mask):
        a = np.abs(e[mask])
        return {"points": int(mask.sum()), "mean_abs_error": float(a.mean()),
                "max_abs_error": float(a.max())}

    base = {b: m for b, tt, m in zip(B, t, measured) if tt == 1}
    base_ap = {b: m for b, tt, m in zip(B, t, apriori) if tt == 1}
    base_cal = {b: m for b, tt, m in zip(B, t, fit.predicted) if tt == 1}
    table = [{"batch": int(b), "tokens_per_seq": int(tt), "measured": float(m / base[b]),
              "apriori": float(a / base_ap[b]), "calibrated": float(c / base_cal[b]),
              "in_fit": bool(not h)}
             for b, tt, m, a, c, h in zip(B, t, measured, apriori, fit.predicted, hold)]
    return {"model": model.name, "rows": table,
            "apriori": {**stats(e_ap, scored), "tolerance": H200_APRIORI_TOLERANCE},
            "calibrated": {**stats(e_cal, scored & hold), "tolerance": H200_CALIBRATED_TOLERANCE,
                           "fit_points": int(len(fit.fit_index)), "fitted_on": fit.fitted_on(),
                           "fit_seconds": fit.seconds, "warnings": fit.warnings,
                           "params": fit.parameters()}}


def _errors(s: dict) -> str:
    return (f"{s['mean_abs_error']:.1%} (max {s['max_abs_error']:.1%}, signed "
            f"{s['mean_signed_error']:+.1%})")


def checks(peaks: dict, order: list[dict], h200: dict) -> list[dict]:
    """Summary rows (check, reference, ours, error, tolerance, status, source); FAIL when an
    error exceeds its tolerance or an ordering is not reproduced. `peaks` is what
    engine_validation returns."""
    moesd = "MoESD Tables 1-2 (arXiv 2505.19645)"
    bare, fitted = peaks["kernels_only"], peaks["fitted"]
    check, tol = fitted["check"], fitted["tolerance"]
    ok = check["mean_abs_error"] <= tol["mean"] and check["max_abs_error"] <= tol["max"]
    rows = [{"check": f"SD peak speedup, {bare['cells']} cells, kernels only (engine "
                      f"{bare['engine']}; mean |error|)",
             "reference": "published x", "ours": _errors(bare), "error": bare["mean_abs_error"],
             "tolerance": "reference only", "status": "INFO", "source": moesd},
            {"check": f"SD peak speedup, engine {peaks['engine']}, checked on the "
                      f"{check['cells']} cells it was not fitted on (mean |error|)",
             "reference": "published x", "ours": _errors(check), "error": check["mean_abs_error"],
             "tolerance": f"mean <= {tol['mean']:.0%}, max <= {tol['max']:.0%}",
             "status": "PASS" if ok else "FAIL", "source": moesd,
             "fitted_on": fitted["fitted_on"]}]
    for o in order:
        rows.append({"check": f"ordering: {o['ordering']}",
                     "reference": f"{o['published_holds']}/{o['pairs']} pairs",
                     "ours": f"{o['ours_holds']}/{o['pairs']} pairs", "error": None,
                     "tolerance": "every published pair", "status": "PASS" if o["holds"]
                     else "FAIL", "source": moesd})
    h200_src = "H200 layer timings (presets/validation/sd)"
    ap, cal = h200["apriori"], h200["calibrated"]
    rows.append({"check": f"T_T(B,t)/T_T(B,1) {h200['model']}, a-priori (mean |error|)",
                 "reference": "measured", "ours": f"{ap['mean_abs_error']:.1%} "
                 f"(max {ap['max_abs_error']:.1%}, {ap['points']} points)",
                 "error": ap["mean_abs_error"], "tolerance": f"<= {ap['tolerance']:.0%}",
                 "status": "PASS" if ap["mean_abs_error"] <= ap["tolerance"] else "FAIL",
                 "source": h200_src})
    rows.append({"check": f"T_T(B,t)/T_T(B,1) {h200['model']}, calibrated on "
                          f"{cal['fit_points']} points (hold-out mean |error|)",
                 "reference": "measured", "ours": f"{cal['mean_abs_error']:.1%} "
                 f"(max {cal['max_abs_error']:.1%}, {cal['points']} points)",
                 "error": cal["mean_abs_error"], "tolerance": f"<= {cal['tolerance']:.0%}",
                 "status": "PASS" if cal["mean_abs_error"] <= cal["tolerance"] else "FAIL",
                 "source": h200_src, "fitted_on": cal["fitted_on"]})
    return rows
