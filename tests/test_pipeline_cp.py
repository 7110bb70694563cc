"""Context parallelism in `explore pipeline` (docs/pipeline.md §12): the sequence split over CP
GPUs, ring (p2p) and all-to-all KV exchange, Megatron-Core's rules."""

import json
from dataclasses import replace

import pytest

from explore import presets
from explore.models.errors import InputError
from explore.models.pipeline.config import Hardware, Layout, Policy
from explore.models.pipeline.costs import Terms
from explore.models.pipeline.study import Workload, search_space

LLAMA = presets.load("model", "llama3.1-8b")          # 32 heads, 8 KV heads of 128, h 4096
H100, DGX = presets.load("gpu", "h100"), presets.load("node", "dgx-h100")


def _terms(cp=1, cp_comm="p2p", seq=65536, gpus=16, tp=2, pp=2, flash=True, model=LLAMA):
    hw = Hardware.from_presets(H100, DGX, gpus)
    lay = Layout(tp, pp, gpus // (tp * pp * cp), seq, 1, 32, 1, True, flash, cp=cp,
                 cp_comm=cp_comm)
    return Terms(model, lay, hw, Policy("1f1b", optimizer="dist-opt"))


def test_activations_scale_with_the_local_sequence():
    """With flash attention every saved tensor is per token: CP 4 keeps a quarter of each
    layer's activations, checkpoint, stage extras and P2P message; attention runs its s / CP
    queries against all s keys (a quarter of the FLOPs)."""
    one, four = _terms(gpus=4), _terms(cp=4)
    assert four.layer.a_full == pytest.approx(one.layer.a_full / 4)
    assert four.ckpt == pytest.approx(one.ckpt / 4)
    assert four.extras[0] == pytest.approx(one.extras[0] / 4)
    assert four.p2p_bytes == pytest.approx(one.p2p_bytes / 4)
    f1 = one.layer.kernel_times.terms["F: flash attention"] - H100.kernel_overhead_s
    f4 = four.layer.kernel_times.terms["F: flash attention"] - H100.kernel_overhead_s
    assert f4 == pytest.approx(f1 / 4)
    assert four.state_bytes.optimizer == pytest.approx(12 / 4)   # dist-opt over DP x CP = 4


def test_ring_attention_passes_the_sequences_kv_around():
    """p2p: K and V of the whole sequence on one TP shard, 2 x 65,536 x (1024 + 1024) / 2 =
    134,217,728 B, an all-gather over the 4 CP ranks (TP 2 apart) in the forward and twice
    in the backward, less what the attention kernel hides."""
    t = _terms(cp=4)
    ring = t.collective_s("all-gather", 4, 2, 134_217_728)
    k = t.layer.kernel_times.terms
    assert t.layer.cp_comm_s == pytest.approx((max(0.0, ring - k["F: flash attention"]),
                                               max(0.0, 2 * ring - k["B: flash attention"])))
    assert t.layer.t_f == pytest.approx(t.layer.kernel_times.f + t.exposed_tp(
        t.layer.kernel_times.gemms("F")) + t.layer.cp_comm_s[0])


def test_all_to_all_exchanges_q_k_v_and_output():
    """a2a (Ulysses): each GPU sends its 16,384 tokens' Q, K, V and output on one TP shard,
    2 x 16,384 x (4096 + 1024 + 1024 + 4096) / 2 = 167,772,160 B, in each pass."""
    t = _terms(cp=4, cp_comm="a2a")
    x = t.cp_all_to_all_s(167_772_160)
    assert x > 0 and t.layer.cp_comm_s == pytest.approx((x, x))


@pytest.mark.parametrize("change, message", [
    ({"cp": 3, "seq": 65536, "gpus": 12}, "a multiple of 2 x CP = 6"),
    ({"cp": 4, "flash": False}, "flash attention only"),
    ({"cp": 4, "cp_comm": "a2a", "tp": 4, "gpus": 32,
      "model": replace(LLAMA, heads=8, kv_heads=8)},
     "the 2 heads per TP rank do not spread evenly over CP 4"),
    ({"cp": 4, "cp_comm": "ring"}, "--cp-comm must be one of p2p, a2a"),
])
def test_context_parallel_rules_are_named(change, message):
    with pytest.raises(InputError, match=message):
        _terms(**change)


def test_the_search_splits_long_sequences():
    """CP is searched from 16K tokens, at most 8, each GPU keeping at least 8K tokens; at 4K
    only CP 1."""
    hw = Hardware.from_presets(H100, DGX, 64)
    assert search_space(Workload(LLAMA, hw, seq=65536, global_batch=64))["cp"] == (1, 2, 4, 8)
    assert search_space(Workload(LLAMA, hw, seq=16384, global_batch=64))["cp"] == (1, 2)
    assert search_space(Workload(LLAMA, hw, seq=4096))["cp"] == (1,)


def test_cli_long_context_search_and_breakdown(cli):
    code, out, err = cli("pipeline", "--model", "llama3.1-8b", "--gpus", "16", "--hardware",
                         "h100", "--seq", "65536", "--global-batch", "16", "--json")
    assert code == 0, err
    best = json.loads(out)["best"]["config"]
    assert best["cp"] > 1
    args = json.loads(out)["launch"]["megatron"]
    assert args[args.index("--context-parallel-size") + 1] == str(best["cp"])
    code, out, err = cli("pipeline", "breakdown", "--model", "llama3.1-8b", "--gpus", "16",
                         "--hardware", "h100", "--seq", "65536", "--global-batch", "32",
                         "--tp", "2", "--pp", "2", "--cp", "4", "--cp-comm", "a2a")
    assert code == 0, err
    assert "TP 2 x CP 4 (a2a) x PP 2 x DP 1" in " ".join(out.split())
