"""docs/pipeline.md §9: every published or derived number, pinned. Tolerances are the
rounding of the spec's printed figures unless a comment says otherwise."""

from dataclasses import replace

import pytest

from explore import presets
from explore.models.pipeline import memory as mem
from explore.models.pipeline import schedules as S
from explore.models.pipeline import simulator as sim
from explore.models.pipeline.config import Hardware, Layout, Policy
from explore.models.pipeline.costs import Terms
from explore.models.pipeline.evaluate import simulate
from explore.models.units import MiB

LLAMA = presets.load("model", "llama2-70b")
# a GPT layer of the LLaMA2-70B width: h 8192, a 64, f = 4h, GELU, dropout
GPT_8192 = replace(presets.load("model", "megatron-22b"), hidden=8192, heads=64, kv_heads=64,
                   head_dim=128, intermediate=4 * 8192)


def fixture_hw() -> Hardware:
    return Hardware.from_presets(presets.load("gpu", "a100-80g"),
                                 presets.load("node", "dgx-a100"), 64,
                                 host_link_bandwidth=25e9, link_share=1, eff=0.5)


# ---- §3 and §8: parameters and model states ----------------------------------------------

@pytest.mark.parametrize("layers,billions", [(16, 14.21), (20, 17.64), (24, 21.06),
                                             (32, 27.91), (40, 34.75), (48, 41.60),
                                             (64, 55.29), (80, 68.98)])
def test_llama_shape_parameters(layers, billions):
    m = LLAMA.with_layers(layers)
    assert m.dense_layer_params == 855_654_400
    assert m.total_params == layers * 855_654_400 + 524_288_000 + 8192
    assert m.total_params / 1e9 == pytest.approx(billions, abs=0.005)   # printed to 0.01 B


def test_states_per_layer_and_end_stage():
    p_dev = LLAMA.dense_layer_params / (8 * 8)        # one model layer over PP8 x TP8
    assert mem.state_bytes().total * p_dev / MiB == pytest.approx(229.50, abs=0.005)
    assert mem.state_bytes(fp32_grads=False).total * p_dev / MiB == pytest.approx(204.00,
                                                                                  abs=0.005)
    emb = LLAMA.embedding_params / 8
    assert 18 * emb / MiB == pytest.approx(562.5)
    sb = mem.state_bytes()
    assert (sb.weights + sb.grads) * emb / MiB == pytest.approx(187.5)   # optimizer offloaded


@pytest.mark.parametrize("zero,dist,d,expect", [(0, False, 8, 18), (1, False, 8, 4 + 12 / 8),
                                                (2, False, 8, 2 + 14 / 8), (3, False, 8, 2),
                                                (0, True, 8, 6 + 12 / 8)])
def test_state_schemes(zero, dist, d, expect):
    assert mem.state_bytes(zero, dist, d).total == pytest.approx(expect)


@pytest.mark.parametrize("zero,dist,name", [(None, False, None), (0, False, "none"),
                                             (1, False, "zero1"), (3, False, "zero3"),
                                             (None, True, "dist-opt")])
def test_one_rule_names_the_optimizer_sharding(zero, dist, name):
    """--zero / --dist-opt -> the Policy's optimizer name, the rule state_bytes applies too."""
    assert mem.sharding(zero, dist) == name
    if name is not None:
        pol = Policy(optimizer=name)
        assert mem.state_bytes(pol.zero, pol.dist_opt, 8) == \
            mem.state_bytes(zero or 0, dist, 8)


@pytest.mark.parametrize("zero,dist,message", [(4, False, "--zero must be 0, 1, 2 or 3"),
                                                (1, True, "do not combine")])
def test_sharding_rejects_what_megatron_cannot_run(zero, dist, message):
    from explore.models.errors import InputError
    with pytest.raises(InputError, match=message):
        mem.sharding(zero, dist)
    with pytest.raises(InputError, match=message):
        mem.state_bytes(zero, dist)


def test_default_search_space_divides_heads_layers_and_gpus():
    from explore.models.pipeline.study import Workload, search_space

    work = Workload(LLAMA.with_layers(48), fixture_hw())
    space = search_space(work)
    assert space["tp"] == (1, 2, 4, 8) and space["pp"] == (1, 2, 4, 8, 16)
    assert space["vpp"] == (1, 2) and space["mbs"] == (1, 2, 4, 8)
    assert space["optimizer"] == ("none", "dist-opt")          # some layout leaves DP > 1
    assert search_space(work, schedule=("1f1b",))["vpp"] == (1,)
    assert search_space(work, tp=(8,), pp=(8,))["optimizer"] == ("none",)   # DP 1 only


def test_end_stages_hold_embedding_and_head():
    hw = fixture_hw()
    lay = Layout(8, 8, 1, 4096, 4, 256)
    one = Terms(LLAMA.with_layers(48), lay, hw, Policy("1f1b"))
    v = Terms(LLAMA.with_layers(48), lay, hw, Policy("zb-v"))
    emb, head = LLAMA.vocab * LLAMA.hidden / 8, (LLAMA.vocab * LLAMA.hidden + 8192) / 8
    layers = 6 * LLAMA.dense_layer_params / 8
    assert one.params[0] == pytest.approx(layers + emb)
    assert one.params[7] == pytest.approx(layers + head)
    assert v.params[0] == pytest.approx(layers + emb + head)     # V: both on device 0
    assert v.params[7] == pytest.approx(layers)


# ---- §4: activations ---------------------------------------------------------------------

def test_sbh():
    assert 4096 * 1 * 8192 == 33_554_432 == 32 * MiB


@pytest.mark.parametrize("variant,mib", [("sp+selective", 136), ("selective", 416),
                                         ("sp", 776), ("tp", 1056), ("full", 64),
                                         ("sp+full", 8)])
def test_gpt_reference_coefficients(variant, mib):
    """§9: GPT coefficients at t 8, a 64, s 4096, b 1, h 8192 ('TP+flash' = the selective
    formula, which flash matches)."""
    assert mem.korthikanti_bytes(4096, 1, 8192, 64, 8, variant) / MiB == pytest.approx(mib)


@pytest.mark.parametrize("sp,flash,recompute,variant", [
    (False, False, "none", "tp"), (True, False, "none", "sp"),
    (False, False, "selective", "selective"), (True, False, "selective", "sp+selective"),
    (False, False, "full", "full"), (True, False, "full", "sp+full")])
def test_explicit_gpt_accounting_reproduces_korthikanti_exactly(sp, flash, recompute, variant):
    for t in (1, 2, 8):
        got = mem.layer_activation_bytes(GPT_8192, 4096, 2, t, sp and t > 1 or sp, flash,
                                         recompute)
        assert got == pytest.approx(mem.korthikanti_bytes(4096, 2, 8192, 64, t, variant),
                                    rel=1e-12)
    no_tp = mem.layer_activation_bytes(GPT_8192, 2048, 1, 1, False, False)
    assert no_tp == pytest.approx(mem.korthikanti_bytes(2048, 1, 8192, 64, 1, "none"))


def test_flash_adds_softmax_statistics():
    flash = mem.layer_activation_bytes(GPT_8192, 4096, 1, 8, False, True)
    assert flash == 416 * MiB + 4 * (64 / 8) * 4096


def test_llama_explicit_accounting():
    assert mem.layer_activation_bytes(LLAMA, 4096, 1, 8, True, True) / MiB == 134.125
    assert mem.layer_activation_bytes(LLAMA, 4096, 1, 8, False, True) / MiB == 358.125
    assert mem.layer_activation_bytes(LLAMA, 4096, 4, 8, False, True) / MiB == 1432.5
    sbh = 4096 * 8192
    assert (mem.layer_activation_bytes(LLAMA, 4096, 1, 1, True, True) - 4 * 64 * 4096) / sbh \
        == pytest.approx(33.5)


def test_split_backward_holds_linear_inputs_and_output_grads():
    """GPT: 14sbh of linear inputs + 18sbh of output gradients = 32/34 of A."""
    sbh = 4096 * 8192
    assert mem.split_backward_bytes(GPT_8192, 4096, 1, 1, False) == 32 * sbh
    assert mem.omega(GPT_8192, 4096, 1, 1, False, True) == pytest.approx(
        32 / (34 + 4 * 64 / 8192))


# §4.3: Korthikanti Figure 7, activation memory relative to TP only (%), t 8, s 2048.
FIG7 = {"megatron-22b": (66.77, 49.42, 16.18, 7.64), "gpt3-175b": (62.04, 56.53, 18.49, 8.71),
        "turing-530b": (58.31, 62.04, 20.27, 9.42), "megatron-1t": (58.31, 62.04, 20.27, 9.42)}


@pytest.mark.parametrize("name", sorted(FIG7))
def test_korthikanti_figure7(name):
    """Within 0.2 points (the spec's stated tolerance; the largest gap is 0.14)."""
    m = presets.load("model", name)
    assert (m.gated_ffn, m.intermediate, m.dropout) == (False, 4 * m.hidden, True)
    tp = mem.layer_activation_bytes(m, 2048, 1, 8, False, False)
    cells = [mem.layer_activation_bytes(m, 2048, 1, 8, sp, False, rc)
             for sp, rc in ((True, "none"), (False, "selective"), (True, "selective"),
                            (False, "full"))]
    for got, want in zip(cells, FIG7[name]):
        assert 100 * got / tp == pytest.approx(want, abs=0.2)


def test_gpt_presets_match_figure7_shapes():
    shapes = {"megatron-22b": (6144, 64, 48), "gpt3-175b": (12288, 96, 96),
              "turing-530b": (20480, 128, 105), "megatron-1t": (25600, 160, 128)}
    for name, (h, a, layers) in shapes.items():
        m = presets.load("model", name)
        assert (m.hidden, m.heads, m.layers, m.head_dim * m.heads) == (h, a, layers, h)


# ---- §5.2: closed forms against the simulator ---------------------------------------------

def unit_run(ops, tf, tb, tw=0.0, omega=32 / 34):
    """Simulate op lists with uniform times and memory in units of one chunk."""
    prog = sim.compile_program(ops)
    dur = []
    for k in prog.kind:
        dur.append({S.F: tf, S.B: tb, S.W: tw}.get(k, 0.0))
    t = sim.run(prog, dur, [0.0] * ops.p)
    peaks = []
    for d in range(ops.p):
        level = best = 0.0
        for o in prog.dev_ops[d]:
            k = prog.kind[o]
            if k == S.F:
                level += 1
                best = max(best, level)
            elif k == S.B:
                level -= (1 - omega) if ops.split else 1
            elif k == S.W:
                level -= omega
        peaks.append(best)
    return t, peaks


def test_one_f_one_b_in_flight():
    assert S.one_f_one_b_in_flight(8, 64) == [8, 7, 6, 5, 4, 3, 2, 1]
    assert S.one_f_one_b_in_flight(8, 4) == [4, 4, 4, 4, 4, 3, 2, 1]
    for m in (4, 64):
        _, peaks = unit_run(S.build("1f1b", 8, m), 1, 2)
        assert peaks == S.one_f_one_b_in_flight(8, m)


@pytest.mark.parametrize("p,v,chunks,factor", [(8, 2, 23, 1.4375), (8, 3, 31, 1.2917),
                                               (4, 2, 11, 1.375)])
def test_interleaved_rank0(p, v, chunks, factor):
    assert S.interleaved_peak_chunks(p, v, 4 * p) == chunks
    assert S.interleaved_factor(p, v) == pytest.approx(factor, abs=5e-5)
    assert chunks / (p * v) == pytest.approx(factor, abs=5e-5)
    _, peaks = unit_run(S.build("interleaved", p, 4 * p, v), 0.5, 1.0)
    assert peaks[0] == chunks


@pytest.mark.parametrize("p,m,makespan,peaks", [(4, 8, 33, [4, 3, 2, 1]),
                                                (4, 2, 15, [2, 2, 2, 1])])
def test_simulator_one_f_one_b(p, m, makespan, peaks):
    t, got = unit_run(S.build("1f1b", p, m), 1, 2)
    assert t.makespan == makespan == S.one_f_one_b_makespan(p, m, 1, 2)
    assert got == peaks


@pytest.mark.parametrize("p,v,m,makespan,peaks", [
    (8, 2, 16, 58.5, [23, 21, 19, 17, 15, 13, 11, 9]), (4, 2, 8, 28.5, [11, 9, 7, 5])])
def test_simulator_interleaved(p, v, m, makespan, peaks):
    """Chunk times halved: T_F 0.5, T_B 1; makespan = ideal x (1 + (p-1)/(v m))."""
    t, got = unit_run(S.build("interleaved", p, m, v), 0.5, 1.0)
    assert t.makespan == makespan
    assert t.makespan == pytest.approx(m * v * 1.5 * (1 + S.bubble_of_ideal(p, m, v)))
    assert got == peaks
    assert got == [S.interleaved_peak_chunks(p, v, m, r) for r in range(p)]


@pytest.mark.parametrize("p,m", [(2, 1), (4, 4), (4, 9), (8, 64), (6, 13)])
def test_one_f_one_b_closed_form_matches_simulator(p, m):
    for tf, tb in ((1.0, 2.0), (0.3, 0.7)):
        t, peaks = unit_run(S.build("1f1b", p, m), tf, tb)
        assert t.makespan == pytest.approx(S.one_f_one_b_makespan(p, m, tf, tb), rel=1e-12)
        assert peaks == S.one_f_one_b_in_flight(p, m)
        busy = m * (tf + tb)
        assert 1 - busy / t.makespan == pytest.approx(S.bubble_wall(p, m))


def test_gpipe_stores_every_micro_batch():
    t, peaks = unit_run(S.build("gpipe", 4, 8), 1, 2)
    assert peaks == [8] * 4 and t.makespan == 33


def test_bubbles_p8():
    assert S.bubble_wall(8, 16) == pytest.approx(0.304, abs=5e-4)
    assert S.bubble_of_ideal(8, 16, 2) == pytest.approx(0.219, abs=5e-4)
    assert S.bubble_wall(8, 64) == pytest.approx(0.099, abs=5e-4)
    assert S.bubble_of_ideal(8, 64, 2) == pytest.approx(0.055, abs=5e-4)


def test_v_min_v_half_peaks():
    """p = 8: V-Min 4, V-Half 5 stage-sized micro-batches (1F1B 8): the caps in chunk units
    (two per micro-batch) are reached and never exceeded."""
    for name, mb in (("v-min", 4), ("v-half", 5), ("zb-v", 8)):
        ops = S.build(name, 8, 64)
        _, peaks = unit_run(ops, 0.5, 0.5, 0.5)
        assert ops.cap == 2 * mb
        assert max(peaks) <= ops.cap + 1e-9
        assert max(peaks) == pytest.approx(2 * mb, abs=0.5)   # within one omega remainder


def test_zero_bubble_memory_levels():
    """ZB-H1 keeps 1F1B's peak (p micro-batches), ZB-H2 2p - 1, counting W-pending ones."""
    for name, mb in (("zb-h1", 8), ("zb-h2", 15)):
        _, peaks = unit_run(S.build(name, 8, 64), 1, 1, 1, omega=1.0)
        assert max(peaks) == mb
    t1, _ = unit_run(S.build("zb-h1", 8, 64), 1, 1, 1)
    t0, _ = unit_run(S.build("1f1b", 8, 64), 1, 2)
    assert t1.makespan < t0.makespan       # W fills the cool-down


# ---- §5.3: Chronos-Pipe -----------------------------------------------------------------

CHRONOS_RATIOS = {4: (0.864, 0.921, 0.957), 8: (0.862, 0.919, 0.955),
                  16: (0.855, 0.918, 0.955)}


@pytest.mark.parametrize("p", sorted(CHRONOS_RATIOS))
def test_chronos_makespan_vs_one_f_one_b(p):
    """C = p + 2, T_F = T_B = T_W, zero P2P; ratio to unsplit 1F1B (m + p - 1)(T_F+T_B+T_W),
    within the spec's +/- 0.02."""
    for k, want in zip((2, 4, 8), CHRONOS_RATIOS[p]):
        m = k * p
        ops = S.build("chronos", p, m, cap=p + 2)
        t, peaks = unit_run(ops, 0.5, 0.5, 0.5)
        assert t.makespan / ((m + p - 1) * 3) == pytest.approx(want, abs=0.02)
        assert t.makespan < (m + p - 1) * 3
        assert max(peaks) <= p + 2 + 1e-9


def test_chronos_cap_extremes():
    ratio = {}
    for cap in (16, 4):
        t, _ = unit_run(S.build("chronos", 8, 64, cap=cap), 0.5, 0.5, 0.5)
        ratio[cap] = t.makespan / (71 * 3)
    assert 0.76 <= ratio[16] <= 0.93
    assert ratio[4] == pytest.approx(2.6, abs=0.05)


def test_chronos_needs_the_split():
    """Unsplit with T_B = 2 T_F, the V placement at C <= 2p is >= 1.2x slower than 1F1B."""
    ops = S.build("chronos", 8, 64, cap=16)
    unsplit = S.OpLists("v-unsplit", 8, 16, 64, False, 16, ops.dev_of,
                        tuple(tuple(op for op in dev if op[0] != S.W) for dev in ops.ops))
    t, _ = unit_run(unsplit, 0.5, 1.0)
    assert t.makespan / (71 * 3) >= 1.2


# ---- §6.1, §7: FLOPs and recompute cost --------------------------------------------------

def test_flops_per_token():
    m = LLAMA.with_layers(48)
    assert m.training_flops_per_token(4096) == pytest.approx(2.673e11, rel=5e-4)
    assert 6 * m.total_params == pytest.approx(2.496e11, rel=5e-4)
    h, s, L, V = 8192, 4096, 48, 32000
    formula = 12 * s * L * h * h * ((1 + 8 / 64 + s / h) + 3.5 * 1.5 + V / (2 * L * h)) / s
    assert m.training_flops_per_token(s) == pytest.approx(formula, rel=1e-12)


def test_gpt_flops_closed_form():
    m = GPT_8192.with_layers(40)
    h, s, L, V = 8192, 2048, 40, m.vocab
    assert m.training_flops_per_token(s) == pytest.approx(
        72 * L * h * h * (1 + s / (6 * h) + V / (12 * h * L)), rel=1e-12)


def test_selective_recompute_overhead():
    """4 b s^2 h extra per layer: s / (18 h (1 + s/(6h))) = 2.56% at s 4096, h 8192."""
    s = 4096
    layer = 3 * GPT_8192.layer_forward_flops_per_token(s)
    extra = s * GPT_8192.attention_flops_per_token_per_ctx
    assert extra / layer == pytest.approx(s / (18 * 8192 * (1 + s / (6 * 8192))), rel=1e-12)
    assert extra / layer == pytest.approx(0.0256, abs=5e-5)


def test_full_recompute_costs_a_third():
    """HFU / MFU = 4/3 when every layer is recomputed and T_B + T_W = 2 T_F (no head: LM-head
    FLOPs are not recomputed, so allow their share)."""
    hw = fixture_hw()
    t = Terms(LLAMA.with_layers(48), Layout(8, 8, 1, 4096, 4, 256), hw,
              Policy("1f1b", recompute="full", recompute_layers=6))
    from explore.models.pipeline.evaluate import uniform_plan
    out = simulate(t, t.op_lists(), uniform_plan(t, 6))
    head = 3 * 2 * LLAMA.vocab * LLAMA.hidden / LLAMA.with_layers(48).training_flops_per_token(
        4096)
    assert out.hfu / out.mfu == pytest.approx(1 + (1 - head) / 3, rel=1e-9)


# ---- §8: the fixture's rank-0 memory ---------------------------------------------------------

@pytest.mark.parametrize("layers", [40, 48])
def test_fixture_m0(layers):
    """M0(L) = 1662.0 L + 4043 MiB; the simulator adds the 1 MiB of token ids of §4.4.
    Tolerance 0.25 MiB: the spec prints the per-layer states rounded (229.50 for 229.503)."""
    from explore.models.pipeline.validate import Fixture, m0_mib
    hw = fixture_hw()
    fx = Fixture(LLAMA, hw, layers)
    assert m0_mib(fx, layers) == pytest.approx(1662.0 * layers + 4043, abs=0.25)
    t = Terms(LLAMA.with_layers(layers), Layout(8, 8, 1, 4096, 4, 256), hw, Policy("1f1b"))
    out = simulate(t, t.op_lists())
    total = (out.peaks[0] + hw.reserve_bytes) / MiB
    token_ids = 8 * 4096 * 4 * 8 / MiB
    assert total == pytest.approx(1662.0 * layers + 4043 + token_ids, abs=0.25)
    assert out.fits == (layers == 40)
    assert out.category_bytes(0)["activations"] / MiB == pytest.approx(1432.5 * layers)


def test_fixture_continuous_maximum():
    assert (80 * 1024 - 4043) / 1662.0 == pytest.approx(46.86, abs=0.005)
    assert 1662.0 * 48 + 4043 == 83_819 and 1662.0 * 46 + 4043 == 80_495


def test_interleaved_fixture_memory():
    hw = fixture_hw()
    t = Terms(LLAMA.with_layers(48), Layout(8, 8, 1, 4096, 4, 256, vpp=2), hw,
              Policy("interleaved"))
    out = simulate(t, t.op_lists())
    token_ids = 16 * 8 * 4096 * 4 / MiB       # 16 micro-batches of vs 0 in flight
    assert (out.peaks[0] + hw.reserve_bytes) / MiB - token_ids == pytest.approx(113_902, abs=1)
