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
# options a worker gets from its parent instead of the user's command line
_PARENT_OWNS = {"--workers": 1, "--storage": 1, "--study-name": 1, "--n-trials": 1, "--seed": 1,
                "--json": 0, "--save-dir": 1}


def command_line() -> str:
    return shlex.join(["explore", *ARGV])


def run_search(study, objectives, opts, space=None):
    """Search `study` for `objectives` with the user's search options; returns SearchResult.

    In a worker process (spawned by --workers) the search runs and the process exits without
    rendering anything."""
    from explore.search.engine import run

    settings = opts.settings(command=command_line())
    if opts.workers > 1 and os.environ.get(WORKER_ENV) != "1":
        return _run_workers(study, objectives, opts, settings, space)
    with _progress(settings) as progress:
        result = run(study, objectives, settings, space=space, progress=progress)
    if os.environ.get(WORKER_ENV) == "1":
        import typer
        raise typer.Exit(0)
    if result.interrupted:
        _interrupted_note(result, settings)
    return result


def _interrupted_note(result, settings) -> None:
    from .render import err_console

    global INTERRUPTED
    INTERRUPTED = True
    if settings.storage:
        how = (f"resume with the same command (study {result.study_name!r} in "
               f"{settings.storage} keeps all {result.n} trials)")
    else:
        how = ("results were in memory only: add --storage sqlite:///explore.db --study-name "
               "NAME to be able to resume")
    err_console().print(f"[yellow]interrupted[/] after {result.n} evaluated points; showing "
                        f"the results so far; {how}")


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
                 budget: int | None) -> list[str]:
    """The user's command line minus what the parent decides, plus this worker's share."""
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
    if budget is not None:
        out += ["--n-trials", str(budget)]
    return out


def split_budget(total: int, workers: int) -> list[int]:
    """n trials over k workers, as evenly as possible (the shares sum to n)."""
    return [total // workers + (i < total % workers) for i in range(workers)]


def _run_workers(study, objectives, opts, settings, space):
    """Start `opts.workers` processes running this same command on one storage, show their
    combined progress, then collect every trial."""
    from explore.models.errors import InputError
    from explore.search.engine import exhaustive_limit, run
    from explore.search.optuna_engine import DEFAULT_TRIALS, collect, open_study

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
        err_console().print(f"[dim]note: workers share a temporary SQLite study "
                            f"({settings.storage}); pass --storage to keep it[/]")
    by_name = {o.name: o for o in study.objectives}
    objs = tuple(by_name[o] for o in objectives)
    ostudy = open_study(study, space, objs, settings)   # created once, before the workers
    total = settings.n_trials
    if total is None and settings.timeout_s is None and settings.total_trials is None:
        total = DEFAULT_TRIALS
    budgets = split_budget(total, opts.workers) if total else [None] * opts.workers
    env = dict(os.environ, **{WORKER_ENV: "1"})
    procs = [subprocess.Popen([sys.executable, "-m", "explore.cli.app",
                               *_worker_argv(settings.seed, i, settings.storage,
                                             ostudy.study_name, b)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
             for i, b in enumerate(budgets)]
    start, interrupted = time.perf_counter(), False
    before = len(ostudy.get_trials(deepcopy=False))
    with _progress(settings) as progress:
        try:
            while any(p.poll() is None for p in procs):
                time.sleep(0.25)
                if progress:
                    progress(len(ostudy.get_trials(deepcopy=False)) - before, total, None)
        except KeyboardInterrupt:   # the workers got the same SIGINT and stop cleanly
            interrupted = True
            for p in procs:
                p.wait()
    failed = [(p.returncode, p.stderr.read().strip()) for p in procs if p.returncode != 0]
    if failed and not interrupted:
        code, err = failed[0]
        raise InputError(f"{len(failed)} of {len(procs)} workers failed (exit {code}): "
                         f"{err.splitlines()[-1] if err else 'no message'}")
    result = collect(study.name, ostudy, space, objs)
    result.elapsed_s = time.perf_counter() - start
    result.engine = f"optuna:{settings.sampler} x {opts.workers} workers"
    result.interrupted = interrupted
    if interrupted:
        _interrupted_note(result, settings)
    return result
