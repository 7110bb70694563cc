"""How well and how fast the search engines do on each study's default space.

For each study: the exhaustive optimum; for TPE and random sampling the median relative regret
after 50, 100 and 200 trials over 5 seeds; the per-trial overhead of the Optuna engine (wall
time per trial minus the model's own evaluation time); and trials/s with 1 vs 2 worker
processes on one SQLite study.

Run: python benchmarks/bench_search.py [study ...]   (target: TPE within 1 % by 200 trials)
Set EXPLORE_BENCH_POSTGRES_URL=postgresql://... to measure workers on PostgreSQL too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CHECKPOINTS = (50, 100, 200)
SEEDS = range(5)


# Each entry: (a function building a fresh study, its objective, the equivalent CLI args).
# Fresh per run: a study may cache outcomes (the pipeline study prunes against its best).

def sd_default():
    """`explore sd --model qwen2-57b` on its defaults."""
    from explore.cli.studies.sd import SdRequest, build
    return (lambda: build(SdRequest())[1]), "speedup", ["sd", "--model", "qwen2-57b"]


def pipeline_default():
    """`explore pipeline --model llama2-70b --layers 48 --gpus 64 --hardware a100-80g`."""
    from explore.cli.studies.pipeline import Hardware, PipelineRequest, Workload, build

    req = PipelineRequest(work=Workload(model="llama2-70b", layers=48),
                          hw=Hardware(hardware="a100-80g", gpus=64))

    def make():
        return build(req)[2]
    return make, "tokens_per_s", ["pipeline", "--model", "llama2-70b", "--layers", "48",
                                  "--gpus", "64", "--hardware", "a100-80g"]


def chiplet_default():
    """`explore chiplet --grid 8x8 --model llama2-70b` (the grid fixed, the rest searched)."""
    from explore.cli.studies.chiplet import ChipletRequest, ChipletSpace, build
    from explore.models.chiplet.study import ChipletStudy

    def make():
        setup, values, _ = build(ChipletRequest(space=ChipletSpace(grid="8x8")))
        return ChipletStudy(setup, values)
    return make, "latency_s", ["chiplet", "--grid", "8x8", "--model", "llama2-70b"]


STUDIES = {"sd": sd_default, "pipeline": pipeline_default, "chiplet": chiplet_default}


def regret_curve(make, objective: str, sampler: str, seed: int, optimum: float) -> list[float]:
    """Relative regret after each checkpoint of one Optuna run on a fresh study."""
    from explore.search.engine import SearchSettings, run

    res = run(make(), [objective], SearchSettings(engine="optuna", sampler=sampler,
                                                 n_trials=max(CHECKPOINTS), seed=seed))
    obj = res.objectives[0]
    values = obj.sign * res.score(obj)          # back to the objective's own sign
    best_so_far = np.maximum.accumulate(values) if obj.direction == "maximize" \
        else np.minimum.accumulate(values)
    return [abs(optimum - best_so_far[c - 1]) / abs(optimum) for c in CHECKPOINTS]


def overhead_per_trial(make, objective: str) -> tuple[float, float]:
    """(seconds per Optuna TPE trial, seconds of which are the model's evaluation)."""
    from explore.search.engine import SearchSettings, run

    n = 200
    t0 = time.perf_counter()
    res = run(make(), [objective], SearchSettings(engine="optuna", n_trials=n, seed=0))
    per_trial = (time.perf_counter() - t0) / n
    points = [res.point(i) for i in range(res.n)]
    study = make()
    t0 = time.perf_counter()
    for p in points:
        study.evaluate({k: np.asarray([v]) for k, v in p.items()})
    return per_trial, (time.perf_counter() - t0) / len(points)


def workers_throughput(args: list[str], workers: int, storage: str | None,
                       trials: int = 200) -> float:
    """Trials/s of `--workers K` on a storage (a fresh SQLite file when None)."""
    import uuid

    with tempfile.TemporaryDirectory() as d:
        url = storage or f"sqlite:///{d}/bench.db"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "explore.cli.app", *args, "--search", "optuna",
                        "--n-trials", str(trials), "--workers", str(workers), "--storage",
                        url, "--study-name", f"bench-{uuid.uuid4().hex[:8]}", "--json"],
                       check=True, stdout=subprocess.DEVNULL)
        return trials / (time.perf_counter() - t0)


def main(names: list[str]) -> None:
    from explore.search.engine import SearchSettings, run

    for name in names or list(STUDIES):
        make, objective, args = STUDIES[name]()
        study = make()
        ex = run(study, [objective], SearchSettings(engine="exhaustive"))
        best = ex.best
        optimum = float(ex.metrics[objective][best])
        print(f"== {name}: {study.space.size:,} points; exhaustive optimum {objective} = "
              f"{optimum:.6g} at {ex.point(best)} ({ex.elapsed_s * 1e3:.0f} ms)")
        for sampler in ("tpe", "random"):
            curves = np.array([regret_curve(make, objective, sampler, s, optimum)
                               for s in SEEDS])
            med = np.median(curves, axis=0)
            cells = "  ".join(f"{c} trials: {m:7.3%}" for c, m in zip(CHECKPOINTS, med))
            print(f"   {sampler:6s} median regret over {len(SEEDS)} seeds   {cells}")
        per_trial, model = overhead_per_trial(make, objective)
        print(f"   Optuna TPE: {per_trial * 1e3:.2f} ms per trial, of which the model "
              f"{model * 1e3:.3f} ms -> engine overhead {(per_trial - model) * 1e3:.2f} ms")
        storages = {"SQLite": None}
        if os.environ.get("EXPLORE_BENCH_POSTGRES_URL"):
            storages["PostgreSQL"] = os.environ["EXPLORE_BENCH_POSTGRES_URL"]
        for label, url in storages.items():
            one = workers_throughput(args, 1, url)
            two = workers_throughput(args, 2, url)
            print(f"   {label}, 200 TPE trials: 1 worker {one:.0f} trials/s, 2 workers "
                  f"{two:.0f} trials/s (x{two / one:.2f}, including process start-up)")


if __name__ == "__main__":
    main(sys.argv[1:])
