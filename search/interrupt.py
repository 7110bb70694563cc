"""Ctrl-C during a search: the first press finishes the running trial (or chunk) and stops
cleanly; the second abandons it at once (KeyboardInterrupt)."""

from __future__ import annotations

import signal
import threading
from typing import Any


class GracefulInterrupt:
    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None      # the handler to restore

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "GracefulInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
