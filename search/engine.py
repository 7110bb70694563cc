"""Two engines behind one interface: an exhaustive vectorised sweep and Optuna.

`run` picks the exhaustive sweep when the space has at most `exhaustive_limit` points (default
10^5) unless told otherwise; both return a SearchResult with the same fields, so the best point of
either can be compared directly."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from explore.models.errors import InputError

from .space import Space, _plain
from .study import Evaluation, Objective, Study

SAMPLERS = ("tpe", "random", "nsga2", "grid")
# [design] points whose first objective lies within 0.1 % of the best are tied: an analytical
# model does not resolve finer differences, so the other objectives decide among them
TIE_RTOL = 1e-3
ENGINES = ("auto", "exhaustive", "optuna")
Progress = Callable[[int, "int | None", "float | None"], None]


@dataclass(frozen=True)
class SearchSettings:
    engine: str = "auto"
    sampler: str = "tpe"
    n_trials: int | None = None      # Optuna budget (default: 200, or until timeout)
    timeout_s: float | None = None
    seed: int | None = 0
    storage: str | None = None       # Optuna storage URL; None = in memory
    study_name: str | None = None
    total_trials: int | None = None  # stop once the stored study holds this many trials
    exhaustive_limit: int = 100_000
    command: str | None = None       # recorded with a stored study, to show how to resume
    # a parent process has just opened this storage: a refused connection is an outage to
    # wait out, not a wrong URL
    storage_reached: bool = False

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"unknown search engine {self.engine!r}; choose from "
                             f"{', '.join(ENGINES)}")
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if self.n_trials is not None and self.n_trials < 1:
            raise InputError(f"--n-trials must be >= 1, got {self.n_trials}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise InputError(f"--timeout must be > 0 seconds, got {self.timeout_s}")
        if self.total_trials is not None and self.total_trials < 1:
            raise InputError(f"--total-trials must be >= 1, got {self.total_trials}")


@dataclass
class SearchResult:
    study: str
    engine: str
    objectives: tuple[Objective, ...]
    params: dict[str, np.ndarray]
    metrics: dict[str, np.ndarray]
    feasible: np.ndarray
    reasons: list[str]
    space_size: int
    elapsed_s: float
    interrupted: bool = False
    study_name: str | None = None    # the Optuna study, when one was used
    status: np.ndarray | None = None  # ok / infeasible / pruned / redundant (search.study)
    exhausted: bool = False          # the sampled search stopped because it held every point
    # what breaks ties within TIE_RTOL of the best, in order (the study's `tie_breakers`; then
    # the space's order, simplest first)
    tie_breakers: tuple[Objective, ...] = ()

    def __post_init__(self) -> None:
        if self.status is None:
            self.status = np.where(self.feasible, "ok", "infeasible").astype(object)

    @property
    def n(self) -> int:
        return len(self.feasible)

    def counts(self) -> dict[str, int]:
        """How many evaluated points had each status."""
        from .study import STATUSES
        return {s: int(np.sum(self.status == s)) for s in STATUSES}

    def score(self, objective: Objective) -> np.ndarray:
        """Objective values turned into 'lower is better', infeasible and non-finite = +inf."""
        v = objective.sign * np.asarray(self.metrics[objective.name], dtype=float)
        return np.where(self.feasible & np.isfinite(v), v, np.inf)

    def ranked(self) -> np.ndarray:
        """Feasible, distinct trials, best first: by the first objective; with several objectives
        the Pareto set comes first."""
        if not self.n:
            return np.zeros(0, dtype=int)
        first = self.score(self.objectives[0])
        keys = [np.arange(self.n), first]
        if len(self.objectives) > 1:
            on_front = np.zeros(self.n, dtype=bool)
            on_front[self.pareto()] = True
            keys.append(~on_front)
        order = np.lexsort(keys)
        order = order[np.isfinite(first[order])]
        tied = self._tied(order, first)
        if len(tied) > 1 and self.tie_breakers:
            # lexsort's last key is the primary: the first tie-breaker, then the next ...
            by = np.lexsort([tied, first[tied]]
                            + [self.score(o)[tied] for o in self.tie_breakers[::-1]])
            order = np.concatenate([tied[by], order[len(tied):]])
        seen, out = set(), []
        for i in order:
            key = tuple(_plain(self.params[p][i]) for p in self.params)
            if key not in seen:
                seen.add(key)
                out.append(i)
        return np.asarray(out, dtype=int)

    def _tied(self, order: np.ndarray, first: np.ndarray) -> np.ndarray:
        """The head of `order` within TIE_RTOL of its first point's first objective."""
        if not len(order):
            return order
        top = first[order[0]]
        within = first[order] <= top + TIE_RTOL * abs(top)
        return order if within.all() else order[:int(np.argmin(within))]

    def ties(self, ranked: np.ndarray | None = None) -> dict | None:
        """How the best was chosen when several distinct points tie with it: their count, the
        tolerance and the objectives that broke the tie; None without a tie. `ranked`: this
        result's ranked(), when the caller has it."""
        ranked = self.ranked() if ranked is None else ranked
        if not len(ranked) or not self.tie_breakers:
            return None
        first = self.score(self.objectives[0])
        n = len(self._tied(ranked[np.argsort(first[ranked], kind="stable")], first))
        if n < 2:
            return None
        return {"tied": n, "rtol": TIE_RTOL, "objective": self.objectives[0].name,
                "broken_by": [o.name for o in self.tie_breakers]}

    @property
    def best(self) -> int | None:
        r = self.ranked()
        return int(r[0]) if len(r) else None

    def pareto(self) -> np.ndarray:
        """Indices of the non-dominated feasible trials over all objectives."""
        scores = np.stack([self.score(o) for o in self.objectives], axis=1)
        return pareto_front(scores)

    def point(self, i: int) -> dict:
        return {p: _plain(v[i]) for p, v in self.params.items()}

    def row(self, i: int) -> dict:
        out = self.point(i)
        out.update({m: float(v[i]) for m, v in self.metrics.items()})
        out["feasible"] = bool(self.feasible[i])
        out["status"] = str(self.status[i]) if self.status is not None else ""
        if self.reasons[i]:
            out["reason"] = self.reasons[i]
        return out


def edges(space: Space, point: dict, order: dict[str, Callable]) -> list[str]:
    """Where `point` sits on the edge of the searched range of the parameters in `order` (ones
    the user can widen, each with the function that orders its values), as phrases such as
    'gamma 8 is the largest searched'."""
    out = []
    for p in space.params:
        if p.name not in order or len(p.values) < 3:
            continue
        key = order[p.name]
        values = sorted(key(v) for v in p.values)
        v = key(point[p.name])
        if v in (values[0], values[-1]):
            unit = f" {p.unit}" if p.unit else ""
            out.append(f"{p.label or p.name} {_plain(point[p.name])}{unit} is the "
                       f"{'smallest' if v == values[0] else 'largest'} searched")
    return out


def pareto_front(scores: np.ndarray) -> np.ndarray:
    """Rows of `scores` (n x k, lower is better, inf = excluded) that no other row dominates."""
    finite = np.all(np.isfinite(scores), axis=1)
    idx = np.flatnonzero(finite)
    if not len(idx):
        return idx
    order = idx[np.lexsort(scores[idx].T[::-1])]   # sorted by first objective, then the rest
    front: list[int] = []
    for i in order:
        s = scores[i]
        if front:
            f = scores[front]
            if np.any(np.all(f <= s, axis=1) & np.any(f < s, axis=1)) or \
                    np.any(np.all(f == s, axis=1)):
                continue
        front.append(int(i))
    return np.asarray(front, dtype=int)


def run(study: Study, objectives: list[str] | tuple[str, ...], settings: SearchSettings,
        space: Space | None = None, progress: Progress | None = None) -> SearchResult:
    """Search `space` (default: the study's) for the given objective names."""
    space = space or study.space
    by_name = {o.name: o for o in study.objectives}
    unknown = [o for o in objectives if o not in by_name]
    if unknown or not objectives:
        raise InputError(f"unknown objective {', '.join(unknown) or '(none)'}; "
                         f"{study.name} offers {', '.join(by_name)}")
    objs = tuple(by_name[o] for o in objectives)
    engine = settings.engine
    if engine == "auto":
        engine = "exhaustive" if space.size <= exhaustive_limit(study, settings) else "optuna"
    if engine == "exhaustive":
        result = _exhaustive(study, space, objs, progress)
    else:
        from .optuna_engine import optimize   # stops once it holds every point
        result = optimize(study, space, objs, settings, progress)
    result.tie_breakers = tuple(o for o in getattr(study, "tie_breakers", ()) if o not in objs)
    return result


def exhaustive_limit(study: Study, settings: SearchSettings) -> int:
    """The largest space `auto` sweeps whole: the settings' limit, or the study's own when it
    evaluates fast enough to sweep more in seconds."""
    return max(settings.exhaustive_limit, getattr(study, "exhaustive_limit", 0))


def fingerprint(study: Study, space: Space) -> str:
    """Digest of the space and of the study's fixed inputs (model, hardware, ...): a stored
    study is resumed only by a search that would produce the same trials."""
    import hashlib
    import json

    fixed = study.fingerprint() if hasattr(study, "fingerprint") else {}
    blob = json.dumps([space.signature(), fixed], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _exhaustive(study: Study, space: Space, objectives: tuple[Objective, ...],
                progress: Progress | None) -> SearchResult:
    from .interrupt import GracefulInterrupt

    start = time.perf_counter()
    parts: list[tuple[dict, Evaluation]] = []
    done, interrupted = 0, False
    try:
        with GracefulInterrupt() as stop:
            for cols in space.chunks():
                with stop.evaluating():
                    ev = study.evaluate(cols)
                parts.append((cols, ev))
                done += len(next(iter(cols.values())))
                if progress:
                    progress(done, space.size, None)
                if stop.requested:
                    interrupted = True
                    break
    except KeyboardInterrupt:
        interrupted = True
    params = {p: np.concatenate([c[p] for c, _ in parts]) if parts else np.zeros(0)
              for p in space.names}
    metric_names = list(parts[0][1].metrics) if parts else []
    metrics = {m: np.concatenate([np.asarray(e.metrics[m], dtype=float) for _, e in parts])
               for m in metric_names}
    statuses = [e.status for _, e in parts]    # a property: compute once per part
    status = np.concatenate(statuses) if parts else np.zeros(0, dtype=object)
    reasons = [e.reason(i) if st[i] != "ok" else "" for (_, e), st in zip(parts, statuses)
               for i in range(len(st))]
    return SearchResult(study.name, "exhaustive", objectives, params, metrics, status == "ok",
                        reasons, space.size, time.perf_counter() - start, interrupted,
                        status=status)
