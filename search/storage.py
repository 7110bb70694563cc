"""Optuna's RDB storage made fit for many workers and an unreliable database.

- Passwords in storage URLs are masked (`mask`) wherever a URL can reach the user or the study.
- A storage error is either transient (the server restarts, a connection drops, a lock times
  out) or permanent (bad URL, authentication, permission, missing database or driver).
  Transient ones are retried with exponential backoff for up to RETRY_BUDGET_S per storage
  call; permanent ones become one InputError at once, naming their real cause (Optuna wraps
  every SQLAlchemy error in a StorageInternalError whose text blames "invalid data").
- Every RDB backend (SQLite too) gets a heartbeat every HEARTBEAT_S seconds; a RUNNING trial
  whose heartbeat is older than GRACE_S is failed by the next worker and retried (Optuna's
  RetryHeartbeatStaleTrialCallback, formerly RetryFailedTrialCallback), so a killed worker
  leaves no trial behind.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from typing import Any, Callable

from explore.models.errors import ExploreError, InputError

RETRY_BUDGET_S = 60.0   # how long one storage call may keep failing transiently
HEARTBEAT_S = 2         # Optuna wants whole seconds
GRACE_S = 10            # a trial without a heartbeat this long belongs to a dead worker
ORPHAN_S = 60.0         # a running trial with no point after this long lost its worker
MAX_RETRY = 3           # retries of a trial whose worker died (a point that kills workers)

_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):[^@\s]*@")


def mask(text: Any) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _PASSWORD.sub(r"\1:***@", str(text))


class StorageError(ExploreError):
    """The storage stayed unreachable for the whole retry budget."""


# Substrings of driver messages (lower case). Permanent wins over transient.
_PERMANENT = ("authentication failed", "no password supplied", "permission denied",
              "does not exist", "could not translate host name", "name or service not known",
              "invalid dsn", "invalid connection option", "unable to open database file",
              "readonly database", "read-only", "no such table", "could not parse",
              "invalid integer value")
_TRANSIENT = ("connection refused", "server closed the connection", "terminating connection",
              "the database system is starting up", "the database system is shutting down",
              "the database system is in recovery", "connection reset", "broken pipe",
              "connection timed out", "timeout expired", "could not receive data",
              "could not send data", "consuming input failed", "the connection is closed",
              "connection is lost", "connection already closed", "no connection to the server",
              "server conn crashed", "ssl syscall", "ssl connection has been closed",
              "database is locked", "deadlock detected", "could not serialize access",
              "cannot connect now", "connection failed", "eof detected",
              "can't reconnect until invalid transaction is rolled back",
              "administrator command")
# exception classes that mean "the connection went away", whatever their text
_TRANSIENT_TYPES = ("PendingRollbackError", "DisconnectionError", "AdminShutdown",
                    "ConnectionTimeout", "InterfaceError")
# the losers of a race to create the tables on a fresh database see these
_TABLE_RACE = ("already exists", "duplicate key", "unique constraint", "uniqueviolation")


def cause(e: BaseException) -> BaseException:
    """The innermost exception: the driver's, under SQLAlchemy's and Optuna's wrappers."""
    seen = set()
    while id(e) not in seen:
        seen.add(id(e))
        inner = getattr(e, "orig", None) or e.__cause__
        if not isinstance(inner, BaseException):
            break
        e = inner
    return e


def message(e: BaseException) -> str:
    """The real cause of a storage error in one line, passwords masked."""
    root = cause(e)
    text = next((line.strip() for line in str(root).splitlines() if line.strip()), "")
    return mask(text or type(root).__name__)


def _from_storage(e: BaseException) -> bool:
    return any(type(x).__module__.split(".")[0] in ("sqlalchemy", "optuna", "psycopg",
                                                    "psycopg2", "sqlite3")
               for x in (e, cause(e)))


def _chain(e: BaseException) -> list[BaseException]:
    """e and every exception it was raised from or during."""
    out: list[BaseException] = []
    todo: list = [e]
    while todo:
        x = todo.pop()
        if isinstance(x, BaseException) and all(x is not y for y in out):
            out.append(x)
            todo += [getattr(x, "orig", None), x.__cause__, x.__context__]
    return out


def transient(e: BaseException) -> bool:
    """Worth retrying: the database may answer in a moment."""
    if not _from_storage(e):
        return False
    chain = _chain(e)
    text = " ".join(str(x) for x in chain).lower()
    if any(p in text for p in _PERMANENT):
        return False
    return any(t in text for t in _TRANSIENT) or any(
        type(x).__name__ in _TRANSIENT_TYPES or getattr(x, "connection_invalidated", False)
        for x in chain)


_nesting = threading.local()


def retrying(fn: Callable, budget_s: float = RETRY_BUDGET_S,
             retry: Callable[[BaseException], bool] = transient) -> Callable:
    """`fn` retried while it fails transiently: backoff 0.05 s doubling to 2 s, `budget_s` in
    all, then StorageError with the cause."""
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if getattr(_nesting, "depth", 0):     # inside a retried call: the outer one retries
            return fn(*args, **kwargs)
        deadline, delay = None, 0.05
        while True:
            try:
                _nesting.depth = 1
                try:
                    return fn(*args, **kwargs)
                finally:
                    _nesting.depth = 0
            except Exception as e:
                if not retry(e):
                    raise
                now = time.monotonic()
                deadline = deadline or now + budget_s
                if now >= deadline:
                    raise StorageError(f"the storage did not answer for {budget_s:.0f} s: "
                                       f"{message(e)}") from None
                time.sleep(min(delay, deadline - now))
                delay = min(2 * delay, 2.0)
    return call


# Storage methods that touch no database (all others are retried).
_LOCAL = {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback",
          "get_failed_trial_callback", "remove_session", "_fill_storage_url_template",
          "_set_default_engine_kwargs_for_mysql", "_finish_trial_with_exception"}


@functools.cache
def _retrying_storage_class() -> type:
    import optuna

    class RetryingRDBStorage(optuna.storages.RDBStorage):
        """RDBStorage whose every call survives a database restart or a short outage."""

    for name, fn in vars(optuna.storages.RDBStorage).items():
        if callable(fn) and not name.startswith("__") and name not in _LOCAL \
                and not name.endswith("_without_commit") and not name.startswith("_build"):
            setattr(RetryingRDBStorage, name, retrying(fn))
    return RetryingRDBStorage


def storage_error(url: str | None, e: BaseException) -> InputError:
    """One line for a storage that cannot be used, by its real cause."""
    msg = message(e)
    if "DB access module" in msg or isinstance(cause(e), ModuleNotFoundError):
        if str(url).startswith("postgres"):
            msg = "PostgreSQL storage needs the psycopg driver: pip install 'explore[postgres]'"
    return InputError(f"cannot open storage {mask(url)!r}: {msg}")


def open_storage(url: str, reached: bool = False):
    """Optuna's RDB storage for `url`, retrying transient errors and with a heartbeat.

    On a first contact (`reached` False) a refused connection is a wrong host or port and is
    reported at once; a worker whose parent has just used the storage (`reached`) retries it
    as an outage. Workers starting together on a fresh database race to create its tables:
    the losers find them created on the next attempt."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sqlite = url.startswith("sqlite")
    # SQLite: a long lock timeout so several processes can share one file; others: check a
    # pooled connection before use, as the server may have restarted since
    kwargs: dict = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}

    def startup(e: BaseException) -> bool:
        text = " ".join(str(x) for x in (e, cause(e))).lower()
        if not _from_storage(e) or any(p in text for p in _PERMANENT):
            return False
        if any(r in text for r in _TABLE_RACE):
            return True
        return transient(e) and (reached or "connection refused" not in text)

    def connect():
        return _retrying_storage_class()(
            url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY, inherit_intermediate_values=True))
    try:
        return retrying(connect, retry=startup)()
    except (ImportError, StorageError) as e:
        raise storage_error(url, e) from None
    except Exception as e:
        if _from_storage(e) or isinstance(e, ValueError):
            raise storage_error(url, e) from None
        raise
