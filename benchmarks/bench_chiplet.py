"""Speed of the chiplet study: configurations evaluated per second by the vectorised model
(collective schedules cached, then cold), and the wall time of the default search
`explore chiplet --grid 8x8 --model llama2-70b` in-process and as a whole process.

Run: python benchmarks/bench_chiplet.py   (target: >= 10^4 configurations/s with the
schedules cached; the default search answers within a few seconds)."""

from __future__ import annotations

import statistics
import time

from timing import process_seconds


def study_for(grid: str | None):
    from explore import presets
    from explore.models.chiplet import study as S
    from explore.models.chiplet.validate import scenario_workload

    setup = S.ChipletSetup(scenario_workload(presets.load("model", "llama2-70b")),
                           presets.load("die", "die-7nm"),
                           {n: presets.load("package", n) for n in S.PACKAGES},
                           {n: presets.load("dram", n) for n in S.DRAMS})
    return S.ChipletStudy(setup, S.default_values(setup, grid))


def evals_per_second(grid: str | None, limit: int = 200_000, repeats: int = 3):
    """(cold s, cached configurations/s, points): the first pass builds and routes every
    schedule; later passes find them in the cache."""
    from explore.models.chiplet import methods

    study = study_for(grid)
    n = min(limit, study.space.size)
    cols = study.space.columns(0, n)
    methods.plan.cache_clear()
    t0 = time.perf_counter()
    study.evaluate(cols)
    cold = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        study.evaluate(cols)
        best = min(best, time.perf_counter() - t0)
    return cold, n / best, n


def default_search_seconds(repeats: int = 3) -> tuple[float, int]:
    from explore.models.chiplet import methods
    from explore.search.engine import SearchSettings, run

    walls = []
    for _ in range(repeats):
        methods.plan.cache_clear()
        study = study_for("8x8")
        t0 = time.perf_counter()
        res = run(study, ["latency_s"], SearchSettings())
        res.ranked()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), study.space.size


def main() -> None:
    for grid, label in (("8x8", "grid fixed 8x8"), (None, "grids 4x4..16x16")):
        cold, rate, n = evals_per_second(grid)
        print(f"chiplet model, {label}: {rate:,.0f} configurations/s with schedules cached "
              f"({n:,} points, best of 3); first pass incl. routing every schedule "
              f"{cold:.2f} s   target >= 10,000/s")
    wall, size = default_search_seconds()
    print(f"default search (exhaustive, {size:,} points, grid 8x8), in-process: median "
          f"{wall:.2f} s")
    print(f"explore chiplet --grid 8x8 --model llama2-70b (process): median "
          f"{process_seconds(['chiplet', '--grid', '8x8', '--model', 'llama2-70b']):.2f} s")
    print(f"explore chiplet validate (process): median "
          f"{process_seconds(['chiplet', 'validate']):.2f} s")


if __name__ == "__main__":
    main()
