"""Run the bad-input table (tests/fuzz_cases.py) as separate `explore` processes, each with a
time and a memory limit, and count what goes wrong: tracebacks, exit codes other than 2,
stderr that is not exactly one `error:` line, hangs and memory blow-ups (issue 18).

Run: python benchmarks/fuzz_cli.py [--every N] [--timeout S] [--jobs J] [--show K]
(--every 5 runs one case in five; the in-suite test runs all of them in-process.)
"""

from __future__ import annotations

import argparse
import collections
import resource
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fuzz_cases import cases  # noqa: E402

from explore.cli.app import MAX_LINE  # noqa: E402

MEMORY = 4 * 2**30


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def classify(argv: list[str], timeout: float, cwd: str) -> str:
    if any("\0" in a for a in argv):
        return "skipped: a NUL byte cannot be passed to a process (tested in-process)"
    try:
        p = subprocess.run([sys.executable, "-m", "explore.cli.app", *argv], capture_output=True,
                           text=True, errors="replace", timeout=timeout, preexec_fn=_limit,
                           cwd=cwd)
    except subprocess.TimeoutExpired:
        return "hang"
    if "MemoryError" in p.stderr or p.returncode < 0:
        return "memory"
    if "Traceback" in p.stderr:
        return "traceback"
    if p.returncode != 2:
        return f"exit {p.returncode}"
    lines = p.stderr.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return "not one error line"
    if len(lines[0]) > len("error: ") + MAX_LINE:
        return "error line too long"
    return "ok"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--show", type=int, default=3, help="examples printed per outcome")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = cases(Path(tmp))[:: args.every]
        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(lambda c: classify(c[1], args.timeout, tmp), table))
    counts = collections.Counter(outcomes)
    print(f"{len(table)} cases: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    for outcome in counts:
        if outcome != "ok" and not outcome.startswith("skipped"):
            for (label, _), o in [x for x in zip(table, outcomes) if x[1] == outcome][:args.show]:
                print(f"  {o}: {label}")


if __name__ == "__main__":
    main()
