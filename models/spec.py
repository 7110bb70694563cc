"""Documented dataclass fields: every preset field carries its unit and a one-line meaning.

The presets loader reads the metadata to accept quantities such as "80 GiB" or "2.039 TB/s", to
reject unknown keys, and to print field documentation (`explore presets show`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .errors import InputError, shown

_MISSING = dataclasses.MISSING

# A whole number larger than this is no count, size or seed any study takes (numpy seeds stop at
# 2^32, array sizes at 2^63); refusing it early keeps 5,000-digit integers out of the models.
MAX_INT = 2**53


@dataclass(frozen=True)
class Range:
    """The values a number may take: finite always, and between `low` and `high` (each bound
    excluded when open). Declared once per field or flag; `check` gives the one message."""
    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def text(self) -> str:
        """'>= 1', '> 0', 'in [0, 1)'."""
        lo, hi = _bound(self.low), _bound(self.high)
        if self.low > -math.inf and self.high < math.inf:
            return (f"in {'(' if self.open_low else '['}{lo}, {hi}"
                    f"{')' if self.open_high else ']'}")
        if self.low > -math.inf:
            return f"{'>' if self.open_low else '>='} {lo}"
        if self.high < math.inf:
            return f"{'<' if self.open_high else '<='} {hi}"
        return ""

    def check(self, value: Any, name: str) -> None:
        """InputError naming `name` when `value` (a number; None passes) is outside."""
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise InputError(f"{name} {shown(value)} is too large (it must be "
                             f"{self.text() if self.high < MAX_INT else f'<= {MAX_INT:.3g}'})")
        if not math.isfinite(value):
            bound = self.text()
            raise InputError(f"{name} must be a finite number{' ' + bound if bound else ''}, "
                             f"got {value}")
        below = value <= self.low if self.open_low else value < self.low
        above = value >= self.high if self.open_high else value > self.high
        if below or above:
            raise InputError(f"{name} must be {self.text()}, got {_bound(value)}")


def _bound(x: float) -> str:
    return str(int(x)) if math.isfinite(x) and x == int(x) else f"{x:g}"


ANY = Range()
NONNEGATIVE = Range(0.0)
POSITIVE = Range(0.0, open_low=True)
AT_LEAST_1 = Range(1.0)
FRACTION = Range(0.0, 1.0, open_low=True)     # (0, 1]: efficiencies, shares
SHARE = Range(0.0, 1.0)                        # [0, 1]


def check_fields(obj: Any, what: str) -> None:
    """Check every field of a spec dataclass against the Range it declares (`spec(range=)`)."""
    for f in dataclasses.fields(obj):
        rng = f.metadata.get("range")
        if rng is not None:
            rng.check(getattr(obj, f.name), f"{what}: {f.name}")


def spec(doc: str, unit: str = "", default: Any = _MISSING, range: Range | None = None,
         typical: tuple[float, float] | None = None, **kw: Any) -> Any:
    """A dataclass field with documentation metadata; `unit` is the SI unit of the stored value,
    `range` the values it may take (checked by `check_fields` in the class's __post_init__),
    `typical` the magnitudes real parts have (outside: the preset loader asks whether the unit
    was forgotten)."""
    meta = {"doc": doc, "unit": unit, "range": range, "typical": typical}
    if default is _MISSING:
        return dataclasses.field(metadata=meta, **kw)
    if isinstance(default, (dict, list, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta,
                                 **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


def field_docs(cls: type) -> list[tuple[str, str, str, bool]]:
    """(name, unit, doc, required) for every field of a spec dataclass, in declaration order."""
    out = []
    for f in dataclasses.fields(cls):
        required = f.default is _MISSING and f.default_factory is _MISSING
        out.append((f.name, f.metadata.get("unit", ""), f.metadata.get("doc", ""), required))
    return out
