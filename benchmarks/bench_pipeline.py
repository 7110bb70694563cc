"""Speed and memory of the pipeline study: configurations per second at p = 8, m = 64 (one
core) with the kernel time model, as a search costs them (closed forms where they apply) and
with timelines, how that cost grows with m, the wall time of the default `explore pipeline`
search and of `explore pipeline validate` as whole processes, and the peak memory of a GPT-3
175B search on 64 GPUs as the global batch (so the micro-batch count) grows.

Run: python benchmarks/bench_pipeline.py   (targets: >= 5,000 configurations/s for 1F1B /
interleaved, a search's peak memory flat and under 500 MB)."""

from __future__ import annotations

import subprocess
import sys
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


def configs_per_second(schedule: str, vpp: int = 1, cap: int | None = None, n: int = 400,
                       timelines: bool = False, fresh_kernels: bool = True) -> float:
    """Full evaluation of n configurations (terms, op lists, iteration time and every
    device's memory peak) as a search does it: closed forms where they apply (GPipe, 1F1B),
    else the simulator; with timelines, the event simulation `breakdown` and `timeline` use.
    fresh_kernels: every configuration another GEMM efficiency, so no kernel time is reused;
    else one hardware, as a search sees the points of one layout (kernel times cached)."""
    from explore.models.pipeline.config import Policy
    from explore.models.pipeline.costs import Terms
    from explore.models.pipeline.evaluate import simulate

    from explore.models.pipeline.kernels import TimeModel

    fx = fixture()
    model = fx.model.with_layers(fx.layers)
    lay = fx.work.layout(fx.tp, fx.pp, fx.mbs, vpp, dp=fx.dp)      # p 8, m 64
    shared = fx.hw.with_(time=TimeModel(gemm_scale=0.9))              # the kernel model
    Terms(model, lay, shared, Policy(schedule, cap=cap)).op_lists()     # op lists built once
    t0 = time.perf_counter()
    for i in range(n):
        hw = fx.hw.with_(time=TimeModel(gemm_scale=0.7 + 0.6 * i / n)) if fresh_kernels \
            else shared
        t = Terms(model, lay, hw, Policy(schedule, cap=cap))
        out = simulate(t, t.op_lists(), timelines=timelines)
        out.peaks, out.iteration_s  # noqa: B018
    return n / (time.perf_counter() - t0)


def m_scaling(schedule: str = "1f1b") -> list[tuple[int, float, float]]:
    """(m, ms per configuration in closed form, ms simulated) at p = 8 as the global batch
    grows: the closed form does not grow with m."""
    from dataclasses import replace

    from explore.models.pipeline.config import Policy
    from explore.models.pipeline.costs import Terms
    from explore.models.pipeline.evaluate import simulate

    fx = fixture()
    model = fx.model.with_layers(fx.layers)
    out = []
    for gb in (256, 2048, 6144):
        lay = replace(fx.work, global_batch=gb).layout(fx.tp, fx.pp, fx.mbs, dp=fx.dp)
        row = []
        simulate(Terms(model, lay, fx.hw, Policy(schedule)),
                 Terms(model, lay, fx.hw, Policy(schedule)).op_lists(), timelines=False)
        for timelines, n in ((False, 100), (True, 10)):
            t0 = time.perf_counter()
            for _ in range(n):
                t = Terms(model, lay, fx.hw, Policy(schedule))
                simulate(t, t.op_lists(), timelines=timelines).iteration_s  # noqa: B018
            row.append((time.perf_counter() - t0) / n * 1e3)
        out.append((lay.m, row[0], row[1]))
    return out


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


MEMORY_SEARCH = ["pipeline", "--model", "gpt3-175b", "--gpus", "64", "--hardware", "a100-80g",
                 "--schedule", "1f1b,interleaved", "--recompute", "none,full-fit",
                 "--offload", "none", "--json"]


# the child reports its own high-water mark: VmHWM starts afresh at exec, while ru_maxrss
# would carry the forked parent's
PEAK = ("import sys; from explore.cli.app import main; code = main(sys.argv[1:]); "
        "print(next(int(x.split()[1]) for x in open('/proc/self/status') "
        "if x.startswith('VmHWM')), file=sys.stderr); sys.exit(code)")


def search_peak_mb(global_batch: int, args: list[str] = MEMORY_SEARCH) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one search in a process of its own."""
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", PEAK, *args, "--global-batch",
                          str(global_batch)], check=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - t0, int(run.stderr.split()[-1]) / 1024


# the MoE searches (docs/pipeline.md §11): DeepSeek-V3 (MLA, dense first layers, MTP, uneven
# end stages, DualPipeV in the space) and Mixtral 8x22B
MOE_SEARCHES = (["pipeline", "--model", "deepseek-v3", "--hardware", "h100", "--json"],
                ["pipeline", "--model", "mixtral-8x22b", "--hardware", "h100", "--json"])


def main() -> None:
    print("configurations per second, p = 8, m = 64, LLaMA2-70B shape L = 48, one core, kernel "
          "time model (full evaluation: terms, iteration time, memory peaks); search = closed "
          "forms for GPipe, 1F1B and interleaved, else simulated (target >= 5,000 for the "
          "closed forms):")
    print(f"  {'schedule':<22} {'search, fresh kernels':>22} {'kernels cached':>15} "
          f"{'with timelines':>15}")
    for label, sched, vpp, cap in (("1F1B", "1f1b", 1, None), ("GPipe", "gpipe", 1, None),
                                   ("interleaved v = 2", "interleaved", 2, None),
                                   ("ZB-H1", "zb-h1", 1, None),
                                   ("Chronos-Pipe C = 10", "chronos", 1, 10)):
        rates = (configs_per_second(sched, vpp, cap),
                 configs_per_second(sched, vpp, cap, fresh_kernels=False),
                 configs_per_second(sched, vpp, cap, n=100, timelines=True))
        print(f"  {label:<22} {rates[0]:22,.0f} {rates[1]:15,.0f} {rates[2]:15,.0f}")
    print("1F1B at p = 8 as m grows (ms per configuration, kernels cached):")
    for m, closed_ms, sim_ms in m_scaling():
        print(f"  m {m:5d}: closed form {closed_ms:6.2f} ms, simulated {sim_ms:7.2f} ms")
    print(f"  {'1F1B timing, batched':<22} {batched_timing():8,.0f} configs/s   (numpy over "
          f"2,000 configurations of one structure)")
    print(f"Chronos planner, §8 fixture at L = 96: {planner_seconds():.2f} s")
    print(f"explore {' '.join(SEARCH)}: median {process_seconds(SEARCH, 3):.2f} s over 3 runs   "
          f"target < 10 s")
    validate = process_seconds(["pipeline", "validate"], 3, check=False)
    print(f"explore pipeline validate: median {validate:.2f} s over 3 runs")
    print(f"explore {' '.join(MEMORY_SEARCH)} --global-batch N (peak memory, target flat and "
          f"under 500 MB):")
    for gb in (8, 512, 1536):
        wall, mb = search_peak_mb(gb)
        print(f"  global batch {gb:5d}: {mb:6.0f} MB peak, {wall:6.1f} s")
    for search in MOE_SEARCHES:
        print(f"explore {' '.join(search)} --gpus N (MoE layers with EP searched):")
        for gpus, gb in ((256, 1024), (2048, 4096)):
            wall, mb = search_peak_mb(gb, search + ["--gpus", str(gpus)])
            print(f"  {gpus:5d} GPUs, global batch {gb}: {mb:6.0f} MB peak, {wall:6.1f} s")


if __name__ == "__main__":
    main()
