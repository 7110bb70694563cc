"""The project's own error types: what a user can cause, as opposed to bugs.

The CLI prints one line for any ExploreError and exits with code 2, or 3 for an InfeasibleError
(nothing in the space can run); a traceback only with --debug.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable
from typing import Any

# difflib's own default: at 0.5 unrelated names of the same length pass ("--nope" ~ "--top")
CLOSE_ENOUGH = 0.6


def nearest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The known names closest to a misspelt one (what every "did you mean" offers): only
    names that are close, each once. Leading dashes are not compared: every flag shares them,
    which made "--nope" look like "--top"."""
    bare = {c.lstrip("-"): c for c in candidates}
    return [bare[m] for m in difflib.get_close_matches(word.lstrip("-"), list(bare), n=n,
                                                       cutoff=CLOSE_ENOUGH)]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """' (did you mean a, b?)' for an unknown name, '' when nothing is close."""
    close = nearest(word, candidates, 2)
    return f" (did you mean {', '.join(close)}?)" if close else ""


_SHOWN = reprlib.Repr()   # keyword arguments only from Python 3.12
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 2, 60, 60, 40
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 4


def shown(value: Any) -> str:
    """A bounded repr for error messages: a user's value may be 5,000 digits, or a YAML alias
    bomb whose full repr would take gigabytes."""
    return _SHOWN.repr(value)


class ExploreError(Exception):
    """Base class for errors a user can cause and fix."""


class ConfigError(ExploreError):
    """A preset, YAML file or config.json that is missing, unreadable or malformed."""


class InputError(ExploreError):
    """A flag or parameter value outside its domain (bad range syntax, gamma < 1, ...)."""


class InfeasibleError(ExploreError):
    """Nothing asked for can run (exit code 3); the message names the constraint that binds."""
