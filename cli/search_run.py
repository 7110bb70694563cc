"""Running a search from the command line, the same way for every study: a progress bar on
long searches, `--workers K` processes on one shared storage, and a clean Ctrl-C that keeps the
results and says how to resume."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace

ARGV: list[str] = []     # the command line of this process (set by cli.app.main)
INTERRUPTED = False      # a search was stopped by Ctrl-C: the process exits 130 after output
WORKER_ENV = "EXPLORE_WORKER"
PARENT_ENV = "EXPLORE_PARENT_PID"   # a worker exits when this process is gone
# options a worker gets from its parent instead of the user's command line
_PARENT_OWNS = {"--workers": 1, "--storage": 1, "--study-name": 1, "--n-trials": 1, "--seed": 1,
                "--json": 0, "--save-dir": 1, "--force": 0, "--total-trials": 1}


def command_line() -> str:
    """This command as typed, storage passwords masked (it is stored with the study)."""
    from explore.search.storage import mask
    return mask(shlex.join(["explore", *ARGV]))


def run_search(study, objectives, opts, space=None):
    """Search `study` for `objectives` with the user's search options; returns SearchResult.

    In a worker process (spawned by --workers) the search runs and the process exits without
    rendering anything."""
    from explore.search.engine import run

    settings = opts.settings(command=command_line())
    worker = os.environ.get(WORKER_ENV) == "1"
    if opts.workers > 1 and not worker:
        return _run_workers(study, objectives, opts, settings, space)
    if worker:
        _die_with_parent()
        settings = replace(settings, storage_reached=True)
    with _progress(settings) as progress:
        result = run(study, objectives, settings, space=space, progress=progress)
    if worker:
        import typer
        raise typer.Exit(130 if result.interrupted else 0)
    if result.interrupted:
        _interrupted_note(result, settings)
    elif result.exhausted:
        from .render import err_console
        err_console().print(f"[dim]note: the study holds every one of the {result.space_size:,} "
                            f"points; the search stopped there[/]")
    return result


def _die_with_parent() -> None:
    """A worker ends (SIGTERM: it finishes its trial) when its parent dies, even by kill -9:
    Linux's PR_SET_PDEATHSIG, and elsewhere a thread watching the parent's pid."""
    import signal
    import threading

    parent = int(os.environ.get(PARENT_ENV, "0") or 0)
    if not parent:
        return
    if sys.platform.startswith("linux"):
        import ctypes
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass                    # no prctl in this libc: the pid watch below still holds
    if os.getppid() != parent:      # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, daemon=True).start()


def _interrupted_note(result, settings) -> None:
    from explore.search.storage import mask

    from .render import err_console

    global INTERRUPTED
    INTERRUPTED = True
    if settings.storage:
        how = (f"resume with the same command (study {result.study_name!r} in "
               f"{mask(settings.storage)} keeps all {result.n} trials)")
    else:
        how = ("results were in memory only: add --storage sqlite:///explore.db --study-name "
               "NAME to be able to resume")
    err_console().print(f"[yellow]interrupted[/] after {result.n} evaluated points; showing "
                        f"the results so far; {how}", markup=True, highlight=False)


@contextmanager
def _progress(settings):
    """A Rich progress bar on stderr when it is a terminal (trials, trials/s, best so far,
    time left when the budget is known); otherwise no output."""
    from .render import err_console

    console = err_console()
    if not console.is_terminal:
        yield None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    bar = Progress(TextColumn("[bold]searching"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[best]}"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
    start = time.perf_counter()
    with bar:
        task = bar.add_task("search", total=None, rate="", best="")

        def update(done: int, total, best) -> None:
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.update(task, completed=done, total=total, rate=f"{done / elapsed:,.0f}/s",
                       best="" if best is None else f"best {best:.4g}")
        yield update


def _worker_argv(base_seed: int | None, index: int, storage: str, name: str,
                 target: int | None) -> list[str]:
    """The user's command line minus what the parent decides, plus this worker's part: its own
    seed and the study's trial count to reach (shared, so a worker that dies is made up by the
    others)."""
    out, skip = [], 0
    for arg in ARGV:
        if skip:
            skip -= 1
            continue
        flag = arg.split("=", 1)[0]
        if flag in _PARENT_OWNS:
            skip = _PARENT_OWNS[flag] if "=" not in arg else 0
            continue
        out.append(arg)
    out += ["--storage", storage, "--study-name", name]
    if base_seed is not None:
        out += ["--seed", str(base_seed + index)]
    if target is not None:
        out += ["--total-trials", str(target)]
    return out


def _run_workers(study, objectives, opts, settings, space):
    """Start `opts.workers` processes running this same command on one storage, show their
    combined progress, then collect every trial. Signals to this process reach every worker
    (they run in their own session, so a terminal's Ctrl-C reaches them once, from here)."""
    import shutil

    from explore.search.engine import exhaustive_limit, run

    from .render import err_console

    space = space or study.space
    if settings.engine == "exhaustive" or (settings.engine == "auto"
                                           and space.size <= exhaustive_limit(study, settings)):
        err_console().print("[dim]note: --workers applies to Optuna searches; this space is "
                            "swept exhaustively in one process (use --search optuna)[/]")
        return run(study, objectives, settings, space=space)
    tmp = None
    if settings.storage is None:
        tmp = tempfile.mkdtemp(prefix="explore-workers-")
        settings = replace(settings, storage=f"sqlite:///{tmp}/study.db")
        err_console().print("[dim]note: workers share a temporary SQLite study (removed at the "
                            "end); pass --storage to keep it[/]")
    try:
        return _supervise(study, objectives, opts, settings, space)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _supervise(study, objectives, opts, settings, space):
    import signal

    from explore.models.errors import InputError
    from explore.search.interrupt import GracefulInterrupt, forward
    from explore.search.optuna_engine import DEFAULT_TRIALS, _counted, collect, open_study
    from explore.search.storage import mask

    from .render import err_console

    by_name = {o.name: o for o in study.objectives}
    objs = tuple(by_name[o] for o in objectives)
    ostudy = open_study(study, space, objs, settings)   # created once, before the workers
    before = len(_counted(ostudy))
    total = settings.n_trials
    if total is None and settings.timeout_s is None and settings.total_trials is None:
        total = DEFAULT_TRIALS
    targets = [t for t in (settings.total_trials, before + total if total else None) if t]
    target = min(targets) if targets else None
    env = dict(os.environ, **{WORKER_ENV: "1", PARENT_ENV: str(os.getpid())})
    logs = [tempfile.TemporaryFile("w+") for _ in range(opts.workers)]
    procs: list[subprocess.Popen] = []

    def pass_on(signum: int) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)
    start = time.perf_counter()
    with GracefulInterrupt() as stop, forward(pass_on), _progress(settings) as progress:
        procs += [subprocess.Popen([sys.executable, "-m", "explore.cli.app",
                                    *_worker_argv(settings.seed, i, settings.storage,
                                                  ostudy.study_name, target)],
                                   env=env, stdout=subprocess.DEVNULL, stderr=log,
                                   text=True, start_new_session=True)
                  for i, log in enumerate(logs)]
        if stop.requested:            # a signal came while they started
            pass_on(signal.SIGINT)
        while any(p.poll() is None for p in procs):
            time.sleep(0.25)
            if progress:
                progress(len(ostudy.get_trials(deepcopy=False)) - before, total, None)
        interrupted = stop.requested
    failed, killed = [], []
    for p, log in zip(procs, logs):
        log.seek(0)
        lines = [line for line in log.read().splitlines() if line.strip()]
        log.close()
        errors = [line for line in lines if line.startswith("error: ")] or lines
        if p.returncode < 0:       # killed by a signal: its trial is retried, its share made up
            killed.append(-p.returncode)
        elif p.returncode not in (0, 130):
            failed.append((p.returncode, mask(errors[-1]) if errors else "no message"))
    if killed and not interrupted:
        err_console().print(f"[yellow]note:[/] {len(killed)} of {len(procs)} workers were "
                            f"killed (signal {', '.join(map(str, killed))}); the others ran "
                            f"their trials")
    if failed and not interrupted:
        code, err = failed[0]
        err = err[len("error: "):] if err.startswith("error: ") else err
        raise InputError(f"{len(failed)} of {len(procs)} workers failed (exit {code}): {err}")
    result = collect(study.name, ostudy, space, objs)
    result.elapsed_s = time.perf_counter() - start
    result.engine = f"optuna:{settings.sampler} x {opts.workers} workers"
    result.interrupted = interrupted
    if interrupted:
        _interrupted_note(result, settings)
    return result
