"""Shared by the benchmark scripts: the median wall time of an `explore` command run as a
whole process (start-up included)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time


def process_seconds(args: list[str], repeats: int = 5, check: bool = True) -> float:
    """check=False for commands whose exit code reports a result (validate exits 1 on FAIL)."""
    exe = shutil.which("explore") or sys.exit("explore is not installed on PATH")
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([exe, *args], check=check, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)
