"""MoE layout rules and model states (docs/pipeline.md §11): Megatron-Core's expert placement,
the bytes per GPU pinned by hand for a DeepSeek-V3 layout, and EP = 1 on a dense model equal
to the dense study's numbers."""

import re
from dataclasses import replace

import numpy as np

import pytest

from explore import presets
from explore.models.errors import InputError
from explore.models.pipeline import schedules as S
from explore.models.pipeline.chronos import solve
from explore.models.pipeline.config import Hardware, Layout, Policy
from explore.models.pipeline.costs import Terms
from explore.models.pipeline.moe import MoeLayout

V3 = presets.load("model", "deepseek-v3")
H100 = presets.load("gpu", "h100")
DGX_H100 = presets.load("node", "dgx-h100")


def _v3_terms(gpus=256, tp=2, pp=16, ep=4, etp=None, schedule="1f1b", vpp=1, first=None,
              last=None, model=V3, recompute="none"):
    hw = Hardware.from_presets(H100, DGX_H100, gpus)
    lay = Layout(tp, pp, gpus // (tp * pp), 4096, 1, 256, vpp, True, True, ep=ep, etp=etp,
                 first_layers=first, last_layers=last)
    return Terms(model, lay, hw, Policy(schedule, recompute=recompute, optimizer="dist-opt"))


def test_deepseek_v3_stage_states_by_hand():
    """256 GPUs, TP 2, PP 8, EP 32, ETP 1: DP 16, EDP 2 x 16 / 32 = 1. The second stage holds
    eight MoE layers (8-15; the balanced split is 8 x 7 | 5), distributed optimizer:
      experts: 8 layers x 256/32 experts x 3 x 7168 x 2048 = 2,818,572,288 params, 6 + 12/1 B
      dense:   8 x [(MLA 187,107,328 - down-projections 15,140,864 + shared 44,040,192 + norms
               14,336) / 2 + down-projections 15,140,864 + router 7168 x 256]
               = 999,890,944 params, 6 + 12/16 B
    (MLA: q 7168 x 1536 + 1536 + 1536 x 128 x 192, kv 7168 x 576 + 512 + 512 x 128 x 256,
    o 128 x 128 x 7168; the down-projections 7168 x 1536 + 1536 + 7168 x 576 + 512 sit whole
    on every TP rank)."""
    t = _v3_terms(tp=2, pp=8, ep=32, etp=1)
    assert (t.layout.dp, t.layout.moe.edp) == (16, 1) and t.stage_layers[1] == 8
    assert t.expert_params[1] == 2_818_572_288
    assert t.params[1] == 999_890_944
    assert t.resident_states(1) == pytest.approx(2_818_572_288 * 18 + 999_890_944 * 6.75)
    assert t.resident_states(1) / 2**30 == pytest.approx(53.54, abs=0.01)


def test_stage_states_add_up_to_the_model():
    """TP 1, every GPU of a stage holding E/EP experts: the stages' dense parameters plus
    EP x ETP x their expert parameters give the whole model."""
    t = _v3_terms(gpus=64, tp=1, pp=4, ep=8, etp=2, first=16, model=replace(V3, mtp_layers=0))
    assert t.stage_layers == (16, 15, 15, 15)
    total = sum(t.params) + 8 * 2 * sum(t.expert_params)
    assert total == pytest.approx(V3.total_params)


def test_ep_one_on_a_dense_model_equals_the_dense_study():
    """A dense model: no expert parameters; P_dev = layers x P_layer / t, the embedding on the
    first stage, LM head and final norm on the last (§3)."""
    shape = presets.load("model", "llama2-7b").with_layers(8)
    hw = Hardware.from_presets(presets.load("gpu", "h100"), presets.load("node", "dgx-h100"),
                               16)
    terms = Terms(shape, Layout(2, 4, 2, 4096, 1, 64, ep=1), hw,
                  Policy("1f1b", optimizer="dist-opt"))
    base = Terms(shape, Layout(2, 4, 2, 4096, 1, 64), hw, Policy("1f1b", optimizer="dist-opt"))
    for d in range(4):
        want = 2 * shape.dense_layer_params / 2 + (shape.embedding_params / 2 if d == 0 else 0) \
            + ((shape.head_params + shape.hidden) / 2 if d == 3 else 0)
        assert terms.params[d] == pytest.approx(want) and terms.expert_params[d] == 0
        assert terms.resident_states(d) == base.resident_states(d)
    assert terms.chunk_times == base.chunk_times


@pytest.mark.parametrize("layout, message", [
    (MoeLayout(96, tp=2, pp=2, ep=48, etp=1), "EP 48 must divide the 256 experts"),
    (MoeLayout(256, tp=2, pp=8, ep=64), "ETP 2 x EP 64 must divide TP x CP x DP = 32"),
    (MoeLayout(96, tp=2, pp=2, ep=16, etp=3), "ETP 3 must divide the expert FFN width 2048"),
    (MoeLayout(100, tp=8, pp=8), "TP 8 x PP 8 x CP 1 does not divide the 100 GPUs"),
    (MoeLayout(64, tp=2, pp=2, ep=0), "EP must be >= 1"),
])
def test_layout_rules_name_what_binds(layout, message):
    with pytest.raises(InputError, match=message):
        layout.check(V3)


def test_experts_only_apply_to_moe_models(cli):
    with pytest.raises(InputError, match="has no experts"):
        MoeLayout(8, tp=2, ep=2).check(presets.load("model", "llama2-7b"))
    for flag in ("--ep", "--etp"):
        code, _, err = cli("pipeline", "--model", "llama2-7b", "--gpus", "8", flag, "2")
        assert code == 2 and f"has no experts: {flag} applies to MoE models" in err


def test_mixtral_moe_block_bytes_by_explicit_tensor_accounting():
    """Mixtral 8x7B (h 4096, E 8, k 2, f 14336), s 4096, b 1, TP 1, softmax router with the
    auxiliary loss, balanced routing. Per token:
      router: k indices 2 x 8 + k softmax 2 x 4 + aux-loss softmax 8 x 4 = 56 B
      permutation map over the E experts: 8 x 8 = 64 B
      per routed token: fc1 input 2 x 4096 + fc1 output 2 x 2 x 14336 + probability 4
                        + fc2 input 2 x 14336 + index 8 = 94,220 B, x k = 188,440 B
    = 188,560 B per token, x 4096 tokens."""
    from explore.models.pipeline.moe import moe_ffn_bytes
    mixtral = presets.load("model", "mixtral-8x7b")
    got = moe_ffn_bytes(mixtral, 4096, 1, MoeLayout(8, ep=8))
    assert got == 188_560 * 4096


def test_deepseek_v3_sigmoid_router_bytes_by_hand():
    """DeepSeek-V3's router (E 256, k 8, sigmoid, with the sequence aux loss) per token:
    sigmoid scores 4 x 256 + indices 8 x 8 + top-k scores and sum 4 x 8 + 4, the aux loss's
    second sigmoid and sum 4 x 256 + 4, the permutation map 8 x 256 = 4,200 B (the audit of
    Megatron-Core's moe_utils: 2,152 B of router and 2,048 of argsort index)."""
    from explore.models.pipeline.moe import moe_ffn_tensors
    v3 = presets.load("model", "deepseek-v3")
    assert v3.router == "sigmoid" and v3.router_aux_loss
    routerish = sum(x.bytes_per_token for x in moe_ffn_tensors(v3) if x.kind == "act"
                    and not x.name.startswith("shared"))
    assert routerish == 4200
    no_aux = replace(v3, router_aux_loss=False)
    assert sum(x.bytes_per_token for x in moe_ffn_tensors(no_aux)) == \
        sum(x.bytes_per_token for x in moe_ffn_tensors(v3)) - 4 * 256 - 4


def test_moe_block_bytes_follow_the_layout():
    """EP moves experts, not tokens per GPU (balanced routing); TP under SP and ETP divide as
    Megatron-Core places them; the imbalance margin scales the routed tensors only."""
    from explore.models.pipeline.moe import moe_ffn_bytes, moe_ffn_tensors
    m = presets.load("model", "mixtral-8x7b")
    one = moe_ffn_bytes(m, 4096, 1, MoeLayout(8, ep=1))
    assert moe_ffn_bytes(m, 4096, 1, MoeLayout(8, ep=8)) == one
    assert moe_ffn_bytes(m, 4096, 2, MoeLayout(8, ep=8)) == 2 * one
    assert moe_ffn_bytes(m, 4096, 1, MoeLayout(8, tp=2, ep=4, etp=1)) == one / 2
    routed = sum(x.bytes_per_token for x in moe_ffn_tensors(m) if x.kind == "routed") * 4096
    assert moe_ffn_bytes(m, 4096, 1, MoeLayout(8), imbalance=1.25) == \
        pytest.approx(one + 0.25 * routed)
    v3 = presets.load("model", "deepseek-v3")
    sig = {x.name for x in moe_ffn_tensors(v3)}
    assert "router sigmoid scores (fp32)" in sig and "shared gate output" in sig
    with pytest.raises(InputError, match="router must be one of"):
        replace(v3, router="relu")


def test_all_to_all_bytes_and_time():
    """DeepSeek-V3 at s 4096, b 1, TP 1: one dispatch sends k s h bf16 elements per GPU,
    8 x 4096 x 7168 x 2 = 469,762,048 B. Inside one 8-GPU H100 node (EP 8) 7/8 of it moves at
    the measured 370 GB/s NVLink bus bandwidth; EP 32 across four nodes sends 24/32 of it
    through each GPU's 50 GB/s NIC at 0.9 efficiency, which binds."""
    from explore.models.pipeline.moe import all_to_all_time, dispatch_bytes
    gpu, node = presets.load("gpu", "h100"), presets.load("node", "dgx-h100")
    nbytes = 8 * 4096 * 7168 * 2
    lay8 = MoeLayout(64, pp=8, ep=8)
    assert dispatch_bytes(V3, 4096, 1, lay8) == nbytes
    assert all_to_all_time(V3, 4096, 1, lay8, gpu, node) == pytest.approx(
        gpu.collective_latency_s + 7 / 8 * nbytes / gpu.bus_bandwidth)
    lay32 = MoeLayout(256, pp=8, ep=32)
    t32 = all_to_all_time(V3, 4096, 1, lay32, gpu, node)
    assert t32 == pytest.approx(gpu.collective_latency_s + 24 / 32 * nbytes / (
        node.inter_node_bandwidth * node.network_efficiency))
    assert t32 > 5 * all_to_all_time(V3, 4096, 1, lay8, gpu, node)
    assert dispatch_bytes(V3, 4096, 1, MoeLayout(64, tp=2, pp=4, ep=8), 1.0) == nbytes / 4


def test_expert_gemms_at_their_real_sizes():
    """One local expert is one GEMM of all routed tokens; spreading the same tokens over more
    local experts (smaller EP) makes each GEMM skinnier and never cheaper per FLOP."""
    from explore.models.pipeline import kernels
    from explore.models.pipeline.moe import expert_gemm_times
    gpu = presets.load("gpu", "h100")
    m = presets.load("model", "mixtral-8x7b")
    f, h = m.expert_intermediate, m.hidden
    one = expert_gemm_times(m, 4096, 1, MoeLayout(8, ep=8), gpu)
    tokens = 2 * 4096                       # k s b, all routed to this GPU's single expert
    assert one[0] == pytest.approx(kernels.gemm_s(tokens, 2 * f, h, gpu)
                                   + kernels.gemm_s(tokens, h, f, gpu))
    flops = 2 * 2 * 4096 * 3 * h * f        # forward FLOPs of the routed tokens, any EP
    rates = [flops / expert_gemm_times(m, 4096, 1, MoeLayout(8, ep=ep), gpu)[0]
             for ep in (8, 4, 2, 1)]
    assert all(a >= b * (1 - 1e-9) for a, b in zip(rates, rates[1:]))


# ---- MoE layers in the study (every layer MoE, standard attention) ----------------------------

def _mixtral_terms(schedule="1f1b", **layout):
    mixtral = presets.load("model", "mixtral-8x7b")
    hw = Hardware.from_presets(presets.load("gpu", "h100"), presets.load("node", "dgx-h100"),
                               16)
    lay = Layout(**{"tp": 2, "pp": 2, "dp": 4, "seq": 4096, "mbs": 1, "global_batch": 32,
                    "sp": True, "ep": 4, "etp": 1} | layout)
    return mixtral, Terms(mixtral, lay, hw, Policy(schedule, optimizer="dist-opt"))


def test_study_activations_of_moe_layers():
    """A layer's stored activations are the attention part plus the MoE block."""
    from explore.models.pipeline import memory as mem
    from explore.models.pipeline.moe import moe_ffn_bytes
    mixtral, t = _mixtral_terms()
    attention = mem.layer_activation_bytes(mixtral, 4096, 1, 2, True, True)
    assert t.layer.a_full == pytest.approx(
        attention + moe_ffn_bytes(mixtral, 4096, 1, t.layout.moe))


def test_moe_layers_cost_experts_and_all_to_alls():
    _, t = _mixtral_terms()
    terms = t.layer.kernel_times.terms
    assert terms["F: expert GEMMs"] > 0 and "F: router GEMM" in terms
    assert t.layer.all_to_all_s > 0
    assert t.layer.t_f == pytest.approx(t.layer.kernel_times.f + t.exposed_tp(
        t.layer.kernel_times.gemms("F")) + t.layer.all_to_all_s)


@pytest.mark.parametrize("change, message", [
    ({"ep": 3}, "ETP 1 x EP 3 must divide|EP 3 must divide the 8 experts"),
    ({"sp": False}, "MoE layers with TP > 1 need sequence parallelism"),
])
def test_what_moe_layers_do_not_cover_is_named(change, message):
    schedule = change.pop("schedule", "1f1b")
    with pytest.raises(InputError, match=message):
        _mixtral_terms(schedule, **change)


def test_pipeline_search_and_breakdown_on_an_moe_model(cli):
    import json
    code, out, err = cli("pipeline", "--model", "mixtral-8x7b", "--gpus", "16", "--hardware",
                         "h100", "--global-batch", "64", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert "zb-h1" not in result["space"]["schedule"]   # by default: what Megatron-Core runs
    assert result["best"]["config"]["ep"] in result["space"]["ep"]
    code, out, err = cli("pipeline", "breakdown", "--model", "mixtral-8x7b", "--gpus", "16",
                         "--hardware", "h100", "--tp", "2", "--pp", "2", "--ep", "4", "--etp",
                         "1", "--sp", "--global-batch", "64", "--json")
    assert code == 0, err
    cfg = json.loads(out)["config"]
    assert (cfg["ep"], cfg["etp"], cfg["edp"]) == (4, 1, 2)
    code, _, err = cli("pipeline", "breakdown", "--model", "mixtral-8x7b", "--gpus", "16",
                       "--hardware", "h100", "--tp", "2", "--pp", "2", "--ep", "3")
    assert code == 2 and "must divide" in err


def test_expert_gradients_sync_over_expert_data_parallelism():
    """EDP > 1: the experts' gradients add a reduction over EDP to the dense one over DP; EP
    equal to the stage's GPUs (EDP 1) leaves only the dense part."""
    _, t = _mixtral_terms(ep=2)                           # TP 2 x DP 4 / (ETP 1 x EP 2): EDP 4
    _, t_ep8 = _mixtral_terms(ep=8)                       # EDP 1
    assert t.layout.moe.edp == 4 and t_ep8.layout.moe.edp == 1
    w = max(range(2), key=lambda r: t.params[r])          # the busiest device
    dense = sum(t._grad_sync(4, 2, t.params[w]))          # reduce-scatter + all-gather
    experts = sum(t._grad_sync(4, 2, t.expert_params[w]))
    assert experts > 0 and t.dp_s == pytest.approx(dense + experts)
    assert t_ep8.dp_s == pytest.approx(sum(t_ep8._grad_sync(4, 2, t_ep8.params[w])))


def test_moe_workload_limits_are_named_before_a_search(cli):
    code, _, err = cli("pipeline", "--model", "mixtral-8x7b", "--gpus", "16", "--time-model",
                       "flat")
    assert code == 2 and "MoE layers in the pipeline study need the kernel time model" in err


def _mixtral_fp8(fmt):
    from explore.models.pipeline.kernels import TimeModel
    mixtral = presets.load("model", "mixtral-8x7b")
    hw = Hardware.from_presets(presets.load("gpu", "h100"), presets.load("node", "dgx-h100"),
                               16, time=TimeModel(gemm_format=fmt))
    lay = Layout(2, 2, 4, 4096, 1, 32, sp=True, ep=4, etp=1)
    return Terms(mixtral, lay, hw, Policy("1f1b", optimizer="dist-opt"))


def test_fp8_experts_save_quantised_inputs_and_cache_quantised_weights():
    """Mixtral 8x7B, s 4096, TP 2 with SP, EP 4, ETP 1: with FP8 GEMMs the experts' fc1 and
    fc2 inputs are saved in 1 byte (Transformer Engine's grouped linear saves them quantised):
    k (s / TP) routed tokens x (h + f_exp) = 2 x 2048 x (4096 + 14336) B less per layer,
    besides the attention part's quantised linear inputs (memory.layer_activation_bytes at 1
    byte); every linear weight, the experts' too, gains two 1-byte copies (rowwise and
    columnwise)."""
    bf16, fp8 = _mixtral_fp8("bf16"), _mixtral_fp8("fp8")
    from explore.models.pipeline import memory as mem
    s, h = 4096, 4096
    attention = mem.layer_activation_bytes(bf16.shape, s, 1, 2, True, True, "none", 2.0) \
        - mem.layer_activation_bytes(bf16.shape, s, 1, 2, True, True, "none", 1.0)
    experts = 2 * (s // 2) * (h + 14336)
    assert bf16.layer.a_full - fp8.layer.a_full == pytest.approx(attention + experts)
    d = 0
    expert_weights = bf16.expert_params[d]
    assert fp8.weights(d) - bf16.weights(d) == pytest.approx(
        2 * 1.0 * (bf16.device_sum(bf16.chunk_sum("linear_params"))[d]))
    assert bf16.device_sum(bf16.chunk_sum("linear_params"))[d] > expert_weights > 0


def test_fp8_experts_run_at_the_fp8_peak_and_the_router_stays_bf16():
    """The grouped expert GEMMs take the FP8 peak (less time, casts priced by bytes); the
    router's GEMM is no Transformer Engine linear and keeps its bf16 time; the dispatch
    all-to-alls still move bf16 tokens (Megatron-Core's alltoall dispatcher)."""
    bf16, fp8 = _mixtral_fp8("bf16"), _mixtral_fp8("fp8")
    k16, k8 = bf16.layer.kernel_times.terms, fp8.layer.kernel_times.terms
    for p in "FBW":
        assert k8[f"{p}: expert GEMMs"] < 0.7 * k16[f"{p}: expert GEMMs"]
    assert k8["F: router GEMM"] == k16["F: router GEMM"]
    assert "F: FP8/FP4 casts" in k8 and "B: FP8/FP4 casts" in k8
    assert fp8.layer.all_to_all_s == bf16.layer.all_to_all_s


def test_fp8_moe_search_answers(cli):
    code, out, err = cli("pipeline", "--model", "mixtral-8x7b", "--gpus", "16", "--hardware",
                         "h100", "--gemm-format", "fp8", "--tp", "2", "--pp", "2",
                         "--schedule", "1f1b", "--json")
    assert code == 0, err
    import json
    assert json.loads(out)["best"]["performance"]["fits"]


# ---- MLA attention (§11) -------------------------------------------------------------------

def test_mla_attention_tensors_by_explicit_accounting():
    """DeepSeek-V3's attention part of a layer per token (TP 1, flash): the layer input and
    the FFN side's norm input and FFN input, 4 x 2h = 57,344 B; the compressed query (norm
    input and up-projection input, 2 x 2 x 1536) and KV (2 x 2 x 512), 8,192 B; per head Q and
    K (2 x 128 x 192 each), V and the output-projection input (2 x 128 x 128 each),
    163,840 B; the fp32 softmax statistics 4 x 128. 229,888 B in all."""
    from explore.models.pipeline import memory as mem
    got = mem.layer_activation_bytes(V3, 4096, 1, 1, False, True)
    assert got == 229_888 * 4096


def test_mla_gemms_and_replicated_down_projections():
    """MLA's linears: the query and KV down-projections run whole on every TP rank (on its
    sequence shard under SP), the up- and output projections are split; its parameters on
    one GPU count the replicated ones once per rank."""
    from explore.models.pipeline import kernels
    g = {name: (m, n, k) for name, m, n, k in kernels.linears(V3, 4096, 4, True)}
    assert g["q_down"] == (1024, 1536, 7168) and g["kv_down"] == (1024, 576, 7168)
    assert g["q_up"] == (4096, 128 * 192 // 4, 1536) and g["o"] == (4096, 7168, 128 * 128 // 4)
    whole = 7168 * 1536 + 1536 + 7168 * 576 + 512
    assert V3.replicated_attention_params == whole


def test_an_all_moe_mla_model_runs(cli, tmp_path):
    """A DeepSeek-shaped model without the leading dense layers plans end to end."""
    src = (presets.ROOT / "models" / "deepseek-v3.yaml").read_text()
    p = tmp_path / "ds-all-moe.yaml"
    p.write_text(src.replace("dense_layers: 3\n", "").replace("layers: 61", "layers: 16")
                 .replace("mtp_layers: 1\n", ""))
    code, out, err = cli("pipeline", "breakdown", "--model", str(p), "--gpus", "64",
                         "--hardware", "h100", "--tp", "2", "--pp", "4", "--ep", "8",
                         "--global-batch", "64", "--json")
    assert code == 0, err


def test_routing_imbalance_loads_the_busiest_gpu(cli):
    """--moe-imbalance x: the busiest GPU's routed tensors, expert GEMMs and all-to-all
    receive grow by x; below 1 is refused."""
    _, even = _mixtral_terms()
    _, skew = _mixtral_terms(moe_imbalance=1.5)
    assert skew.layer.a_full > even.layer.a_full
    assert skew.layer.kernel_times.f > even.layer.kernel_times.f
    assert skew.layer.all_to_all_s > even.layer.all_to_all_s
    code, _, err = cli("pipeline", "--model", "mixtral-8x7b", "--gpus", "16",
                       "--moe-imbalance", "0.5")
    assert code == 2 and "--moe-imbalance must be >= 1" in err


def test_stage_layers_follow_megatron_rules():
    """get_num_layers_to_build: the given end stages, the rest even over the ranks between;
    each rank's layers even over its chunks. Without ends: even when the layers divide, else
    the balanced split (DeepSeek-V3 on 16 stages: 4 | 14 x 4 | 1, the MTP module and LM
    head on the last)."""
    from explore.models.pipeline.config import stage_layers
    assert stage_layers(V3, 4096, 16, "1f1b") == (4,) * 15 + (1,)
    assert stage_layers(V3, 4096, 8, "1f1b", first=5, last=8) == (5,) + (8,) * 7
    assert stage_layers(V3, 4096, 4, "1f1b", last=1) == (20, 20, 20, 1)
    assert stage_layers(V3.with_layers(64), 4096, 4, "1f1b") == (16,) * 4
    bad = [((8, "1f1b", 1, 5, 5), "the other 51 of 61 layers do not split evenly over the 6"),
           ((4, "interleaved", 2, 15, 16), "multiples of the 2 chunks per device"),
           ((1, "1f1b", 1, 61, None), "need PP > 1"),
           ((4, "1f1b", 1, 40, 30), "the other -9 of 61 layers"),
           ((32, "1f1b", 1, None, None), "do not split over PP 32")]
    for args, message in bad:
        with pytest.raises(InputError, match=message):
            stage_layers(V3, 4096, *args)


def test_v_placements_split_their_end_chunks():
    """A V puts the first and last virtual stages on device 0: they take the given (or the
    balanced) end counts and the other 2p - 2 chunks share the rest. DeepSeek-V3 on 8 devices:
    3 | 14 x 4 | 2 (device 0: five layers, the LM head and the MTP module; the others eight)."""
    from explore.models.pipeline.config import chunk_layers
    assert chunk_layers(V3, 4096, 8, "dualpipev") == (3,) + (4,) * 14 + (2,)
    assert chunk_layers(V3, 4096, 4, "zb-v", first=5, last=2) == (5,) + (9,) * 6 + (2,)
    assert chunk_layers(V3.with_layers(64), 4096, 4, "zb-v") == (8,) * 8
    with pytest.raises(InputError, match="other 51 of 61 layers do not split evenly over the "
                                         "6 other chunks of the V"):
        chunk_layers(V3, 4096, 4, "zb-v", first=5, last=5)
    with pytest.raises(InputError, match=r"over PP 16 \(32 virtual stages of a V\)"):
        chunk_layers(V3, 4096, 16, "dualpipev")
    t = _v3_terms(gpus=256, tp=2, pp=8, ep=8, schedule="dualpipev")
    assert t.stage_layers == (5,) + (8,) * 7 and len(t.chunk_layers[-1]) == 3   # + MTP


def test_interleaved_uneven_chunks_sit_at_megatrons_layer_offsets():
    """get_transformer_layer_offset with uneven ends and VPP v: rank 0's chunk c starts at
    c x (f + m + l) / v, rank r > 0's at c x (f + m + l) / v + f / v + (r - 1) m / (v (p - 2))
    for the middle's m layers (rank p-1 alike)."""
    model = V3.with_layers(60)
    t = _v3_terms(gpus=64, tp=1, pp=4, ep=8, schedule="interleaved", vpp=2, model=model,
                  first=12, last=12)
    assert t.stage_layers == (12, 18, 18, 12)
    starts, n = [], 0
    for chunk in t.chunk_layers:
        starts.append(n)
        n += len(chunk)
    v, p, f, m, l_ = 2, 4, 12, 36, 12
    per_chunk = (f + m + l_) // v
    for vs, start in enumerate(starts):
        c, r = divmod(vs, p)
        want = c * per_chunk + (0 if r == 0 else f // v + (r - 1) * (m // v) // (p - 2))
        assert start == want, vs


def test_deepseek_v3_expert_state_bytes_by_hand():
    """TP 2 x PP 16 x DP 8, EP 4, ETP 2 (EDP 16 / 8 = 2), distributed optimizer:
      stage 1 (layers 4-7, all MoE): 4 x 256/4 x 3 x 7168 x 2048 / 2 = 5,637,144,576 expert
      params, 2 + 4 + 12/2 = 12 B each; stage 0 (layers 0-3: three dense, one MoE): a quarter;
      stage 15: layer 60 and the MTP module's MoE layer, two."""
    t = _v3_terms()
    per_layer = 64 * 3 * 7168 * 2048 // 2
    assert t.layout.moe.edp == 2
    assert t.expert_params[1] == 4 * per_layer == 5_637_144_576
    assert t.expert_params[0] == per_layer and t.expert_params[15] == 2 * per_layer
    states = t.expert_state_bytes
    assert (states.weights, states.grads, states.optimizer) == (2.0, 4.0, 6.0)
    assert t.expert_state_bytes.total * t.expert_params[1] / 2**30 == pytest.approx(63.0, abs=0.01)


def test_mtp_module_sits_on_the_last_stage():
    """The MTP module: its MoE layer (layer index 61 is MoE) with the 2h x h projection and
    norms, a second LM-head pass and its logits, and the embedding copy Megatron-Core keeps on
    the last stage."""
    from explore.models.pipeline import memory as mem
    with_mtp = _v3_terms(first=4, last=1)
    without = _v3_terms(first=4, last=1, model=replace(V3, mtp_layers=0))
    last = with_mtp.chunk_layers[-1]
    assert [(x.moe, x.mtp) for x in last] == [(True, False), (True, True)]
    h, t = V3.hidden, 2
    extra = last[1].params - last[0].params
    assert extra == pytest.approx((2 * h * h + 2 * h) / t)
    assert with_mtp.params[-1] - without.params[-1] == pytest.approx(
        last[1].params + V3.embedding_params / t)
    logits = mem.last_stage_bytes(V3, 4096, 1, t)
    assert with_mtp.extras[-1] - without.extras[-1] == pytest.approx(logits)
    hf = with_mtp.head_times[0]
    assert with_mtp.chunk_times[0][-1] - without.chunk_times[0][-1] == pytest.approx(
        last[1].t_f + hf)
    assert with_mtp.chunk_times[0][:-1] == without.chunk_times[0][:-1]


def test_mixed_layer_kinds_cost_what_they_hold():
    """A dense layer of an MoE model is the dense model of the same attention and FFN width:
    no experts, no all-to-all; the first stage (three dense layers, one MoE) is faster than a
    middle one (four MoE)."""
    t = _v3_terms()
    dense, moe_layer = t.chunk_layers[0][0], t.chunk_layers[0][3]
    assert not dense.moe and moe_layer.moe
    assert dense.expert_params == 0 and dense.all_to_all_s == 0 and moe_layer.all_to_all_s > 0
    assert dense.shape.intermediate == 18432 and not dense.shape.is_moe
    tf = t.chunk_times[0]
    send = t._transfer_s(0, 1)                   # Megatron's blocking send ends the forward
    assert tf[0] == pytest.approx(3 * dense.t_f + moe_layer.t_f + send)
    assert tf[0] < tf[1]


def test_deepseek_v3_plans_on_256_h100(cli):
    """The acceptance run: the best layout with EP, its per-stage memory and the binding
    constraint, in a few seconds (the search takes ~6 s on a 2-core machine)."""
    import json
    code, out, err = cli("pipeline", "--model", "deepseek-v3", "--gpus", "256", "--hardware",
                         "h100", "--json")
    assert code == 0, err
    result = json.loads(out)
    c = result["best"]["config"]
    assert c["ep"] > 1 and sum(c["stage_layers"]) == 61 and c["mtp_layers"] == 1
    devices = result["breakdown"]["devices"]
    assert len(devices) == c["pp"] and all(d["peak"] < 78 * 2**30 for d in devices)
    assert result["breakdown"]["binding_text"]


def test_mla_without_flash_attention_saves_the_scores():
    """Unfused attention with MLA (Megatron's 'unfused' backend): the s^2 softmax output per
    head is stored, QK^T runs at depth d + d_rope = 192 and AV at d_v = 128."""
    from explore.models.pipeline import kernels, memory as mem
    from explore.models.pipeline.kernels import gemm_s
    flash = mem.layer_activation_bytes(V3, 4096, 1, 1, False, True)
    unfused = mem.layer_activation_bytes(V3, 4096, 1, 1, False, False)
    heads = V3.heads
    assert unfused - flash == pytest.approx(4096 * (2 * heads * 4096 - 4 * heads))
    k = kernels.layer_times(V3, 4096, 1, 8, True, False, H100, kernels.TimeModel(),
                            MoeLayout(64, tp=8, ep=8))
    bh = heads // 8
    assert k.terms["F: attention GEMMs"] == pytest.approx(
        gemm_s(4096, 4096, 192, H100, bh) + gemm_s(4096, 128, 4096, H100, bh))


def test_peak_memory_of_public_moe_runs_apriori():
    """The two Megatron-Core MoE CI runs (complete layouts, 8 H100; the second with selective
    recompute of layernorm, mla_up_proj, mlp and moe_act and a --pipeline-layout): the last
    rank's measured max_memory_allocated at step 1 and the highest over 50 steps (51.27 /
    55.98 and 42.00 / 45.83 GiB), predicted a-priori within 7 % (the issue's target is 5 %:
    step 1 of the recompute run is +6.5 %). Balanced routing puts the prediction between the
    two, where the measured peak drifts as routing loses balance. The DeepSeek-V3-Proxy run
    (layout partly inferred) is only reported, every stage of it (docs/pipeline.md §11.7)."""
    from explore.cli.studies.pipeline import moe_validation
    v = moe_validation()["memory"]
    ci = [r for r in v["rows"] if r["id"].startswith("mcore-ci")]
    assert len(ci) == 4 and all(abs(r["error"]) <= 0.07 for r in ci)
    for i in range(0, 4, 2):
        step1, drifted = ci[i], ci[i + 1]
        assert step1["measured_gib"] < step1["ours_gib"] < drifted["measured_gib"]
    assert v["complete"]["points"] == 4 and v["all"]["points"] == 8
    proxy = [r for r in v["rows"] if r["inferred"]]
    assert sorted(r["device"] for r in proxy) == [0, 1, 2, 3]
    assert all(r["ours_gib"] > 0 for r in proxy)


def test_iteration_time_of_public_moe_runs_apriori():
    """The two Megatron-Core CI runs state their iteration time (step 50 of the golden
    values, s): each is predicted a-priori with the run's overlap switches, its error is ours /
    measured - 1, and the check row judges the largest against the 10 % target (PASS or WARN:
    few runs, nothing fitted)."""
    from explore.cli.studies.pipeline import moe_validation
    from explore.models.pipeline.measured_moe import check_rows
    v = moe_validation()["time"]
    ci = {r["id"]: r for r in v["rows"] if r["id"].startswith("mcore-ci")}
    assert sorted(r["measured_s"] for r in ci.values()) == [1.027, 1.098]
    for r in ci.values():
        assert r["ours_s"] > 0 and r["error"] == pytest.approx(r["ours_s"] / r["measured_s"] - 1)
    row = check_rows(v, "iteration time", "runs")[0]
    assert row["error"] == pytest.approx(v["complete"]["max_abs_error"])
    assert row["status"] == ("PASS" if row["error"] <= 0.10 else "WARN")


def test_moe_split_backward_holds_each_linears_input_and_gradient():
    """Mixtral 8x7B, s 4096, TP 2 with SP, EP 4, ETP 1, per GPU (2-byte elements):
      attention: QKV (column) input h / 2 + gradient (4096 + 2 x 1024) / 2 = 5,120 and the
                 output projection (row) 4096 / 2 + 4096 / 2 = 4,096, on all 4,096 tokens;
      router:    input h + gradient E = 4,104 on the 2,048 tokens of the SP shard;
      experts:   per routed token (k x 2,048 = 4,096) fc1 input h, its gradient 2 f, fc2 input
                 f, its gradient h = 2 x 4,096 + 3 x 14,336 = 51,200.
    The held bytes count at most the layer's stored activations (§5.1: B frees the rest of
    them, W what it held). ZB-H1 then runs an MoE model (the simulator, B and W apart)."""
    from explore.models.pipeline import memory as mem
    from explore.models.pipeline.moe import moe_split_backward_bytes
    mixtral, t = _mixtral_terms("zb-h1")
    want = 2 * (4096 * 9216 + 2048 * 4104 + 4096 * 51200)
    assert want == 511_737_856
    assert mem.split_backward_bytes(mixtral, 4096, 1, 2, True) \
        + moe_split_backward_bytes(mixtral, 4096, 1, t.layout.moe) == pytest.approx(want)
    assert t.layer.held == pytest.approx(min(want, t.layer.a_layer))
    from explore.models.pipeline.chronos import solve
    from explore.models.pipeline.study import timeline
    out = solve(t).outcome
    assert out.ops.split and out.iteration_s > 0
    assert max(level for _, _, cat, level in timeline(out) if cat == "held for W") > 0


# ---- the all-to-all overlap (§11.4) ---------------------------------------------------------

@pytest.mark.parametrize("schedule, p, v, m", [("interleaved", 2, 2, 4), ("interleaved", 4, 1, 8),
                                               ("interleaved", 4, 3, 8), ("1f1b", 1, 1, 5)])
def test_a2a_overlap_pairs_every_steady_state_step(schedule, p, v, m):
    """Megatron's combined 1F1B: one more warm-up forward than the interleaved schedule (so a
    step never holds one micro-batch's own forward and backward), then every steady-state
    step, a forward and an earlier micro-batch's backward, is one pair; every op runs once and
    the pairs' extra waits do not deadlock. Without pipelining: F0, [F1 B0], ..., [F4 B3],
    B4."""
    from explore.models.pipeline import simulator as sim
    plain = S.build(schedule, p, m, v)
    ops = S.build(schedule, p, m, v, a2a_pairs=True)
    assert sorted(x for lst in ops.ops for x in lst) == sorted(
        x for lst in plain.ops for x in lst)
    for r, lst in enumerate(ops.ops):
        w = S.interleaved_warmup(p, v, m, r) + 1
        assert [k for k, _, _ in lst[:w]] == [S.F] * w and lst[w][0] == S.F
    assert len(ops.pairs) == sum(m * v - min(S.interleaved_warmup(p, v, m, r) + 1, m * v)
                                 for r in range(p))
    assert all(f[1] != b[1] for f, b in ops.pairs)          # never one micro-batch's own
    if p == 1:
        assert ops.ops[0][:4] == ((S.F, 0, 0), (S.F, 0, 1), (S.B, 0, 0), (S.F, 0, 2))
    sim.compile_program(ops)                     # raises on a dependency cycle


def _qwen_a2a(overlap, schedule="interleaved", recompute="none", modules=("core_attn",), ep=8,
              pp=2):
    from explore.models.pipeline.kernels import TimeModel
    qwen = presets.load("model", "qwen3-30b-a3b")
    hw = Hardware.from_presets(presets.load("gpu", "h100"), presets.load("node", "dgx-h100"),
                               16, time=TimeModel(overlap_moe_a2a=overlap))
    lay = Layout(1, pp, 16 // pp, 4096, 1, 64, 1, ep=ep, etp=1)
    return Terms(qwen, lay, hw, Policy(schedule, recompute=recompute, optimizer="dist-opt",
                                       recompute_modules=modules))


def test_a2a_overlap_hides_each_pairs_all_to_alls():
    """Qwen3-30B-A3B, PP 2 interleaved, EP 8: each pair's backward takes T_B minus what hides
    (the pair's all-to-alls, at most the compute left), and the iteration is shorter."""
    on, off = _qwen_a2a(True), _qwen_a2a(False)
    out_on, out_off = solve(on).outcome, solve(off).outcome
    ops, prog = out_on.ops, out_on.program
    assert on.a2a_overlap and ops.pairs
    tf, tb, tw = (np.asarray(x) for x in on.chunk_times)
    a2a = on.chunk_all_to_all
    (vf, _), (vb, jb) = ops.pairs[0]
    comm = a2a[vf] + a2a[vb]
    assert out_on.dur[prog.index[(S.B, vb, jb)]] == pytest.approx(
        tb[vb] + tw[vb] - min(comm, tf[vf] + tb[vb] - comm))
    assert out_on.iteration_s < out_off.iteration_s


@pytest.mark.parametrize("kwargs, message", [
    ({"ep": 1}, "needs an MoE model with expert parallelism (EP > 1)"),
    ({"schedule": "1f1b"}, "needs 1F1B without pipelining or the interleaved schedule"),
    ({"schedule": "zb-h1"}, "needs 1F1B without pipelining or the interleaved schedule"),
    ({"recompute": "full"}, "does not run with full recompute"),
    ({"recompute": "selective", "modules": ("moe",)}, "does not run with the 'moe' recompute"),
])
def test_a2a_overlap_rules_are_named(kwargs, message):
    with pytest.raises(InputError, match=re.escape(message)):
        _qwen_a2a(True, **kwargs)


def test_a2a_overlap_on_the_cli_and_in_megatron_flags(cli):
    code, out, err = cli("pipeline", "best", "--model", "qwen3-30b-a3b", "--gpus", "16",
                         "--hardware", "h100", "--tp", "1", "--pp", "2", "--ep", "8",
                         "--mbs", "1", "--global-batch", "64", "--schedule", "interleaved",
                         "--overlap-moe-expert-parallel-comm", "--emit", "megatron")
    assert code == 0, err
    assert "--overlap-moe-expert-parallel-comm" in out
    code, _, err = cli("pipeline", "breakdown", "--model", "qwen3-30b-a3b", "--gpus", "16",
                       "--hardware", "h100", "--tp", "1", "--pp", "2", "--ep", "8", "--mbs",
                       "1", "--global-batch", "64", "--schedule", "1f1b",
                       "--overlap-moe-expert-parallel-comm")
    assert code == 2
    assert "--overlap-moe-expert-parallel-comm needs 1F1B without pipelining" in err
