"""MoE layout rules and model states (docs/pipeline.md §11): Megatron-Core's expert placement,
the bytes per GPU pinned by hand for a DeepSeek-V3 layout, and EP = 1 on a dense model equal
to the dense study's numbers."""

import pytest

from explore import presets
from explore.models.errors import InputError
from explore.models.pipeline.config import Hardware, Layout, Policy
from explore.models.pipeline.costs import Terms
from explore.models.pipeline.moe import MoeLayout, stage_states

V3 = presets.load("model", "deepseek-v3")


def test_deepseek_v3_stage_states_by_hand():
    """256 GPUs, TP 2, PP 8, EP 32, ETP 1: DP 16, EDP 2 x 16 / 32 = 1. A stage of eight MoE
    layers (8-15) on one GPU, distributed optimizer:
      experts: 8 layers x 256/32 experts x 3 x 7168 x 2048 = 2,818,572,288 params, 6 + 12/1 B
      dense:   8 x [(MLA 187,107,328 + shared 44,040,192 + norms 14,336) / 2 + router
               7168 x 256] = 939,327,488 params, 6 + 12/16 B
    (MLA: q 7168 x 1536 + 1536 + 1536 x 128 x 192, kv 7168 x 576 + 512 + 512 x 128 x 256,
    o 128 x 128 x 7168)."""
    lay = MoeLayout(256, tp=2, pp=8, ep=32, etp=1)
    assert (lay.dp, lay.edp) == (16, 1)
    s = stage_states(V3, lay, range(8, 16), first=False, last=False, dist_opt=True)
    assert s.expert_params == 2_818_572_288
    assert s.dense_params == 939_327_488
    assert s.total == pytest.approx(2_818_572_288 * 18 + 939_327_488 * 6.75)
    assert s.total / 2**30 == pytest.approx(53.15, abs=0.01)


def test_stage_states_add_up_to_the_model():
    """TP 1, every GPU of a stage holding E/EP experts: the stages' dense parameters plus
    EP x ETP x their expert parameters give the whole model."""
    lay = MoeLayout(64, tp=1, pp=4, ep=8, etp=2)
    bounds = [0, 16, 31, 46, 61]
    total = 0.0
    for i in range(4):
        s = stage_states(V3, lay, range(bounds[i], bounds[i + 1]), i == 0, i == 3)
        total += s.dense_params + s.expert_params * lay.ep * lay.expert_tp
    assert total == pytest.approx(V3.total_params)


def test_ep_one_on_a_dense_model_equals_the_dense_study():
    shape = presets.load("model", "llama2-7b").with_layers(8)
    hw = Hardware.from_presets(presets.load("gpu", "h100"), presets.load("node", "dgx-h100"),
                               16)
    terms = Terms(shape, Layout(2, 4, 2, 4096, 1, 64), hw, Policy("1f1b", optimizer="dist-opt"))
    lay = MoeLayout(16, tp=2, pp=4)
    for d in range(4):
        s = stage_states(shape, lay, range(2 * d, 2 * d + 2), d == 0, d == 3, dist_opt=True)
        assert s.dense_params == pytest.approx(terms.params[d]) and s.expert_params == 0
        assert s.total == pytest.approx(terms.resident_states(d))


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


def test_experts_only_apply_to_moe_models():
    with pytest.raises(InputError, match="has no experts"):
        MoeLayout(8, tp=2, ep=2).check(presets.load("model", "llama2-7b"))
