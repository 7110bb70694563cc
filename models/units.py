"""Unit constants. Everything inside the models is SI (s, bytes, FLOP, J, bytes/s);
convert only when displaying."""

import re

KB, MB, GB, TB = 1e3, 1e6, 1e9, 1e12          # decimal: bandwidths, vendor capacities
KiB, MiB, GiB, TiB = 2**10, 2**20, 2**30, 2**40  # binary: memory footprints
TFLOPS = 1e12
MS, US, NS = 1e-3, 1e-6, 1e-9
PJ = 1e-12

# ---- quantities written with units in presets ("80 GiB", "0.5 pJ/bit") -------------------------

PREFIXES = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "m": 1e-3,
            "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15,
            "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}
_UNIT_ALIASES = {"FLOPS": "FLOP/s", "Bps": "B/s"}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*$")


def parse_quantity(value: str, unit: str) -> float:
    """'2.039 TB/s' with unit 'B/s' -> 2.039e12. Raises ValueError with the accepted form."""
    m = _QUANTITY.match(value)
    if not m:
        raise ValueError(f"expected a number or '<number> <unit>', got {value!r}")
    number, written = float(m.group(1)), m.group(2)
    if not written:
        return number
    for alias, canonical in _UNIT_ALIASES.items():
        if written.endswith(alias):
            written = written[: -len(alias)] + canonical
    if unit and written.endswith(unit) and written[: -len(unit)] in PREFIXES:
        return number * PREFIXES[written[: -len(unit)]]
    raise ValueError(f"unit {m.group(2)!r} is not a multiple of {unit or 'a plain number'} "
                     f"(write e.g. '{m.group(1)} G{unit}')")
