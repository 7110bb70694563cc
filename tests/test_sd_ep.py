"""Expert parallelism, attention data parallelism and routing skew for the sd target (docs/sd.md
§4.1): EP 1 is today's model exactly, uniform frequencies are the i.i.d. N(n), the all-to-all
bytes by hand, skew's effect by its physics, and every bad input's message."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explore import presets
from explore.models import sd
from explore.models.errors import InputError

H100 = presets.load("gpu", "h100")
QWEN = presets.load("model", "qwen3-30b-a3b")           # 48 MoE layers, 128 experts, top 8


def _terms(dep, batch=4, t=5, routing=None):
    return {x.label: x for x in sd.forward_time(dep, batch, t, 512, routing=routing).terms}


def test_uniform_frequencies_are_the_iid_model_exactly():
    dep = sd.Deployment(QWEN, H100, 2)
    plain = _terms(dep, np.arange(1, 65)[:, None], np.arange(1, 9)[None, :])
    uniform = _terms(dep, np.arange(1, 65)[:, None], np.arange(1, 9)[None, :],
                     sd.popularity(QWEN.experts))
    for label, term in plain.items():
        assert np.allclose(term.seconds, uniform[label].seconds, rtol=1e-12, atol=0)


def test_ep_spreads_whole_experts_and_moves_tokens_by_all_to_all():
    """TP 2 = EP 2, B 4 x 5 tokens: each GPU holds 64 whole experts and touches N(20)/2 of
    them; each MoE layer dispatches and combines each GPU's 10 tokens' 8 copies of 2048 bf16
    values: 10 x 8 x 2048 x 2 = 327,680 B, 48 layers x 2 = 31,457,280 B, at the one-node
    all-to-all's (g - 1)/g share of NVLink."""
    tp, ep = _terms(sd.Deployment(QWEN, H100, 2)), _terms(sd.Deployment(QWEN, H100, 2, ep=2))
    n = 20
    assert float(ep["routed experts"].bytes) == pytest.approx(float(tp["routed experts"].bytes))
    per_gpu = sd.experts_activated(n, 128, 8) / 2
    assert float(ep["routed experts"].bytes) == pytest.approx(
        48 * per_gpu * QWEN.expert_params * QWEN.expert_bytes_per_param)
    a2a = ep["EP all-to-all"]
    assert float(a2a.bytes) == 48 * 2 * 327_680
    assert float(a2a.seconds) == pytest.approx(
        48 * 2 * (H100.interconnect_latency_s + 0.5 * 327_680 / H100.interconnect_bandwidth))
    # the MoE layers' FFN all-reduce is gone: one all-reduce per layer remains (attention)
    assert float(ep["TP all-reduce"].seconds) == pytest.approx(
        float(tp["TP all-reduce"].seconds) / 2)
    assert "EP all-to-all" not in tp


def test_attention_data_parallel_holds_its_sequences_and_all_attention_weights():
    tp = sd.Deployment(QWEN, H100, 2, ep=2)
    dp = sd.Deployment(QWEN, H100, 2, ep=2, dp_attention=True)
    assert dp.kv_bytes_per_gpu(8, 1024) == pytest.approx(4 * QWEN.kv_cache_bytes(1024))
    attention = QWEN.layers * QWEN.attention_params * QWEN.bytes_per_param
    assert dp.weight_bytes_per_gpu - tp.weight_bytes_per_gpu == pytest.approx(attention / 2)
    assert float(_terms(dp)["TP all-reduce"].seconds) == 0.0


@settings(max_examples=40, deadline=None)
@given(s=st.floats(0.0, 2.0), n=st.integers(1, 4096))
def test_skew_touches_fewer_experts_but_loads_the_busiest_gpu_more(s, n):
    """Concentrated routing touches no more distinct experts than uniform routing (the touch
    probability is concave in the frequency), while the busiest EP GPU (holding the most
    popular experts) gets at least its even share of the routed tokens."""
    pop = sd.popularity(128, f"zipf:{s}")
    total, _ = sd.experts_touched(n, pop, 8, 1)
    assert float(total) <= float(sd.experts_activated(n, 128, 8)) + 1e-9
    _, share = sd.experts_touched(n, pop, 8, 4)
    assert share >= 0.25 - 1e-12


def test_ep_1_is_todays_numbers_on_the_cli(cli):
    import json
    outs = []
    for extra in ((), ("--ep", "1", "--routing", "uniform")):
        code, out, err = cli("sd", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--tp",
                             "2", "--batch", "1-32", *extra, "--json")
        assert code == 0, err
        outs.append(json.loads(out))
    assert outs[0]["grid"] == outs[1]["grid"] and outs[0]["best"] == outs[1]["best"]


@pytest.mark.parametrize("args, message", [
    (("--tp", "2", "--ep", "4"), "--ep 4: it runs over the target's 2 GPU(s)"),
    (("--tp", "2", "--dp-attention"), "--dp-attention needs expert parallelism"),
    (("--routing", "zipf:x"), "--routing 'zipf:x': write zipf:S with S >= 0"),
    (("--routing", "lumpy"), "--routing 'lumpy': not uniform, zipf:S or a file"),
])
def test_bad_ep_and_routing_inputs_are_named(cli, args, message):
    code, _, err = cli("sd", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--batch", "1-4",
                       *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_a_measured_histogram_file(cli, tmp_path):
    ok = tmp_path / "freq.csv"
    ok.write_text("\n".join(str(1 + (i % 4)) for i in range(128)))
    code, _, err = cli("sd", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--tp", "2",
                       "--ep", "2", "--batch", "1-8", "--routing", str(ok))
    assert code == 0, err
    short = tmp_path / "short.yaml"
    short.write_text("[1, 2, 3]\n")
    code, _, err = cli("sd", "--model", "qwen3-30b-a3b", "--batch", "1-4", "--routing",
                       str(short))
    assert code == 2 and "give 128 non-negative numbers, one per routed expert" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,x\n")
    code, _, err = cli("sd", "--model", "qwen3-30b-a3b", "--batch", "1-4", "--routing",
                       str(bad))
    assert code == 2 and "every entry must be a number" in err
    with pytest.raises(InputError, match="expert parallelism needs an MoE target"):
        sd.Deployment(presets.load("model", "qwen3-32b"), H100, 2, ep=2)
