"""Calibration (issue 3): synthetic data fitted back, the paper's warnings, YAML round trip,
the H200 acceptance figures, and `explore sd fit` / `explore validate sd` end to end."""

import json

import numpy as np
import pytest

from explore import presets
from explore.cli.output import write_yaml
from explore.models import sd, sd_fit, sd_validate
from explore.models.errors import InputError

QWEN = presets.load("model", "qwen2-57b-a14b")
DRAFT = presets.load("model", "qwen2-0.5b")
H200 = presets.load("gpu", "h200")
A800 = presets.load("gpu", "a800")
TRUE = sd.FittedParams(bias=4.0e-3, k1=1.2e-3, k2=0.5e-3, k3=2.0e-3, draft_bias=0.9e-3,
                       draft_k=0.05e-3, reject_bias=0.1e-3, reject_k=2e-6, lam=0.6, s=1.01)


def component_grid():
    B, t = np.meshgrid([1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256], [1, 2, 3, 4, 5],
                       indexing="ij")
    return B.ravel().astype(float), t.ravel().astype(float)


def synthetic_times(p, B, t, rp):
    return sum(sd.parametric_target_terms(p, B, t, 64, 8, rp).values())


def test_component_fit_recovers_known_parameters():
    B, t = component_grid()
    y = synthetic_times(TRUE, B, t, H200.ridge_point)
    r = sd_fit.fit_component(B, t, y, QWEN, H200, 1, fit_points=len(B))
    got = dict(zip(r.names, r.values))
    for name in sd_fit.TARGET_PARAMS:
        assert got[name] == pytest.approx(getattr(TRUE, name), rel=0.01), name
    assert np.max(np.abs(r.relative_error)) < 0.01


def test_component_fit_with_draft_and_rejection_columns():
    B, t = component_grid()
    y = synthetic_times(TRUE, B, t, H200.ridge_point)
    yd = sd.parametric_draft_s(TRUE, B, H200.ridge_point)
    yr = sd.parametric_reject_s(TRUE, B)
    r = sd_fit.fit_component(B, t, y, QWEN, H200, 1, yd, yr, DRAFT, fit_points=len(B))
    got = dict(zip(r.names, r.values))
    for name in ("draft_bias", "draft_k", "reject_bias", "reject_k"):
        assert got[name] == pytest.approx(getattr(TRUE, name), rel=0.01), name


def paper_rows():
    """A sparsity sweep like the paper's: K in 1..16 of E = 64, gamma 2-4, B 1-128."""
    rows = []
    rp = A800.ridge_point
    for k in (1, 2, 4, 8, 16):
        for g in (2, 3, 4):
            for b in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128):
                n = b * g
                T = TRUE.bias + TRUE.k1 * sd.roofline_shape(n, TRUE.lam * rp, TRUE.s)
                T1 = TRUE.bias + TRUE.k1 * sd.roofline_shape(b, TRUE.lam * rp, TRUE.s)
                for nn, acc in ((n, "v"), (b, "1")):
                    N = sd.experts_activated(nn, 64, k)
                    extra = TRUE.k2 * N + TRUE.k3 * sd.roofline_shape(nn * k / N, TRUE.lam * rp,
                                                                      TRUE.s)
                    if acc == "v":
                        T = T + extra
                    else:
                        T1 = T1 + extra
                sigma = 0.8
                t_round = g * sd.parametric_draft_s(TRUE, b, rp) + T + \
                    sd.parametric_reject_s(TRUE, b)
                rows.append((b, g, k, 64, sigma, float(sigma * (g + 1) * T1 / t_round)))
    return np.array(rows, dtype=float)


def test_paper_fit_recovers_speedups_within_1_percent():
    data = paper_rows()
    order = np.lexsort((data[:, 0], data[:, 1], data[:, 2]))   # sort by K, gamma, B
    data = data[order]
    r = sd_fit.fit_paper(*data.T, QWEN, DRAFT, A800, 2, fit_points=60, verify="gamma")
    assert r.error_stats(r.holdout_index)["max_abs"] < 0.01
    assert r.seconds < 5


def test_warnings_fire_for_few_points_and_batch_gaps():
    B, t = component_grid()
    y = synthetic_times(TRUE, B, t, H200.ridge_point)
    few = sd_fit.fit_component(B, t, y, QWEN, H200, 1, fit_points=6)   # 6 parameters
    assert any("more points than parameters" in w for w in few.warnings)
    with pytest.raises(InputError, match="5 measured values to fit 6 parameters"):
        sd_fit.fit_component(B, t, y, QWEN, H200, 1, fit_points=5)
    gap = np.isin(B, [1, 2, 64, 96, 128, 192, 256])
    keep = np.isin(B, [1, 256]) | (t == 1)
    w = sd_fit.coverage_warnings(B[gap], B, 6)
    assert any("gap in the fitted batch sizes between 2 and 64" in x for x in w)
    assert not sd_fit.coverage_warnings(B[keep], B, 6)


def test_h200_acceptance_figures():
    """Issue 3: the component fit on <= 21 H200 points predicts the rest's T_T(B,t)/T_T(B,1)
    within 5 % mean absolute error; the a-priori model within 15 %."""
    rows = [r for r in presets.read_csv(presets.data_path(
        "validation", "sd", "h200_qwen2_layer_times.csv")) if r["model"] == "qwen2-57b-a14b"]
    out = sd_validate.h200_ratios(rows, QWEN, H200, fit_points=21)
    assert out["calibrated"]["fit_points"] <= 21
    assert out["calibrated"]["mean_abs_error"] <= 0.05
    assert out["apriori"]["mean_abs_error"] <= 0.15


def test_packaged_validation_data_matches_shared(shared):
    for name in ("moesd_peak_speedups.csv", "h200_qwen2_layer_times.csv"):
        packaged = presets.data_path("validation", "sd", name).read_text()
        assert packaged == (shared / "data" / "sd" / name).read_text()


def test_fit_cli_writes_calibration_that_round_trips(cli, tmp_path):
    B, t = component_grid()
    y = synthetic_times(TRUE, B, t, H200.ridge_point)
    csv = tmp_path / "times.csv"
    csv.write_text("batch,tokens_per_seq,step_ms\n" + "".join(
        f"{b:g},{tt:g},{v * 1e3:.9f}\n" for b, tt, v in zip(B, t, y)))
    out_yaml = tmp_path / "cal.yaml"
    code, out, err = cli("sd", "fit", str(csv), "--model", "qwen2-57b", "--hardware", "h200",
                         "--json", "-o", str(out_yaml))
    assert code == 0, err
    report = json.loads(out)
    assert report["mode"] == "component" and report["fit_points"] <= 21
    cal = presets.load_dataclass(sd_fit.Calibration, out_yaml)
    assert cal.target == "qwen2-57b-a14b" and cal.hardware == "h200" and cal.gpus == 1
    for p in report["parameters"]:
        assert cal.params[p["name"]] == pytest.approx(p["value"], rel=1e-12)
    # the calibrated model is what `explore sd --calibration` uses
    code, out, err = cli("sd", "--calibration", str(out_yaml), "--gamma", "3", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["mode"].startswith("calibrated (component fit")
    fitted = sd.FittedParams(**{n: cal.params.get(n, 0.0) for n in sd.PARAM_NAMES})
    b = data["best"]["batch"]
    t1 = synthetic_times(fitted, b, 1, H200.ridge_point)
    t4 = synthetic_times(fitted, b, 4, H200.ridge_point)
    assert data["best"]["target_efficiency"] == pytest.approx(t1 / t4, rel=1e-9)


def test_calibration_for_another_model_is_refused(cli, tmp_path):
    y = tmp_path / "cal.yaml"
    write_yaml(y, {"mode": "component", "target": "mixtral-8x7b", "hardware": "h200",
                           "gpus": 1, "ridge_point": 206.0, "params": {"bias": 0.001}})
    code, _, err = cli("sd", "--calibration", str(y))
    assert code == 2 and "was fitted for mixtral-8x7b, not qwen2-57b-a14b" in err
    write_yaml(y, {"mode": "component", "target": "qwen2-57b-a14b", "hardware": "h200",
                           "gpus": 1, "ridge_point": 206.0, "params": {"bais": 0.001}})
    code, _, err = cli("sd", "--calibration", str(y))
    assert code == 2 and "unknown parameters: bais" in err
    write_yaml(y, {"mode": "component", "target": "qwen2-57b-a14b", "hardware": "h200",
                           "gpus": 1, "ridge_point": 206.0, "params": {}, "extra": 1})
    code, _, err = cli("sd", "--calibration", str(y))
    assert code == 2 and "unknown key 'extra'" in err


def test_physical_mode_fits_efficiencies(cli, tmp_path):
    src = presets.data_path("validation", "sd", "h200_qwen2_layer_times.csv")
    out_yaml = tmp_path / "phys.yaml"
    code, out, err = cli("sd", "fit", str(src), "--where", "model=qwen2-57b-a14b", "--model",
                         "qwen2-57b", "--hardware", "h200", "--mode", "physical", "--json",
                         "-o", str(out_yaml))
    assert code == 0, err
    report = json.loads(out)
    names = [p["name"] for p in report["parameters"]]
    assert names == list(sd_fit.PHYSICAL_PARAMS)
    assert report["holdout"]["mean_abs"] < 0.10
    code, out, _ = cli("sd", "--calibration", str(out_yaml), "--json")
    assert code == 0 and "physical fit" in json.loads(out)["mode"]


@pytest.mark.parametrize("args,message", [
    (("--where", "model"), "--where 'model': write COLUMN=VALUE"),
    (("--where", "gpu=h200"), "no column 'gpu'"),
    (("--where", "model=gpt5"), "keeps no rows"),
    (("--mode", "magic"), "--mode 'magic': choose auto, paper, component, physical"),
    (("--fit-points", "1"), "--fit-points must be >= 2"),
])
def test_fit_cli_bad_input(cli, args, message):
    src = presets.data_path("validation", "sd", "h200_qwen2_layer_times.csv")
    code, _, err = cli("sd", "fit", str(src), "--hardware", "h200", *args)
    assert code == 2 and message in err, err


def test_fit_cli_missing_columns(cli, tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("batch,tokens_per_seq,latency\n1,1,3\n")
    code, _, err = cli("sd", "fit", str(p), "--hardware", "h200")
    assert code == 2 and "no forward-time column" in err
    p.write_text("batch,tokens_per_seq,step_ms\n1,1,fast\n")
    code, _, err = cli("sd", "fit", str(p), "--hardware", "h200")
    assert code == 2 and "non-number 'fast'" in err
    code, _, err = cli("sd", "fit", str(tmp_path / "none.csv"), "--hardware", "h200")
    assert code == 2 and "cannot read" in err


def test_validate_sd_numbers_equal_the_library(cli):
    from explore.cli.validate import sd_validation
    code, out, _ = cli("validate", "sd", "--json")
    data = json.loads(out)
    lib = sd_validation()
    assert len(data["peaks"]) == 60
    for a, b in zip(data["peaks"], lib["peaks"]):
        assert a["ours"] == pytest.approx(b["ours"], rel=1e-12)
        assert a["published"] == b["published"]
    assert data["peak_summary"]["fitted"]["check"]["mean_abs_error"] == pytest.approx(
        lib["peak_summary"]["fitted"]["check"]["mean_abs_error"])
    assert [o["holds"] for o in data["orderings"]] == [o["holds"] for o in lib["orderings"]]
    failed = any(c["status"] == "FAIL" for c in data["checks"])
    assert code == (1 if failed else 0)


def test_published_orderings_are_reproduced():
    from explore.cli.validate import sd_validation
    assert all(o["holds"] for o in sd_validation()["orderings"])


def _moesd_cells_and_setups():
    from explore.cli.validate import moesd_cells
    return moesd_cells()


def test_peak_only_fit_recovers_known_engine_terms():
    """Issue 12: peaks generated with known round and draft-step terms are fitted back from the
    fit cells alone (the model's own peak over B is what is fitted)."""
    import dataclasses
    cells, setups = _moesd_cells_and_setups()
    truth = dataclasses.replace(presets.load("engine", "cuda-graphs"),
                                round_overhead_step=0.3, draft_step_overhead_step=0.05)
    synthetic = [dict(c, peak_speedup=str(r["ours"]))
                 for c, r in zip(cells, sd_validate.peak_speedups(cells, setups, engine=truth))]
    fit = sd_validate.fit_engine(synthetic, setups, presets.load("engine", "cuda-graphs"))
    got = dict(zip(fit.names, fit.values))
    assert got["round_overhead_step"] == pytest.approx(0.3, rel=1e-4)
    assert got["draft_step_overhead_step"] == pytest.approx(0.05, rel=1e-4)
    assert np.max(np.abs(fit.relative_error)) < 1e-6


def test_engine_profile_fitted_on_one_table_predicts_the_others():
    """MoESD Tables 1-2: the vllm-v0-spec-decode terms are fitted on the 24 cells of Table 1 on
    2xA800 only; on the 36 cells it never saw the peak speedup is within 10 % mean, 25 % max
    (the issue's tolerance). The shipped preset carries the fitted values."""
    from explore.cli.validate import MOESD_ENGINE, sd_validation
    out = sd_validation()
    rows = out["peaks"]
    assert sum(r["role"] == "fit" for r in rows) == 24
    assert all((r["table"], r["hardware"]) == ("T1", "2xA800") for r in rows
               if r["role"] == "fit")
    check = out["peak_summary"]["fitted"]["check"]
    assert check["cells"] == 36
    assert check["mean_abs_error"] <= 0.10 and check["max_abs_error"] <= 0.25
    shipped = presets.load("engine", MOESD_ENGINE)
    for p in out["peak_summary"]["fitted"]["params"]:
        assert getattr(shipped, p["name"]) == pytest.approx(p["value"], abs=5e-4), p["name"]
        assert not p["at_bound"]


def test_fit_cli_peaks_mode_writes_an_engine_profile(cli, tmp_path):
    """`explore sd fit` on a peak-only table (gamma, sigma, peak speedup; no batch column):
    the engine terms are fitted on every k-th row, the rest held out, and the profile it
    writes works with `explore sd --engine FILE`."""
    import dataclasses
    cells, setups = _moesd_cells_and_setups()
    cells = [c for c in cells if c["hardware"] == "2xH800"]
    truth = dataclasses.replace(presets.load("engine", "cuda-graphs"),
                                round_overhead_step=0.25, draft_step_overhead_step=0.1)
    peaks = sd_validate.peak_speedups(cells, setups, engine=truth)
    table = tmp_path / "peaks.csv"
    table.write_text("gamma,sigma,peak_speedup\n" + "".join(
        f"{c['gamma']},{c['sigma']},{r['ours']:.12f}\n" for c, r in zip(cells, peaks)))
    profile = tmp_path / "mine.engine.yaml"
    code, out, err = cli("sd", "fit", str(table), "--model", "qwen2-57b", "--hardware", "h800",
                         "--gpus", "2", "--fit-points", "6", "--engine", "cuda-graphs",
                         "-o", str(profile), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["mode"] == "peaks" and report["fit_points"] == 6
    got = {p["name"]: p["value"] for p in report["parameters"]}
    assert got == pytest.approx({"round_overhead_step": 0.25, "draft_step_overhead_step": 0.1},
                                rel=1e-4)
    assert report["holdout"]["max_abs"] < 1e-6
    code, out, err = cli("sd", "--model", "qwen2-57b", "--hardware", "h800", "--tp", "2",
                         "--engine", str(profile), "--json")
    assert code == 0, err
    assert json.loads(out)["setup"]["engine"] == "mine.engine"


def test_fit_cli_peaks_mode_bad_tables(cli, tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("gamma,peak_speedup\n2,1.5\n3,1.7\n")
    code, _, err = cli("sd", "fit", str(p), "--hardware", "h800", "--gpus", "2")
    assert code == 2 and "peaks mode needs a sigma or an alpha column" in err
    p.write_text("gamma,alpha,peak_speedup\n2,0.8,1.5\n3,0.8,1.7\n")
    code, _, err = cli("sd", "fit", str(p), "--hardware", "h800", "--gpus", "2",
                       "--terms", "round_overhead")
    assert code == 2 and "unknown engine term 'round_overhead'" in err
