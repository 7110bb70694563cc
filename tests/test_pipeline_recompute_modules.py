"""Selective recompute of Megatron-Core's modules (--recompute-modules), the MoE working
buffer, and Megatron's --pipeline-model-parallel-layout (docs/pipeline.md §4.3, §11.3,
§11.5)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from explore import presets
from explore.models.errors import InputError
from explore.models.pipeline import memory as mem
from explore.models.pipeline.config import (Hardware, Layout, Policy, layout_chunks,
                                            parse_pipeline_layout)
from explore.models.pipeline.costs import Terms
from explore.models.pipeline.moe import MoeLayout, moe_ffn_bytes, moe_forward_transient

V3 = presets.load("model", "deepseek-v3")
H100 = presets.load("gpu", "h100")
DGX_H100 = presets.load("node", "dgx-h100")
S = 4096


def _terms(modules, recompute="selective", model=V3, gpus=256, tp=2, pp=16, ep=4,
           flash=True):
    hw = Hardware.from_presets(H100, DGX_H100, gpus)
    lay = Layout(tp, pp, gpus // (tp * pp), S, 1, 256, 1, True, flash, ep=ep, etp=1)
    return Terms(model, lay, hw, Policy("1f1b", recompute=recompute, optimizer="dist-opt",
                                        recompute_modules=tuple(modules)))


def _moe_layer(t: Terms):
    return next(x for x in t.kinds if x.moe and not x.mtp)


def _dense_layer(t: Terms):
    return next(x for x in t.kinds if not x.moe and not x.mtp)


def test_each_module_drops_its_tensors_by_hand():
    """DeepSeek-V3 MoE layer, s 4096, b 1, TP 2 with SP, EP 4, ETP 1, per GPU (bf16):
      moe_act:        the routed experts' fc2 input, 2 f_exp x k routed copies of the s b / TP
                      tokens: 2 x 2048 x 8 x 2048 B;
      layernorm:      MLA's input-norm output and the MoE pre-FFN norm output, 2h each on
                      the SP shard: 2 x 2 x 7168 x 2048;
      mla_up_proj:    Q and K (2 a (d + d_rope) each) and V (2 a d_v), TP-sharded:
                      (2 x 128 x 192 x 2 + 2 x 128 x 128) x 4096 / 2;
      shared_experts: gate, up and down inputs, 3 x 2 f_s, TP-sharded: 3 x 2 x 2048 x 4096 / 2;
      moe:            the whole block (moe_ffn_bytes)."""
    none = _moe_layer(_terms((), "none")).a_layer
    drops = {"moe_act": 2 * 2048 * 8 * 2048, "layernorm": 2 * 2 * 7168 * 2048,
             "mla_up_proj": (2 * 128 * 192 * 2 + 2 * 128 * 128) * 4096 // 2,
             "shared_experts": 3 * 2 * 2048 * 4096 // 2,
             "moe": moe_ffn_bytes(V3, S, 1, MoeLayout(256, 2, 16, 1, 4, 1))}
    for module, dropped in drops.items():
        assert none - _moe_layer(_terms((module,))).a_layer == dropped, module
    both = _moe_layer(_terms(("moe", "moe_act", "shared_experts"))).a_layer
    assert none - both == drops["moe"]                     # moe covers the other two


def test_mlp_recomputes_dense_layers_only():
    """mlp is Megatron's dense MLP: DeepSeek-V3's first three layers drop their SwiGLU
    tensors (gate, up, down input: 3 x 2 f / TP per token), the MoE layers nothing."""
    t, base = _terms(("mlp",)), _terms((), "none")
    assert _moe_layer(t).a_layer == _moe_layer(base).a_layer
    assert _dense_layer(base).a_layer - _dense_layer(t).a_layer == 3 * 2 * 18432 * S // 2


def test_recompute_costs_the_modules_forward_again():
    """The backward reruns each module's forward kernels: moe_act the experts' SwiGLU, moe the
    whole block with its dispatch and combine; the GEMM modules add their FLOPs to HFU."""
    base = _moe_layer(_terms((), "none"))
    k = base.kernel_times.terms
    act = _moe_layer(_terms(("moe_act",)))
    assert act.t_b - base.t_b == pytest.approx(k["F: expert activation"])
    assert act.selective_flops == 0
    whole = _moe_layer(_terms(("moe",)))
    assert whole.t_b - base.t_b > k["F: expert GEMMs"] + base.all_to_all_s
    assert whole.selective_flops == pytest.approx(
        2 * (V3.router_params + 8 * V3.expert_params + 3 * 7168 * 2048) * S)
    up = _moe_layer(_terms(("mla_up_proj",)))
    assert up.t_b - base.t_b == pytest.approx(k["F: q_up GEMM"] + k["F: kv_up GEMM"])


def test_core_attn_alone_under_flash_changes_nothing():
    t, base = _terms(("core_attn",)), _terms((), "none")
    assert t.chunk_stored.tolist() == base.chunk_stored.tolist()
    assert _moe_layer(t).t_b == _moe_layer(base).t_b


@pytest.mark.parametrize("model,modules,message", [
    ("llama2-7b", ("mla_up_proj",), "recompute module mla_up_proj needs multi-latent"),
    ("llama2-7b", ("moe_act",), "recompute module moe_act needs routed experts"),
    ("mixtral-8x7b", ("shared_experts",), "needs shared experts; mixtral-8x7b has none"),
])
def test_modules_the_model_lacks_are_refused(model, modules, message):
    shape = presets.load("model", model)
    with pytest.raises(InputError, match=message):
        mem.check_modules_apply(shape, modules)


def test_unknown_module_is_refused(cli):
    code, _, err = cli("pipeline", "breakdown", "--model", "deepseek-v3", "--gpus", "256",
                       "--hardware", "h100", "--tp", "2", "--pp", "16", "--ep", "8",
                       "--recompute", "selective", "--recompute-modules", "moe_actt")
    assert code == 2 and "--recompute-modules 'moe_actt': choose from core_attn" in err
    code, _, err = cli("pipeline", "--model", "llama2-7b", "--gpus", "8",
                       "--recompute-modules", "moe")
    assert code == 2 and "recompute module moe needs MoE layers; llama2-7b has none" in err


def test_moe_working_buffer_is_the_forward_transient_by_hand():
    """DeepSeek-V3 at TP 1: the alltoall forward holds four h-wide copies of the k s b routed
    tokens and the shared output, 2 x 7168 x (4 x 8 + 1) = 473,088 B per token, more than the
    layer's A_full (the audit of Megatron-Core's MoELayer.forward)."""
    t = _terms((), "none", gpus=64, tp=1, pp=4, ep=8)
    layer = _moe_layer(t)
    transient = moe_forward_transient(V3, S, 1, t.layout.moe)
    assert transient == 473_088 * S
    assert layer.working == transient > layer.a_full
    assert t.work_bytes[:3].tolist() == [transient] * 3    # the last holds the MTP module
    assert _dense_layer(t).working == _dense_layer(t).a_full


# ---- --pipeline-layout ------------------------------------------------------------------------

def test_layout_string_expands_as_megatron():
    assert parse_pipeline_layout("Et*3|(tt|)*6tmL") == ("Ettt",) + ("tt",) * 6 + ("tmL",)
    assert parse_pipeline_layout("Ettt|(tt|)*2,m|L") == ("Ettt", "tt", "tt", "m", "L")


def test_layout_places_layers_and_the_mtp_module():
    """The Megatron-Core CI run's layout: 3 dense layers with the embedding, six chunks of 2,
    the last chunk 1 layer with the MTP module and the loss; PP 2 x VPP 4; the last rank holds
    chunks 1, 3, 5, 7 = 7 layers."""
    ci = replace(V3, name="ci", layers=16, dense_layers=3, mtp_layers=1)
    chunks = layout_chunks(ci, "Et*3|(tt|)*6tmL", 2, "interleaved", 4)
    assert chunks == (3, 2, 2, 2, 2, 2, 2, 1)
    hw = Hardware.from_presets(H100, DGX_H100, 8)
    lay = Layout(2, 2, 2, S, 4, 32, 4, True, False, ep=4, etp=1,
                 pipeline_layout="Et*3|(tt|)*6tmL")
    t = Terms(replace(ci, hidden=1024, heads=32, kv_heads=32, intermediate=4096, experts=32,
                      experts_per_token=4, expert_intermediate=1024,
                      shared_expert_intermediate=1024, vocab=51712), lay, hw,
              Policy("interleaved", optimizer="dist-opt"))
    assert t.stage_layers == (9, 7)


def test_a_last_virtual_stage_of_mtp_and_loss_only():
    """DeepSeek-V3's layout in the Megatron-Bridge recipes, Et|(tt|)*30mL: 32 virtual stages,
    the last holds the MTP module, the LM head and the loss but no decoder layer; its chunk
    is costed by its MTP module."""
    assert layout_chunks(V3, "Et|(tt|)*30mL", 8, "interleaved", 4) == (1,) + (2,) * 30 + (0,)
    hw = Hardware.from_presets(H100, DGX_H100, 1024)
    lay = Layout(2, 8, 64, S, 1, 8192, 4, True, ep=64, etp=1, pipeline_layout="Et|(tt|)*30mL")
    t = Terms(V3, lay, hw, Policy("interleaved", optimizer="dist-opt"))
    assert [x.mtp for x in t.chunk_layers[-1]] == [True]
    assert t.chunk_times[0][-1] > 0


@pytest.mark.parametrize("text,pp,schedule,vpp,message", [
    ("Et*3|(tt|)*6tmL", 2, "interleaved", 2, "has 8 virtual stages; PP 2 x 2 chunks"),
    ("Et*3|(tt|)*6tL", 2, "interleaved", 4, "places 0 MTP module(s) (m); ci has 1"),
    ("Et*2|(tt|)*6tmL", 2, "interleaved", 4, "places 15 decoder layers (t); ci has 16"),
    ("Et*3|(tt|)*5tm|ttL", 2, "interleaved", 4, "all in the last virtual stage"),
    ("Et*3|(tt|)*6tmL", 4, "zb-v", 1, "schedule zb-v uses a V"),
    ("E|t*5|(tt|)*5tmL", 2, "interleaved", 4, "virtual stage 0 holds no decoder layer"),
    ("Et*3|(tt|)*6tm", 2, "interleaved", 4, "the loss L comes once, last"),
    ("Et*3|(tt|)*6tmLq", 2, "interleaved", 4, "unknown symbol 'q'"),
    ("Et*99999999|L", 2, "interleaved", 1, "t*99999999 repeats too often"),
])
def test_bad_layouts_name_the_rule(text, pp, schedule, vpp, message):
    ci = replace(V3, name="ci", layers=16, dense_layers=3, mtp_layers=1)
    with pytest.raises(InputError, match=re.escape(message)):
        layout_chunks(ci, text, pp, schedule, vpp)


def test_pipeline_layout_on_the_cli(cli, tmp_path):
    """breakdown takes the layout (VPP from its stages, interleaved) and --emit megatron
    writes it back with the recompute modules."""
    model = tmp_path / "ci.yaml"
    model.write_text("name: ci\nlayers: 16\nhidden: 1024\nheads: 32\nkv_heads: 32\n"
                     "head_dim: 128\nintermediate: 4096\nvocab: 51712\nexperts: 32\n"
                     "experts_per_token: 4\nexpert_intermediate: 1024\n"
                     "shared_expert_intermediate: 1024\nrouter: sigmoid\ndense_layers: 3\n"
                     "kv_lora_rank: 512\nq_lora_rank: 1536\nqk_rope_head_dim: 64\n"
                     "v_head_dim: 128\nmtp_layers: 1\n")
    common = ("--model", str(model), "--gpus", "8", "--hardware", "h100", "--tp", "2", "--pp",
              "2", "--ep", "4", "--etp", "1", "--seq", "4096", "--mbs", "4", "--global-batch",
              "32", "--sp", "--no-flash", "--pipeline-layout", "Et*3|(tt|)*6tmL",
              "--recompute", "selective", "--recompute-modules",
              "layernorm,mla_up_proj,mlp,moe_act", "--dist-opt")
    code, out, err = cli("pipeline", "breakdown", *common)
    assert code == 0, err
    out = " ".join(out.split())
    assert "layout Et*3|(tt|)*6tmL" in out and "interleaved" in out
    assert "recompute selective (layernorm, mla_up_proj, mlp, moe_act)" in out
    code, out, err = cli("pipeline", *common, "--emit", "megatron")
    assert code == 0, err
    assert "--pipeline-model-parallel-layout 'Et*3|(tt|)*6tmL'" in out \
        or "--pipeline-model-parallel-layout Et*3|(tt|)*6tmL" in out
    assert "--recompute-modules layernorm mla_up_proj mlp moe_act" in out
    code, _, err = cli("pipeline", "breakdown", *common[:-7], "--pipeline-layout", "Et|L")
    assert code == 2 and err.startswith("error: ") and "places 1 decoder layers" in err


def test_megatron_list_flags_parse_back():
    from explore.models.pipeline.megatron import parse_megatron_args
    got = parse_megatron_args(["--recompute-modules", "moe_act", "layernorm", "--bf16",
                               "--pipeline-model-parallel-layout", "Et*3|(tt|)*6tmL"])
    assert got == {"--recompute-modules": ["moe_act", "layernorm"], "--bf16": True,
                   "--pipeline-model-parallel-layout": "Et*3|(tt|)*6tmL"}
