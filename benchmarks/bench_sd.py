"""Speed of the SD study: model evaluations per second on a large (B, gamma) grid, and the
median wall time of `explore sd --model qwen2-57b` and `explore --help` as whole processes.

Run: python benchmarks/bench_sd.py   (targets on a 2-core machine: >= 1e6 evals/s, <= 1.0 s,
<= 0.3 s)."""

from __future__ import annotations

import time

import numpy as np
from timing import process_seconds


def evals_per_second(repeats: int = 5) -> tuple[float, int]:
    from explore import presets
    from explore.cli.studies.sd import DEFAULT_ENGINE
    from explore.models import sd

    gpu = presets.load("gpu", "h800")
    times = sd.PhysicalTimes(sd.Deployment(presets.load("model", "qwen2-57b-a14b"), gpu, 2),
                             sd.Deployment(presets.load("model", "qwen2-0.5b"), gpu, 1), 512,
                             engine=presets.load("engine", DEFAULT_ENGINE))
    batch = np.arange(1, 4097, dtype=float)[:, None]
    gamma = np.arange(1, 65, dtype=float)[None, :]
    n = batch.size * gamma.size
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = sd.evaluate(times, 0.9, batch, gamma)
        r.speedup, r.target_efficiency  # noqa: B018 (force the derived arrays)
        best = min(best, time.perf_counter() - t0)
    return n / best, n


def main() -> None:
    rate, n = evals_per_second()
    print(f"vectorised SD model (default engine profile): {rate:,.0f} (B, gamma) evaluations/s "
          f"(grid of {n:,} points, best of 5)   target >= 1,000,000")
    median = process_seconds(["sd", "--model", "qwen2-57b"])
    print(f"explore sd --model qwen2-57b: median {median:.3f} s over 5 runs   target <= 1.0 s")
    print(f"explore --help:               median {process_seconds(['--help']):.3f} s "
          f"over 5 runs   target <= 0.3 s")


if __name__ == "__main__":
    main()
