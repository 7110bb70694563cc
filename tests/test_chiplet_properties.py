"""Physical invariants of the chiplet model (docs/chiplet.md), as property tests."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explore import presets
from explore.models.chiplet import mesh as nop
from explore.models.chiplet import methods as M
from explore.models.chiplet.study import ChipletSetup, evaluate_points
from explore.models.chiplet.validate import scenario_workload

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SETUP = ChipletSetup(scenario_workload(presets.load("model", "llama2-7b")),
                     presets.load("die", "die-7nm"),
                     {n: presets.load("package", n) for n in ("standard", "advanced")},
                     {n: presets.load("dram", n) for n in ("ddr5", "hbm2e")})
SIDES = st.sampled_from((4, 5, 6, 8))
POINT = st.fixed_dictionaries({
    "grid": st.builds(lambda a, b: f"{a}x{b}", SIDES, SIDES),
    "method": st.sampled_from(("1d", "1d-bi", "hecaton2d", "2d", "2.5d-q2", "3d")),
    "schedule": st.sampled_from(("layer-major", "micro-batch-major")),
    "package": st.sampled_from(("standard", "advanced")),
    "modules": st.integers(1, 4),
    "dram": st.sampled_from(("ddr5", "hbm2e")),
    "io_sides": st.sampled_from((2, 4)),
    "micro_batch": st.sampled_from((1, 2, 4, 8, 16, 32, 64, 128)),
    "recompute": st.booleans(),
    "overlap": st.sampled_from(("max", "none")),
})


def run(points: list[dict], setup=SETUP) -> dict:
    cols = {k: np.asarray([p[k] for p in points]) for k in points[0]}
    return evaluate_points(setup, cols)


@FAST
@given(POINT, st.lists(st.sampled_from((16, 32, 48, 64, 96, 128, 192, 256)), min_size=2,
                       max_size=2, unique=True))
def test_more_sram_never_raises_dram_traffic(point, srams):
    lo, hi = sorted(srams)
    r = run([{**point, "sram_mb": lo}, {**point, "sram_mb": hi}])
    if np.isnan(r["dram_bytes"]).any():        # layout infeasible: nothing to compare
        return
    assert r["dram_bytes"][1] <= r["dram_bytes"][0] * (1 + 1e-12)


@FAST
@given(POINT, st.sampled_from((16, 48, 128, 256)))
def test_a_faster_link_never_raises_latency(point, sram):
    """More modules per port (bandwidth) or the advanced package's faster, lower-latency link."""
    p = {**point, "sram_mb": sram}
    slow = {**p, "modules": 1}
    fast = {**p, "modules": 4}
    r = run([slow, fast])
    if np.isnan(r["latency_s"]).any():
        return
    assert r["latency_s"][1] <= r["latency_s"][0] * (1 + 1e-12)
    pk = SETUP.packages["standard"]
    quick = replace(SETUP, packages={"standard": pk,
                                     "advanced": replace(pk, router_latency=1e-9, rate=32e9)})
    r = run([{**p, "package": "standard"}, {**p, "package": "advanced"}], quick)
    assert r["latency_s"][1] <= r["latency_s"][0] * (1 + 1e-12)


@FAST
@given(POINT, st.sampled_from((16, 64, 128, 256)))
def test_energy_terms_are_non_negative_and_sum_to_the_total(point, sram):
    r = run([{**point, "sram_mb": sram}])
    if np.isnan(r["energy_j"][0]):
        return
    terms = [r[k][0] for k in ("e_mac_j", "e_sram_j", "e_nop_j", "e_dram_j", "e_static_j")]
    assert all(t >= 0 for t in terms)
    assert sum(terms) == pytest.approx(r["energy_j"][0], rel=1e-12)
    assert r["latency_s"][0] > 0 and r["area_mm2"][0] > 0


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 16), st.integers(2, 16),
       st.sampled_from(("llama2-7b", "llama2-13b", "llama2-70b", "llama3.1-405b")))
def test_hecaton2d_is_feasible_on_every_grid(n1, n2, model):
    mesh = nop.Mesh(n1, n2)
    shape = presets.load("model", model)
    assert M.layout_reason(M.Method("hecaton2d"), mesh) == ""
    plan = M.plan(M.Method("hecaton2d"), mesh, shape, 4096, whole_sequences=False)
    assert plan.reason == "" and plan.comms
    for c in plan.comms:                                   # one-hop transfers only
        assert c.cost.elem_hops == pytest.approx(c.cost.elems, rel=1e-12)


@FAST
@given(POINT)
def test_overlap_max_is_never_slower_than_none(point):
    p = {**point, "sram_mb": 128}
    r = run([{**p, "overlap": "none"}, {**p, "overlap": "max"}])
    if np.isnan(r["latency_s"]).any():
        return
    assert r["latency_s"][1] <= r["latency_s"][0] * (1 + 1e-12)


def test_vectorised_evaluation_equals_one_at_a_time():
    pts = [{"grid": g, "sram_mb": s, "method": m, "schedule": "layer-major",
            "package": "standard", "modules": 1, "dram": "ddr5", "io_sides": 2,
            "micro_batch": 8, "recompute": True, "overlap": "max"}
           for g in ("4x4", "8x8") for s in (64, 128) for m in ("1d", "hecaton2d")]
    together = run(pts)
    for i, p in enumerate(pts):
        alone = run([p])
        assert alone["latency_s"][0] == together["latency_s"][i]
        assert alone["energy_j"][0] == together["energy_j"][i]
