"""Draft families, token trees and the forms of acceptance (docs/sd.md §3.1-§3.3): the
conversions, a tree of one branch as the chain, the verify width through N(n), each family's
cost, the qualitative physics of wide trees on MoE targets, and every bad input's message."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explore import presets
from explore.models import sd
from explore.models import sd_draft as D
from explore.models.errors import InputError
from explore.models.sd_study import SdSetup

H100 = presets.load("gpu", "h100")
NONE = presets.load("engine", "none")
QWEN_MOE = presets.load("model", "qwen3-30b-a3b")
QWEN_DENSE = presets.load("model", "qwen3-32b")
EAGLE3 = presets.load("model", "eagle3-qwen3-30b-a3b")


def _setup(model=QWEN_MOE, alpha=0.8, topk=1, tokens=None, rates=(), engine=NONE,
           draft=None, tp=1):
    draft = draft or sd.Draft("eagle", sd.Deployment(EAGLE3, H100, 1), True)
    return SdSetup(sd.Deployment(model, H100, tp), draft, alpha, 512, engine=engine,
                   rates=rates, topk=topk, tree_tokens=tokens)


# ---- acceptance forms (§3.1) -----------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(alpha=st.floats(0.0, 0.99), gamma=st.integers(1, 16))
def test_a_chain_of_one_rate_is_the_closed_form(alpha, gamma):
    assert D.accepted_length(alpha, gamma) == pytest.approx(
        float(sd.tokens_per_round(alpha, gamma)), rel=1e-12)


def test_equal_position_rates_equal_the_alpha_form():
    """MTP heads with one rate each, all equal: the same rounds as i.i.d. alpha."""
    a, b = _setup(alpha=0.7), _setup(alpha=0.7, rates=(0.7, 0.7, 0.7))
    ra, rb = (s.evaluate(s.times(), np.arange(1, 9)[:, None], np.arange(1, 7)[None, :])
              for s in (a, b))
    assert np.array_equal(ra.tokens_per_round, rb.tokens_per_round)
    assert np.array_equal(ra.speedup, rb.speedup)


def test_position_rates_by_hand():
    """Rates 0.9, 0.8, 0.7 (the last repeating): tau(4) = 1 + .9 + .72 + .504 + .3528."""
    assert D.accepted_length((0.9, 0.8, 0.7), 4) == pytest.approx(
        1 + 0.9 + 0.9 * 0.8 + 0.9 * 0.8 * 0.7 + 0.9 * 0.8 * 0.7 * 0.7)


@pytest.mark.parametrize("steps, topk, tokens", [(3, 1, None), (5, 1, None), (4, 4, 16),
                                                 (6, 8, 48)])
def test_accepted_length_inverts(steps, topk, tokens):
    for alpha in (0.2, 0.55, 0.9):
        length = D.accepted_length(alpha, steps, topk, tokens)
        assert D.alpha_from_accepted_length(length, steps, topk, tokens) == pytest.approx(
            alpha, abs=1e-9)


# ---- trees (§3.2) ------------------------------------------------------------------------------

def test_a_tree_of_one_branch_is_the_chain():
    """topk 1 with steps + 1 verified positions: the chain of the same steps, every number."""
    chain = _setup()
    batches, steps = np.arange(1, 17)[:, None], np.arange(1, 9)[None, :]
    rc = chain.evaluate(chain.times(), batches, steps)
    for g in range(1, 9):
        t = _setup(topk=1, tokens=g + 1)
        r = t.evaluate(t.times(), np.arange(1, 17), g)
        assert np.allclose(r.speedup, rc.speedup[:, g - 1], rtol=1e-12)


def test_branches_spend_the_verify_budget_level_by_level():
    assert D.branches(3, 4, 8).tolist() == [4, 2, 1]     # 7 nodes: one each, then the top
    assert D.branches(5, 8, 64).tolist() == [8] * 5      # more budget than the beam holds
    assert D.branches(4, 2, 3).tolist() == [1, 1, 0, 0]  # 2 nodes: the chain stops at depth 2


def test_more_branches_never_accept_fewer_tokens():
    for topk in (2, 4, 8):
        assert D.accepted_length(0.6, 5, topk, 5 * topk + 1) > D.accepted_length(0.6, 5)


def test_the_verify_width_grows_the_activated_experts_as_N_of_n():
    """The verify forward scores B x tokens positions: its routed-expert bytes are the MoE
    layers x N(B tokens) experts x their bytes (§4), for a chain's gamma + 1 and a tree's
    tokens alike."""
    m = QWEN_MOE
    for topk, tokens, width in ((1, None, 6), (8, 64, 64)):
        s = _setup(topk=topk, tokens=tokens)
        for batch in (1, 4):
            n = batch * width
            fwd = s.times().target_forward(batch, float(s.verify_width(5)))
            term = next(t for t in fwd.terms if t.label == "routed experts")
            expected = m.moe_layers * sd.experts_activated(n, m.experts, m.experts_per_token) \
                * m.expert_params * m.expert_bytes_per_param
            assert float(term.bytes) == pytest.approx(expected)


def test_a_wide_tree_can_make_a_sparse_moe_target_slower_than_decoding():
    """Qwen3-30B-A3B (128 experts, top 8) at batch 1, kernels only: a 64-token tree of topk
    8 touches ~126 experts per layer in verification instead of 8, and even at alpha 0.9
    speculation runs slower than plain decoding; the dense Qwen3-32B at the same widths
    still gains (its verify stays memory-bound on the same weights)."""
    moe = _setup(QWEN_MOE, 0.9, topk=8, tokens=64)
    dense = _setup(QWEN_DENSE, 0.9, topk=8, tokens=64)
    assert float(moe.evaluate(moe.times(), 1, 5).speedup) < 1.0
    assert float(dense.evaluate(dense.times(), 1, 5).speedup) > 2.0
    chain = _setup(QWEN_MOE, 0.9)
    assert float(chain.evaluate(chain.times(), 1, 5).speedup) > 1.0


def test_a_tree_drafts_topk_rows_after_its_first_step():
    s = _setup(topk=4, tokens=16)
    t = s.times()
    r = s.evaluate(t, 3, 5)
    assert float(r.t_draft_round) == pytest.approx(float(t.draft_s(3) + 4 * t.draft_s(3, 4)))


# ---- families (§3.3) ---------------------------------------------------------------------------

def test_an_ngram_draft_costs_no_forward_and_no_memory():
    ngram = _setup(draft=sd.Draft("ngram"))
    assert float(ngram.times().draft_s(8)) == 0.0          # engine none: no step overhead
    sglang = _setup(draft=sd.Draft("ngram"), engine=presets.load("engine", "sglang"))
    assert float(sglang.times().draft_s(8)) == sglang.engine.draft_step_overhead_s
    assert ngram.draft.weight_bytes_per_gpu == 0 and ngram.draft.kv_bytes_per_gpu(8, 512) == 0


def test_eagle3_reads_its_own_small_head_and_shares_the_embedding():
    """The SpecForge head's LM head over its 32,000-token vocabulary; the embedding is the
    target's, so its weights on the GPU exclude it."""
    d = presets.load("draft", "eagle3-qwen3-30b-a3b")
    assert (d.family, d.vocab, d.shares_embedding, d.shares_head) == ("eagle", 32000, True,
                                                                      False)
    from dataclasses import replace
    head = replace(EAGLE3, vocab=32000)
    draft = sd.Draft("eagle", sd.Deployment(head, H100, 1), shares_embedding=True)
    fwd = sd.forward_time(draft.deployment, 1, 1, 512)
    lm = next(t for t in fwd.terms if t.label == "LM head")
    assert float(lm.bytes) == 32000 * 2048 * 2
    assert draft.weight_bytes_per_gpu == pytest.approx(head.weight_bytes - 32000 * 2048 * 2)


def test_mtp_shares_embedding_and_head():
    d = presets.load("draft", "deepseek-v3-mtp")
    m = presets.load("model", d.model)
    draft = sd.Draft("mtp", sd.Deployment(m, H100, 8), True, True)
    assert draft.weight_bytes_per_gpu == pytest.approx(
        (m.weight_bytes - 2 * m.vocab * m.hidden * m.EDGE_BYTES) / 8)


@pytest.mark.parametrize("fields, message", [
    ({"family": "medusa", "model": "qwen3-0.6b"}, "family must be one of model, eagle, mtp"),
    ({"family": "ngram", "model": "qwen3-0.6b"}, "an ngram draft runs no model"),
    ({"family": "eagle"}, "a eagle draft needs the model preset of its layers"),
    ({"family": "eagle", "model": "x", "vocab": -1}, "vocab must be >= 0"),
])
def test_bad_draft_presets_are_named(fields, message):
    with pytest.raises(InputError, match=message):
        D.DraftPreset(name="d", **fields)


# ---- the CLI -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, family", [
    (("--model", "qwen3-30b-a3b"), "eagle"),
    (("--model", "deepseek-v3", "--hardware", "h200", "--tp", "8"), "mtp"),
    (("--model", "qwen3-30b-a3b", "--draft", "ngram"), "ngram"),
    (("--model", "qwen3-30b-a3b", "--draft", "qwen3-0.6b"), "model"),
])
def test_every_family_runs(cli, args, family):
    code, out, err = cli("sd", *args, "--batch", "1-16", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["setup"]["draft_family"] == family
    assert d["best"]["speedup"] > 0


def test_a_tree_and_an_accept_len_on_the_cli(cli):
    code, out, err = cli("sd", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--tp", "2",
                         "--engine", "sglang", "--draft-steps", "3", "--draft-topk", "4",
                         "--draft-tokens", "8", "--accept-len", "3.1", "--batch", "1-8",
                         "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["best"]["tokens_per_round"] == pytest.approx(3.1, rel=1e-9)
    assert d["setup"]["draft_topk"] == 4 and d["setup"]["draft_tokens"] == 8
    assert d["breakdown"]["target_verify"]["tokens_per_seq"] == 8


@pytest.mark.parametrize("args, message", [
    (("--draft-topk", "0"), "--draft-topk must be >= 1, got 0"),
    (("--draft-tokens", "1"), "--draft-tokens must be >= 2"),
    (("--position-rates", "0.9,1.2"), "acceptance rates must lie in [0, 1), got 1.2"),
    (("--position-rates", "0.9,x"), "--position-rates '0.9,x': cannot read 'x'"),
    (("--accept-len", "9@3"), "--accept-len 9: a round of this draft shape yields 1 to 4"),
    (("--accept-len", "2.5"), "--accept-len depends on the draft length"),
    (("--alpha", "0.5", "--accept-len", "2@3"), "give only one of --alpha, --accept-len"),
    (("--draft", "eagle4"), "eagle4"),
])
def test_bad_draft_inputs_are_named(cli, args, message):
    code, _, err = cli("sd", "--model", "qwen3-30b-a3b", "--batch", "1-4", *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
