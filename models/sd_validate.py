"""How far the SD model is from published and measured results (issue 3, docs/sd.md §7).

Pure functions over rows already read from the packaged CSVs (presets/validation/sd/):

1. the 60 published peak speedups of MoESD Tables 1-2 against the a-priori peak over B = 1..100
   for the same model, hardware, gamma and sigma, with the paper's orderings;
2. the H200 layer timings: measured vs predicted T_T(B,t)/T_T(B,1), a-priori and calibrated on a
   subset (component fit, every k-th row), scored on the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import sd, sd_fit
from .hardware import GpuSpec
from .shapes import ModelShape

PEAK_BATCHES = np.arange(1, 101)
PEAK_MAE_TOLERANCE = 0.15
H200_APRIORI_TOLERANCE = 0.15
H200_CALIBRATED_TOLERANCE = 0.05


@dataclass(frozen=True)
class CellSetup:
    """What the model needs for one published cell: target and draft on a GPU kind."""
    target: ModelShape
    draft: ModelShape
    gpu: GpuSpec
    gpus: int


def _peak(c: dict, setups: dict, alpha: float, ctx: int, verify: str, overlap: str):
    """Predicted SD evaluation of one published cell over B = 1..100 at acceptance alpha."""
    s = setups[(c["model"], c["hardware"])]
    times = sd.PhysicalTimes(sd.Deployment(s.target, s.gpu, s.gpus),
                             sd.Deployment(s.draft, s.gpu, 1), ctx, 0.0, overlap)
    return sd.evaluate(times, alpha, PEAK_BATCHES, int(c["gamma"]), verify)


def peak_speedups(cells: list[dict], setups: dict, ctx: int = 512, verify: str = "gamma+1",
                  overlap: str = "none") -> list[dict]:
    """One row per published cell: published and predicted peak speedup (max over B = 1..100)
    with alpha from the cell's sigma and gamma, the batch of the predicted peak, the relative
    error, and the extra time per draft step that would make our denominator match."""
    out = []
    for c in cells:
        gamma = int(c["gamma"])
        alpha = float(sd.alpha_from_sigma(float(c["sigma"]), gamma))
        r = _peak(c, setups, alpha, ctx, verify, overlap)
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


def _pairs(rows: list[dict], key: str, better, worse) -> list[tuple[dict, dict]]:
    """(better, worse) pairs of cells equal in every field but `key`."""
    def rest(r):
        return tuple(r[f] for f in CELL_FIELDS if f != key)
    by = {(rest(r), r[key]): r for r in rows}
    return [(r, by[(rest(r), worse)]) for r in rows
            if r[key] == better and (rest(r), worse) in by]


def orderings(rows: list[dict], setups: dict, ctx: int = 512, verify: str = "gamma+1",
              overlap: str = "none") -> list[dict]:
    """The paper's orderings, pair by pair: H800 > A800 (2 GPUs), 2 GPUs > 4 GPUs (A800),
    longer gamma better on HumanEval at temperature 0. Hardware pairs are compared at the pair's
    mean alpha, so the claim tested is the hardware's, not the small sigma differences between
    the two published cells. An ordering holds when ours agrees in every pair where the
    published cells show it."""
    def peak(row, alpha):
        return float(_peak(row, setups, alpha, ctx, verify, overlap).speedup.max())

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
            "mean_signed_error": float(np.mean([r["error"] for r in rows])),
            "tolerance": PEAK_MAE_TOLERANCE}


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


def checks(peaks: dict, order: list[dict], h200: dict) -> list[dict]:
    """Summary rows (check, reference, ours, error, tolerance, status, source); FAIL when an
    error exceeds its tolerance or an ordering is not reproduced."""
    moesd = "MoESD Tables 1-2 (arXiv 2505.19645)"
    rows = [{"check": "SD peak speedup, 60 cells, a-priori (mean |error|)",
             "reference": "published x", "ours": f"{peaks['mean_abs_error']:.1%} "
             f"(max {peaks['max_abs_error']:.1%}, signed {peaks['mean_signed_error']:+.1%})",
             "error": peaks["mean_abs_error"], "tolerance": f"<= {peaks['tolerance']:.0%}",
             "status": "PASS" if peaks["mean_abs_error"] <= peaks["tolerance"] else "FAIL",
             "source": moesd}]
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
