"""Local attention in the pipeline study (docs/pipeline.md §11.8): which layers attend
locally, what their attention costs, and what is refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from explore import presets
from explore.models.errors import InputError
from explore.models.pipeline.config import Hardware, Layout, Policy
from explore.models.pipeline.costs import Terms

GPT_OSS = presets.load("model", "gpt-oss-120b")
SCOUT = presets.load("model", "llama4-scout-17b-16e")
H100 = presets.load("gpu", "h100")
DGX_H100 = presets.load("node", "dgx-h100")


def test_local_layers_follow_the_published_patterns():
    """gpt-oss alternates sliding and full attention from a sliding first layer (its config's
    layer_types); Llama 4 keeps every fourth layer (the NoPE ones) global."""
    assert [GPT_OSS.is_local_layer(i) for i in range(4)] == [True, False, True, False]
    assert [SCOUT.is_local_layer(i) for i in range(8)] == [True, True, True, False] * 2
    assert not GPT_OSS.is_local_layer(GPT_OSS.layers)           # an MTP module's index


@given(st.integers(1, 128), st.data())
def test_the_local_layer_count_is_the_models(layers, data):
    local = data.draw(st.integers(1, layers))
    shape = replace(GPT_OSS, layers=layers, local_layers=local)
    assert sum(shape.is_local_layer(i) for i in range(layers)) == local


@given(st.sampled_from([1024, 4096, 32768]))
def test_per_layer_flops_add_up_to_the_models(seq):
    per_layer = sum(GPT_OSS.layer_flops_per_token(seq, i) for i in range(GPT_OSS.layers))
    assert per_layer == pytest.approx(GPT_OSS.layers * GPT_OSS.layer_forward_flops_per_token(seq))


def _terms(model=GPT_OSS, flash=True, cp=1, gpus=16):
    hw = Hardware.from_presets(H100, DGX_H100, gpus)
    lay = Layout(1, 4, gpus // (4 * cp), 4096, 1, 64, 1, True, flash, ep=4, cp=cp)
    return Terms(model, lay, hw, Policy("1f1b", optimizer="dist-opt"))


def test_a_sliding_layer_attends_its_window_by_hand():
    """gpt-oss, s 4096, window 128: QK^T and AV per query over 128 keys instead of 4096, so
    the flash-attention kernels of a sliding layer take 128/4096 of a full layer's (the kernel
    overhead apart); its forward FLOPs differ by (4096 - 128) x 4 a d per token."""
    t = _terms()
    full = next(x for x in t.kinds if x.moe and not x.local and not x.mtp)
    slid = next(x for x in t.kinds if x.moe and x.local and not x.mtp)
    oh = H100.kernel_overhead_s
    for key in ("F: flash attention", "B: flash attention"):
        assert slid.kernel_times.terms[key] - oh == pytest.approx(
            (full.kernel_times.terms[key] - oh) * 128 / 4096)
    assert full.flops - slid.flops == pytest.approx((4096 - 128) * 4 * 64 * 64 * 4096)
    assert slid.a_full == full.a_full               # flash: no s x s tensor either way
    assert t.chunk_kinds[0].tolist() == [6, 2] * 4 + [6]   # local MoE, global MoE, ...


@pytest.mark.parametrize("change,message", [
    ({"flash": False}, "local (sliding) attention layers run in flash attention only"),
    ({"cp": 2}, "context parallelism with local (sliding) attention is not modelled"),
])
def test_what_local_attention_does_not_cover_is_named(change, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _terms(**change)


def test_gpt_oss_and_llama4_plan_on_the_cli(cli):
    for model, gpus in (("gpt-oss-20b", "16"), ("llama4-scout-17b-16e", "64")):
        code, out, err = cli("pipeline", "--model", model, "--gpus", gpus, "--hardware",
                             "h100", "--global-batch", "64")
        assert code == 0, err
        assert "Best for tokens/s" in out
    code, _, err = cli("pipeline", "breakdown", "--model", "gpt-oss-20b", "--gpus", "16",
                       "--hardware", "h100", "--tp", "1", "--pp", "4", "--ep", "4",
                       "--no-flash")
    assert code == 2 and "run in flash attention only" in err
