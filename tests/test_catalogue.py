"""The 2026 model catalogue (issue 14): presets pinned to published sizes, the shape features
they need (MoE on some layers, local attention, MLA, MTP) and the Hugging Face reader's keys."""

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explore import presets
from explore.models.errors import ConfigError, InputError

B = 1e9

# (published total, published active, how the publisher counts active, tolerance): active
# parameters are those one token multiplies through, LM head included and the embedding lookup
# excluded ("routed"), unless the publisher adds the embedding ("+embedding", Meta's Llama 4).
# Tolerance 1 % (the issue's), or half a unit of the published figure's last digit when it is
# written more coarsely than that (37B is 36.5-37.5B).
PUBLISHED = {
    # DeepSeek-V3 report (arXiv 2412.19437): 671B total, 37B activated
    "deepseek-v3": (671, 37, "routed"),
    # Kimi K2 model card: 1T total, 32B activated (1.04T in secondary sources; the config
    # gives 1.026T)
    "kimi-k2": (1000, 32, "routed"),
    # Qwen3 technical report (arXiv 2505.09388): 235B total, 22B activated
    "qwen3-235b-a22b": (235, 22, "routed"),
    # Qwen3-Coder model card: 480B total, 35B activated
    "qwen3-coder-480b-a35b": (480, 35, "routed"),
    # gpt-oss model card (arXiv 2508.10925): 116.83B total, 5.13B active; 20.91B, 3.61B
    "gpt-oss-120b": (116.83, 5.13, "routed"),
    "gpt-oss-20b": (20.91, 3.61, "routed"),
    # Llama 4 model card: 400B total, 17B active (Maverick); Scout's 109B total includes the
    # vision encoder, which the text shape leaves out (107.8B), so its total is not pinned
    "llama4-maverick-17b-128e": (400, 17, "+embedding"),
    "llama4-scout-17b-16e": (None, 17, "+embedding"),
    # Mistral AI: 141B total, 39B active
    "mixtral-8x22b": (141, 39, "routed"),
    # Qwen3-32B model card: 32.8B; Llama 3.3 70B: the 3.1 70B shape, 70.6B counted
    "qwen3-32b": (32.8, None, ""),
    "llama3.3-70b": (70.6, None, ""),
}


def _tolerance(published: float) -> float:
    text = f"{published:g}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    digits = len(text.replace(".", "").lstrip("0"))
    half_unit = 0.5 * 10 ** -decimals if digits < 3 else 0.0
    if published >= 1000 and "." not in text:          # "1T": one significant digit
        half_unit = 0.5 * 10 ** (len(str(int(published))) - 1)
    return max(0.01 * published, half_unit)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_catalogue_models_match_their_published_sizes(name):
    total, active, convention, = PUBLISHED[name]
    m = presets.load("model", name)
    if total is not None:
        assert abs(m.total_params / B - total) <= _tolerance(total)
    if active is not None:
        ours = m.active_params_per_token + (m.embedding_params if convention == "+embedding"
                                            else 0)
        assert abs(ours / B - active) <= _tolerance(active)


def test_deepseek_v3_mtp_module_matches_the_checkpoint():
    """The Hugging Face checkpoint holds 685B: the 671B model plus a 14B MTP module that
    stores its own copies of the embedding and the head."""
    m = presets.load("model", "deepseek-v3")
    checkpoint = m.total_params + m.mtp_params + m.embedding_params + m.head_params
    assert checkpoint / B == pytest.approx(685, rel=0.01)
    assert presets.load("model", "deepseek-r1").total_params == m.total_params


def test_moe_on_every_second_layer_and_first_k_dense():
    maverick = presets.load("model", "llama4-maverick-17b-128e")
    assert maverick.moe_layers == 24
    assert [maverick.is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    v3 = presets.load("model", "deepseek-v3")
    assert v3.moe_layers == 58 and not v3.is_moe_layer(2) and v3.is_moe_layer(3)


def test_local_attention_caps_kv_bytes_and_attention():
    """gpt-oss: half its layers keep a 128-token window, so at 8192 tokens the KV cache is
    (18 x 8192 + 18 x 128) / (36 x 8192) of a global model's; chunked layers keep their chunk."""
    oss = presets.load("model", "gpt-oss-120b")
    per = oss.kv_cache_bytes_per_token
    assert oss.kv_cache_bytes(8192) == pytest.approx((18 * 8192 + 18 * 128) * per)
    assert oss.kv_cache_bytes(100) == pytest.approx(36 * 100 * per)     # inside the window
    scout = presets.load("model", "llama4-scout-17b-16e")
    assert scout.local_span(8192) == 8192 and scout.local_span(8193) == 1
    assert scout.local_span(np.array([0, 5, 16384])).tolist() == [0, 5, 8192]
    assert scout.attended_tokens(10_000) == 12 * 10_000 + 36 * (10_000 - 8192)


def test_mla_caches_the_latent_and_rotary_key():
    v3 = presets.load("model", "deepseek-v3")
    assert v3.kv_cache_bytes_per_token == (512 + 64) * 2
    assert v3.kv_cache_bytes(1000) == 61 * 1000 * 576 * 2


@pytest.mark.parametrize("fields, message", [
    ({"dense_layers": 5}, "dense_layers (5) must be in 0..layers (4)"),
    ({"local_attention": "sliding"}, "local attention needs all of"),
    ({"local_attention": "sliding", "attention_window": 128, "local_layers": 9},
     "local_layers in 1..layers (4)"),
    ({"attention_window": 128}, "local attention needs all of"),
    ({"local_attention": "banded", "attention_window": 8, "local_layers": 1},
     "local_attention must be one of"),
    ({"moe_layer_step": 0}, "moe_layer_step must be >= 1"),
])
def test_bad_shape_fields_are_named(fields, message):
    from explore.models.shapes import ModelShape
    base = dict(name="t", layers=4, hidden=64, heads=4, kv_heads=4, head_dim=16,
                intermediate=128, vocab=100)
    with pytest.raises(InputError, match=re.escape(message)):
        ModelShape(**(base | fields))


# ---- Hugging Face config.json ---------------------------------------------------------------

GPT_OSS_120B = {
    "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "hidden_size": 2880,
    "num_hidden_layers": 36, "num_attention_heads": 64, "num_key_value_heads": 8,
    "head_dim": 64, "intermediate_size": 2880, "num_local_experts": 128,
    "num_experts_per_tok": 4, "experts_per_token": 4, "vocab_size": 201088,
    "attention_bias": True, "sliding_window": 128, "tie_word_embeddings": False,
    "hidden_act": "silu", "layer_types": ["sliding_attention", "full_attention"] * 18}
LLAMA4_MAVERICK = {
    "architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
    "text_config": {
        "model_type": "llama4_text", "hidden_size": 5120, "num_hidden_layers": 48,
        "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
        "intermediate_size": 8192, "intermediate_size_mlp": 16384, "num_local_experts": 128,
        "num_experts_per_tok": 1, "interleave_moe_layer_step": 2, "vocab_size": 202048,
        "attention_chunk_size": 8192, "hidden_act": "silu", "tie_word_embeddings": False}}
DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "hidden_size": 7168, "num_hidden_layers": 61, "num_attention_heads": 128,
    "num_key_value_heads": 128, "intermediate_size": 18432, "moe_intermediate_size": 2048,
    "n_routed_experts": 256, "num_experts_per_tok": 8, "n_shared_experts": 1,
    "first_k_dense_replace": 3, "moe_layer_freq": 1, "kv_lora_rank": 512, "q_lora_rank": 1536,
    "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128,
    "num_nextn_predict_layers": 1, "vocab_size": 129280, "hidden_act": "silu",
    "tie_word_embeddings": False, "scoring_func": "sigmoid", "aux_loss_alpha": 0.001}


@pytest.mark.parametrize("config, preset", [
    (GPT_OSS_120B, "gpt-oss-120b"),               # sliding window on alternate layers
    (LLAMA4_MAVERICK, "llama4-maverick-17b-128e"),  # interleaved MoE, chunked, shared expert
    (DEEPSEEK_V3, "deepseek-v3"),                   # MLA, first-k dense, MTP
])
def test_hf_configs_of_the_new_architectures_match_their_presets(tmp_path, config, preset):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(config))
    got, ref = presets.load("model", str(p)), presets.load("model", preset)
    for field in ("total_params", "active_params_per_token", "moe_layers", "local_attention",
                  "attention_window", "local_layers", "mtp_layers", "kv_cache_bytes_per_token",
                  "router", "router_aux_loss"):
        assert getattr(got, field) == getattr(ref, field), field


def _small(**keys):
    return {"model_type": "x", "hidden_size": 64, "num_hidden_layers": 4,
            "num_attention_heads": 4, "vocab_size": 100, "intermediate_size": 128} | keys


@pytest.mark.parametrize("keys, expect", [
    ({"num_local_experts": 4, "num_experts_per_tok": 1, "interleave_moe_layer_step": 2},
     {"moe_layers": 2}),
    ({"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
      "first_k_dense_replace": 1}, {"moe_layers": 3, "dense_layers": 1}),
    ({"sliding_window": 16, "layer_types": ["sliding_attention", "full_attention"] * 2},
     {"local_attention": "sliding", "attention_window": 16, "local_layers": 2}),
    ({"attention_chunk_size": 32}, {"local_attention": "chunked", "local_layers": 3}),
    ({"attention_chunk_size": 32, "no_rope_layers": [1, 0, 0, 1]}, {"local_layers": 2}),
    ({"sliding_window": 4096}, {"local_attention": "sliding", "local_layers": 4}),  # Mistral
    ({"sliding_window": 4096, "use_sliding_window": False}, {"local_attention": ""}),  # Qwen
    ({"sliding_window": 16, "use_sliding_window": True, "max_window_layers": 1},
     {"local_layers": 3}),
    ({"num_nextn_predict_layers": 2}, {"mtp_layers": 2}),
    ({"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32},
     {"router": "softmax", "router_aux_loss": True}),
    ({"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
      "scoring_func": "sigmoid", "router_aux_loss_coef": 0.0},
     {"router": "sigmoid", "router_aux_loss": False}),
    ({"kv_lora_rank": 32, "q_lora_rank": 48, "qk_rope_head_dim": 8, "qk_nope_head_dim": 16,
      "v_head_dim": 16}, {"kv_lora_rank": 32, "q_lora_rank": 48, "head_dim": 16}),
])
def test_hf_reader_keys(tmp_path, keys, expect):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(_small(**keys)))
    got = presets.load("model", str(p))
    for field, value in expect.items():
        assert getattr(got, field) == value, field


@pytest.mark.parametrize("keys, message", [
    ({"layer_types": ["linear_attention", "full_attention"] * 2},
     "cannot interpret layer_types 'linear_attention'"),
    ({"hc_mult": 4}, "cannot interpret 'hc_mult' \\(hyper-connections\\)"),
    ({"mlp_only_layers": [0]}, "cannot interpret 'mlp_only_layers'"),
    ({"index_topk": 2048}, "cannot interpret 'index_topk'"),
    ({"layer_types": ["sliding_attention"] * 4}, "sliding layers but no window size"),
])
def test_hf_reader_names_what_it_cannot_interpret(tmp_path, keys, message, cli):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(_small(**keys)))
    with pytest.raises(ConfigError, match=message):
        presets.load("model", str(p))
    code, _, err = cli("sd", "--model", str(p), "--draft", "qwen2-0.5b")
    assert code == 2 and re.search(message, err) and "Traceback" not in err
    assert err.count(str(p)) == 1


# ---- number formats and accelerators ------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["llama3.1-8b", "qwen3-32b", "mixtral-8x7b", "gpt-oss-20b",
                             "qwen3-30b-a3b"]),
       batch=st.integers(1, 8))
def test_fp8_weights_halve_the_weight_bytes_of_a_decode_step(name, batch):
    """Every decoder weight in fp8 instead of bf16: the always-on and expert bytes of one decode
    step halve exactly (the LM head stays bf16), and so does their memory time."""
    from dataclasses import replace

    from explore.models import sd
    gpu = presets.load("gpu", "h100")
    bf16 = replace(presets.load("model", name), weight_format="bf16", expert_format="")
    fp8 = replace(bf16, weight_format="fp8")
    terms = [{t.label: t for t in sd.forward_time(sd.Deployment(m, gpu, 1), batch, 1,
                                                  512).terms} for m in (bf16, fp8)]
    for label in ("always-on weights", "routed experts"):
        assert float(terms[1][label].bytes) == pytest.approx(0.5 * float(terms[0][label].bytes))
    t0, t1 = (float(t["always-on weights"].seconds) for t in terms)
    compute = float(terms[0]["always-on weights"].flops) / gpu.achieved_flops
    assert t1 == pytest.approx(0.5 * (t0 - compute) + compute)      # additive roofline
    assert float(terms[1]["LM head"].bytes) == float(terms[0]["LM head"].bytes)


@pytest.mark.parametrize("args, message", [
    (("--hardware", "a100", "--activations", "fp8"),
     "a100-80g has no FP8 tensor cores for fp8 GEMM inputs"),
    (("--hardware", "h100", "--activations", "nvfp4"),
     "h100-sxm has no FP4 tensor cores for nvfp4 GEMM inputs"),
    (("--weights", "fp9"), "unknown --weights format 'fp9' \\(did you mean fp8"),
    (("--kv-cache", "int3"), "unknown --kv-cache format 'int3'; choose from"),
])
def test_a_format_the_hardware_lacks_is_refused(cli, args, message):
    code, _, err = cli("sd", "--model", "llama3.1-8b", *args)
    assert code == 2 and re.search(message, err) and "Traceback" not in err


def test_formats_change_bytes_where_they_belong():
    """mxfp4 experts take 4.25 bits, the KV cache in fp8 half of bf16, an fp8 GEMM input runs
    at the fp8 peak; the preset formats (gpt-oss's MXFP4 experts, DeepSeek's FP8) apply."""
    from dataclasses import replace

    from explore.models import sd
    oss = presets.load("model", "gpt-oss-120b")
    assert oss.expert_bytes_per_param == 4.25 / 8 and oss.bytes_per_param == 2.0
    assert presets.load("model", "deepseek-v3").weight_format == "fp8"
    assert replace(oss, kv_format="fp8").kv_cache_bytes_per_token == \
        oss.kv_cache_bytes_per_token / 2
    b200 = presets.load("gpu", "b200")
    dep = sd.Deployment(oss, b200, 1, "fp8")
    assert dep.gemm_flops == pytest.approx(2 * sd.Deployment(oss, b200, 1).gemm_flops)


# headline numbers of ../shared/data/catalogue-2026.md: (bf16, fp8, fp4 TFLOP/s dense, HBM
# bytes, HBM TB/s, TDP W)
CATALOGUE = {
    "h100-sxm": (989.4, 1979, 0, 80 * 2**30, 3.35, 700),
    "h200": (989.4, 1979, 0, 141e9, 4.8, 700),
    "b200": (2250, 4500, 9000, 180e9, 8.0, 1000),
    "mi300x": (1307.4, 2614.9, 0, 192e9, 5.3, 750),
    "gb200": (2500, 5000, 10000, 186e9, 8.0, 1200),
    "b300": (2250, 4500, 0, 288e9, 8.0, 0),               # FP4 and TDP unconfirmed: not set
    "mi325x": (1307.4, 2614.9, 0, 256 * 2**30, 6.0, 0),   # TDP unconfirmed
    "mi355x": (2516.6, 5033.2, 10066.3, 288e9, 8.0, 1400),  # peaks derived from CUs x clock
    "tpu-v5p": (459, 0, 0, 95 * 2**30, 2.765, 0),
    "tpu-v6e": (918, 0, 0, 32e9, 1.638, 0),
    "trainium2": (667, 1299, 0, 96 * 2**30, 2.9, 0),
    "l40s": (362, 733, 0, 48e9, 0.864, 350),
    "rtx-pro-6000": (467.8, 935.6, 1871, 96e9, 1.792, 600),
}


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_accelerator_headline_numbers_match_the_catalogue(name):
    g = presets.load("gpu", name)
    bf16, fp8, fp4, hbm, bw, tdp = CATALOGUE[name]
    assert (g.peak_flops / 1e12, g.peak_flops_fp8 / 1e12, g.peak_flops_fp4 / 1e12) == \
        pytest.approx((bf16, fp8, fp4), rel=1e-3)
    assert g.hbm_bytes == pytest.approx(hbm) and g.hbm_bandwidth / 1e12 == pytest.approx(bw)
    assert g.tdp_w == tdp
    for field in ("peak_flops", "peak_flops_fp8", "peak_flops_fp4", "hbm_bytes",
                  "hbm_bandwidth", "interconnect_bandwidth", "tdp_w"):
        assert field in g.sources or not getattr(g, field), field     # a value cites a source


def test_node_presets_of_the_usual_servers():
    for name, gpus in (("dgx-b200", 8), ("gb200-nvl72", 72), ("mi300x-platform", 8)):
        node = presets.load("node", name)
        assert node.gpus_per_node == gpus and node.sources


def test_energy_is_power_times_time_and_absent_without_a_tdp(cli):
    """explore sd: joules per token = GPUs x TDP / throughput; explore pipeline: per iteration
    = GPUs x TDP x iteration time; a GPU preset without TDP reports none."""
    import json as js
    code, out, err = cli("sd", "--model", "qwen2-57b", "--hardware", "h100", "--tp", "2",
                         "--json")
    assert code == 0, err
    best = js.loads(out)["best"]
    assert best["power_w"] == 2 * 700
    assert best["energy_j_per_token"] == pytest.approx(1400 / best["throughput"])
    assert best["energy_ar_j_per_token"] == pytest.approx(1400 / best["throughput_ar"])
    code, out, err = cli("sd", "--model", "llama3.1-8b", "--hardware", "tpu-v5p", "--json")
    assert code == 0, err
    assert js.loads(out)["best"]["energy_j_per_token"] is None
    code, out, err = cli("pipeline", "breakdown", "--model", "llama2-7b", "--gpus", "8",
                         "--hardware", "h100", "--tp", "2", "--pp", "2", "--mbs", "1",
                         "--json")
    assert code == 0, err
    perf = js.loads(out)["performance"]
    assert perf["energy_j"] == pytest.approx(8 * 700 * perf["iteration_s"])


def test_chiplet_formats_come_from_the_die_preset(cli, tmp_path):
    """explore chiplet --format: a format the die preset lists (its MAC rate and energy) sets
    the arrays' peak, the MAC energy and the bytes per element; one it lacks is refused."""
    from dataclasses import replace

    from explore.models.chiplet.cost import Workload
    die = presets.load("die", "die-7nm")
    fast = replace(die, formats={"fp8": {"mac_rate": 2.0, "e_mac": 0.25e-12}}).in_format("fp8")
    assert fast.peak_flops == 2 * die.peak_flops and fast.mac_energy == 0.25e-12
    model = replace(presets.load("model", "llama3.1-8b"), weight_format="fp8")
    assert Workload(model).beta == 1.0
    code, _, err = cli("chiplet", "--format", "fp8")
    assert code == 2 and "die 'die-7nm' has no fp8 MAC data (formats: bf16)" in err
    src = (presets.ROOT / "chiplet" / "dies" / "die-7nm.yaml").read_text()
    p = tmp_path / "die-fp8.yaml"
    p.write_text(src + "formats:\n  fp8: {mac_rate: 2.0, e_mac: 2.5e-13}\n")
    code, out, err = cli("chiplet", "--die", str(p), "--format", "fp8", "--json")
    assert code == 0, err


def test_with_layers_keeps_the_layer_kinds():
    oss = presets.load("model", "gpt-oss-120b").with_layers(8)
    assert (oss.layers, oss.local_layers) == (8, 4)
    v3 = presets.load("model", "deepseek-v3").with_layers(2)
    assert v3.dense_layers == 2 and v3.moe_layers == 0
