"""Documented dataclass fields: every preset field carries its unit and a one-line meaning.

The presets loader reads the metadata to accept quantities such as "80 GiB" or "2.039 TB/s", to
reject unknown keys, and to print field documentation (`explore presets show`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

_MISSING = dataclasses.MISSING


def spec(doc: str, unit: str = "", default: Any = _MISSING, **kw: Any) -> Any:
    """A dataclass field with documentation metadata; `unit` is the SI unit of the stored value."""
    meta = {"doc": doc, "unit": unit}
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
