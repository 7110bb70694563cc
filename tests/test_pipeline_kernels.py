"""The kernel time model of the pipeline study (docs/pipeline.md §7.2-§7.3): the GEMM
efficiency curve, the memory-bound floor, the backward's own GEMMs, collectives, calibration
and the SC'21 validation."""

import dataclasses
import json
import re

import numpy as np

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explore import presets
from explore.models.pipeline import kernels, throughput
from explore.models.pipeline.kernels import TimeModel

A100 = presets.load("gpu", "a100-80g")
H100 = presets.load("gpu", "h100-sxm")
DGX = presets.load("node", "dgx-a100")


@settings(max_examples=80, deadline=None)
@given(m=st.integers(1, 32768), n=st.integers(1, 32768), k=st.integers(1, 32768),
       factor=st.integers(2, 4))
def test_efficiency_never_falls_when_a_gemm_grows_by_whole_waves(m, n, k, factor):
    """Growing k, or m by a whole number of waves of tiles, never lowers the efficiency; and
    the efficiency never exceeds the GPU's measured maximum."""
    g = A100
    e = kernels.gemm_efficiency(m, n, k, g)
    assert 0 < e <= g.gemm_efficiency + 1e-12
    assert kernels.gemm_efficiency(m, n, k * factor, g) >= e - 1e-12
    wave_rows = g.gemm_tile_m * g.sm_count
    grown = (-(-m // wave_rows) * wave_rows) * factor   # whole waves
    assert kernels.gemm_efficiency(grown, n, k, g) >= kernels.gemm_efficiency(
        -(-m // wave_rows) * wave_rows, n, k, g) - 1e-12


def test_a_memory_bound_gemm_is_costed_by_its_bytes():
    """A 1-row GEMM (a decode-like GEMV) moves its weights: time = bytes / achieved bandwidth
    + one kernel's fixed cost, whatever the FLOP rate."""
    m, n, k = 1, 12288, 12288
    nbytes = (m * k + k * n + m * n) * kernels.ELEMENT
    assert kernels.gemm_s(m, n, k, A100) == pytest.approx(
        nbytes / A100.achieved_bandwidth + A100.kernel_overhead_s)
    fast = dataclasses.replace(A100, peak_flops=A100.peak_flops * 100)
    assert kernels.gemm_s(m, n, k, fast) == kernels.gemm_s(m, n, k, A100)


def test_large_gemms_follow_the_measured_llmcompass_a100_table():
    """Checked, not fitted: LLMCompass's measured A100 GEMMs (ae/figure5, real hardware) of
    M x 12288 x 12288 (M = 2048..16384) at 262-291 TFLOP/s; the curve, set from the MAMF
    table, stays within 12 % of each."""
    measured = {2048: 262.2, 4096: 277.5, 8192: 286.9, 16384: 290.5}   # TFLOP/s
    for m, tflops in measured.items():
        ours = 2.0 * m * 12288 * 12288 / kernels.gemm_s(m, 12288, 12288, A100) / 1e12
        assert ours == pytest.approx(tflops, rel=0.12), m


def test_backward_costs_its_own_gemms():
    """The backward is not a multiple of the forward: for Y (M x N) = X (M x K) W the input
    gradient is an (M x K) GEMM of depth N and the weight gradient a (K x N) GEMM of depth M,
    each on the curve. With few tokens (M = 256) the weight gradient's short depth costs it
    more than the forward's."""
    shape = presets.load("model", "llama2-70b")
    t = kernels.layer_times(shape, 256, 1, 8, True, True, H100, TimeModel())
    lin = kernels.linears(shape, 256, 8)
    assert t.terms["B: input-gradient GEMMs"] == pytest.approx(
        sum(kernels.gemm_s(m, k, n, H100) for _, m, n, k in lin))
    assert t.w == pytest.approx(sum(kernels.gemm_s(k, n, m, H100) for _, m, n, k in lin))
    forward = sum(kernels.gemm_s(m, n, k, H100) for _, m, n, k in lin)
    assert t.w > 1.05 * forward


def test_ring_collectives_match_the_nccl_tests_definition():
    """nccl-tests: busbw = algbw x 2(n-1)/n for all-reduce, x (n-1)/n for all-gather."""
    from explore.models.comm import bus_s
    s, bw = 1e9, 200e9
    assert bus_s("all-reduce", 8, s, bw, 0.0) == pytest.approx(2 * 7 / 8 * s / bw)
    assert bus_s("all-gather", 8, s, bw, 0.0) == pytest.approx(7 / 8 * s / bw)
    assert bus_s("all-reduce", 1, s, bw, 1.0) == 0.0


def test_a_group_across_nodes_uses_its_members_nics():
    """DP over 4 DGX nodes with TP 1: 8 members per node share 8 NICs (180 GB/s at 0.9); with
    TP 8 one member per node has one NIC (22.5 GB/s); inside a node, the NVLink rate."""
    def bus(size, stride):
        return kernels.group_bus(A100, DGX, size, stride)[0]
    assert bus(8, 1) == A100.bus_bandwidth
    assert bus(32, 1) == pytest.approx(min(A100.bus_bandwidth, 8 * 25e9 * 0.9))
    assert bus(4, 8) == pytest.approx(25e9 * 0.9)


def _sc21():
    data = json.loads(presets.data_path("validation", "pipeline",
                                        "megatron_sc21_table1.json").read_text())
    return throughput.sc21_runs(data)


def test_calibration_recovers_a_known_gemm_scale_from_synthetic_runs():
    """Runs simulated with the GEMM curve scaled by 0.8 are fitted back to 0.8."""
    runs = _sc21()[:3]
    synthetic = [dataclasses.replace(r, measured_s=throughput.predict(
        r, A100, DGX, gemm_scale=0.8).iteration_s) for r in runs]
    res = throughput.fit(synthetic, A100, DGX, tuple(r.id for r in synthetic))
    assert res["scales"]["gemm_scale"] == pytest.approx(0.8, rel=1e-4)


def test_sc21_iteration_times_apriori_and_calibrated():
    """Narayanan et al. SC'21 Table 1 (10 runs, A100): a-priori mean |error| <= 8 %; the GEMM
    scale fitted on 3 named runs, the other 7 within 5 % mean and 10 % max (issue 13)."""
    from explore.cli.studies.pipeline import throughput_validation
    v = throughput_validation()
    assert v["apriori"]["runs"] == 10
    assert v["apriori"]["mean_abs_error"] <= throughput.APRIORI_TOLERANCE
    c = v["calibrated"]
    assert c["runs"] == 7 and c["fit_runs"] == 3
    assert c["mean_abs_error"] <= 0.05 and c["max_abs_error"] <= 0.10
    assert {r["id"] for r in v["rows"] if r["role"] == "fit"} == set(throughput.SC21_FIT_ROWS)
    assert not c["params"][0]["at_bound"]


def test_flat_time_model_keeps_the_fixture_definition():
    """--time-model flat: T_F = layer FLOPs / (t x eff x peak), T_B = T_W = T_F's compute."""
    from explore.models.pipeline.config import Hardware, Layout, Policy
    from explore.models.pipeline.costs import Terms
    shape = presets.load("model", "llama2-70b").with_layers(48)
    hw = Hardware.from_presets(A100, DGX, 64, time=TimeModel("flat"), eff=0.5)
    t = Terms(shape, Layout(8, 8, 1, 4096, 4, 256), hw, Policy())
    assert t.layer.t_compute == pytest.approx(t.layer.flops / (8 * 312e12 * 0.5))
    assert t.layer.t_w == pytest.approx(t.layer.t_compute)


@pytest.mark.parametrize("field, value, message", [
    ("kind", "roofline", "unknown time model 'roofline'"),
    ("gemm_scale", 0.0, "gemm_scale must be a finite number > 0"),
    ("comm_scale", float("nan"), "comm_scale must be a finite number > 0"),
    ("grad_accumulation", "lazy", "unknown gradient accumulation 'lazy'"),
])
def test_bad_time_model_values(field, value, message):
    from explore.models.errors import InputError
    with pytest.raises(InputError, match=message):
        TimeModel(**{field: value})


def test_fit_cli_writes_a_calibration_that_pipeline_reads(cli, tmp_path):
    """explore pipeline fit: rows of measured runs -> fitted scale, hold-out error, a YAML
    that --calibration applies (the same answer as fitting in Python)."""
    runs = tmp_path / "runs.csv"
    lines = ["id,model,layers,tp,pp,dp,mbs,global_batch,seq,recompute,iteration_s"]
    shape = presets.load("model", "llama2-70b").with_layers(16)
    for i, (tp, pp, dp) in enumerate(((8, 2, 1), (4, 4, 1), (2, 4, 2), (8, 1, 2))):
        run = throughput.make_run(f"r{i}", shape, tp, pp, dp, 2048, 1, 32, 1.0,
                                  recompute="full")
        t = throughput.predict(run, A100, DGX, gemm_scale=0.9).iteration_s
        lines.append(f"r{i},llama2-70b,16,{tp},{pp},{dp},1,32,2048,full,{t:.9f}")
    runs.write_text("\n".join(lines) + "\n")
    cal = tmp_path / "cal.yaml"
    code, out, err = cli("pipeline", "fit", str(runs), "--fit-rows", "1,2", "-o", str(cal),
                         "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["parameters"][0]["value"] == pytest.approx(0.9, rel=1e-4)
    assert res["holdout"]["runs"] == 2 and res["holdout"]["max_abs_error"] < 1e-4
    code, out, err = cli("pipeline", "breakdown", "--model", "llama2-70b", "--layers", "16",
                         "--gpus", "16", "--tp", "8", "--pp", "2", "--mbs", "1",
                         "--global-batch", "32", "--seq", "2048", "--recompute", "full",
                         "--recompute-layers", "8", "--calibration", str(cal), "--json")
    assert code == 0, err
    want = json.loads(runs.read_text().splitlines()[1].split(",")[-1])
    assert json.loads(out)["performance"]["iteration_s"] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("csv, message", [
    ("tp,pp,mbs,global_batch\n8,1,1,8\n", "missing column iteration_s"),
    ("tp,pp,mbs,global_batch,iteration_s\n8,x,1,8,2\n", "line 2: pp 'x' is not a number"),
    ("tp,pp,mbs,global_batch,iteration_s\n8,1.5,1,8,2\n", "pp must be a whole number"),
    ("tp,pp,mbs,global_batch,iteration_s\n8,1,1,8,\n", "line 2: iteration_s is empty"),
    ("tp,pp,mbs,global_batch,iteration_s\n8,1,1,8,-1\n", "must be > 0"),
    ("tp,pp,mbs,global_batch,iteration_s,tpp\n8,1,1,8,2,1\n", "unknown column 'tpp'"),
    ("tp,pp,mbs,global_batch,iteration_s\n3,1,1,8,2\n", "does not divide the 64 attention"),
])
def test_fit_cli_bad_tables(cli, tmp_path, csv, message):
    p = tmp_path / "r.csv"
    p.write_text(csv)
    code, _, err = cli("pipeline", "fit", str(p))
    assert code == 2 and message in err, err


def test_calibration_for_another_gpu_is_refused(cli, tmp_path):
    cal = tmp_path / "c.yaml"
    cal.write_text("kind: pipeline-calibration\nhardware: h100-sxm\ngemm_scale: 0.9\n")
    code, _, err = cli("pipeline", "breakdown", "--layers", "48", "--tp", "8", "--pp", "8",
                       "--mbs", "1", "--calibration", str(cal))
    assert code == 2 and "was fitted on h100-sxm, not a100-80g" in err


def test_overlaps_only_ever_shorten_an_iteration():
    """Each Megatron overlap switch hides communication; none adds time."""
    from explore.models.pipeline.chronos import solve
    from explore.models.pipeline.config import Hardware, Layout, Policy
    from explore.models.pipeline.costs import Terms
    shape = presets.load("model", "llama2-70b").with_layers(16)
    lay = Layout(4, 2, 8, 4096, 1, 64, sp=True)

    def it(**kw):
        hw = Hardware.from_presets(H100, presets.load("node", "dgx-h100"), 64,
                                   time=TimeModel(**kw))
        return solve(Terms(shape, lay, hw, Policy("1f1b", optimizer="dist-opt"))).outcome \
            .iteration_s
    base = it()
    for flag in ("overlap_grad_reduce", "overlap_param_gather", "tp_comm_overlap",
                 "overlap_p2p_comm"):
        assert it(**{flag: True}) <= base + 1e-12, flag
    assert np.isfinite(base)


def test_recompute_full_is_every_layer_and_full_fit_the_fewest():
    """--recompute full is Megatron's uniform full recomputation: every layer's forward again
    (recompute FLOPs = the layers' forward FLOPs); full-fit recomputes only as many as memory
    needs, here none."""
    from explore.models.pipeline.chronos import solve
    from explore.models.pipeline.config import Hardware, Layout, Policy
    from explore.models.pipeline.costs import Terms
    shape = presets.load("model", "llama2-7b").with_layers(16)
    hw = Hardware.from_presets(A100, DGX, 8)
    lay = Layout(2, 2, 2, 2048, 1, 16)

    def out(rec):
        return solve(Terms(shape, lay, hw, Policy("1f1b", recompute=rec))).outcome
    full, fit = out("full"), out("full-fit")
    layer_fwd = shape.layer_forward_flops_per_token(2048) * 2048 * 16 * shape.layers
    assert full.recompute_flops == pytest.approx(layer_fwd, rel=1e-9)
    assert fit.recompute_flops == 0.0 and fit.iteration_s < full.iteration_s


@pytest.mark.parametrize("args, message", [
    (("--eff", "0.5"), "--eff applies to --time-model flat"),
    (("--time-model", "flat", "--calibration", "x.yaml"),
     "--calibration applies to --time-model kernels"),
    (("--time-model", "roofline"), "unknown time model 'roofline'; choose from kernels, flat"),
    (("--grad-accumulation", "lazy"), "unknown gradient accumulation 'lazy'"),
])
def test_a_knob_of_the_other_time_model_is_refused(cli, args, message):
    """Each time model has its own knob; the other's would be ignored without a word."""
    code, _, err = cli("pipeline", "breakdown", "--layers", "48", "--tp", "8", "--pp", "8",
                       "--mbs", "1", *args)
    assert code == 2 and message in err and "Traceback" not in err, err


# ---- FP8/FP4 GEMMs (§7.4) -------------------------------------------------------------------

def _fp8_terms(fmt, gpu="h100-sxm"):
    from explore.models.pipeline.config import Hardware, Layout, Policy
    from explore.models.pipeline.costs import Terms
    from explore.models.pipeline.kernels import TimeModel
    shape = presets.load("model", "llama2-7b").with_layers(8)
    hw = Hardware.from_presets(presets.load("gpu", gpu), presets.load("node", "dgx-h100"), 8,
                               time=TimeModel(gemm_format=fmt))
    return shape, Terms(shape, Layout(2, 2, 2, 4096, 1, 16), hw, Policy("1f1b"))


def test_fp8_gemms_save_quantised_inputs_and_cache_quantised_weights():
    """With FP8 GEMMs the four linear inputs are stored in 1 byte instead of 2, and every
    decoder linear weight gains two 1-byte copies (rowwise and columnwise)."""
    shape, bf16 = _fp8_terms("bf16")
    _, fp8 = _fp8_terms("fp8")
    tokens, tp, h, f = 4096, 2, shape.hidden, shape.intermediate
    linear_inputs = tokens * (h + h + shape.q_dim / tp + f / tp)     # no SP: QKV, FFN in full
    assert bf16.layer.a_full - fp8.layer.a_full == pytest.approx(linear_inputs * (2 - 1))
    per_device = bf16.layers_per_chunk * shape.linear_params / tp
    assert fp8.weights(0) - bf16.weights(0) == pytest.approx(2 * 1.0 * per_device)


def test_fp8_gemms_run_at_the_fp8_peak():
    """A compute-bound GEMM at twice the peak takes half the compute time (same efficiency
    curve); the casts to FP8 are priced by their bytes."""
    from explore.models.formats import number_format
    from explore.models.pipeline import kernels
    gpu = presets.load("gpu", "h100-sxm")
    m, n, k = 8192, 8192, 8192
    bf16 = kernels.gemm_s(m, n, k, gpu) - gpu.kernel_overhead_s
    fp8 = kernels.gemm_s(m, n, k, gpu, fmt=number_format("fp8")) - gpu.kernel_overhead_s
    assert fp8 == pytest.approx(bf16 * gpu.peak_flops / gpu.peak_flops_fp8)
    _, t16 = _fp8_terms("bf16")
    _, t8 = _fp8_terms("fp8")
    assert "F: FP8/FP4 casts" in t8.layer.kernel_times.terms
    assert t8.layer.kernel_times.f < t16.layer.kernel_times.f


@pytest.mark.parametrize("args, message", [
    (("--hardware", "a100", "--gemm-format", "fp8"),
     "a100-80g has no FP8 tensor cores for fp8 GEMM inputs"),
    (("--hardware", "h100", "--gemm-format", "mxfp8"),
     "h100-sxm's tensor cores take no mxfp8 block-scaled inputs"),
    (("--hardware", "mi355x", "--gemm-format", "nvfp4"),
     "mi355x's tensor cores take no nvfp4 block-scaled inputs"),
    (("--gemm-format", "fp4"), "unknown GEMM format 'fp4' \\(did you mean nvfp4"),
    (("--time-model", "flat", "--gemm-format", "fp8"), "--gemm-format applies to --time-model"),
])
def test_a_gemm_format_the_gpu_lacks_is_refused(cli, args, message):
    code, _, err = cli("pipeline", "--model", "llama2-7b", "--gpus", "8", *args)
    assert code == 2 and re.search(message, err) and "Traceback" not in err


def test_unfused_attention_runs_dropout_only_when_the_model_has_it():
    """The unfused attention core: the fused scale-mask-softmax by its bytes, plus the
    dropout on the probabilities only for a model trained with dropout (PyTorch returns the
    input untouched at p = 0: no kernel, no mask)."""
    llama = presets.load("model", "llama2-7b").with_layers(4)
    gpt = dataclasses.replace(llama, dropout=True)
    tm = TimeModel()
    s, b, tp = 4096, 1, 2
    scores = b * (llama.heads // tp) * s * s
    plain = kernels.layer_times(llama, s, b, tp, True, False, H100, tm).terms
    assert plain["F: softmax + dropout"] == pytest.approx(
        kernels.bytes_s(scores * 2 * kernels.ELEMENT, H100, "softmax"))
    assert plain["B: softmax + dropout"] == pytest.approx(
        kernels.bytes_s(scores * 3 * kernels.ELEMENT, H100, "softmax"))
    dropped = kernels.layer_times(gpt, s, b, tp, True, False, H100, tm).terms
    assert dropped["F: softmax + dropout"] > plain["F: softmax + dropout"] + kernels.dropout_s(
        scores, 0, H100) - H100.kernel_overhead_s - 1e-12
