"""Discrete search spaces: named parameters with ordered choices, enumerable in chunks."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from math import prod
from typing import Any, Iterator

import numpy as np

from explore.models.errors import InputError


@dataclass(frozen=True)
class Param:
    name: str
    values: tuple
    label: str = ""
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.values:
            raise InputError(f"parameter {self.name!r} has no values to search")
        if len(set(self.values)) != len(self.values):
            raise InputError(f"parameter {self.name!r} lists a value twice: {self.values}")


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def size(self) -> int:
        return prod(len(p.values) for p in self.params)

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def columns(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Points start..stop-1 of the row-major enumeration, one array per parameter."""
        stop = self.size if stop is None else min(stop, self.size)
        index = np.arange(start, stop)
        shape = [len(p.values) for p in self.params]
        digits = np.unravel_index(index, shape) if shape else ()
        return {p.name: np.asarray(p.values)[d] for p, d in zip(self.params, digits)}

    def chunks(self, size: int = 1 << 16) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, self.size, size):
            yield self.columns(start, start + size)

    def signature(self) -> str:
        """A stable digest of names and choices: a stored study with another one is refused."""
        blob = json.dumps([[p.name, [_plain(v) for v in p.values]] for p in self.params])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": p.name, "values": [_plain(v) for v in p.values], "unit": p.unit}
                for p in self.params]


def _plain(v: Any) -> Any:
    """numpy scalars -> Python scalars (JSON, Optuna categorical choices)."""
    return v.item() if isinstance(v, np.generic) else v
