"""Pure analytical cost models: no I/O, no Rich, no Optuna.

Typed inputs are frozen dataclasses; results carry a breakdown of every term. Functions are
written with numpy broadcasting so one call evaluates one configuration or a whole grid.
"""
