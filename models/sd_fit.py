"""Calibrating the SD model from measurements (docs/sd.md §5.2).

Three modes, all bounded nonlinear least squares with scipy's trust-region reflective solver:

- paper:     rows (B, gamma, K, E, sigma, measured speedup) -> the ten parameters of Algorithm 1,
             residual = predicted - measured speedup, bounds of §5.2 from the model and hardware;
- component: rows (batch, tokens_per_seq, measured T_T [, T_D, T_rej]) -> the T_T (and T_D,
             T_rej) expressions fitted to forward times directly, relative residuals [design];
- physical:  the same component rows -> only the a-priori model's efficiency factors and fixed
             overheads (eta_bw, eta_compute, layer_overhead_s, moe_layer_overhead_s).

Hold-out: fit on every k-th row after sorting (as the paper does), score the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from . import sd
from .errors import InputError
from .hardware import GpuSpec
from .shapes import ModelShape

MODES = ("paper", "component", "physical")
TARGET_PARAMS = ("bias", "k1", "k2", "k3", "lam", "s")
DRAFT_PARAMS = ("draft_bias", "draft_k")
REJECT_PARAMS = ("reject_bias", "reject_k")
PHYSICAL_PARAMS = ("eta_bw", "eta_compute", "layer_overhead_s", "moe_layer_overhead_s")
K1_FLOOR = 1e-9  # "k1 > 0": a strictly positive lower bound (seconds)


@dataclass(frozen=True)
class Calibration:
    """A fitted SD model: Algorithm-1 parameters (paper/component) or a-priori overrides
    (physical), for one target on `gpus` x `hardware`."""
    mode: str
    target: str
    hardware: str
    gpus: int
    ridge_point: float
    params: dict = field(default_factory=dict)        # Algorithm-1 parameters that were fitted
    gpu_overrides: dict = field(default_factory=dict)  # physical mode
    fit: dict = field(default_factory=dict)            # statistics, for the record
    source: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"calibration mode must be one of {', '.join(MODES)}")
        unknown = set(self.params) - set(sd.PARAM_NAMES)
        unknown |= set(self.gpu_overrides) - set(PHYSICAL_PARAMS)
        if unknown:
            raise InputError(f"calibration names unknown parameters: {', '.join(sorted(unknown))}")

    @property
    def fitted_parts(self) -> tuple[str, ...]:
        parts = []
        if self.mode == "physical":
            return ("target", "draft")
        if set(TARGET_PARAMS) <= set(self.params):
            parts.append("target")
        if set(DRAFT_PARAMS) <= set(self.params):
            parts.append("draft")
        if set(REJECT_PARAMS) <= set(self.params):
            parts.append("reject")
        return tuple(parts)

    def times(self, fallback: sd.PhysicalTimes):
        """A time provider: fitted parts from this calibration, the rest a-priori."""
        if self.mode == "physical":
            return sd.PhysicalTimes(
                replace(fallback.target, gpu=replace(fallback.target.gpu, **self.gpu_overrides)),
                replace(fallback.draft, gpu=replace(fallback.draft.gpu, **self.gpu_overrides)),
                fallback.ctx, fallback.correlation, fallback.overlap)
        return MixedTimes(self, fallback)


class MixedTimes:
    """Fitted T_T / T_D / T_rej where the calibration has them, a-priori otherwise."""
    calibrated = True

    def __init__(self, cal: Calibration, fallback: sd.PhysicalTimes):
        full = {n: cal.params.get(n, 0.0) for n in sd.PARAM_NAMES}
        full.setdefault("lam", 1.0)
        self.fitted = sd.FittedTimes(sd.FittedParams(**full), fallback.target.model.experts,
                                     fallback.target.model.experts_per_token, cal.ridge_point)
        self.parts = cal.fitted_parts
        self.fallback = fallback

    def target_terms(self, batch, t):
        src = self.fitted if "target" in self.parts else self.fallback
        return src.target_terms(batch, t)

    def target_s(self, batch, t):
        return (self.fitted if "target" in self.parts else self.fallback).target_s(batch, t)

    def draft_s(self, batch):
        return (self.fitted if "draft" in self.parts else self.fallback).draft_s(batch)

    def reject_s(self, batch):
        return (self.fitted if "reject" in self.parts else self.fallback).reject_s(batch)


# ---------------------------------------------------------------------------------------------
# bounds of §5.2


def load_s(params: float, model: ModelShape, bandwidth: float) -> float:
    """load(V) = V * bytes_per_param / peak bandwidth."""
    return params * model.bytes_per_param / bandwidth


def always_on_params(model: ModelShape) -> int:
    """Weights every forward reads whatever the routing: all but the routed experts."""
    return model.total_params - model.moe_layers * model.experts * model.expert_params \
        - model.embedding_params * (not model.tied_embeddings)


def bounds(names, target: ModelShape, draft: ModelShape | None, gpu: GpuSpec, gpus: int,
           max_reject_s: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of §5.2 for the named parameters. Loads use the aggregate peak
    bandwidth of the target's GPUs (the draft runs on one)."""
    bw = gpu.hbm_bandwidth * gpus
    bias_lo = load_s(always_on_params(target), target, bw)
    k2_lo = load_s(target.expert_params * target.moe_layers, target, bw)
    table = {
        "bias": (bias_lo, 5 * bias_lo), "k1": (K1_FLOOR, np.inf),
        "k2": (k2_lo, 5 * k2_lo) if target.is_moe else (0.0, 1e-12),
        "k3": (0.0, np.inf) if target.is_moe else (0.0, 1e-12),
        "lam": (0.2, 1.0), "s": (1.0, 2.0),
        "draft_k": (0.0, np.inf),
        "reject_bias": (0.0, max_reject_s if max_reject_s else np.inf),
        "reject_k": (0.0, max_reject_s if max_reject_s else np.inf),
    }
    if draft is not None:
        d_lo = load_s(draft.total_params, draft, gpu.hbm_bandwidth)
        table["draft_bias"] = (d_lo, 5 * d_lo)
    else:
        table["draft_bias"] = (0.0, np.inf)
    lo = np.array([table[n][0] for n in names], dtype=float)
    hi = np.array([table[n][1] for n in names], dtype=float)
    return lo, hi


def _start(lo: np.ndarray, hi: np.ndarray, names) -> np.ndarray:
    """An interior starting point: 1.5 x the lower bound (or the middle of a finite box)."""
    x0 = np.where(np.isfinite(hi), 0.5 * (lo + hi), np.maximum(lo * 1.5, 1e-4))
    for i, n in enumerate(names):
        if n == "s":
            x0[i] = 1.01
        elif n == "lam":
            x0[i] = 0.5
        elif n == "k1":
            x0[i] = 1e-4
    return np.clip(x0, lo, np.where(np.isfinite(hi), hi, np.inf))


# ---------------------------------------------------------------------------------------------
# data selection, warnings, results


def every_kth(n: int, fit_points: int) -> np.ndarray:
    """Indices of ~fit_points rows chosen like the paper: every k-th row of the sorted data."""
    if fit_points >= n:
        return np.arange(n)
    k = max(1, int(np.ceil(n / fit_points)))
    return np.arange(0, n, k)[:fit_points]


def coverage_warnings(fit_batches, all_batches, n_params: int) -> list[str]:
    """The paper's lessons: fewer points than parameters cannot work; a gap in the batch sizes
    of the fit set (or missing either end of the range) makes the fit clearly worse."""
    out = []
    fit_b = np.unique(np.asarray(fit_batches, dtype=float))
    all_b = np.unique(np.asarray(all_batches, dtype=float))
    n = len(np.asarray(fit_batches))
    if n <= n_params:
        out.append(f"{n} points for {n_params} parameters: a fit needs more points than "
                   f"parameters (the paper's m = 12 fit of 10 parameters was clearly worse)")
    if len(all_b) and (fit_b.min() > all_b.min() or fit_b.max() < all_b.max()):
        out.append(f"the fit points cover batch {fit_b.min():g}-{fit_b.max():g} of the data's "
                   f"{all_b.min():g}-{all_b.max():g}: extrapolating")
    for a, b in zip(fit_b, fit_b[1:]):
        inside = all_b[(all_b > a) & (all_b < b)]
        if b / a > 4 and len(inside):
            out.append(f"gap in the fitted batch sizes between {a:g} and {b:g} (data has "
                       f"{', '.join(f'{x:g}' for x in inside)}): coverage of the batch range "
                       f"matters more than point count (the paper's m = 13 lesson)")
    return out


@dataclass
class FitResult:
    mode: str
    names: tuple[str, ...]
    values: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    fit_index: np.ndarray
    holdout_index: np.ndarray
    predicted: np.ndarray      # for every row
    measured: np.ndarray
    seconds: float
    warnings: list[str]
    quantity: str              # what residuals are measured on
    nfev: int = 0

    def at_bound(self) -> list[str]:
        """'lower', 'upper' or '' for each parameter (within 1e-6 relative)."""
        out = []
        for v, lo, hi in zip(self.values, self.lower, self.upper):
            tol = 1e-6 * max(abs(v), 1e-12)
            out.append("lower" if abs(v - lo) <= tol else
                       "upper" if np.isfinite(hi) and abs(v - hi) <= tol else "")
        return out

    @property
    def relative_error(self) -> np.ndarray:
        return (self.predicted - self.measured) / self.measured

    def error_stats(self, index) -> dict:
        e = np.abs(self.relative_error[index])
        if not len(e):
            return {"points": 0, "mean_abs": None, "max_abs": None}
        return {"points": int(len(e)), "mean_abs": float(e.mean()), "max_abs": float(e.max())}


def _solve(residual, x0, lo, hi, tight: bool = True):
    """Trust-region reflective least squares; returns (x, evaluations, solver seconds)."""
    from scipy.optimize import least_squares  # imported before the clock starts

    tol = dict(xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=5000) if tight else {}
    start = time.perf_counter()
    sol = least_squares(residual, x0, bounds=(lo, hi), method="trf", x_scale="jac", **tol)
    return sol.x, sol.nfev, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# component mode: forward times directly


def fit_component(batch, tokens, t_target, target: ModelShape, gpu: GpuSpec, gpus: int = 1,
                  t_draft=None, t_reject=None, draft: ModelShape | None = None,
                  fit_points: int = 21) -> FitResult:
    """Fit T_T(B,t) = bias + k1 G(Bt) + k2 N(Bt) + k3 G(Bt K/N) (and T_D, T_rej when their
    columns exist) to measured times; rows are used in the order given (sort them first)."""
    B = np.asarray(batch, dtype=float)
    t = np.asarray(tokens, dtype=float)
    y = np.asarray(t_target, dtype=float)
    if np.any(y <= 0):
        raise InputError("measured times must be > 0")
    names = list(TARGET_PARAMS)
    has_draft = t_draft is not None and np.all(np.isfinite(t_draft))
    has_reject = t_reject is not None and np.all(np.isfinite(t_reject))
    if has_draft:
        names += list(DRAFT_PARAMS)
    if has_reject:
        names += list(REJECT_PARAMS)
    lo, hi = bounds(names, target, draft, gpu, gpus,
                    float(np.max(t_reject)) if has_reject else None)
    idx = every_kth(len(B), fit_points)
    hold = np.setdiff1d(np.arange(len(B)), idx)
    rp = gpu.ridge_point
    E, K = target.experts, target.experts_per_token

    def unpack(x):
        full = dict(zip(sd.PARAM_NAMES, [0.0] * 10))
        full.update(dict(zip(names, x)))
        return sd.FittedParams(**full)

    def predict(x, rows):
        p = unpack(x)
        out = [sum(sd.parametric_target_terms(p, B[rows], t[rows], E, K, rp).values())]
        if has_draft:
            out.append(sd.parametric_draft_s(p, B[rows], rp))
        if has_reject:
            out.append(sd.parametric_reject_s(p, B[rows]))
        return out

    measured = [y] + ([np.asarray(t_draft, float)] if has_draft else []) \
        + ([np.asarray(t_reject, float)] if has_reject else [])

    def residual(x):
        return np.concatenate([(p - m[idx]) / m[idx] for p, m in zip(predict(x, idx), measured)])

    x, nfev, seconds = _solve(residual, _start(lo, hi, names), lo, hi)
    warnings = coverage_warnings(B[idx], B, len(names))
    pred = predict(x, np.arange(len(B)))[0]
    return FitResult("component", tuple(names), x, lo, hi, idx, hold, pred, y, seconds,
                     warnings, "T_T(B,t)", nfev)


# ---------------------------------------------------------------------------------------------
# paper mode: end-to-end speedups


def fit_paper(batch, gamma, k, experts, sigma, speedup, target: ModelShape, draft: ModelShape,
              gpu: GpuSpec, gpus: int, fit_points: int = 21, verify: str = "gamma",
              max_reject_s: float | None = None) -> FitResult:
    """Algorithm 1: the ten parameters from measured speedups (rows in the order given).
    K and E may vary per row (the paper's sparsity sweep); verification scores `verify`
    positions (the paper: gamma)."""
    B = np.asarray(batch, dtype=float)
    g = np.asarray(gamma, dtype=float)
    Kr = np.asarray(k, dtype=float)
    Er = np.asarray(experts, dtype=float)
    tpr = np.asarray(sigma, dtype=float) * (g + 1)
    y = np.asarray(speedup, dtype=float)
    names = list(sd.PARAM_NAMES)
    lo, hi = bounds(names, target, draft, gpu, gpus, max_reject_s)
    idx = every_kth(len(B), fit_points)
    hold = np.setdiff1d(np.arange(len(B)), idx)
    rp = gpu.ridge_point
    v = sd.verify_tokens(g, verify)

    def target_s(p, rows, tokens):
        n = B[rows] * tokens
        N = Er[rows] * (1 - (1 - Kr[rows] / Er[rows]) ** n)
        lam_rp = p.lam * rp
        return p.bias + p.k1 * sd.roofline_shape(n, lam_rp, p.s) + p.k2 * N \
            + p.k3 * sd.roofline_shape(n * Kr[rows] / N, lam_rp, p.s)

    def predict(x, rows):
        p = sd.FittedParams.from_array(x)
        t_round = g[rows] * sd.parametric_draft_s(p, B[rows], rp) \
            + target_s(p, rows, v[rows]) + sd.parametric_reject_s(p, B[rows])
        return tpr[rows] * target_s(p, rows, 1.0) / t_round

    def residual(x):
        return predict(x, idx) - y[idx]

    x, nfev, seconds = _solve(residual, _start(lo, hi, names), lo, hi)
    warnings = coverage_warnings(B[idx], B, len(names))
    return FitResult("paper", tuple(names), x, lo, hi, idx, hold,
                     predict(x, np.arange(len(B))), y, seconds, warnings, "speedup", nfev)


# ---------------------------------------------------------------------------------------------
# physical mode: only the a-priori model's efficiencies and overheads


def fit_physical(batch, tokens, t_target, target: ModelShape, gpu: GpuSpec, gpus: int = 1,
                 ctx=512, overlap: str = "none", fit_points: int = 21) -> FitResult:
    """Fit eta_bw, eta_compute and the per-layer overheads of §5.1 to measured forward times."""
    B = np.asarray(batch, dtype=float)
    t = np.asarray(tokens, dtype=float)
    y = np.asarray(t_target, dtype=float)
    ctx = np.broadcast_to(np.asarray(ctx, dtype=float), B.shape)
    names = list(PHYSICAL_PARAMS) if target.is_moe else list(PHYSICAL_PARAMS[:3])
    lo = np.array([0.05, 0.01, 0.0, 0.0][: len(names)])
    hi = np.array([1.0, 1.0, 1e-2, 1e-2][: len(names)])
    idx = every_kth(len(B), fit_points)
    hold = np.setdiff1d(np.arange(len(B)), idx)

    def predict(x, rows):
        g = replace(gpu, **dict(zip(names, x)))
        dep = sd.Deployment(target, g, gpus)
        return sd.forward_time(dep, B[rows], t[rows], ctx[rows], overlap=overlap).seconds

    def residual(x):
        return (predict(x, idx) - y[idx]) / y[idx]

    x0 = np.clip(np.array([gpu.eta_bw, gpu.eta_compute, gpu.layer_overhead_s,
                           gpu.moe_layer_overhead_s][: len(names)]), lo, hi)
    x, nfev, seconds = _solve(residual, x0, lo, hi, tight=False)
    warnings = coverage_warnings(B[idx], B, len(names))
    return FitResult("physical", tuple(names), x, lo, hi, idx, hold,
                     predict(x, np.arange(len(B))), y, seconds, warnings, "T_T(B,t)", nfev)


def ratio_errors(batch, tokens, measured, predicted) -> np.ndarray:
    """Relative error of T(B,t)/T(B,1) for every row whose batch also has a t = 1 row."""
    B = np.asarray(batch)
    t = np.asarray(tokens)
    base_m = {b: m for b, tt, m in zip(B, t, measured) if tt == 1}
    base_p = {b: p for b, tt, p in zip(B, t, predicted) if tt == 1}
    out = []
    for b, tt, m, p in zip(B, t, measured, predicted):
        if b in base_m:
            rm, rp = m / base_m[b], p / base_p[b]
            out.append((rp - rm) / rm)
        else:
            out.append(np.nan)
    return np.asarray(out)
