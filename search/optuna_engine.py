"""The Optuna engine: suggestions over the study's space, constraints through Optuna's core
constraint API (so samplers see and count infeasible trials), every metric kept as a user
attribute, in-memory or RDB storage (sqlite:///..., postgresql://...).

A stored study records what it searches (space, objectives, metric labels, a fingerprint of the
fixed inputs, the command) so that a re-run resumes it, a changed search is refused, and
`explore study show` can render it. Any number of processes may run `optimize` on one stored
study at once; Optuna's RDB storage is the only coordination.
"""

from __future__ import annotations

import time

import numpy as np

from explore.models.errors import InputError

from .engine import Progress, SearchResult, SearchSettings, fingerprint
from .space import Param, Space, _plain
from .study import Objective, Study

DEFAULT_TRIALS = 200


def tpe_startup_trials(n_trials: int | None) -> int:
    """Random trials before TPE models the space: 30 % of the budget, 10 to 60. Our spaces are
    discrete with large infeasible regions (three quarters of the default pipeline space are
    invalid layouts), and Optuna's default of 10 let TPE settle early: median regret after 200
    trials over 10 seeds on that space was 3.7 % with 10, 2.1 % with 28, 0.3 % with 60
    (benchmarks/bench_search.py measures it)."""
    return 30 if n_trials is None else min(60, max(10, round(0.3 * n_trials)))


def make_sampler(name: str, space: Space, seed: int | None, n_trials: int | None = None):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed,
                                          n_startup_trials=tpe_startup_trials(n_trials))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler({p.name: list(_choices(p)) for p in space.params},
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


def _choices(param: Param) -> tuple:
    return tuple(_plain(v) for v in param.values)


def suggest(trial, param: Param):
    """Evenly spaced integers are ordinal to the sampler (TPE models their order); anything
    else is categorical."""
    prog = _int_progression(param.values)
    if prog is not None:
        low, high, step = prog
        return trial.suggest_int(param.name, low, high, step=step)
    return trial.suggest_categorical(param.name, list(_choices(param)))


def storage_error(url: str | None, e: Exception) -> InputError:
    msg = str(e).splitlines()[0]
    if "DB access module" in msg and str(url).startswith("postgres"):
        msg = "PostgreSQL storage needs the psycopg driver: pip install 'explore[postgres]'"
    return InputError(f"cannot open storage {url!r}: {msg}")


def make_storage(url: str | None):
    """None -> in memory. RDB URLs get a heartbeat (a killed worker's running trial is marked
    failed instead of hanging) and, for SQLite, a long lock timeout so several processes can
    share one file."""
    if url is None:
        return None
    import optuna

    import warnings

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=30,
                                              grace_period=90)
        except ImportError as e:
            raise storage_error(url, e) from None
        except Exception as e:
            # workers starting together on a fresh database race to create its tables: the
            # losers find them created on the next attempt
            if attempt == 4 or type(e).__module__.split(".")[0] not in ("sqlalchemy", "optuna"):
                raise storage_error(url, e) from None
            time.sleep(0.2 * (attempt + 1))


RECORD_KEY = "explore"       # the one study attribute holding what a stored study searches
RECORD_WAIT_S = 30.0         # how long a process that lost the creation race waits for it


def open_study(study: Study, space: Space, objectives: tuple[Objective, ...],
               settings: SearchSettings):
    """Create or resume an Optuna study; refuse to resume one built for another search.

    Creation is atomic for any number of processes starting together on one name: exactly one
    creates the study (the storage's unique name decides) and writes the whole record in one
    attribute; the others load it and wait for that record, then resume or refuse."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler(settings.sampler, space, settings.seed, settings.n_trials)
    digest = fingerprint(study, space)
    name = settings.study_name or f"{study.name}-{digest}"
    objective_names = [o.name for o in objectives]
    record = {"explore_study": study.name, "fingerprint": digest, "space": space.describe(),
              "objectives": objective_names,
              "metrics": [{"name": m.name, "label": m.label, "unit": m.unit, "scale": m.scale,
                           "fmt": m.fmt} for m in study.metrics],
              "command": settings.command or ""}
    try:
        storage = make_storage(settings.storage)
        try:
            ostudy = optuna.create_study(storage=storage, sampler=sampler, study_name=name,
                                         directions=[o.direction for o in objectives])  # type: ignore[misc]
            ostudy.set_user_attr(RECORD_KEY, record)
            return ostudy
        except optuna.exceptions.DuplicatedStudyError:
            ostudy = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
            stored = _wait_for_record(ostudy)
    except InputError:
        raise
    except Exception as e:    # unreachable database, bad URL, missing driver ...
        if type(e).__module__.split(".")[0] in ("sqlalchemy", "optuna", "psycopg"):
            raise storage_error(settings.storage, e) from None
        raise
    if stored is None:        # its creator died before describing it: adopt it
        ostudy.set_user_attr(RECORD_KEY, record)
    elif stored.get("fingerprint") != digest or stored.get("objectives") != objective_names:
        was = stored.get("command") or ", ".join(
            f"{p['name']} {p['values'][0]}..{p['values'][-1]}" for p in stored.get("space", []))
        raise InputError(
            f"study {name!r} in {settings.storage} was created for another search ({was}; "
            f"objectives {', '.join(stored.get('objectives', []))}); rerun that search to "
            f"resume it, or give a new --study-name")
    return ostudy


def stored_record(attrs: dict) -> dict | None:
    """What explore recorded about a stored study (studies written before the record was one
    attribute kept its keys at the top level)."""
    if RECORD_KEY in attrs:
        return attrs[RECORD_KEY]
    return attrs if "fingerprint" in attrs else None


def _wait_for_record(ostudy) -> dict | None:
    """The record of a study another process has just created, once it is written."""
    deadline = time.monotonic() + RECORD_WAIT_S
    while True:
        stored = stored_record(ostudy.user_attrs)
        if stored is not None or time.monotonic() > deadline:
            return stored
        time.sleep(0.05)


def optimize(study: Study, space: Space, objectives: tuple[Objective, ...],
             settings: SearchSettings, progress: Progress | None = None) -> SearchResult:
    import optuna

    from .interrupt import GracefulInterrupt

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
            status = str(ev.status[0])
            cache[key] = (metrics, violations, status, "" if status == "ok" else ev.reason(0))
        metrics, violations, status, reason = cache[key]
        if status in ("pruned", "redundant"):   # not evaluated: no metrics, no constraints
            trial.set_user_attr("status", status)
            trial.set_user_attr("reason", reason)
            raise optuna.TrialPruned(reason)
        for name, value in violations.items():
            trial.set_constraint(name, value)
        # one attribute for all metrics: one storage write per trial, not one per metric
        trial.set_user_attr("metrics", {k: v if np.isfinite(v) else None
                                        for k, v in metrics.items()})
        if reason:
            trial.set_user_attr("reason", reason)
        values = [metrics[o.name] if np.isfinite(metrics[o.name]) else -o.sign * float("inf")
                  for o in objectives]
        return values if len(values) > 1 else values[0]

    n_trials = settings.n_trials
    if n_trials is None and settings.timeout_s is None and settings.total_trials is None:
        n_trials = DEFAULT_TRIALS
    if settings.sampler == "grid":
        n_trials = min(n_trials or space.size, space.size)
    done = [0]
    stop = GracefulInterrupt()

    def callback(s: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        done[0] += 1
        if settings.total_trials is not None and len(s.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) \
                >= settings.total_trials:
            s.stop()
        if stop.requested:
            s.stop()
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
        with stop:
            ostudy.optimize(objective, n_trials=n_trials, timeout=settings.timeout_s,
                            callbacks=[callback], catch=())
    except KeyboardInterrupt:
        interrupted = True
    interrupted = interrupted or stop.requested
    result = collect(study.name, ostudy, space, objectives)
    result.elapsed_s = time.perf_counter() - start
    result.interrupted = interrupted
    result.engine = f"optuna:{settings.sampler}"
    result.study_name = ostudy.study_name
    return result


def collect(study_name: str, ostudy, space: Space,
            objectives: tuple[Objective, ...]) -> SearchResult:
    """Every completed trial of an Optuna study as a SearchResult."""
    import optuna

    states = optuna.trial.TrialState
    trials = ostudy.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED))
    params = {p.name: np.asarray([t.params[p.name] for t in trials]) for p in space.params}
    complete = [t for t in trials if t.state == states.COMPLETE]
    metric_names = list(complete[0].user_attrs.get("metrics", {})) if complete else []
    metrics = {m: np.asarray([_metric(t, m) for t in trials], dtype=float)
               for m in metric_names}
    status = np.asarray([t.user_attrs.get("status", "pruned") if t.state == states.PRUNED
                         else "ok" if all(c <= 0 for c in (t.constraints or {}).values())
                         else "infeasible" for t in trials], dtype=object)
    reasons = [t.user_attrs.get("reason", "") for t in trials]
    return SearchResult(study_name, "optuna", objectives, params, metrics, status == "ok",
                        reasons, space.size, 0.0, study_name=ostudy.study_name, status=status)


def _metric(trial, name: str) -> float:
    value = trial.user_attrs.get("metrics", {}).get(name)
    return np.nan if value is None else value


# ---- stored studies ------------------------------------------------------------------------

def study_names(url: str) -> list:
    """Summaries of every study in a storage."""
    import optuna

    try:
        return optuna.get_all_study_summaries(storage=make_storage(url), include_best_trial=False)
    except InputError:
        raise
    except Exception as e:
        raise storage_error(url, e) from None


def load_stored(url: str, name: str):
    """(Optuna study, SearchResult of its complete trials, its recorded metadata) of a study
    written by explore; InputError naming the stored studies when `name` is not one."""
    import optuna

    from .study import Metric

    storage = make_storage(url)
    try:
        ostudy = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in study_names(url)]
        from explore.presets import nearest
        close = nearest(name, names) or names[:5]
        raise InputError(f"no study {name!r} in {url}; studies there: "
                         f"{', '.join(close) or 'none'}") from None
    attrs = stored_record(ostudy.user_attrs)
    if attrs is None:
        raise InputError(f"study {name!r} in {url} was not written by explore (no recorded "
                         f"search space); open it with optuna-dashboard instead")
    space = Space(tuple(Param(p["name"], tuple(p["values"]), unit=p.get("unit", ""))
                        for p in attrs["space"]))
    objectives = tuple(Objective(n, d.name.lower()) for n, d in
                       zip(attrs["objectives"], ostudy.directions))
    metrics = tuple(Metric(**m) for m in attrs.get("metrics", []))
    result = collect(attrs.get("explore_study", name), ostudy, space, objectives)
    return ostudy, result, {**attrs, "metrics": metrics, "space": space}
