"""Presets load strictly: every shipped preset loads, bad YAML and keys give clear errors."""

import json

import pytest

from explore import presets
from explore.models.errors import ConfigError


@pytest.mark.parametrize("kind", sorted(presets.KINDS))
def test_every_preset_loads(kind):
    names = presets.names(kind)
    assert names
    for n in names:
        presets.load(kind, n)


def test_model_presets_match_public_parameter_counts():
    """Totals from the shapes agree with the published model sizes (billions, 1 %)."""
    published = {"qwen2-57b-a14b": 57.4, "mixtral-8x7b": 46.7, "qwen2-7b": 7.6,
                 "qwen2-0.5b": 0.49, "llama2-7b": 6.74, "llama2-13b": 13.0, "llama2-70b": 69.0,
                 "llama3.1-8b": 8.03, "llama3.1-70b": 70.6, "llama3.1-405b": 405.9,
                 "olmoe-1b-7b": 6.92, "qwen3-30b-a3b": 30.5, "deepseek-v2-lite": 15.7,
                 "qwen1.5-moe-a2.7b": 14.3}
    for name, billions in published.items():
        assert presets.load("model", name).total_params / 1e9 == pytest.approx(billions, rel=0.01)


def test_aliases_resolve():
    assert presets.load("model", "qwen2-57b").name == "qwen2-57b-a14b"


def test_unknown_name_lists_nearest():
    with pytest.raises(ConfigError, match="nearest: .*qwen2-57b"):
        presets.load("model", "qwen2-75b")


def test_unknown_key_names_nearest(tmp_path):
    p = tmp_path / "gpu.yaml"
    p.write_text("name: x\npeak_flops: 1e15\nhbm_bandwith: 3e12\nhbm_bytes: 80 GiB\n"
                 "interconnect_bandwidth: 100 GB/s\n")
    with pytest.raises(ConfigError, match="unknown key 'hbm_bandwith'.*'hbm_bandwidth'"):
        presets.load("gpu", str(p))


def test_quantities_with_units(tmp_path):
    p = tmp_path / "gpu.yaml"
    p.write_text("peak_flops: 312 TFLOP/s\nhbm_bandwidth: 2.039 TB/s\nhbm_bytes: 80 GiB\n"
                 "interconnect_bandwidth: 200 GB/s\ninterconnect_latency_s: 6 us\n")
    g = presets.load("gpu", str(p))
    assert g.name == "gpu" and g.peak_flops == pytest.approx(312e12)
    assert g.hbm_bandwidth == pytest.approx(2.039e12)
    assert g.hbm_bytes == 80 * 2**30 and g.interconnect_latency_s == pytest.approx(6e-6)
    e = tmp_path / "eager.yaml"
    e.write_text("layer_overhead_s: 350 us\nround_overhead_s: 2 ms\n")
    engine = presets.load("engine", str(e))
    assert engine.layer_overhead_s == pytest.approx(350e-6)
    assert engine.round_overhead_s == pytest.approx(2e-3)


def test_wrong_unit_is_explained(tmp_path):
    p = tmp_path / "gpu.yaml"
    p.write_text("peak_flops: 312 TB/s\nhbm_bandwidth: 2 TB/s\nhbm_bytes: 80 GiB\n"
                 "interconnect_bandwidth: 200 GB/s\n")
    with pytest.raises(ConfigError, match="peak_flops: unit 'TB/s' is not a multiple of FLOP/s"):
        presets.load("gpu", str(p))


def test_malformed_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("layers: [1, 2\nhidden: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml.*malformed YAML"):
        presets.load("model", str(p))


def test_duplicate_key_rejected(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("layers: 2\nlayers: 3\n")
    with pytest.raises(ConfigError, match="duplicate key 'layers'"):
        presets.load("model", str(p))


def test_yaml_is_loaded_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        presets.load("model", str(p))


def test_wrong_type(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("layers: 2.5\nhidden: 8\nheads: 2\nkv_heads: 2\nhead_dim: 4\nintermediate: 8\n"
                 "vocab: 10\n")
    with pytest.raises(ConfigError, match="layers: expected an integer"):
        presets.load("model", str(p))


HF_QWEN2_MOE = {
    "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "hidden_size": 3584,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
    "intermediate_size": 18944, "moe_intermediate_size": 2560,
    "shared_expert_intermediate_size": 20480, "num_experts": 64, "num_experts_per_tok": 8,
    "vocab_size": 151936, "tie_word_embeddings": False, "hidden_act": "silu"}


def test_hf_config_json_matches_preset(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(HF_QWEN2_MOE))
    got = presets.load("model", str(p))
    ref = presets.load("model", "qwen2-57b-a14b")
    assert got.total_params == ref.total_params
    assert got.active_params_per_token == ref.active_params_per_token


def test_hf_config_json_errors(tmp_path):
    p = tmp_path / "config.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="malformed JSON"):
        presets.load("model", str(p))
    p.write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="missing hidden_size"):
        presets.load("model", str(p))
    with pytest.raises(ConfigError, match="not found"):
        presets.load("model", str(tmp_path / "missing.json"))
