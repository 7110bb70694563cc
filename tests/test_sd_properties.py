"""Physical invariants of the SD model (hypothesis) and engine agreement."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explore import presets
from explore.models import sd

GPUS = ["a800", "h800", "h200", "l40", "h100-sxm", "rtx-4090"]
TARGETS = ["qwen2-57b-a14b", "mixtral-8x7b", "qwen2-7b", "olmoe-1b-7b", "deepseek-v2-lite",
           "qwen3-30b-a3b"]


ENGINES = presets.names("engine")


def times(target, gpu, tp, overlap="none", draft="qwen2-0.5b", ctx=512, corr=0.0,
          engine="cuda-graphs"):
    return sd.PhysicalTimes(sd.Deployment(presets.load("model", target), presets.load("gpu", gpu),
                                          tp),
                            sd.Deployment(presets.load("model", draft), presets.load("gpu", gpu),
                                          1), ctx, corr, overlap, presets.load("engine", engine))


@settings(max_examples=60, deadline=None)
@given(target=st.sampled_from(TARGETS), gpu=st.sampled_from(GPUS), tp=st.sampled_from([1, 2, 4]),
       alpha=st.floats(0.0, 0.99), batch=st.integers(1, 512), gamma=st.integers(1, 12),
       ctx=st.integers(0, 8192), overlap=st.sampled_from(["none", "max"]),
       verify=st.sampled_from(["gamma", "gamma+1"]), corr=st.floats(0.0, 0.9),
       engine=st.sampled_from(ENGINES))
def test_speedup_bounded_and_te_at_most_one(target, gpu, tp, alpha, batch, gamma, ctx, overlap,
                                            verify, corr, engine):
    r = sd.evaluate(times(target, gpu, tp, overlap, ctx=ctx, corr=corr, engine=engine), alpha,
                    batch, gamma, verify)
    assert float(r.speedup) <= float(sd.tokens_per_round(alpha, gamma)) + 1e-12
    assert float(r.speedup) > 0
    assert float(r.target_efficiency) <= 1.0 + 1e-12


@settings(max_examples=50, deadline=None)
@given(E=st.integers(2, 256), data=st.data())
def test_experts_activated_increasing_and_at_most_E(E, data):
    K = data.draw(st.integers(1, E))
    n = np.arange(0, 2000)
    N = sd.experts_activated(n, E, K)
    assert np.all(np.diff(N) >= 0)
    assert np.all(N <= E + 1e-9)
    assert N[1] == pytest.approx(K)


@settings(max_examples=30, deadline=None)
@given(rho_small=st.integers(1, 7), n=st.integers(2, 500))
def test_sparser_models_have_fewer_tokens_per_expert(rho_small, n):
    """dT_exp/drho > 0 for n > 1 (the paper's appendix): fewer chosen experts -> fewer tokens
    per activated expert."""
    assert sd.tokens_per_expert(n, 64, rho_small) < sd.tokens_per_expert(n, 64, rho_small + 1)


@settings(max_examples=40, deadline=None)
@given(gamma=st.integers(1, 16), sigma_frac=st.floats(0.0, 0.999))
def test_sigma_alpha_round_trip(gamma, sigma_frac):
    lo = 1.0 / (gamma + 1)
    sigma = lo + sigma_frac * (1 - lo) * 0.999
    alpha = sd.alpha_from_sigma(sigma, gamma)
    assert 0 <= alpha < 1
    assert sd.sigma_from_alpha(alpha, gamma) == pytest.approx(sigma, abs=1e-10)


def test_forward_time_grows_with_tokens_and_batch():
    t = times("qwen2-57b-a14b", "h800", 2)
    B = np.arange(1, 257)[:, None]
    tt = np.arange(1, 9)[None, :]
    T = t.target_s(B, tt)
    assert np.all(np.diff(T, axis=0) > 0)
    assert np.all(np.diff(T, axis=1) > 0)


def test_terms_add_up_to_total():
    f = sd.forward_time(sd.Deployment(presets.load("model", "mixtral-8x7b"),
                                      presets.load("gpu", "a800"), 2), 16, 5, 1024)
    assert sum(float(x.seconds) for x in f.terms) == pytest.approx(float(f.seconds))
    assert all(float(x.seconds) >= 0 for x in f.terms)


def test_engines_agree_on_default_space():
    """Exhaustive sweep and Optuna TPE find the same best (batch, gamma) of `explore sd`'s
    default space (qwen2-57b on its default deployment)."""
    from explore.cli.studies.sd import SdRequest, build
    from explore.search.engine import SearchSettings, run

    setup, study, *_ = build(SdRequest())
    ex = run(study, ["speedup"], SearchSettings(engine="exhaustive"))
    op = run(study, ["speedup"], SearchSettings(engine="optuna", n_trials=400, seed=3))
    assert ex.engine == "exhaustive" and op.engine == "optuna:tpe"
    assert ex.point(ex.best) == op.point(op.best)


@settings(max_examples=40, deadline=None)
@given(round_s=st.floats(0.0, 0.01), step_s=st.floats(0.0, 0.01), batch=st.integers(1, 256),
       gamma=st.integers(1, 8), round_f=st.floats(0.0, 1.0), step_f=st.floats(0.0, 1.0))
def test_engine_costs_add_exactly_where_they_belong(round_s, step_s, batch, gamma, round_f,
                                                    step_f):
    """An engine's round and draft-step costs enter T_round once per round and once per draft
    step, and leave T_AR and the verification forward alone (docs/sd.md §5.3)."""
    import dataclasses
    none = presets.load("engine", "none")
    busy = dataclasses.replace(none, round_overhead_s=round_s, draft_step_overhead_s=step_s,
                               round_overhead_step=round_f, draft_step_overhead_step=step_f)
    base = sd.evaluate(_with_engine(none), 0.8, batch, gamma)
    more = sd.evaluate(_with_engine(busy), 0.8, batch, gamma)
    added = round_s + gamma * step_s + (round_f + gamma * step_f) * float(base.t_ar)
    assert float(more.t_round - base.t_round) == pytest.approx(added, rel=1e-9, abs=1e-12)
    assert float(more.t_ar) == float(base.t_ar) and float(more.t_verify) == float(base.t_verify)


def _with_engine(engine):
    t = times("qwen2-57b-a14b", "h800", 2, engine="none")
    return sd.PhysicalTimes(t.target, t.draft, t.ctx, t.correlation, t.overlap, engine)


def test_no_engine_is_faster_than_any_engine():
    base = sd.evaluate(times("qwen2-57b-a14b", "h800", 2, engine="none"), 0.8, 16, 3)
    for name in ENGINES:
        r = sd.evaluate(times("qwen2-57b-a14b", "h800", 2, engine=name), 0.8, 16, 3)
        assert float(r.t_round) >= float(base.t_round) and float(r.t_ar) >= float(base.t_ar)
