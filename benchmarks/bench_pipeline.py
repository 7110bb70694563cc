"""Speed of the pipeline study: simulated configurations per second at p = 8, m = 64 (one
core), and the wall time of the default `explore pipeline` search and of `explore pipeline
validate` as whole processes.

Run: python benchmarks/bench_pipeline.py   (targets: >= 1,000 configurations/s for the
closed-form schedules 1F1B / interleaved, default search < 10 s)."""

from __future__ import annotations

import time

import numpy as np
from timing import process_seconds

SEARCH = ["pipeline", "--model", "llama2-70b", "--layers", "48", "--gpus", "64",
          "--hardware", "a100-80g"]


def fixture():
    """The §8 fixture (LLaMA2-70B-shaped layers, PP8 x TP8 x DP1, s 4096, b 4, m 64 on 64 x
    A100 80GB), built as `explore pipeline validate` builds it."""
    from explore.cli.studies.pipeline import fixture as build
    return build({})


def configs_per_second(schedule: str, vpp: int = 1, cap: int | None = None,
                       n: int = 400) -> float:
    """Full evaluation of n configurations (terms, op lists, simulation, memory timeline of
    every device, iteration time), each with another efficiency so nothing is cached but the
    op lists, as a search sees them."""
    from explore.models.pipeline.config import Policy
    from explore.models.pipeline.costs import Terms
    from explore.models.pipeline.evaluate import simulate

    fx = fixture()
    model = fx.model.with_layers(fx.layers)
    lay = fx.work.layout(fx.tp, fx.pp, fx.mbs, vpp, dp=fx.dp)      # p 8, m 64
    t0 = time.perf_counter()
    for i in range(n):
        hw = fx.hw.with_(eff=0.3 + 0.4 * i / n)
        t = Terms(model, lay, hw, Policy(schedule, cap=cap))
        out = simulate(t, t.op_lists())
        out.peaks, out.iteration_s  # noqa: B018
    return n / (time.perf_counter() - t0)


def batched_timing(n: int = 2000) -> float:
    """The same event loop over numpy arrays: n 1F1B configurations of one structure timed at
    once (timing only)."""
    from explore.models.pipeline import schedules as S
    from explore.models.pipeline import simulator as sim

    prog = sim.compile_program(S.build("1f1b", 8, 64), with_r=False)
    rng = np.random.default_rng(0)
    tf = rng.uniform(0.5, 1.5, n)
    dur = [tf if k == S.F else 2 * tf for k in prog.kind]
    lags = [rng.uniform(0, 0.05, n)] * 8
    t0 = time.perf_counter()
    sim.run(prog, dur, lags, np.maximum)
    return n / (time.perf_counter() - t0)


def planner_seconds() -> float:
    """The Chronos planner (caps 2p..2, Chronos-Offload, Chronos-Recomp) on the §8 fixture at
    L = 96."""
    from explore.models.pipeline.chronos import solve
    from explore.models.pipeline.config import Policy

    fx = fixture()
    t = fx.work.terms(fx.work.layout(fx.tp, fx.pp, fx.mbs, dp=fx.dp),
                      Policy("chronos", recompute="chronos", offload="chronos"), 96)
    t0 = time.perf_counter()
    solve(t)
    return time.perf_counter() - t0


def main() -> None:
    print("simulated configurations per second, p = 8, m = 64, LLaMA2-70B shape L = 48, one "
          "core (full evaluation: op lists, event simulation, memory timelines, iteration):")
    for label, sched, vpp, cap, target in (("1F1B", "1f1b", 1, None, "target >= 1,000"),
                                           ("interleaved v = 2", "interleaved", 2, None,
                                            "target >= 1,000"),
                                           ("GPipe", "gpipe", 1, None, ""),
                                           ("ZB-H1", "zb-h1", 1, None, ""),
                                           ("Chronos-Pipe C = 10", "chronos", 1, 10, "")):
        rate = configs_per_second(sched, vpp, cap)
        print(f"  {label:<22} {rate:8,.0f} configs/s   {target}")
    print(f"  {'1F1B timing, batched':<22} {batched_timing():8,.0f} configs/s   (numpy over "
          f"2,000 configurations of one structure)")
    print(f"Chronos planner, §8 fixture at L = 96: {planner_seconds():.2f} s")
    print(f"explore {' '.join(SEARCH)}: median {process_seconds(SEARCH, 3):.2f} s over 3 runs   "
          f"target < 10 s")
    validate = process_seconds(["pipeline", "validate"], 3, check=False)
    print(f"explore pipeline validate: median {validate:.2f} s over 3 runs")


if __name__ == "__main__":
    main()
