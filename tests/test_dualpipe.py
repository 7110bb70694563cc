"""DualPipeV and DualPipe (docs/pipeline.md §5.5): the per-rank order of deepseek-ai/DualPipe,
its published bubble and in-flight micro-batches, and overlapped pairs in the simulator."""

import numpy as np
import pytest

from explore import presets
from explore.models.errors import InfeasibleError
from explore.models.pipeline import schedules as S
from explore.models.pipeline import simulator as sim
from explore.models.pipeline.config import Hardware, Layout, Policy
from explore.models.pipeline.costs import Terms
from explore.models.pipeline.chronos import solve


def _text(ops: S.OpLists, d: int) -> str:
    """Device d's order as the DualPipe notes write it: chunk 0 = vs d, 1 = vs 2p-1-d; BW an
    unsplit backward (its W inside), [F+BW] an overlapped pair."""
    p = ops.p
    pairs = {f: b for f, b in ops.pairs}
    out, skip = [], set()
    lst = ops.ops[d]
    for i, (k, v, j) in enumerate(lst):
        if i in skip:
            continue
        c = 0 if v < p else 1
        if k == S.F and (v, j) in pairs:
            vb, jb = pairs[(v, j)]
            out.append(f"[F{c}.{j}+BW{0 if vb < p else 1}.{jb}]")
            skip |= {i + 1, i + 2}                   # the pair's B and its W
        elif k == S.B and (v, j) in ops.unsplit:
            out.append(f"BW{c}.{j}")
            skip.add(i + 1)
        else:
            out.append(f"{S.KINDS[k]}{c}.{j}")
    return " ".join(out)


def test_dualpipev_order_is_the_reference_order():
    """p = 4, m = 8, as deepseek-ai/DualPipe (dualpipev.py at 3da1bbe) runs it (its step loop
    traced with the communication stubbed out)."""
    ops = S.build("dualpipev", 4, 8)
    assert _text(ops, 0) == (
        "F0.0 F0.1 F0.2 F0.3 F0.4 F0.5 F0.6 F1.0 B1.0 W1.0 F1.1 B1.1 W1.1 F1.2 B1.2 W1.2 F1.3 "
        "[F0.7+BW1.3] [F1.4+BW0.0] BW1.4 [F1.5+BW0.1] BW1.5 [F1.6+BW0.2] BW1.6 [F1.7+BW0.3] "
        "BW1.7 B0.4 W0.4 B0.5 W0.5 B0.6 W0.6 B0.7 W0.7")
    assert _text(ops, 3) == (
        "F0.0 F1.0 F0.1 F1.1 F0.2 F1.2 F0.3 F1.3 F0.4 BW1.0 [F1.4+BW0.0] [F0.5+BW1.1] "
        "[F1.5+BW0.1] [F0.6+BW1.2] [F1.6+BW0.2] [F0.7+BW1.3] [F1.7+BW0.3] BW1.4 BW0.4 BW1.5 "
        "BW0.5 B1.6 B0.6 B1.7 B0.7 W1.6 W0.6 W1.7 W0.7")


@pytest.mark.parametrize("p, m", [(2, 4), (2, 7), (4, 8), (4, 13), (8, 16)])
def test_every_chunk_runs_once_and_the_order_does_not_deadlock(p, m):
    ops = S.build("dualpipev", p, m)
    seen = sorted(op for lst in ops.ops for op in lst)
    assert seen == sorted((k, v, j) for k in (S.F, S.B, S.W) for v in range(2 * p)
                          for j in range(m))
    for d, lst in enumerate(ops.ops):
        assert all(ops.dev_of[v] == d for _, v, _ in lst)
    sim.compile_program(ops)                     # raises on a dependency cycle


@pytest.mark.parametrize("p", [2, 3, 4, 6])
@pytest.mark.parametrize("extra", [0, 1, 5])
def test_published_bubble_and_activations(p, extra):
    """Unit chunk times (F = B = W = 1, no overlap gain, no P2P): every device idles
    (PP/2 - 1)(F&B + B - 3W) = (p - 1)(3 + 2 - 3) whatever m; each device holds at most
    PP + 1 = 2p + 1 chunk-micro-batches' activations (an overlapped pair's forward counted
    while its backward runs)."""
    m = 2 * p + extra
    ops = S.build("dualpipev", p, m)
    prog = sim.compile_program(ops, with_r=False)
    timing = sim.run(prog, [1.0] * prog.n, [0.0] * p)
    bubble = [timing.makespan - b for b in timing.busy]
    assert bubble == pytest.approx([S.dualpipe_bubble(p, 1, 1, 1)] * p)
    for lst in ops.ops:
        live = peak = 0
        for k, _, _ in lst:
            live += {S.F: 1, S.B: -1}.get(k, 0)
            peak = max(peak, live)
        assert peak == 2 * p + 1


def test_too_few_micro_batches_is_named():
    with pytest.raises(InfeasibleError, match="dualpipev needs at least 2p = 8 micro-batches"):
        S.build("dualpipev", 4, 7)


def test_overlapped_pairs_hide_the_all_to_alls():
    """An MoE model: DualPipeV's pairs hide each half's all-to-alls under the other's
    compute, so it beats ZB-V's order with the same V placement and split backward."""
    mixtral = presets.load("model", "mixtral-8x7b")
    hw = Hardware.from_presets(presets.load("gpu", "h100"), presets.load("node", "dgx-h100"),
                               32)
    lay = Layout(2, 4, 4, 4096, 1, 64, 1, True, ep=8, etp=1)
    dual = Terms(mixtral, lay, hw, Policy("dualpipev"))
    out = solve(dual).outcome
    ops, prog = out.ops, out.program
    tf, tb, _ = (np.asarray(x) for x in dual.chunk_times)
    a2a = dual.chunk_all_to_all
    (vf, jf), (vb, jb) = ops.pairs[0]
    b = prog.index[(S.B, vb, jb)]
    assert out.dur[b] == pytest.approx(tb[vb] - (a2a[vf] + a2a[vb]))
    assert out.start[prog.index[(S.F, vf, jf)]] >= out.end[prog.index[(S.B, vb + 1, jb)]] \
        if vb + 1 < ops.nvs else True
    zbv = solve(Terms(mixtral, lay, hw, Policy("zb-v"))).outcome
    assert out.iteration_s < zbv.iteration_s


# ---- DualPipe proper: two model copies, micro-batches entering from both ends ------------------

def _legs(ops: S.OpLists, d: int) -> list[tuple[int, int, int]]:
    """Device d's order as (kind, leg, micro-batch): leg 0 the copy entering at its end."""
    first = ops.vs_of(d)[0] if d < ops.p // 2 else ops.vs_of(d)[1]
    return [(k, 0 if v == first else 1, j) for k, v, j in ops.ops[d]]


@pytest.mark.parametrize("p, m", [(2, 4), (4, 8), (4, 14), (8, 16), (8, 22)])
def test_dualpipe_ranks_run_dualpipev_programs_of_half_the_ranks(p, m):
    """dualpipe.py's rank r runs the step loop of dualpipev.py's rank min(r, p - 1 - r) on
    p / 2 ranks with m / 2 micro-batches (the same eight steps, phase 0 the copy that enters
    at its end): the two files' loops are the same program."""
    dual, half = S.build("dualpipe", p, m), S.build("dualpipev", p // 2, m // 2)
    assert dual.copies == 2 and dual.m == m // 2 and dual.nvs == 2 * p
    for r in range(p):
        h = min(r, p - 1 - r)
        assert _legs(dual, r) == [(k, 0 if v < p // 2 else 1, j) for k, v, j in half.ops[h]]
    seen = sorted(op for lst in dual.ops for op in lst)
    assert seen == sorted((k, v, j) for k in (S.F, S.B, S.W) for v in range(2 * p)
                          for j in range(m // 2))
    sim.compile_program(dual)                    # raises on a dependency cycle


@pytest.mark.parametrize("p", [2, 4, 6, 8])
@pytest.mark.parametrize("extra", [0, 2, 6])
def test_dualpipe_published_bubble_and_activations(p, extra):
    """The DualPipe README's table for PP = p ranks at unit chunk times: bubble
    (PP/2 - 1)(F&B + B - 3W) and PP + 1 activations per device, whatever m."""
    m = 2 * p + extra
    ops = S.build("dualpipe", p, m)
    prog = sim.compile_program(ops, with_r=False)
    timing = sim.run(prog, [1.0] * prog.n, [0.0] * p)
    bubble = [timing.makespan - b for b in timing.busy]
    assert bubble == pytest.approx([(p // 2 - 1) * (3 + 2 - 3)] * p)   # F&B 2 + W, B 1 + W
    for lst in ops.ops:
        live = peak = 0
        for k, _, _ in lst:
            live += {S.F: 1, S.B: -1}.get(k, 0)
            peak = max(peak, live)
        assert peak == p + 1


@pytest.mark.parametrize("p, m", [(3, 12), (4, 7), (4, 6)])
def test_dualpipe_layout_rules_are_named(p, m):
    with pytest.raises(InfeasibleError, match="dualpipe needs an even PP and an even number"):
        S.build("dualpipe", p, m)


def test_dualpipe_holds_two_copies_as_dualpipev_on_half_the_ranks():
    """DualPipe on PP p, DP d keeps on every GPU what DualPipeV keeps on PP p/2, DP 2d: two
    stages of weights, their gradients, the optimizer sharded over 2d replicas (§5.5); the
    activation peaks are the same and the times differ only by the middle P2P hop and the
    gradient-reduction groups."""
    model = presets.load("model", "llama2-70b")
    hw = Hardware.from_presets(presets.load("gpu", "h100"), presets.load("node", "dgx-h100"),
                               64)
    dual = solve(Terms(model, Layout(4, 4, 4, 4096, 1, 64), hw,
                       Policy("dualpipe", optimizer="dist-opt"))).outcome
    half = solve(Terms(model, Layout(4, 2, 8, 4096, 1, 64), hw,
                       Policy("dualpipev", optimizer="dist-opt"))).outcome
    t, h = dual.terms, half.terms
    assert t.stage_layers == (40, 40, 40, 40) and h.stage_layers == (40, 40)
    for r in range(4):
        g = min(r, 3 - r)
        assert t.resident_states(r) == pytest.approx(h.resident_states(g), rel=1e-12)
        assert dual.memory[r].peak == pytest.approx(half.memory[g].peak, rel=1e-9)
    assert dual.iteration_s == pytest.approx(half.iteration_s, rel=0.02)
    assert dual.iteration_s > half.iteration_s          # the hop DualPipeV's turn saves


def test_dualpipe_on_the_cli(cli):
    code, out, err = cli("pipeline", "breakdown", "--layers", "48", "--tp", "8", "--pp", "4",
                         "--mbs", "1", "--gpus", "64", "--global-batch", "32", "--schedule",
                         "dualpipe", "--json")
    assert code == 0, err
    import json
    c = json.loads(out)["config"]
    assert c["schedule"] == "dualpipe" and c["model_copies"] == 2
    code, _, err = cli("pipeline", "breakdown", "--layers", "48", "--tp", "8", "--pp", "8",
                       "--mbs", "1", "--gpus", "64", "--global-batch", "8", "--schedule",
                       "dualpipe")
    assert code == 2
    assert "dualpipe needs an even PP and an even number of at least 2 x PP" in err
