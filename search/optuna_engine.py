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
from typing import Any

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


def make_storage(url: str | None, reached: bool = False):
    """None -> in memory; an RDB URL -> explore's storage (search/storage.py: transient errors
    retried, permanent ones one line, heartbeats on every backend)."""
    if url is None:
        return None
    from .storage import open_storage
    return open_storage(url, reached)


RECORD_KEY = "explore"       # the one study attribute holding what a stored study searches
CLAIM = "explore:claim"      # a running trial's point, written before its parameters
RECORD_WAIT_S = 30.0         # how long a process that lost the creation race waits for it


def open_study(study: Study, space: Space, objectives: tuple[Objective, ...],
               settings: SearchSettings, sampler=None):
    """Create or resume an Optuna study; refuse to resume one built for another search.

    Creation is atomic for any number of processes starting together on one name: exactly one
    creates the study (the storage's unique name decides) and writes the whole record in one
    attribute; the others load it and wait for that record, then resume or refuse."""
    import optuna

    from .storage import mask, storage_error

    # explore reports what matters itself; Optuna's warnings (a dropped connection it falls
    # back from, a retried trial) would interleave with the tables
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if sampler is None:
        sampler = make_sampler(settings.sampler, space, settings.seed, settings.n_trials)
    digest = fingerprint(study, space)
    name = settings.study_name or f"{study.name}-{digest}"
    objective_names = [o.name for o in objectives]
    # the command is stored masked: any reader of the database (optuna-dashboard) sees it
    record: dict[str, Any] = {
        "explore_study": study.name, "fingerprint": digest, "space": space.describe(),
        "objectives": objective_names,
        "metrics": [{"name": m.name, "label": m.label, "unit": m.unit, "scale": m.scale,
                     "fmt": m.fmt} for m in study.metrics],
        "command": mask(settings.command or "")}
    try:
        storage = make_storage(settings.storage, settings.storage_reached)
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
        if type(e).__module__.split(".")[0] in ("sqlalchemy", "optuna", "psycopg") or \
                type(e).__name__ == "StorageError":
            raise storage_error(settings.storage, e) from None
        raise
    if stored is None:        # its creator died before describing it: adopt it
        ostudy.set_user_attr(RECORD_KEY, record)
        # read back: of two adopters the one whose record is not there is refused (a rare
        # race narrowed, not closed: it needs a creator that died mid-creation)
        stored = stored_record(ostudy.user_attrs) or dict(record)
    if stored.get("fingerprint") != digest or stored.get("objectives") != objective_names:
        was = stored.get("command") or ", ".join(
            f"{p['name']} {p['values'][0]}..{p['values'][-1]}" for p in stored.get("space", []))
        raise InputError(
            f"study {name!r} in {mask(settings.storage)} was created for another search "
            f"({was}; objectives {', '.join(stored.get('objectives', []))}); rerun that search "
            f"to resume it, or give a new --study-name")
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


# ---- the points a study holds --------------------------------------------------------------

class Held:
    """The points a study holds (complete, pruned, running or waiting trials), refreshed from
    the storage before each trial: the sampler steers away from them and a point that is held
    complete anyway (two workers raced) is answered from storage, not evaluated again."""

    def __init__(self, space: Space) -> None:
        self.names = space.names
        self.sizes = [len(p.values) for p in space.params]
        self.points: set[tuple] = set()
        self.answers: dict[tuple | None, Any] = {}   # point -> a finished trial holding it
        self.study: Any = None                       # the Optuna study, once open
        self._read: set[int] = set()                 # numbers of finished trials seen
        self._bare: dict[int, tuple] = {}            # running, no point yet: (since, trial)
        self._finished: set[tuple] = set()

    def key(self, params: dict) -> tuple | None:
        if not all(n in params for n in self.names):
            return None
        return tuple(_plain(params[n]) for n in self.names)

    def refresh(self, ostudy, exclude: int | None = None) -> None:
        """Finished trials are read once; running and waiting ones every time (a running
        trial holds its point from the moment it claims it, before its parameters exist)."""
        import optuna

        states = optuna.trial.TrialState
        live: set[tuple] = set()
        for t in ostudy.get_trials(deepcopy=False):
            if t.number in self._read or t.number == exclude:
                continue
            if t.state in (states.COMPLETE, states.PRUNED, states.FAIL):
                self._read.add(t.number)
                self._bare.pop(t.number, None)
            if t.state == states.FAIL:
                continue
            attrs = t.system_attrs or {}
            params = t.params or attrs.get("fixed_params") or dict(zip(self.names,
                                                                       attrs.get(CLAIM, ())))
            key = self.key(params)
            if key is None:
                if t.state == states.RUNNING:
                    self._bare.setdefault(t.number, (time.monotonic(), t))
                continue
            self._bare.pop(t.number, None)
            if t.state in (states.COMPLETE, states.PRUNED):
                self._finished.add(key)
                self.answers.setdefault(key, t)
            else:
                live.add(key)
        self.points = self._finished | live

    def orphans(self) -> list:
        """Running trials that never got a point in ORPHAN_S: a worker died between creating
        the trial and its first heartbeat (Optuna never expires a trial with no heartbeat)."""
        from .storage import ORPHAN_S

        now = time.monotonic()
        out = [t for since, t in self._bare.values() if now - since > ORPHAN_S]
        for t in out:
            del self._bare[t.number]
        return out

    @property
    def exhausted(self) -> bool:
        return len(self.points) >= int(np.prod(self.sizes, dtype=float))


def distribution(param: Param):
    """The Optuna distribution `suggest` uses for a parameter."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    prog = _int_progression(param.values)
    if prog is not None:
        return IntDistribution(prog[0], prog[1], step=prog[2])
    return CategoricalDistribution(list(_choices(param)))


def _distinct_sampler(base_factory, space: Space, held: Held, seed: int | None,
                      claims: bool = False):
    """A sampler that proposes whole points: the base sampler's (`base_factory(seed)`), moved
    to a random nearby point nobody holds when it is held, the held points read again just
    before deciding (other workers write theirs while the base sampler thinks).

    The base is seeded from `seed` and the number of this process's first trial, which the
    storage makes unique: processes started alike (the README's recipe, every one with the
    default seed) sample differently, and a run is still reproducible."""
    import optuna

    dists = {p.name: distribution(p) for p in space.params}
    values = {p.name: sorted(_choices(p)) if _int_progression(p.values) else list(_choices(p))
              for p in space.params}

    class Distinct(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.base = base_factory(seed)
            self.seeded = False
            self.rng = np.random.default_rng(seed)

        def before_trial(self, study, trial) -> None:
            if not self.seeded:
                self.seeded = True
                if seed is not None and trial.number > 0:
                    derived = int(np.random.SeedSequence([seed, trial.number])
                                  .generate_state(1)[0])
                    self.base = base_factory(derived)
                    self.rng = np.random.default_rng(derived)
            self.base.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return dict(dists)

        def sample_relative(self, study, trial, search_space):
            if trial.system_attrs.get("fixed_params"):   # a retried trial: its point is given
                return {}
            own = self.base.infer_relative_search_space(study, trial)
            point = dict(self.base.sample_relative(study, trial, own)) if own else {}
            for name, dist in dists.items():
                if name not in point:
                    point[name] = self.base.sample_independent(study, trial, name, dist)
            if held.study is None:
                return self.free(point)
            # Claim the point, then look: of two workers deciding on one point at once, the
            # later to write its claim sees the other's and moves on (both may; never neither)
            for _ in range(8):
                held.refresh(held.study, exclude=trial.number)
                point = self.free(point)
                if not claims:
                    break
                held.study._storage.set_trial_system_attr(
                    trial._trial_id, CLAIM, [_plain(point[n]) for n in held.names])
                held.refresh(held.study, exclude=trial.number)
                if held.key(point) not in held.points:
                    break
            return point

        def free(self, point: dict) -> dict:
            """`point`, or a random unheld one near it (growing radius over the values'
            order), or at worst a random unheld one; `point` itself when all are held."""
            names = held.names
            if held.key(point) not in held.points:
                return point
            at = [next(i for i, v in enumerate(values[n]) if _plain(v) == _plain(point[n]))
                  for n in names]
            sizes = [len(values[n]) for n in names]
            for attempt in range(300):
                radius = 1 + attempt // 20
                idx = [min(max(i + int(self.rng.integers(-radius, radius + 1)), 0), s - 1)
                       for i, s in zip(at, sizes)]
                cand = {n: values[n][i] for n, i in zip(names, idx)}
                if held.key(cand) not in held.points:
                    return cand
            # nearly every point is held: pick among the free ones (enumerated when the
            # space is small enough, else sampled)
            size = int(np.prod(sizes, dtype=float))
            if size <= 10**7:
                pos = {n: {_plain(v): i for i, v in enumerate(values[n])} for n in names}
                taken = np.asarray([np.ravel_multi_index(
                    [pos[n][v] for n, v in zip(names, p)], sizes) for p in held.points
                    if all(v in pos[n] for n, v in zip(names, p))], dtype=np.int64)
                free = np.setdiff1d(np.arange(size, dtype=np.int64), taken)
                if not len(free):
                    return point
                cell = np.unravel_index(int(free[int(self.rng.integers(len(free)))]), sizes)
                return {n: values[n][int(i)] for n, i in zip(names, cell)}
            for _ in range(1000):
                cand = {n: values[n][int(self.rng.integers(s))] for n, s in zip(names, sizes)}
                if held.key(cand) not in held.points:
                    return cand
            return point

        def sample_independent(self, study, trial, name, dist):
            return self.base.sample_independent(study, trial, name, dist)

        def after_trial(self, study, trial, state, values) -> None:
            self.base.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self.base.reseed_rng()

    return Distinct()


# ---- the search loop -----------------------------------------------------------------------

class _Heartbeat:
    """Records the running trial's heartbeat every HEARTBEAT_S seconds from a thread (Optuna's
    own loop does this inside study.optimize, which explore does not use)."""

    def __init__(self, storage, trial_id: int) -> None:
        import threading

        from .storage import HEARTBEAT_S

        self.stop = threading.Event()

        def beat() -> None:
            while not self.stop.wait(HEARTBEAT_S):
                try:
                    storage.record_heartbeat(trial_id)
                except Exception:   # noqa: BLE001 - the main thread meets the same storage
                    return
        storage.record_heartbeat(trial_id)   # at once: a trial with no heartbeat never expires
        self.thread = threading.Thread(target=beat, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()


def optimize(study: Study, space: Space, objectives: tuple[Objective, ...],
             settings: SearchSettings, progress: Progress | None = None) -> SearchResult:
    """Run trials until this run's budget (--n-trials counts the trials this process finished,
    so one lost to a stale heartbeat is made up), the timeout, the shared --total-trials, an
    exhausted space or Ctrl-C; several processes may do this on one stored study at once."""
    import warnings

    import optuna

    from .interrupt import GracefulInterrupt

    start = time.perf_counter()
    held = Held(space)
    sampler = None
    if settings.sampler != "grid":   # the grid sampler keeps its own list of unvisited points
        sampler = _distinct_sampler(
            lambda seed: make_sampler(settings.sampler, space, seed, settings.n_trials),
            space, held, settings.seed, claims=settings.storage is not None)
    ostudy = open_study(study, space, objectives, settings, sampler)
    held.study = ostudy
    storage = ostudy._storage if settings.storage else None   # the heartbeat's
    cache: dict[tuple, tuple] = {}
    states = optuna.trial.TrialState
    stop = GracefulInterrupt()

    def evaluate(point: dict) -> tuple:
        key = tuple(point.values())
        if key not in cache:
            with stop.evaluating():
                ev = study.evaluate({k: np.asarray([v]) for k, v in point.items()})
            metrics = {m: float(np.asarray(v, dtype=float)[0]) for m, v in ev.metrics.items()}
            violations = {c: float(np.asarray(v, dtype=float)[0])
                          for c, v in ev.violations.items()}
            status = str(ev.status[0])
            cache[key] = (metrics, violations, status, "" if status == "ok" else ev.reason(0))
        return cache[key]

    def run_trial(trial) -> tuple:
        """(state, values) of one trial, its attributes written."""
        point = {p.name: suggest(trial, p) for p in space.params}
        stored = held.answers.get(held.key(point))
        if stored is not None:    # another trial already holds this point: copy its answer
            trial.set_user_attr("copy_of", stored.number)
            for k in ("status", "reason", "metrics"):
                if k in stored.user_attrs:
                    trial.set_user_attr(k, stored.user_attrs[k])
            if stored.state == states.PRUNED:
                return states.PRUNED, None
            for name, value in (stored.constraints or {}).items():
                trial.set_constraint(name, value)
            return states.COMPLETE, stored.values
        metrics, violations, status, reason = evaluate(point)
        if status in ("pruned", "redundant"):   # not evaluated: no metrics, no constraints
            trial.set_user_attr("status", status)
            trial.set_user_attr("reason", reason)
            return states.PRUNED, None
        for name, value in violations.items():
            trial.set_constraint(name, value)
        # one attribute for all metrics: one storage write per trial, not one per metric
        trial.set_user_attr("metrics", {k: v if np.isfinite(v) else None
                                        for k, v in metrics.items()})
        if reason:
            trial.set_user_attr("reason", reason)
        return states.COMPLETE, [metrics[o.name] if np.isfinite(metrics[o.name])
                                 else -o.sign * float("inf") for o in objectives]

    n_trials = settings.n_trials
    if n_trials is None and settings.timeout_s is None and settings.total_trials is None:
        n_trials = DEFAULT_TRIALS
    if settings.sampler == "grid":
        n_trials = min(n_trials or space.size, space.size)
    done = 0
    interrupted = exhausted = False
    # ask() and the grid sampler's stop() expect Optuna's own loop; this is one
    ostudy._thread_local.in_optimize_loop = True
    try:
        with stop, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            while not stop.requested and (n_trials is None or done < n_trials):
                if settings.timeout_s is not None and \
                        time.perf_counter() - start >= settings.timeout_s:
                    break
                optuna.storages.fail_stale_trials(ostudy)   # and retries them
                held.refresh(ostudy)
                for orphan in held.orphans():
                    _abandon(ostudy, orphan)
                if held.exhausted:
                    exhausted = True
                    break
                if settings.total_trials is not None:
                    budget = _budget(ostudy, settings.total_trials)
                    if budget == "spent":
                        break
                    if budget == "running":    # wait: a dead worker's trial will be retried
                        time.sleep(0.5)
                        continue
                trial = ostudy.ask()
                if settings.total_trials is not None and \
                        _over_budget(ostudy, trial.number, settings.total_trials):
                    # another worker took the last trial between our count and this one
                    trial.set_user_attr("reason", "over the shared --total-trials budget")
                    ostudy.tell(trial, state=states.FAIL)
                    break
                beat = _Heartbeat(storage, trial._trial_id) if storage is not None else None
                try:
                    state, values = run_trial(trial)
                except KeyboardInterrupt:      # the second Ctrl-C: abandon this trial
                    interrupted = True
                    _abandon(ostudy, trial)
                    break
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue                   # failed as stale meanwhile: retried elsewhere
                finally:
                    if beat is not None:
                        beat.close()
                try:
                    ostudy.tell(trial, values, state=state)
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue
                done += 1
                if progress:
                    progress(done, n_trials, _best(ostudy, objectives))
    except KeyboardInterrupt:     # the second Ctrl-C between trials
        interrupted = True
    finally:
        ostudy._thread_local.in_optimize_loop = False
    interrupted = interrupted or stop.requested
    result = collect(study.name, ostudy, space, objectives)
    result.elapsed_s = time.perf_counter() - start
    result.interrupted = interrupted
    result.exhausted = exhausted
    result.engine = f"optuna:{settings.sampler}"
    result.study_name = ostudy.study_name
    return result


def _abandon(ostudy, trial) -> None:
    """Mark an abandoned trial (a Trial or a FrozenTrial) failed, not left RUNNING; never raise
    while doing so."""
    import optuna

    try:
        ostudy.tell(trial.number if isinstance(trial, optuna.trial.FrozenTrial) else trial,
                    state=optuna.trial.TrialState.FAIL)
    except Exception:   # noqa: BLE001 - already finished, or the storage is gone
        pass


def _counted(ostudy) -> list:
    """The trials that count against a budget: all but the failed ones."""
    import optuna

    states = optuna.trial.TrialState
    return ostudy.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED,
                                                     states.RUNNING, states.WAITING))


def _budget(ostudy, total: int) -> str:
    """'open': a trial may start; 'spent': the study has `total` finished trials; 'running':
    the rest are running elsewhere (one whose worker died is failed once its heartbeat is
    stale and comes back waiting, so the budget is made up rather than left short)."""
    import optuna

    states = optuna.trial.TrialState
    counted = _counted(ostudy)
    if any(t.state == states.WAITING for t in counted) or len(counted) < total:
        return "open"
    finished = sum(t.state in (states.COMPLETE, states.PRUNED) for t in counted)
    return "spent" if finished >= total else "running"


def _over_budget(ostudy, number: int, total: int) -> bool:
    """Trial `number` is beyond the budget: `total` counted trials were created before it.
    Trial numbers are unique (the storage locks the study to number a trial), so of workers
    racing for the last trial exactly one gets it."""
    return sum(t.number < number for t in _counted(ostudy)) >= total


def _best(ostudy, objectives: tuple[Objective, ...]) -> float | None:
    if len(objectives) != 1:
        return None
    try:
        return ostudy.best_value
    except ValueError:
        return None


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

    from .storage import storage_error

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

    from .storage import mask
    from .study import Metric

    storage = make_storage(url)
    try:
        ostudy = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in study_names(url)]
        from explore.presets import nearest
        close = nearest(name, names)
        more = f" and {len(names) - 5} more (`explore study list`)" if len(names) > 5 else ""
        there = (f"nearest: {', '.join(close)}" if close else
                 f"studies there: {', '.join(names[:5])}{more}" if names else
                 "it holds no study")
        raise InputError(f"no study {name!r} in {mask(url)}; {there}") from None
    attrs = stored_record(ostudy.user_attrs)
    if attrs is None:
        raise InputError(f"study {name!r} in {mask(url)} was not written by explore (no recorded "
                         f"search space); open it with optuna-dashboard instead")
    space = Space(tuple(Param(p["name"], tuple(p["values"]), unit=p.get("unit", ""))
                        for p in attrs["space"]))
    objectives = tuple(Objective(n, d.name.lower()) for n, d in
                       zip(attrs["objectives"], ostudy.directions))
    metrics = tuple(Metric(**m) for m in attrs.get("metrics", []))
    result = collect(attrs.get("explore_study", name), ostudy, space, objectives)
    return ostudy, result, {**attrs, "metrics": metrics, "space": space}
