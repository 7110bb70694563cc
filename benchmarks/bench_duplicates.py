"""Duplicate work in the README's distributed recipe: K independent `explore sd` processes
(same command, default seed) on one stored study; counts trials whose point an earlier trial of
the study already held, per 100 trials.

Run: python benchmarks/bench_duplicates.py URL [--processes 6] [--n-trials 40]
     (URL: a PostgreSQL storage, e.g. $EXPLORE_TEST_POSTGRES_URL; issue 19 asks for at most
     5 duplicates per 100 trials)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import uuid

# the default sd space of qwen2-57b: 300 (batch, gamma) points
COMMAND = ["sd", "--model", "qwen2-57b", "--search", "optuna"]


def duplicates(url: str, name: str) -> tuple[int, int, int]:
    """(trials, trials repeating an earlier trial's point, distinct points) of a study."""
    import optuna

    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    seen: set = set()
    repeats = 0
    for t in sorted(trials, key=lambda t: t.number):
        key = tuple(sorted(t.params.items()))
        repeats += key in seen
        seen.add(key)
    return len(trials), repeats, len(seen)


def run(url: str, processes: int, n_trials: int) -> tuple[int, int, int]:
    name = f"dup-{uuid.uuid4().hex[:8]}"
    procs = [subprocess.Popen([sys.executable, "-m", "explore.cli.app", *COMMAND,
                               "--n-trials", str(n_trials), "--storage", url,
                               "--study-name", name, "--json"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        if p.returncode != 0:
            sys.exit(f"a process failed (exit {p.returncode}): {err.strip()[-300:]}")
    return duplicates(url, name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--processes", type=int, default=6)
    ap.add_argument("--n-trials", type=int, default=40)
    args = ap.parse_args()
    n, repeats, distinct = run(args.url, args.processes, args.n_trials)
    print(f"{args.processes} processes x --n-trials {args.n_trials} on the sd space (300 "
          f"points): {n} trials, {distinct} distinct points, {repeats} duplicates = "
          f"{100 * repeats / max(n, 1):.1f} per 100 trials")


if __name__ == "__main__":
    main()
