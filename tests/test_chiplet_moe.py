"""MoE, MLA and the all-to-all on the mesh (docs/chiplet.md §4.1, §5.3): the closed-form
all-to-all against the step-by-step engine, the dispatch bytes by hand, expert placement, and
the FLOPs against the pipeline study's independent count."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explore import presets
from explore.models.chiplet import cost
from explore.models.chiplet import mesh as nop
from explore.models.chiplet import methods as M
from explore.models.chiplet.report import evaluate_one
from explore.models.chiplet.study import ChipletSetup
from explore.models.chiplet.validate import scenario_point, scenario_workload


def shape(name):
    return presets.load("model", name)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 16), cols=st.integers(1, 16), seed=st.integers(0, 2**32 - 1),
       idle=st.integers(0, 5))
def test_all_to_all_closed_form_is_the_step_by_step_engine(rows, cols, seed, idle):
    """Every term of the closed form equals routing all P^2 transfers, for any send and
    receive shares (some dies idle), on grids up to 16x16."""
    mesh = nop.Mesh(rows, cols)
    rng = np.random.default_rng(seed)
    send = rng.random(mesh.P)
    receive = rng.random(mesh.P)
    receive[rng.permutation(mesh.P)[:min(idle, mesh.P - 1)]] = 0.0
    for u, w in ((send, receive), (receive, np.ones(mesh.P))):
        closed = nop.all_to_all(mesh, u, w, 1000.0)
        ref = nop.cost(mesh, nop.all_to_all_schedule(mesh, u, w, 1000.0))
        assert closed.link_load == pytest.approx(ref.link_load, abs=1e-9)
        assert (closed.load, closed.elem_hops, closed.elems, closed.per_die) == pytest.approx(
            (ref.load, ref.elem_hops, ref.elems, ref.per_die))
        assert closed.hops == ref.hops


def _a2a(plan):
    return [c for c in plan.comms if c.part == "moe"]


def test_dispatch_bytes_by_hand_qwen3_30b_on_8x8():
    """Qwen3-30B-A3B (E 128, K 8, H 2048) on 8x8: 2 experts per die. Each token's input goes
    to K = 8 dies: 8 x 2048 = 16,384 elements (32 KiB in bf16), 256 per die; the uniform
    all-to-all loads the middle links of an 8x8 mesh with V / (4 N) = 512 elements."""
    m, mesh = shape("qwen3-30b-a3b"), nop.Mesh(8, 8)
    assert M.expert_placement(m, mesh) == (2, 1)
    plan = M.plan(M.Method("hecaton2d"), mesh, m, 4096, moe=True)
    comms = _a2a(plan)
    assert [(c.pass_, c.name.split(" all-to-all")[0]) for c in comms] == [
        ("fwd", "MoE dispatch"), ("fwd", "MoE combine"), ("bwd", "MoE dY dispatch"),
        ("bwd", "MoE dX combine")]
    for c in comms:
        assert c.cost.elems == 16_384 and c.cost.elems * m.bytes_per_param == 32_768
        assert c.cost.per_die == 256 and c.cost.load == pytest.approx(512)
        assert c.cost.hops == 14                                   # corner to corner
    # expert weights on a die: 2 x 3 x 2048 x 768
    assert plan.expert_elems == 2 * 3 * 2048 * 768
    assert plan.gradient_elems == pytest.approx(plan.weight_elems * 64)


def test_mixtral_experts_are_sharded_over_die_groups():
    """Mixtral (E 8, K 2, F_e 14336) on 8x8: each expert over 8 dies at width 1792; a token
    goes to K x 8 = 16 dies: 2 x 8 x 4096 = 65,536 elements per token."""
    m, mesh = shape("mixtral-8x7b"), nop.Mesh(8, 8)
    assert M.expert_placement(m, mesh) == (1, 8)
    plan = M.plan(M.Method("2d"), mesh, m, 4096, moe=True)
    assert {c.cost.elems for c in _a2a(plan)} == {65_536}
    assert plan.expert_elems == 3 * 4096 * 1792
    assert any("each over 8 dies" in n for n in plan.notes)
    # 6x8 = 48 dies: 6 per expert, all busy; 5x5 = 25: 3 per expert, one die idle
    assert M.expert_placement(m, nop.Mesh(6, 8)) == (1, 6)
    idle = M.plan(M.Method("hecaton2d"), nop.Mesh(5, 5), m, 4096, moe=True)
    assert any("1 idle" in n for n in idle.notes)


def test_1d_needs_no_all_to_all():
    """1D holds every token on every die: the experts' partial outputs join the FFN
    all-reduce, so an MoE layer has the dense layer's two all-reduces per pass and nothing
    else."""
    m, mesh = shape("qwen3-30b-a3b"), nop.Mesh(8, 8)
    moe = M.plan(M.Method("1d"), mesh, m, 4096, moe=True)
    dense = M.plan(M.Method("1d"), mesh, m, 4096)
    assert not _a2a(moe)
    assert [(c.name, c.cost.load, c.cost.hops, c.cost.elems) for c in moe.comms] == [
        (c.name, c.cost.load, c.cost.hops, c.cost.elems) for c in dense.comms]


@pytest.mark.parametrize("model", ["qwen3-30b-a3b", "deepseek-v3", "mixtral-8x7b",
                                   "deepseek-v2-lite", "llama2-70b"])
def test_flops_equal_the_pipeline_studys_count(model):
    """With full attention (c = 1) the chiplet FLOPs per iteration equal ModelShape's
    training FLOPs, counted independently for the pipeline study (dense and MoE layers,
    MLA, MTP modules with their heads)."""
    m = shape(model)
    w = cost.Workload(m, seq=4096, batch=8, causal=1.0)
    assert float(cost.model_flops(w, False)) == pytest.approx(
        w.tokens * m.training_flops_per_token(4096), rel=1e-12)


@pytest.mark.parametrize("model", ["qwen3-30b-a3b", "deepseek-v2-lite"])
@pytest.mark.parametrize("method", ["1d", "2d", "hecaton2d", "3d", "2.5d-q2"])
def test_expert_gemms_carry_the_models_expert_flops(model, method):
    """The per-die expert GEMMs over all dies are the model's routed-expert FLOPs (E divides
    evenly over 64 dies), and the layer's weight shards hold every expert once."""
    m, mesh = shape(model), nop.Mesh(8, 8)
    plan = M.plan(M.parse_method(method), mesh, m, 4096, moe=True)
    fwd = sum(2 * g.count * g.m_tok * g.k_fix * g.n for g in plan.gemms
              if g.pass_ == "fwd" and g.name.startswith("experts"))
    assert fwd * mesh.P == pytest.approx(2 * m.experts_per_token * m.expert_params)
    assert plan.expert_elems * mesh.P == m.experts * m.expert_params


def _setup(model):
    return ChipletSetup(scenario_workload(shape(model)), presets.load("die", "die-7nm"),
                        {"standard": presets.load("package", "standard")},
                        {"ddr5": presets.load("dram", "ddr5")})


def test_moe_model_runs_and_its_all_to_all_is_on_the_mesh_stream():
    """Qwen3-30B-A3B on 8x8 Hecaton-2D: a feasible point whose NoP time grows with the
    all-to-all's bytes (wider K costs more), every term finite."""
    s = _setup("qwen3-30b-a3b")
    point = scenario_point("8x8", sram_mb=128)
    r = evaluate_one(s, point)
    assert r["reason"] == "" and np.isfinite(r["latency_s"]) and r["t_nop_s"] > 0
    wider = replace(s, work=replace(s.work, model=replace(s.work.model, experts_per_token=16)))
    r2 = evaluate_one(wider, point)
    assert r2["t_nop_s"] > r["t_nop_s"] and r2["nop_bytes"] > r["nop_bytes"]


def test_expert_weights_resident_or_streamed():
    """Below the residency threshold the MoE layer's shard (experts included) is re-read per
    micro-batch: weight traffic x n_mb, and the point reports it streamed."""
    s = _setup("qwen3-30b-a3b")
    big = evaluate_one(s, scenario_point("8x8", sram_mb=192))
    small = evaluate_one(s, scenario_point("8x8", sram_mb=48))
    assert big["resident"] == 1 and small["resident"] == 0
    assert small["fwd.dram_weights"] == pytest.approx(16 * big["fwd.dram_weights"])  # n_mb 16


def test_local_attention_models_are_refused_by_name():
    from explore.models.errors import InputError
    with pytest.raises(InputError, match="gpt-oss-20b has sliding local attention"):
        cost.Workload(shape("gpt-oss-20b"))
