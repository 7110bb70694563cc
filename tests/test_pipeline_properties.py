"""Physical invariants of the pipeline study, as property tests (hypothesis)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explore import presets
from explore.models.pipeline import schedules as S
from explore.models.pipeline import simulator as sim
from explore.models.pipeline.config import Hardware, Layout, Policy
from explore.models.pipeline.costs import Terms
from explore.models.pipeline.evaluate import Plan, simulate

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
LLAMA = presets.load("model", "llama2-70b")
HW = Hardware.from_presets(presets.load("gpu", "a100-80g"), presets.load("node", "dgx-a100"),
                           64, link_share=1)


def terms(p, m, schedule="1f1b", layers=None, vpp=1, mbs=1, hw=HW, **policy):
    chunks = S.chunks_per_device(S.canonical(schedule), vpp)
    layers = layers or 2 * p * chunks
    tp = 64 // p if 64 // p <= 8 else 8
    dp = 64 // (tp * p)
    return Terms(LLAMA.with_layers(layers), Layout(tp, p, dp, 1024, mbs, m * mbs * dp, vpp),
                 hw, Policy(schedule, **policy))


def live_units(ops, omega):
    """Peak live chunk units per device from list order (F +1, B -(1-omega), W -omega)."""
    out = []
    for d in range(ops.p):
        level = best = 0.0
        for k, _, _ in ops.ops[d]:
            if k == S.F:
                level += 1
                best = max(best, level)
            elif k == S.B:
                level -= (1 - omega) if ops.split else 1
            else:
                level -= omega
        out.append(best)
    return out


# ---- the greedy generator (§5.3) --------------------------------------------------------------

@SETTINGS
@given(p=st.integers(1, 5), m=st.integers(1, 12), data=st.data(),
       tb=st.sampled_from([0.5, 1.0, 2.0]), tw=st.sampled_from([0.5, 1.0, 2.0]),
       omega=st.sampled_from([0.0, 0.5, 32 / 34, 1.0]))
def test_chronos_generator_is_deadlock_free_and_respects_the_cap(p, m, data, tb, tw, omega):
    cap = data.draw(st.integers(2, 2 * p + 2))
    ops = S.build("chronos", p, m, cap=cap, times=(1.0, tb, tw), omega=omega)
    seen = sorted(op for dev in ops.ops for op in dev)
    assert seen == sorted((k, vs, j) for k in (S.F, S.B, S.W) for vs in range(2 * p)
                          for j in range(m))
    assert max(live_units(ops, omega)) <= cap + 1e-9
    _check_timing(ops, tb, tw)


@SETTINGS
@given(name=st.sampled_from(["zb-h1", "zb-h2", "zb-v", "v-half", "v-min", "interleaved",
                             "1f1b", "gpipe"]), p=st.integers(1, 6), k=st.integers(1, 4),
       lag=st.sampled_from([0.0, 0.3]))
def test_every_schedule_runs_in_dependency_order(name, p, k, lag):
    m = k * p
    ops = S.build(name, p, m, 2 if name == "interleaved" else 1)
    _check_timing(ops, 1.0, 1.0, lag)


def _check_timing(ops, tb, tw, lag=0.0):
    """Simulated starts respect every dependency (+ P2P lag) and device order."""
    prog = sim.compile_program(ops)
    dur = [{S.F: 1.0, S.B: tb if ops.split else tb + tw, S.W: tw}.get(k, 0.0)
           for k in prog.kind]
    t = sim.run(prog, dur, [lag] * ops.p)
    for o in range(prog.n):
        for q, b in prog.deps[o]:
            assert t.start[o] >= t.end[q] + (lag if b >= 0 else 0.0) - 1e-9
    for ops_d in prog.dev_ops:
        for a, b in zip(ops_d, ops_d[1:]):
            assert t.start[b] >= t.end[a] - 1e-9


# ---- memory ---------------------------------------------------------------------------------

@SETTINGS
@given(p=st.sampled_from([2, 4, 8]), m=st.integers(1, 24), extra=st.integers(1, 16),
       name=st.sampled_from(["1f1b", "gpipe", "interleaved"]))
def test_more_micro_batches_in_flight_never_lower_a_stage_peak(p, m, extra, name):
    if name == "interleaved":
        m, extra = p * max(1, m // p), p * max(1, extra // p)
    small, big = terms(p, m, name, vpp=2 if name == "interleaved" else 1), \
        terms(p, m + extra, name, vpp=2 if name == "interleaved" else 1)
    a, b = simulate(small, small.op_lists()), simulate(big, big.op_lists())
    for d in range(p):
        assert b.peaks[d] >= a.peaks[d] - 1e-6


@SETTINGS
@given(p=st.sampled_from([2, 4, 8]), m=st.integers(1, 16))
def test_gpipe_never_below_one_f_one_b(p, m):
    """GPipe keeps all m micro-batches in flight, 1F1B min(m, p - r)."""
    g, o = terms(p, m, "gpipe"), terms(p, m, "1f1b")
    a, b = simulate(g, g.op_lists()), simulate(o, o.op_lists())
    for d in range(p):
        assert a.peaks[d] >= b.peaks[d] - 1e-6


# ---- recompute and offload --------------------------------------------------------------------

@SETTINGS
@given(name=st.sampled_from(["1f1b", "interleaved", "zb-h1", "chronos"]),
       p=st.sampled_from([2, 4]), k=st.integers(1, 3), shared=st.booleans(), data=st.data())
def test_recompute_never_raises_peak_nor_lowers_iteration_time(name, p, k, shared, data):
    m = k * p
    t = terms(p, m, name, layers=4 * p * (2 if name in ("interleaved", "chronos") else 1),
              vpp=2 if name == "interleaved" else 1, cap=p + 2 if name == "chronos" else None)
    ops = t.op_lists()
    lc = t.layers_per_chunk
    marks = {}
    for vs in range(t.nvs):
        for j in range(m):
            x = data.draw(st.integers(0, lc))
            if x:
                marks[(vs, j)] = x
    base = simulate(t, ops)
    rec = simulate(t, ops, Plan(marks, shared))
    for d in range(p):
        assert rec.peaks[d] <= base.peaks[d] * (1 + 1e-12)
    assert rec.iteration_s >= base.iteration_s * (1 - 1e-12)
    assert rec.hfu * rec.iteration_s >= base.hfu * base.iteration_s * (1 - 1e-12)


@SETTINGS
@given(p=st.sampled_from([2, 4]), k=st.integers(1, 3), data=st.data(),
       slow=st.sampled_from([0.5, 0.25, 0.1]))
def test_offload_never_shortens_iteration_and_a_slower_link_never_helps(p, k, data, slow):
    m = 2 * k * p
    t = terms(p, m, "chronos", layers=4 * p, cap=p + 2)
    ops = t.op_lists()
    base = simulate(t, ops)
    transfers = []
    prog = base.prog
    for d in range(p):
        for vs in ops.vs_of(d):
            for j in range(m):
                if not data.draw(st.booleans()):
                    continue
                f, r = prog.index[(S.F, vs, j)], prog.index[(S.B, vs, j)]
                dev = prog.dev_ops[d]
                lo, hi = dev.index(f), dev.index(r)
                trig = dev[data.draw(st.integers(lo, hi - 1))]
                tkey = (prog.kind[trig], prog.vs[trig], prog.mb[trig])
                transfers.append(sim.Transfer(
                    "activations", d, 1e9, (S.F, vs, j), tkey, (S.B, vs, j),
                    (float(base.end[f]), float(base.end[trig])), vs, j))
    plan = Plan(transfers=tuple(transfers))
    fast = simulate(t, ops, plan)
    assert fast.iteration_s >= base.iteration_s * (1 - 1e-12)
    t_slow = terms(p, m, "chronos", layers=4 * p, cap=p + 2,
                   hw=HW.with_(host_link_bandwidth=HW.host_link_bandwidth * slow))
    slower = simulate(t_slow, ops, plan)
    assert slower.iteration_s >= fast.iteration_s * (1 - 1e-12)
    assert slower.stall_s >= fast.stall_s - 1e-9


def test_planner_fits_or_says_why():
    """The Chronos planner returns a fitting plan when one exists, and every device's peak
    stays under the cap when it says so."""
    from explore.models.pipeline.chronos import solve
    t = Terms(LLAMA.with_layers(64), Layout(8, 8, 1, 4096, 4, 256), HW,
              Policy("chronos", recompute="chronos", offload="chronos"))
    out = solve(t).outcome
    assert out.fits
    assert max(out.peaks) <= HW.usable_bytes
    assert out.host_bytes_per_node <= HW.host_ram_bytes


@pytest.mark.parametrize("offload", ["optimizer", "chronos"])
def test_offload_lowers_the_peak_it_targets(offload):
    from explore.models.pipeline.chronos import solve
    hw = HW.with_(hbm_bytes=60 * 2**30)
    plain = Terms(LLAMA.with_layers(40), Layout(8, 8, 1, 4096, 4, 256), hw, Policy("1f1b"))
    saved = Terms(LLAMA.with_layers(40), Layout(8, 8, 1, 4096, 4, 256), hw,
                  Policy("1f1b", offload=offload))
    a, b = solve(plain).outcome, solve(saved).outcome
    assert not a.fits
    assert b.peak < a.peak
    assert b.iteration_s >= a.iteration_s * (1 - 1e-12)
