"""Speed of the chiplet study: configurations evaluated per second by the vectorised model
(collective schedules cached, then cold), the wall time of the default search
`explore chiplet --grid 8x8 --model llama2-70b` in-process and as a whole process, and whole
searches on 8x8 to 128x128 dies with their peak memory.

Run: python benchmarks/bench_chiplet.py   (target: >= 10^4 configurations/s with the
schedules cached; the default search answers within a few seconds; a 64x64 search under
10 s and 1 GB)."""

from __future__ import annotations

import statistics
import subprocess
import sys
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


# the child reports its own high-water mark (VmHWM starts afresh at exec)
PEAK = ("import sys; from explore.cli.app import main; code = main(sys.argv[1:]); "
        "print(next(int(x.split()[1]) for x in open('/proc/self/status') "
        "if x.startswith('VmHWM')), file=sys.stderr); sys.exit(code)")


def grid_search(grid: str, model: str = "llama2-70b") -> tuple[float, float]:
    """(wall seconds, peak resident MB) of `explore chiplet --grid G` in a process of its own."""
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", PEAK, "chiplet", "--grid", grid, "--model",
                          model, "--json"], check=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - t0, int(run.stderr.split()[-1]) / 1024


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
    # the MoE model adds its all-to-alls (closed form) and a second layer kind's plans
    for model in ("llama2-70b", "qwen3-30b-a3b"):
        print(f"explore chiplet --grid G --model {model} (whole search, process; target "
              f"64x64 <= 10 s and <= 1 GB):")
        for grid in ("8x8", "16x16", "32x32", "64x64", "128x128"):
            wall, mb = grid_search(grid, model)
            print(f"  {grid:>8}: {wall:6.2f} s, {mb:6.0f} MB peak")


if __name__ == "__main__":
    main()
