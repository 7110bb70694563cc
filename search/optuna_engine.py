"""The Optuna engine: categorical suggestions over the study's space, constraints through
Optuna's core constraint API (so samplers see and count infeasible trials), every metric kept
as a user attribute, in-memory or RDB storage (sqlite:///..., postgresql://...)."""

from __future__ import annotations

import time

import numpy as np

from explore.models.errors import InputError

from .engine import SearchResult, SearchSettings, Progress
from .space import Param, Space, _plain
from .study import Objective, Study

DEFAULT_TRIALS = 200


def make_sampler(name: str, space: Space, seed: int | None, n_objectives: int):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler({p.name: list(p.values) for p in space.params},
                                           seed=seed)
    raise InputError(f"unknown sampler {name!r}")


def _int_progression(values: tuple) -> tuple[int, int, int] | None:
    """(low, high, step) when the choices are evenly spaced integers, else None."""
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return None
    v = sorted(int(x) for x in values)
    step = v[1] - v[0] if len(v) > 1 else 1
    if step < 1 or any(b - a != step for a, b in zip(v, v[1:])):
        return None
    return v[0], v[-1], step


def suggest(trial, param: Param):
    """Evenly spaced integers are ordinal to the sampler (TPE models their order); anything
    else is categorical."""
    prog = _int_progression(param.values)
    if prog is not None:
        low, high, step = prog
        return trial.suggest_int(param.name, low, high, step=step)
    return trial.suggest_categorical(param.name, [_plain(v) for v in param.values])


def open_study(study: Study, space: Space, objectives: tuple[Objective, ...],
               settings: SearchSettings):
    """Create or resume an Optuna study; refuse to resume one built on another space."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler(settings.sampler, space, settings.seed, len(objectives))
    name = settings.study_name or f"{study.name}-{space.signature()}"
    try:
        ostudy = optuna.create_study(
            storage=settings.storage, sampler=sampler, study_name=name, load_if_exists=True,
            directions=[o.direction for o in objectives])
    except ValueError as e:   # directions differ from a stored study's
        raise InputError(f"study {name!r} in {settings.storage}: {e}") from None
    except Exception as e:    # unreachable database, bad URL ...
        if type(e).__module__.startswith(("sqlalchemy", "optuna")):
            raise InputError(f"cannot open storage {settings.storage!r}: "
                             f"{str(e).splitlines()[0]}") from None
        raise
    attrs = ostudy.user_attrs
    signature = space.signature()
    objective_names = [o.name for o in objectives]
    if "space_signature" not in attrs:
        ostudy.set_user_attr("explore_study", study.name)
        ostudy.set_user_attr("space_signature", signature)
        ostudy.set_user_attr("space", space.describe())
        ostudy.set_user_attr("objectives", objective_names)
    elif attrs["space_signature"] != signature or attrs.get("objectives") != objective_names:
        raise InputError(
            f"study {name!r} in {settings.storage} was created with a different search space or "
            f"objectives ({attrs.get('objectives')}); use another --study-name or the same "
            f"settings to resume it")
    return ostudy


def optimize(study: Study, space: Space, objectives: tuple[Objective, ...],
             settings: SearchSettings, progress: Progress | None = None) -> SearchResult:
    import optuna

    start = time.perf_counter()
    ostudy = open_study(study, space, objectives, settings)
    cache: dict[tuple, tuple] = {}

    def objective(trial: optuna.Trial):
        point = {p.name: suggest(trial, p) for p in space.params}
        key = tuple(point.values())
        if key not in cache:
            ev = study.evaluate({k: np.asarray([v]) for k, v in point.items()})
            metrics = {m: float(np.asarray(v, dtype=float)[0]) for m, v in ev.metrics.items()}
            violations = {c: float(np.asarray(v, dtype=float)[0])
                          for c, v in ev.violations.items()}
            cache[key] = (metrics, violations, "" if ev.feasible[0] else ev.reason(0))
        metrics, violations, reason = cache[key]
        for name, value in violations.items():
            trial.set_constraint(name, value)
        for name, value in metrics.items():
            trial.set_user_attr(name, value)
        if reason:
            trial.set_user_attr("reason", reason)
        values = []
        for o in objectives:
            v = metrics[o.name]
            values.append(v if np.isfinite(v) else -o.sign * float("inf"))
        return values if len(values) > 1 else values[0]

    n_trials = settings.n_trials
    if n_trials is None and settings.timeout_s is None:
        n_trials = DEFAULT_TRIALS
    if settings.sampler == "grid":
        n_trials = min(n_trials or space.size, space.size)
    done = [0]

    def callback(s: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        done[0] += 1
        if progress:
            best = None
            if len(objectives) == 1:
                try:
                    best = s.best_value
                except ValueError:
                    best = None
            progress(done[0], n_trials, best)

    interrupted = False
    try:
        ostudy.optimize(objective, n_trials=n_trials, timeout=settings.timeout_s,
                        callbacks=[callback], catch=())
    except KeyboardInterrupt:
        interrupted = True
    result = collect(study.name, ostudy, space, objectives)
    result.elapsed_s = time.perf_counter() - start
    result.interrupted = interrupted
    result.engine = f"optuna:{settings.sampler}"
    return result


def collect(study_name: str, ostudy, space: Space,
            objectives: tuple[Objective, ...]) -> SearchResult:
    """Every completed trial of an Optuna study as a SearchResult."""
    import optuna

    trials = ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    params = {p.name: np.asarray([t.params[p.name] for t in trials]) for p in space.params}
    metric_names = list(trials[0].user_attrs) if trials else []
    metric_names = [m for m in metric_names if m != "reason"]
    metrics = {m: np.asarray([t.user_attrs.get(m, np.nan) for t in trials], dtype=float)
               for m in metric_names}
    feasible = np.asarray([all(c <= 0 for c in (t.constraints or {}).values()) for t in trials],
                          dtype=bool)
    reasons = [t.user_attrs.get("reason", "") for t in trials]
    return SearchResult(study_name, "optuna", objectives, params, metrics, feasible, reasons,
                        space.size, 0.0)
