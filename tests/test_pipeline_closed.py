"""The closed forms of GPipe, 1F1B and interleaved 1F1B (docs/pipeline.md §5.4) give the
simulator's numbers:
iteration time, per-device ends and busy time, and every device's memory peak with the
category and op that hold it."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explore import presets
from explore.models.pipeline import closed
from explore.models.pipeline import schedules as S
from explore.models.pipeline import simulator as sim
from explore.models.errors import InfeasibleError
from explore.models.pipeline.config import Hardware, Layout, Policy
from explore.models.pipeline.costs import Terms
from explore.models.pipeline.evaluate import simulate, uniform_plan
from explore.models.pipeline.kernels import TimeModel

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(p=st.integers(1, 9), extra=st.integers(0, 20), schedule=st.sampled_from(S.SCHEDULES[:2]),
       data=st.data())
def test_makespans_equal_the_event_simulation(p, extra, schedule, data):
    """Any per-stage F and B durations and P2P lags, m >= p: every device's last B ends when
    the event loop says (the closed form is exact, not a bound)."""
    m = p + extra
    times = st.floats(0.01, 5.0)
    f = np.array(data.draw(st.lists(times, min_size=p, max_size=p)))
    b = np.array(data.draw(st.lists(times, min_size=p, max_size=p)))
    lag = np.array(data.draw(st.lists(st.floats(0.0, 2.0), min_size=p, max_size=p)))
    prog = sim.compile_program(S.build(schedule, p, m), with_r=False)
    dur = [(f if prog.kind[o] == S.F else b)[prog.vs[o]] for o in range(prog.n)]
    ends = sim.run(prog, dur, list(lag)).device_end
    fn = closed.makespan_gpipe if schedule == "gpipe" else closed.makespan_1f1b
    assert fn(f, b, lag[: p - 1], m) == pytest.approx(ends, rel=1e-12, abs=1e-12)


@SETTINGS
@given(p=st.integers(2, 6), v=st.integers(2, 3), groups=st.integers(2, 14), data=st.data(),
       compress=st.sampled_from([None, 0.0, 1e9]))
def test_interleaved_rounds_equal_the_event_simulation(p, v, groups, data, compress):
    """Interleaved 1F1B (m a multiple of p, m > p) in rounds, built from the op lists (up to
    STRETCH_GROUPS groups) or stretched from them (more), the periodic stretch taken as a
    matrix power or stepped through: the event loop's device ends."""
    m = p * groups
    ops = S.build("interleaved", p, m, v)
    built = closed._interleaved(p, v, m, False)
    assert built is not None
    rounds = built[0]
    times = st.floats(0.01, 5.0)
    f = np.array(data.draw(st.lists(times, min_size=p * v, max_size=p * v)))
    b = np.array(data.draw(st.lists(times, min_size=p * v, max_size=p * v)))
    lag = np.array(data.draw(st.lists(st.floats(0.0, 2.0), min_size=p, max_size=p)))
    prog = sim.compile_program(ops, with_r=False)
    dur = [(f if prog.kind[o] == S.F else b)[prog.vs[o]] for o in range(prog.n)]
    ends = sim.run(prog, dur, list(lag)).device_end
    cost = closed._mm_per_mv if compress is None else (lambda q: compress)
    with mock.patch.object(closed, "_mm_per_mv", cost):     # always / never compress
        got = closed.makespan_rounds(rounds, f, b, lag)
    assert got == pytest.approx(ends, rel=1e-12, abs=1e-12)


def test_uniform_1f1b_is_the_textbook_formula():
    """Equal stages, no lag: (m + p - 1)(T_F + T_B)."""
    p, m = 6, 20
    ends = closed.makespan_1f1b(np.full(p, 1.0), np.full(p, 2.0), np.zeros(p - 1), m)
    assert ends[0] == pytest.approx((m + p - 1) * 3.0)


LLAMA = presets.load("model", "llama2-70b")
A100, DGX = presets.load("gpu", "a100-80g"), presets.load("node", "dgx-a100")


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b", "interleaved"])
@pytest.mark.parametrize("time_model", ["kernels", "flat"])
@pytest.mark.parametrize("tp, pp, m, layers, rec", [
    (8, 8, 64, 48, "none"), (4, 4, 16, 24, "full"), (8, 2, 2, 8, "none"),
    (2, 1, 4, 4, "none"), (8, 4, 12, 24, 3)])
def test_outcomes_equal_the_simulated_ones(schedule, time_model, tp, pp, m, layers, rec):
    """A whole configuration (kernel or flat time, blocking P2P or lags, embedding and head
    on the end stages, k layers recomputed): every number a search keeps is the simulator's."""
    gpus = tp * pp
    hw = Hardware.from_presets(A100, DGX, gpus, time=TimeModel(time_model),
                               eff=0.5 if time_model == "flat" else None)
    lay = Layout(tp, pp, 1, 4096, 1, m, 2 if schedule == "interleaved" else 1)
    terms = Terms(LLAMA.with_layers(layers), lay, hw, Policy(schedule))
    try:
        ops = terms.op_lists()
    except InfeasibleError:              # interleaved needs m a multiple of p
        return
    covered = closed.applies(ops, {}, ())
    assert covered == (schedule != "interleaved" or (pp > 1 and m > pp))
    plan = None if rec == "none" else uniform_plan(terms, None if rec == "full" else rec)
    exact, fast = simulate(terms, ops, plan), simulate(terms, ops, plan, timelines=False)
    assert fast.timelines != covered and exact.timelines
    assert fast.iteration_s == pytest.approx(exact.iteration_s, rel=1e-12)
    assert fast.bubble == pytest.approx(exact.bubble, rel=1e-9, abs=1e-12)
    assert fast.peaks == pytest.approx(exact.peaks, rel=1e-12)
    assert fast.timing.device_end == pytest.approx(exact.timing.device_end, rel=1e-12)
    for d in range(pp):
        assert fast.category_bytes(d) == pytest.approx(exact.category_bytes(d), rel=1e-12)
        assert fast.peak_label(d) == exact.peak_label(d)
    assert fast.mfu == pytest.approx(exact.mfu, rel=1e-12)
    assert fast.recompute_fraction == exact.recompute_fraction


def test_the_closed_forms_stay_out_of_their_limits():
    """Split backward, offload copies, m < p for 1F1B, interleaved without a steady round
    (m = p) and recompute that differs between chunk-micro-batches all go to the simulator."""
    assert not closed.applies(S.build("interleaved", 4, 4, v=2), {}, ())   # m = p: no rounds
    assert closed.applies(S.build("interleaved", 4, 8, v=2), {}, ())
    assert not closed.applies(S.build("zb-h1", 4, 8), {}, ())
    assert not closed.applies(S.build("1f1b", 4, 3), {}, ())
    assert closed.applies(S.build("gpipe", 4, 3), {}, ())
    ops = S.build("1f1b", 2, 2)
    assert not closed.applies(ops, {(0, 0): 1, (1, 0): 1}, ())            # not every one
    assert not closed.applies(ops, {(0, 0): 1, (1, 0): 1, (0, 1): 2, (1, 1): 1}, ())
    assert closed.applies(ops, {(v, j): 2 for v in range(2) for j in range(2)}, ())


V2_LITE = presets.load("model", "deepseek-v2-lite")       # 1 dense + 26 MoE layers, MLA
H100, DGX_H100 = presets.load("gpu", "h100"), presets.load("node", "dgx-h100")


@pytest.mark.parametrize("schedule, layers, pp, first, last, mtp, rec", [
    ("1f1b", 27, 4, None, None, 0, "none"), ("1f1b", 27, 4, 6, None, 1, "full"),
    ("gpipe", 27, 4, 6, None, 1, 2), ("gpipe", 28, 2, None, 12, 0, "none"),
    ("interleaved", 24, 4, 4, 8, 1, 2), ("interleaved", 28, 4, 8, 4, 0, "full")])
def test_mixed_layers_and_uneven_stages_equal_the_simulated_ones(schedule, layers, pp, first,
                                                                  last, mtp, rec):
    """Chunks of different lengths and layer kinds (a dense first layer, MoE layers, the MTP
    module on the last stage), recompute of k layers per chunk: the closed forms' numbers are
    the simulator's."""
    from dataclasses import replace
    model = replace(V2_LITE.with_layers(layers), mtp_layers=mtp)
    vpp = 2 if schedule == "interleaved" else 1
    hw = Hardware.from_presets(H100, DGX_H100, 2 * pp)
    lay = Layout(2, pp, 1, 4096, 1, 4 * pp, vpp, True, ep=2, etp=1, first_layers=first,
                 last_layers=last)
    terms = Terms(model, lay, hw, Policy(schedule))
    assert not terms.uniform
    ops = terms.op_lists()
    plan = None if rec == "none" else uniform_plan(terms, None if rec == "full" else rec)
    exact, fast = simulate(terms, ops, plan), simulate(terms, ops, plan, timelines=False)
    assert not fast.timelines
    assert fast.iteration_s == pytest.approx(exact.iteration_s, rel=1e-12)
    assert fast.peaks == pytest.approx(exact.peaks, rel=1e-12)
    for d in range(pp):
        assert fast.category_bytes(d) == pytest.approx(exact.category_bytes(d), rel=1e-12)
        assert fast.peak_label(d) == exact.peak_label(d)
    assert fast.hfu == pytest.approx(exact.hfu, rel=1e-12)
