"""Generic design-space search: a study declares its space, a vectorised `evaluate`, its
objectives and constraints; an engine (exhaustive sweep or Optuna) returns trials, the best point
and the Pareto set. Nothing here knows about any particular cost model."""

from .space import Param, Space
from .study import Evaluation, Metric, Objective, Study

__all__ = ["Evaluation", "Metric", "Objective", "Param", "Space", "Study"]
