"""Ctrl-C (SIGINT) and SIGTERM during a search: the first finishes the running trial (or chunk)
and stops cleanly; the second abandons the evaluation at once (KeyboardInterrupt, raised only
inside an evaluation, so no storage write is cut in half and no trial is left RUNNING).

`installed()` makes this the process's handler (the CLI's main runs inside it, so Typer's
own Ctrl-C handling, exit 130 with no output, never runs): before any search a signal
interrupts as usual; after an interrupted search, while its results print, further ones are
ignored. Outside `installed()` a GracefulInterrupt installs the handler for its own duration.
Forwarders registered with `forward` see every signal first (a --workers parent passes them on
to its workers)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    installed = False
    search: "GracefulInterrupt | None" = None   # the running search
    interrupted = False                          # a search was interrupted in this process
    forwarders: list[Callable[[int], None]] = []


_state = _State()


def _handle(signum, frame) -> None:
    for forward in list(_state.forwarders):
        forward(signum)
    search = _state.search
    if search is None:
        if _state.interrupted:
            return                  # the results of an interrupted search are printing
        raise KeyboardInterrupt
    search.presses += 1
    _state.interrupted = True
    if search.presses >= 2 and search.in_evaluation:
        raise KeyboardInterrupt


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """explore's handler for SIGINT and SIGTERM while inside (the whole of a CLI run)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = [(sig, signal.signal(sig, _handle)) for sig in SIGNALS]
    _state.installed, _state.interrupted = True, False
    try:
        yield
    finally:
        for sig, handler in previous:
            signal.signal(sig, handler)
        _state.installed, _state.interrupted = False, False


@contextlib.contextmanager
def forward(fn: Callable[[int], None]) -> Iterator[None]:
    """Call fn(signum) on every SIGINT / SIGTERM while inside."""
    _state.forwarders.append(fn)
    try:
        yield
    finally:
        _state.forwarders.remove(fn)


class GracefulInterrupt:
    def __init__(self) -> None:
        self.presses = 0
        self.in_evaluation = False
        self._previous: list[Any] = []      # the handlers to restore

    @property
    def requested(self) -> bool:
        """Stop after the running trial."""
        return self.presses >= 1

    @property
    def abandoned(self) -> bool:
        return self.presses >= 2

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """A stretch the second signal may cut short (model evaluation, no storage writes)."""
        self.in_evaluation = True
        try:
            if self.abandoned:
                raise KeyboardInterrupt
            yield
        finally:
            self.in_evaluation = False

    def __enter__(self) -> "GracefulInterrupt":
        if not _state.installed and threading.current_thread() is threading.main_thread():
            self._previous = [(sig, signal.signal(sig, _handle)) for sig in SIGNALS]
        _state.search = self
        return self

    def __exit__(self, *exc) -> None:
        _state.search = None
        for sig, previous in self._previous:
            signal.signal(sig, previous)
        if not _state.installed:
            _state.interrupted = False
