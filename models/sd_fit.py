"""Calibrating the SD model from measurements (docs/sd.md §5.2).

Three modes, all bounded least squares with explicit parameter scaling and tolerances:

- paper:     rows (B, gamma, K, E, sigma, measured speedup) -> the ten parameters of Algorithm 1,
             residual = predicted - measured speedup, bounds of §5.2 from the model and hardware;
- component: rows (batch, tokens_per_seq, measured T_T [, T_D, T_rej]) -> the T_T (and T_D,
             T_rej) expressions fitted to forward times directly, relative residuals, by
             variable projection (linear in all but the roofline shape) [design];
- physical:  the same component rows -> only the a-priori model's efficiency factors and fixed
             overheads (eta_bw, eta_compute; the engine's layer_overhead_s, moe_layer_overhead_s).

Hold-out: fit on every k-th row after sorting (as the paper does), score the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from . import sd
from .errors import InputError
from .fit_settings import MAX_EVALUATIONS, SOLVER_TOL
from .hardware import GpuSpec
from .shapes import ModelShape

MODES = ("paper", "component", "physical")
TARGET_PARAMS = ("bias", "k1", "k2", "k3", "lam", "s")
DRAFT_PARAMS = ("draft_bias", "draft_k")
REJECT_PARAMS = ("reject_bias", "reject_k")
PHYSICAL_PARAMS = ("eta_bw", "eta_compute", "layer_overhead_s", "moe_layer_overhead_s")
GPU_PARAMS = ("eta_bw", "eta_compute")      # the rest of PHYSICAL_PARAMS are engine fields


def split_overrides(values: dict) -> tuple[dict, dict]:
    """Physical-mode parameters -> (GPU fields, engine-profile fields)."""
    return ({k: v for k, v in values.items() if k in GPU_PARAMS},
            {k: v for k, v in values.items() if k not in GPU_PARAMS})
K1_FLOOR = 1e-9  # "k1 > 0": a strictly positive lower bound (seconds)
LAM_BOUNDS = (0.2, 1.0)   # §5.2: the knee between 0.2 and 1 times the ridge point
S_BOUNDS = (1.0, 2.0)     # §5.2: growth base of G


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
    overrides: dict = field(default_factory=dict)  # physical mode: GPU and engine fields
    fit: dict = field(default_factory=dict)            # statistics, for the record
    source: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"calibration mode must be one of {', '.join(MODES)}")
        unknown = set(self.params) - set(sd.PARAM_NAMES)
        unknown |= set(self.overrides) - set(PHYSICAL_PARAMS)
        if unknown:
            raise InputError(f"calibration names unknown parameters: {', '.join(sorted(unknown))}")

    @property
    def fitted_parts(self) -> tuple[str, ...]:
        parts = []
        if self.mode == "physical":
            return ("target", "draft")
        if set(TARGET_PARAMS) - {"k2", "k3"} <= set(self.params):   # a dense target has no k2, k3
            parts.append("target")
        if set(DRAFT_PARAMS) <= set(self.params):
            parts.append("draft")
        if set(REJECT_PARAMS) <= set(self.params):
            parts.append("reject")
        return tuple(parts)

    def times(self, fallback: sd.PhysicalTimes):
        """A time provider: fitted parts from this calibration, the rest a-priori."""
        if self.mode == "physical":
            gpu, engine = split_overrides(self.overrides)
            return sd.PhysicalTimes(
                replace(fallback.target, gpu=replace(fallback.target.gpu, **gpu)),
                fallback.draft.with_gpu(replace(fallback.target.gpu, **gpu)),
                fallback.ctx, fallback.correlation, fallback.overlap,
                replace(fallback.engine, **engine), fallback.routing)
        return MixedTimes(self, fallback)


class MixedTimes:
    """Fitted T_T / T_D / T_rej where the calibration has them, a-priori otherwise."""
    calibrated = True

    def __init__(self, cal: Calibration, fallback: sd.PhysicalTimes):
        self.fitted = sd.FittedTimes(fitted_params(list(cal.params), cal.params.values()),
                                     fallback.target.model.experts,
                                     fallback.target.model.experts_per_token, cal.ridge_point)
        self.parts = cal.fitted_parts
        self.fallback = fallback

    def target_terms(self, batch, t):
        src = self.fitted if "target" in self.parts else self.fallback
        return src.target_terms(batch, t)

    def target_s(self, batch, t):
        return (self.fitted if "target" in self.parts else self.fallback).target_s(batch, t)

    def draft_s(self, batch, rows=1):
        return (self.fitted if "draft" in self.parts else self.fallback).draft_s(batch, rows)

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
        "lam": LAM_BOUNDS, "s": S_BOUNDS,
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


def check_points(points: int, n_params: int) -> None:
    """Fewer measurements than parameters leave the fit undetermined: refused before solving
    (as many only warns, coverage_warnings)."""
    if points < n_params:
        raise InputError(f"{points} measured values to fit {n_params} parameters: a fit needs "
                         f"at least as many values as parameters (add rows or raise "
                         f"--fit-points)")


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
    solver: str = "trust-region reflective least squares (scipy.optimize.least_squares)"

    def at_bound(self) -> list[str]:
        """'lower', 'upper' or '' for each parameter (within 1e-6 relative)."""
        out = []
        for v, lo, hi in zip(self.values, self.lower, self.upper):
            tol = 1e-6 * max(abs(v), 1e-12)
            out.append("lower" if abs(v - lo) <= tol else
                       "upper" if np.isfinite(hi) and abs(v - hi) <= tol else "")
        return out

    def parameters(self) -> list[dict]:
        """One record per fitted parameter: value, bounds (upper None when unbounded) and the
        bound it sits on ('lower', 'upper' or '')."""
        return [{"name": n, "value": float(v), "lower": float(lo),
                 "upper": float(hi) if np.isfinite(hi) else None, "at_bound": b}
                for n, v, lo, hi, b in zip(self.names, self.values, self.lower, self.upper,
                                           self.at_bound())]

    def fitted_on(self) -> str:
        """What the fit saw, in words: the rows it was fitted on, the rest only checked."""
        return (f"{len(self.fit_index)} of {len(self.measured)} rows (every k-th after "
                f"sorting); the other {len(self.holdout_index)} only checked")

    @property
    def relative_error(self) -> np.ndarray:
        return (self.predicted - self.measured) / self.measured

    def error_stats(self, index) -> dict:
        e = np.abs(self.relative_error[index])
        if not len(e):
            return {"points": 0, "mean_abs": None, "max_abs": None}
        return {"points": int(len(e)), "mean_abs": float(e.mean()), "max_abs": float(e.max())}




def x_scale(lo: np.ndarray, hi: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Each parameter's characteristic size for the solver: its bound range where finite,
    else its starting value (seconds and dimensionless factors differ by 10^4)."""
    return np.where(np.isfinite(hi) & (hi > lo), hi - lo, np.maximum(np.abs(x0), 1e-12))


def solve_bounded(residual, x0, lo, hi):
    """Trust-region reflective least squares with explicit scaling and tolerances;
    returns (x, evaluations, solver seconds)."""
    from scipy.optimize import least_squares  # imported before the clock starts

    start = time.perf_counter()
    sol = least_squares(residual, x0, bounds=(lo, hi), method="trf",
                        x_scale=x_scale(lo, hi, x0), ftol=SOLVER_TOL, xtol=SOLVER_TOL,
                        gtol=SOLVER_TOL, max_nfev=MAX_EVALUATIONS)
    return sol.x, sol.nfev, time.perf_counter() - start


def fitted_params(names, values) -> sd.FittedParams:
    """Algorithm-1 parameters from the fitted ones; those not fitted are 0 (lam 1)."""
    full = {n: 0.0 for n in sd.PARAM_NAMES} | {"lam": 1.0}
    return sd.FittedParams(**(full | {n: float(v) for n, v in zip(names, values)}))


def target_params(model: ModelShape) -> tuple[str, ...]:
    """The T_T parameters a target has: a dense model has no expert terms (k2, k3 are 0, not
    fitted: fitting them would leave arbitrary values in a box of width 0)."""
    return TARGET_PARAMS if model.is_moe else tuple(n for n in TARGET_PARAMS
                                                    if n not in ("k2", "k3"))


# ---------------------------------------------------------------------------------------------
# component mode: forward times directly, by variable projection

# T_T, T_D and T_rej are linear in every parameter but the roofline shape (lam, s). For a fixed
# shape the best linear parameters solve a bounded linear least-squares problem, which is convex:
# its predictions are unique. The shape is found by a global grid over its box, then refined
# locally; so the fit has one answer whatever the start, and no local minimum to fall into.
SHAPE_GRID = (17, 25)        # lam x log10(s - 1) points of the global search
LOG_S1_RANGE = (-6.0, 0.0)   # s - 1 from 1e-6 (G practically flat) to 1 (s = 2, the bound)


def _shape_starts(costs: np.ndarray, lams: np.ndarray, logs: np.ndarray,
                  most: int = 6) -> list[np.ndarray]:
    """The grid's local minima, best first: where local refinements start. The knee lam*RP
    crossing a measured token count puts kinks in the cost, so it has several basins a few
    tenths of a percent apart; refining each and keeping the best finds the global one."""
    padded = np.pad(costs, 1, constant_values=np.inf)
    neighbours = np.min([padded[1 + di:padded.shape[0] - 1 + di, 1 + dj:padded.shape[1] - 1 + dj]
                         for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj], axis=0)
    i, j = np.nonzero(costs <= neighbours)
    order = np.lexsort((j, i, costs[i, j]))[:most]
    return [np.array([lams[i[k]], logs[j[k]]]) for k in order]


def _project(design, lo, hi, y, lam, log_s1):
    """Best bounded linear parameters for one shape: (parameters, relative-residual cost)."""
    from scipy.optimize import lsq_linear

    A = design(lam, 1.0 + 10.0 ** log_s1) / y[:, None]
    norm = np.linalg.norm(A, axis=0)
    norm[norm == 0] = 1.0
    sol = lsq_linear(A / norm, np.ones(len(y)), bounds=(lo * norm, hi * norm), method="bvls",
                     tol=SOLVER_TOL)
    theta = sol.x / norm
    r = A @ theta - 1.0
    return theta, float(r @ r)


def _variable_projection(design, lo, hi, y):
    """Minimise ||(A(lam, s) theta - y) / y||^2 over theta in [lo, hi], lam and s in their
    §5.2 boxes: the cost on a grid of shapes, each basin refined on the profile (Powell), the
    best one polished with all parameters together by trust-region least squares, which
    converges quadratically where the profile is flat. Returns (theta, lam, s, evaluations)."""
    from scipy.optimize import minimize

    lams = np.linspace(LAM_BOUNDS[0], LAM_BOUNDS[1], SHAPE_GRID[0])
    logs = np.linspace(*LOG_S1_RANGE, SHAPE_GRID[1])
    costs = np.array([[_project(design, lo, hi, y, a, b)[1] for b in logs] for a in lams])
    refined = [minimize(lambda x: _project(design, lo, hi, y, x[0], x[1])[1], x0,
                        method="Powell", bounds=[LAM_BOUNDS, LOG_S1_RANGE],
                        options={"xtol": 1e-6, "ftol": 1e-9, "maxfev": MAX_EVALUATIONS})
               for x0 in _shape_starts(costs, lams, logs)]
    shape = min(refined, key=lambda r: r.fun)
    theta, _ = _project(design, lo, hi, y, *shape.x)
    lam, s = float(shape.x[0]), 1.0 + 10.0 ** float(shape.x[1])
    plo = np.concatenate([lo, [LAM_BOUNDS[0], S_BOUNDS[0]]])
    phi = np.concatenate([hi, [LAM_BOUNDS[1], S_BOUNDS[1]]])
    x, nfev, _ = solve_bounded(lambda x: design(x[-2], x[-1]) @ x[:-2] / y - 1.0,
                        np.clip(np.concatenate([theta, [lam, s]]), plo, phi), plo, phi)
    return x[:-2], float(x[-2]), float(x[-1]), costs.size + sum(r.nfev for r in refined) + nfev


def fit_component(batch, tokens, t_target, target: ModelShape, gpu: GpuSpec, gpus: int = 1,
                  t_draft=None, t_reject=None, draft: ModelShape | None = None,
                  fit_points: int = 21) -> FitResult:
    """Fit T_T(B,t) = bias + k1 G(Bt) + k2 N(Bt) + k3 G(Bt K/N) (and T_D, T_rej when their
    columns exist) to measured times, relative residuals; rows are used in the order given
    (sort them first)."""
    B = np.asarray(batch, dtype=float)
    t = np.asarray(tokens, dtype=float)
    y = np.asarray(t_target, dtype=float)
    if np.any(y <= 0):
        raise InputError("measured times must be > 0")
    blocks = [("target", [n for n in target_params(target) if n not in ("lam", "s")], y)]
    has_draft = t_draft is not None and np.all(np.isfinite(t_draft))
    has_reject = t_reject is not None and np.all(np.isfinite(t_reject))
    if has_draft:
        blocks.append(("draft", list(DRAFT_PARAMS), np.asarray(t_draft, dtype=float)))
    if has_reject:
        blocks.append(("reject", list(REJECT_PARAMS), np.asarray(t_reject, dtype=float)))
    linear = [n for _, names, _ in blocks for n in names]
    lo, hi = bounds(linear, target, draft, gpu, gpus,
                    float(np.max(t_reject)) if has_reject else None)
    idx = every_kth(len(B), fit_points)
    check_points(len(idx) * len(blocks), len(linear) + 2)   # + the roofline's lam and s
    hold = np.setdiff1d(np.arange(len(B)), idx)
    rp = gpu.ridge_point
    E, K = target.experts, target.experts_per_token

    def columns(kind, rows, lam, s):
        """The basis functions each linear parameter multiplies, one column each."""
        n = B[rows] * t[rows]
        if kind == "target":
            cols = [np.ones_like(n), sd.roofline_shape(n, lam * rp, s)]
            if target.is_moe:
                touched = sd.experts_activated(n, E, K)
                cols += [touched, sd.roofline_shape(n * K / touched, lam * rp, s)]
        elif kind == "draft":
            cols = [np.ones_like(n), sd.roofline_shape(B[rows], lam * rp, s)]
        else:
            cols = [np.ones_like(n), B[rows]]
        return np.column_stack(cols)

    def design(rows):
        def at(lam, s):
            A = np.zeros((len(rows) * len(blocks), len(linear)))
            col = 0
            for i, (kind, names, _) in enumerate(blocks):
                A[i * len(rows):(i + 1) * len(rows), col:col + len(names)] = \
                    columns(kind, rows, lam, s)
                col += len(names)
            return A
        return at

    start = time.perf_counter()
    measured = np.concatenate([m[idx] for _, _, m in blocks])
    theta, lam, s, evaluations = _variable_projection(design(idx), lo, hi, measured)
    seconds = time.perf_counter() - start
    everything = np.arange(len(B))
    pred = (design(everything)(lam, s) @ theta)[:len(B)]
    names = blocks[0][1] + ["lam", "s"] + linear[len(blocks[0][1]):]
    values = np.concatenate([theta[:len(blocks[0][1])], [lam, s], theta[len(blocks[0][1]):]])
    n_t = len(blocks[0][1])
    lower = np.concatenate([lo[:n_t], [LAM_BOUNDS[0], S_BOUNDS[0]], lo[n_t:]])
    upper = np.concatenate([hi[:n_t], [LAM_BOUNDS[1], S_BOUNDS[1]], hi[n_t:]])
    warnings = coverage_warnings(B[idx], B, len(names))
    return FitResult("component", tuple(names), values, lower, upper, idx, hold, pred, y,
                     seconds, warnings, "T_T(B,t)", evaluations,
                     "variable projection: bounded linear least squares per roofline shape, "
                     "shape from a grid, polished by trust-region least squares")


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
    names = [n for n in sd.PARAM_NAMES if n in target_params(target) or n not in TARGET_PARAMS]
    lo, hi = bounds(names, target, draft, gpu, gpus, max_reject_s)
    idx = every_kth(len(B), fit_points)
    check_points(len(idx), len(names))
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
        p = fitted_params(names, x)
        t_round = g[rows] * sd.parametric_draft_s(p, B[rows], rp) \
            + target_s(p, rows, v[rows]) + sd.parametric_reject_s(p, B[rows])
        return tpr[rows] * target_s(p, rows, 1.0) / t_round

    def residual(x):
        return predict(x, idx) - y[idx]

    x, nfev, seconds = solve_bounded(residual, _start(lo, hi, names), lo, hi)
    warnings = coverage_warnings(B[idx], B, len(names))
    return FitResult("paper", tuple(names), x, lo, hi, idx, hold,
                     predict(x, np.arange(len(B))), y, seconds, warnings, "speedup", nfev)


# ---------------------------------------------------------------------------------------------
# physical mode: only the a-priori model's efficiencies and overheads


def fit_physical(batch, tokens, t_target, target: ModelShape, gpu: GpuSpec, gpus: int = 1,
                 ctx=512, overlap: str = "none", fit_points: int = 21,
                 engine: sd.EngineProfile = sd.DEFAULT_ENGINE) -> FitResult:
    """Fit the GPU's eta_bw, eta_compute and the engine's per-layer overheads (§5.1, §5.3) to
    measured forward times."""
    B = np.asarray(batch, dtype=float)
    t = np.asarray(tokens, dtype=float)
    y = np.asarray(t_target, dtype=float)
    ctx = np.broadcast_to(np.asarray(ctx, dtype=float), B.shape)
    names = list(PHYSICAL_PARAMS) if target.is_moe else list(PHYSICAL_PARAMS[:3])
    lo = np.array([0.05, 0.01, 0.0, 0.0][: len(names)])
    hi = np.array([1.0, 1.0, 1e-2, 1e-2][: len(names)])
    idx = every_kth(len(B), fit_points)
    check_points(len(idx), len(names))
    hold = np.setdiff1d(np.arange(len(B)), idx)

    def predict(x, rows):
        on_gpu, on_engine = split_overrides(dict(zip(names, x)))
        dep = sd.Deployment(target, replace(gpu, **on_gpu), gpus)
        return sd.forward_time(dep, B[rows], t[rows], ctx[rows], overlap=overlap,
                               engine=replace(engine, **on_engine)).seconds

    def residual(x):
        return (predict(x, idx) - y[idx]) / y[idx]

    x0 = np.clip(np.array([gpu.eta_bw, gpu.eta_compute, engine.layer_overhead_s,
                           engine.moe_layer_overhead_s][: len(names)]), lo, hi)
    x, nfev, seconds = solve_bounded(residual, x0, lo, hi)
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
    for b, m, p in zip(B, measured, predicted):
        if b in base_m:
            rm, rp = m / base_m[b], p / base_p[b]
            out.append((rp - rm) / rm)
        else:
            out.append(np.nan)
    return np.asarray(out)
