"""Shared CLI plumbing: value parsers with clear errors, JSON output, search options."""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Optional


from explore.models.errors import InputError, shown
from explore.models.spec import AT_LEAST_1, POSITIVE, Range

from .options import option

SEED = Range(0, 2**32 - 1)   # what numpy and Optuna samplers take
RANGE_HELP = "N, A-B, A-B:STEP, or a comma list of those (e.g. 1-8,16,32)"


# One flag lists at most this many values: a space is the product of several flags, and the
# list is built (and every point of it evaluated) before anything is printed.
MAX_VALUES = 10_000


def _too_many(flag: str, text: str, n: int) -> InputError:
    return InputError(f"{flag} {shown(text)}: {n:,} values, more than the {MAX_VALUES:,} one "
                      f"flag may list; use a step (A-B:STEP) or fewer values")


def parse_int_range(text: str, flag: str, minimum: int = 1,
                    maximum: int | None = None) -> tuple[int, ...]:
    """'1-100', '2-64:2', '1,2,4,8', '1-8,16' -> sorted distinct ints; InputError otherwise.
    Each range is sized before it is built."""
    values: set[int] = set()
    for part in text.replace(" ", "").split(","):
        # at most 15 digits: past that no count is meant, and int() of 4,300 digits fails
        m = re.fullmatch(r"(-?\d{1,15})(?:-(-?\d{1,15})(?::(\d{1,15}))?)?", part)
        if not m:
            raise InputError(f"{flag} {shown(text)}: cannot read {shown(part)}; use {RANGE_HELP}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        step = int(m.group(3) or 1)
        if hi < lo or step < 1:
            raise InputError(f"{flag} {shown(text)}: range {shown(part)} must go up with a "
                             f"positive step")
        if lo < minimum:
            raise InputError(f"{flag} {shown(text)}: values must be >= {minimum}")
        if maximum is not None and hi > maximum:
            raise InputError(f"{flag} {shown(text)}: values must be <= {maximum}")
        n = len(values) + len(range(lo, hi + 1, step))
        if n > MAX_VALUES:
            raise _too_many(flag, text, n)
        values.update(range(lo, hi + 1, step))
    return tuple(sorted(values))


def parse_floats(text: str, flag: str) -> tuple[float, ...]:
    """'0.9,0.8,0.7' -> (0.9, 0.8, 0.7); InputError naming the part that is not a number."""
    parts = text.replace(" ", "").split(",")
    if len(parts) > MAX_VALUES:
        raise _too_many(flag, text, len(parts))
    return tuple(_number(part, flag, text) for part in parts)


def _number(part: str, flag: str, text: str) -> float:
    try:
        value = float(part)
    except ValueError:
        raise InputError(f"{flag} {shown(text)}: cannot read {shown(part)}; write numbers "
                         f"separated by commas") from None
    if not math.isfinite(value):
        raise InputError(f"{flag} {shown(text)}: {shown(part)} is not a finite number")
    return value


def parse_at(text: str, gammas: tuple[int, ...], flag: str, example: str
             ) -> tuple[float, int]:
    """A value measured at a draft length: '0.91' (one gamma searched) or '0.91@4' (at gamma 4)
    -> (value, gamma); --sigma and --accept-len."""
    value, _, at = text.partition("@")
    if not re.fullmatch(r"\d{1,6}", at or "1"):
        raise InputError(f"{flag} {shown(text)}: write a number, optionally @gamma (e.g. "
                         f"{example})")
    number, gamma = _number(value, flag, text), int(at) if at else None
    if gamma is None:
        if len(gammas) != 1:
            raise InputError(f"{flag} depends on the draft length; with several gammas write "
                             f"the gamma it was measured at, e.g. {flag} {example}")
        gamma = gammas[0]
    if gamma < 1:
        raise InputError(f"{flag} {shown(text)}: gamma must be >= 1")
    return number, gamma


def emit_json(data: Any) -> None:
    """Write JSON to stdout (NaN/inf as null)."""
    sys.stdout.write(json.dumps(_clean(data), indent=2) + "\n")


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item"):          # numpy scalar
        return _clean(x.item())
    if hasattr(x, "tolist"):        # numpy array
        return _clean(x.tolist())
    return x


def sampled_only(result) -> str | None:
    """When a sampled search found nothing feasible, that is not proof that nothing is: the
    words to say so ('among the 40 of 38,400 points tried ...'), or None after a full sweep."""
    if not str(result.engine).startswith("optuna") or result.n >= result.space_size:
        return None
    return (f"among the {result.n:,} of {result.space_size:,} points tried (a sampled search; "
            f"more --n-trials or --search exhaustive may find one)")


# ---- output options shared by every study --------------------------------------------------

@dataclass
class AsJson:
    """--json, for commands that write no files."""
    PANEL: ClassVar[str] = "Output"
    json: bool = option(False, "--json", help="print JSON instead of tables")


@dataclass
class Output(AsJson):
    """Where the answer goes besides the terminal tables."""
    save_dir: Optional[str] = option(None, "--save-dir", help="also write result.json, the "
                                     "tables as CSV (units in the headers) and PNG figures to "
                                     "this directory")
    force: bool = option(False, "--force", help="let --save-dir overwrite files already there")


# ---- search options shared by every study --------------------------------------------------

SEARCH_PANEL = "Search engine"


@dataclass
class SearchOptions:
    """How to search: engine, sampler, budget, seed, storage and workers (every study)."""
    PANEL: ClassVar[str] = SEARCH_PANEL
    search: str = option("auto", "--search", help="auto: exhaustive sweep up to 10^5 points "
                         "(10^6 for chiplet), else Optuna; or force exhaustive / optuna")
    sampler: str = option("tpe", "--sampler", help="Optuna sampler: tpe, random, nsga2, grid")
    n_trials: Optional[int] = option(None, "--n-trials", help="Optuna trials for this run",
                                     default_text="200 unless --timeout", range=AT_LEAST_1)
    timeout: Optional[float] = option(None, "--timeout", help="stop Optuna after this long",
                                      unit="s", range=POSITIVE)
    seed: Optional[int] = option(0, "--seed", help="sampler seed (same inputs + seed = same "
                                 "output)", range=SEED)
    storage: Optional[str] = option(None, "--storage", help="Optuna storage URL to persist or "
                                    "share the study (sqlite:///runs.db, postgresql://...)")
    study_name: Optional[str] = option(None, "--study-name", help="name of the stored study",
                                       default_text="derived from the study and its space")
    workers: int = option(1, "--workers", help="run K worker processes on one shared storage "
                          "(Optuna searches; the budget is split between them)", range=AT_LEAST_1)
    total_trials: Optional[int] = option(None, "--total-trials", help="stop once the stored "
                                         "study holds this many trials (a budget shared by "
                                         "every run and worker)", range=AT_LEAST_1)

    def settings(self, command: str | None = None):
        from explore.models.errors import InputError
        from explore.search.engine import SearchSettings

        if self.workers < 1:
            raise InputError(f"--workers must be >= 1, got {self.workers}")
        return SearchSettings(engine=self.search, sampler=self.sampler, n_trials=self.n_trials,
                              timeout_s=self.timeout, seed=self.seed, storage=self.storage,
                              study_name=self.study_name, total_trials=self.total_trials,
                              command=command)
