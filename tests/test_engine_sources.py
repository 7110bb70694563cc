"""Every engine-profile value that is not fitted is pinned here to the public source it cites
(presets/sd/engines/*.yaml `sources`, docs/research/engine-profiles.md): the source's own
numbers are re-derived with explore's model and compared with the shipped value."""

import dataclasses

import numpy as np
import pytest

from explore import presets
from explore.models import sd

US, MS = 1e-6, 1e-3


def engine(name):
    return presets.load("engine", name)


def test_every_profile_states_a_source_for_every_field():
    skip = {"name", "sources", "description"}
    fields = [f.name for f in dataclasses.fields(sd.EngineProfile) if f.name not in skip]
    for name in presets.names("engine"):
        missing = [f for f in fields if f not in engine(name).sources]
        assert not missing, (name, missing)


def test_attention_kernel_terms_from_the_fa3_decode_benchmark():
    """vllm#43232, FA3 decode attention at batch 1 (µs per layer over KV length, 8 KV heads x
    128, bf16: 4 KB of KV per token per layer): a line gives the fixed cost and the per-token
    cost. The fixed cost is attention_layer_s; the per-token cost is KV read at 0.9 of the
    achieved bandwidth of an H200-class GPU (the benchmark does not name its GPU)."""
    kv_len = np.array([1024, 4096, 16384, 32768])
    us = np.array([11.0, 14.5, 27.2, 43.5])
    per_token, fixed = np.polyfit(kv_len, us * US, 1)
    kv_rate = 2 * 8 * 128 * 2 / per_token
    for name in ("cuda-graphs", "vllm-v0-spec-decode", "vllm-v1", "sglang"):
        e = engine(name)
        assert e.attention_layer_s == pytest.approx(fixed, abs=1 * US), name
        achieved = presets.load("gpu", "h200").achieved_bandwidth
        assert e.attention_kv_efficiency == pytest.approx(kv_rate / achieved, abs=0.1), name


def test_batch_expansion_reads_the_kv_cache_once_per_scored_token():
    """vLLM V0 with CUDA graphs scores B(k+1) single-token rows (vllm#9298, #7090): the verify
    forward's KV bytes are t times those of multi-query scoring; a decode step is unchanged."""
    dep = sd.Deployment(presets.load("model", "qwen2-57b-a14b"), presets.load("gpu", "a800"), 2)
    mq = engine("cuda-graphs")
    be = dataclasses.replace(mq, scoring="batch-expansion")
    assert engine("vllm-v0-spec-decode").scoring == "batch-expansion"

    def kv(e, t):
        f = sd.forward_time(dep, 26, t, 512, engine=e)
        return float(next(x.bytes for x in f.terms if x.label == "KV cache + attention"))

    assert kv(be, 5) == pytest.approx(5 * kv(mq, 5))
    assert kv(be, 1) == pytest.approx(kv(mq, 1))
    assert float(sd.forward_time(dep, 26, 1, 512, engine=be).seconds) == pytest.approx(
        float(sd.forward_time(dep, 26, 1, 512, engine=mq).seconds))


def test_vllm_v1_round_and_draft_costs_from_the_eagle_timings():
    """vllm#20780: Llama-3.1-8B + EAGLE-1 at batch 1 on H100, TPOT and acceptance length for
    K = 2..7, vanilla TPOT 7.07 ms. A round costs TPOT x AL; a line over K meets K = 0 at the
    decode step plus rejection plus the round overhead, and rises per K by one draft step plus
    the verify forward's growth per token. explore's own draft step and verify growth (with the
    profile's per-forward costs) are taken off; what is left is the profile's value."""
    k = np.arange(2, 8)
    tpot = np.array([4.37, 4.29, 4.48, 4.71, 4.94, 5.20]) * MS
    accept_len = np.array([2.10, 2.29, 2.39, 2.43, 2.45, 2.47])
    slope, intercept = np.polyfit(k, tpot * accept_len, 1)
    e = engine("vllm-v1")
    gpu = presets.load("gpu", "h100-sxm")
    bare = dataclasses.replace(e, round_overhead_s=0.0, draft_step_overhead_s=0.0)
    times = sd.PhysicalTimes(sd.Deployment(presets.load("model", "llama3.1-8b"), gpu, 1),
                             sd.Deployment(presets.load("model", "eagle-llama3.1-8b"), gpu, 1),
                             512, engine=bare)
    verify_growth = np.polyfit(k, [float(times.target_s(1, x + 1)) for x in k], 1)[0]
    draft = float(times.draft_s(1))
    assert e.round_overhead_s == pytest.approx(
        intercept - 7.07 * MS - float(times.reject_s(1)), abs=20 * US)
    assert e.draft_step_overhead_s == pytest.approx(slope - draft - verify_growth, abs=20 * US)


def test_sampling_costs_inside_the_measured_range():
    """One sampling call over a 151,936-token vocabulary at batch 1: 0.097-0.207 ms
    (lightseekorg/tokenspeed#280, Triton and FlashInfer); V1's and SGLang's rejection step is
    one such GPU call with no host synchronisation (vllm#14930)."""
    for name in ("vllm-v1", "sglang"):
        assert 0.097 * MS <= engine(name).reject_base_s <= 0.207 * MS, name


def test_sglang_round_cost_is_the_two_measured_cpu_items():
    """sgl-project/sglang#8490: future resolve 0.10 ms and draft decode plan 0.12 ms per round,
    on the critical path with the overlap scheduler off for EAGLE (sglang#9961); the multi-step
    draft is one CUDA graph, no host work per draft step."""
    e = engine("sglang")
    assert e.round_overhead_s == pytest.approx(0.10 * MS + 0.12 * MS)
    assert e.draft_step_overhead_s == 0.0


def test_vllm_v0_fitted_costs_land_in_the_public_v0_ranges_at_small_batch():
    """Checked, not fitted: at batch 1 on 2xA800 (Qwen2-57B, Qwen2-0.5B draft) the fitted
    fractions of the decode step give a round cost inside the 1.5-4 ms public V0 reports
    (vllm#6915 estimates, verification times of vllm#8370 and #9298) and a draft step (kernels
    and engine) inside their 1.5-5 ms per proposal token (vllm#4632, #8370, #9298)."""
    gpu = presets.load("gpu", "a800")
    e = engine("vllm-v0-spec-decode")
    times = sd.PhysicalTimes(sd.Deployment(presets.load("model", "qwen2-57b-a14b"), gpu, 2),
                             sd.Deployment(presets.load("model", "qwen2-0.5b"), gpu, 1),
                             512, engine=e)
    step = float(times.target_s(1, 1))
    assert 1.5 * MS <= e.round_overhead_step * step <= 4 * MS
    assert 1.5 * MS <= float(times.draft_s(1)) <= 5 * MS


@pytest.mark.parametrize("field, value, message", [
    ("attention_kv_efficiency", 0.0, "attention_kv_efficiency must be in (0, 1]"),
    ("attention_kv_efficiency", 1.5, "attention_kv_efficiency must be in (0, 1]"),
    ("attention_layer_s", -1e-6, "attention_layer_s must be a finite time >= 0"),
    ("scoring", "tree", "scoring must be one of multi-query, batch-expansion"),
])
def test_bad_engine_fields_are_refused(field, value, message):
    from explore.models.errors import InputError
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        dataclasses.replace(engine("none"), **{field: value})


def test_moe_layer_cost_is_the_fused_moe_floor_beyond_its_bytes():
    """Fused-MoE kernel time at batch 1 (one token, K experts), less the time its expert weights
    take at the GPU preset's achieved bandwidth, is a fixed floor per MoE layer: Mixtral bf16
    TP2 on H100 144.03 us (vllm#24700), Qwen3-235B fp8 TP8 on H200 31.70 us (sglang#11730),
    Qwen3-Next-80B fp8 TP4 on H100 29.45 us (vllm#44830)."""
    bw = {g: presets.load("gpu", g).achieved_bandwidth for g in ("h100-sxm", "h200")}
    runs = [(144.03 * US, 2 * 3 * 4096 * 14336 * 2 / 2, "h100-sxm"),
            (31.70 * US, 8 * 3 * 4096 * 1536 * 1 / 8, "h200"),
            (29.45 * US, 10 * 3 * 2048 * 512 * 1 / 4, "h100-sxm")]
    floors = [measured - nbytes / bw[g] for measured, nbytes, g in runs]
    for name in ("cuda-graphs", "vllm-v0-spec-decode", "vllm-v1", "sglang"):
        assert engine(name).moe_layer_overhead_s == pytest.approx(np.mean(floors), abs=1 * US)
