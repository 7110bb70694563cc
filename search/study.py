"""What a study declares to the search engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .space import Space


@dataclass(frozen=True)
class Objective:
    name: str            # a metric name
    direction: str       # "maximize" | "minimize"

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be maximize or minimize, not {self.direction!r}")

    @property
    def sign(self) -> float:
        """Multiply by this to turn the objective into one to minimise."""
        return -1.0 if self.direction == "maximize" else 1.0


@dataclass(frozen=True)
class Metric:
    """Display metadata of a reported number: values are SI, shown as value * scale in unit."""
    name: str
    label: str
    unit: str = ""
    scale: float = 1.0
    fmt: str = ".3g"

    def show(self, value: float) -> str:
        if value is None or not np.isfinite(value):
            return "-"
        return format(value * self.scale, self.fmt)


STATUSES = ("ok", "infeasible", "pruned", "redundant")


@dataclass
class Evaluation:
    """Vectorised results for n points: every reported metric, and per constraint the amount by
    which it is violated (> 0 violated, <= 0 satisfied). `reasons` may explain infeasible points.

    A study may also `skip` points it did not evaluate: "pruned" (a bound shows it cannot beat
    the best found) or "redundant" (it equals another point); "" for the rest. Skipped points
    are neither feasible nor infeasible: they have no metrics, and Optuna sees them as pruned
    trials, not as constraint violations."""
    metrics: dict[str, np.ndarray]
    violations: dict[str, np.ndarray] = field(default_factory=dict)
    reasons: np.ndarray | None = None
    skipped: np.ndarray | None = None

    @property
    def status(self) -> np.ndarray:
        """ok, infeasible (a constraint is violated), pruned or redundant, per point."""
        n = len(next(iter(self.metrics.values())))
        ok = np.ones(n, dtype=bool)
        for v in self.violations.values():
            ok &= np.asarray(v) <= 0
        out = np.where(ok, "ok", "infeasible").astype(object)
        if self.skipped is not None:
            skip = np.asarray(self.skipped, dtype=object)
            out = np.where(skip != "", skip, out)
        return out

    @property
    def feasible(self) -> np.ndarray:
        return self.status == "ok"

    def reason(self, i: int) -> str:
        if self.reasons is not None and self.reasons[i]:
            return str(self.reasons[i])
        return ", ".join(name for name, v in self.violations.items() if v[i] > 0)


class Study(Protocol):
    name: str
    space: Space
    metrics: tuple[Metric, ...]
    objectives: tuple[Objective, ...]   # the objectives this study can be asked to optimise
    # optional: `tie_breakers` (objectives that order points tied within engine.TIE_RTOL, e.g.
    # energy then area) and `exhaustive_limit` (a larger space `auto` still sweeps whole)

    def evaluate(self, points: dict[str, np.ndarray]) -> Evaluation: ...
