"""The project's own error types: what a user can cause, as opposed to bugs.

The CLI prints one line for any ExploreError and exits with code 2, or 3 for an InfeasibleError
(nothing in the space can run); a traceback only with --debug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def nearest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The known names closest to a misspelt one (what every "did you mean" offers)."""
    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.5)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """' (did you mean a, b?)' for an unknown name, '' when nothing is close."""
    close = nearest(word, candidates, 2)
    return f" (did you mean {', '.join(close)}?)" if close else ""


class ExploreError(Exception):
    """Base class for errors a user can cause and fix."""


class ConfigError(ExploreError):
    """A preset, YAML file or config.json that is missing, unreadable or malformed."""


class InputError(ExploreError):
    """A flag or parameter value outside its domain (bad range syntax, gamma < 1, ...)."""


class InfeasibleError(ExploreError):
    """Nothing asked for can run (exit code 3); the message names the constraint that binds."""
