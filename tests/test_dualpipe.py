"""DualPipeV (docs/pipeline.md §5.5): the per-rank order of deepseek-ai/DualPipe, its
published bubble and in-flight micro-batches, and overlapped pairs in the simulator."""

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
