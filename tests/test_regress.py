"""Study presets and their regression (issue 7): `explore run`, `explore regress` against the
golden files, and a model change caught with a readable diff."""

import json

import numpy as np
import pytest

from explore import presets


def test_every_study_preset_matches_its_golden_file(cli):
    """CI fails here when a model change moves a preset's answer without the golden files
    being updated (explore regress --update) in the same commit."""
    code, out, err = cli("regress")
    assert code == 0, out + err
    assert f"all {len(presets.names('study'))} presets match" in out


def test_a_model_change_is_caught_with_a_readable_diff(cli, monkeypatch):
    from explore.models.hardware import GpuSpec
    monkeypatch.setattr(GpuSpec, "achieved_bandwidth",
                        property(lambda self: 0.97 * self.hbm_bandwidth * self.eta_bw))
    code, out, _ = cli("regress", "--preset", "moesd-qwen2-2xh800")
    assert code == 1
    assert "moved  moesd-qwen2-2xh800" in out
    assert "output.best.speedup:" in out and "->" in out and "%" in out
    assert "explore regress --update" in out


def _perturbed_start(monkeypatch):
    """Every local refinement of the fit starts half a grid cell away from its grid point."""
    from explore.models import sd_fit
    starts = sd_fit._shape_starts
    lam_step = np.diff(sd_fit.LAM_BOUNDS)[0] / (sd_fit.SHAPE_GRID[0] - 1)
    log_step = np.diff(sd_fit.LOG_S1_RANGE)[0] / (sd_fit.SHAPE_GRID[1] - 1)
    monkeypatch.setattr(sd_fit, "_shape_starts", lambda *grid: [np.clip(
        x + 0.5 * np.array([lam_step, log_step]),
        [sd_fit.LAM_BOUNDS[0], sd_fit.LOG_S1_RANGE[0]],
        [sd_fit.LAM_BOUNDS[1], sd_fit.LOG_S1_RANGE[1]]) for x in starts(*grid)])


def _noisy_times(monkeypatch, scale):
    """Every fit of measured times sees them multiplied by `scale(n)` (an array of n factors)."""
    from explore.models import sd_fit
    fit = sd_fit.fit_component
    monkeypatch.setattr(sd_fit, "fit_component", lambda B, t, y, *a, **k: fit(
        B, t, np.asarray(y) * scale(len(y)), *a, **k))


def _perturbed_engine_start(monkeypatch):
    """The engine fit of explore validate sd starts 30 % + 0.01 away from the profile."""
    from explore.models import sd_validate
    start = sd_validate._engine_start
    monkeypatch.setattr(sd_validate, "_engine_start", lambda e, n, lo, hi: np.clip(
        start(e, n, lo, hi) * 1.3 + 0.01, lo, hi))


@pytest.mark.parametrize("perturb", ["start", "engine-start", "noise"])
def test_fit_presets_hold_from_another_start_or_with_noise(cli, fresh_validations, monkeypatch,
                                                           perturb):
    """The regression is robust: the fit preset passes when a fit starts elsewhere or the
    data carry relative noise of 1e-12 (what another BLAS build or CPU does to a fit)."""
    if perturb == "start":
        _perturbed_start(monkeypatch)
    elif perturb == "engine-start":
        _perturbed_engine_start(monkeypatch)
    else:
        rng = np.random.default_rng(1)
        _noisy_times(monkeypatch, lambda n: 1 + 1e-12 * rng.standard_normal(n))
    code, out, _ = cli("regress", "--preset", "sd-validate")
    assert code == 0 and "same   sd-validate" in out, out


def test_a_one_percent_change_to_one_measurement_moves_the_fit(cli, fresh_validations,
                                                                monkeypatch):
    """...and still sharp on fit results: one measured time 1 % higher is caught."""
    _noisy_times(monkeypatch, lambda n: np.where(np.arange(n) == 4, 1.01, 1.0))
    code, out, _ = cli("regress", "--preset", "sd-validate")
    assert code == 1 and "moved  sd-validate" in out
    assert ".calibrated." in out and "->" in out


def test_compare_rules():
    from explore.cli.regress import compare
    assert compare({"a": 1.0, "elapsed_s": 3}, {"a": 1.0 + 1e-12, "elapsed_s": 9}) == []
    assert compare({"a": 1.0}, {"a": 1.000001}) == ["a: 1 -> 1 (+0.000%)"]   # closed form: tight
    assert compare({"a": 1.0}, {"a": 1.01}) == ["a: 1 -> 1.01 (+1.000%)"]
    assert compare({"cfg": {"tp": 2}}, {"cfg": {"tp": 4}}) == ["cfg.tp: 2 -> 4"]
    assert compare([1, 2], [1, 2, 3]) == [": 2 items -> 3"]
    assert compare({"x": "a"}, {"y": "a"}) == ['x: removed (was "a")', 'y: new ("a")']


def test_fit_results_are_compared_at_the_solvers_agreement():
    from explore.cli.regress import FITTED, compare
    from explore.models.fit_settings import PREDICTION_RTOL
    assert FITTED.rtol == 10 * PREDICTION_RTOL
    near = 1.0 + 0.5 * FITTED.rtol
    assert compare({"calibrated": {"err": 1.0}}, {"calibrated": {"err": near}}) == []
    assert compare({"rows": [{"calibrated": 2.0}]}, {"rows": [{"calibrated": 2.0 * near}]}) == []
    assert compare({"x": {"fitted_on": "3 rows", "error": 0.1}},
                   {"x": {"fitted_on": "3 rows", "error": 0.1 * near}}) == []
    assert compare({"calibrated": {"err": 1.0}}, {"calibrated": {"err": 1.001}}) != []
    assert compare({"err": 1.0}, {"err": near}) != []        # outside a fit: closed form


def test_fitted_parameters_compare_by_bound_range_and_bound():
    from explore.cli.regress import compare

    def param(value, at_bound="", lower=0.0, upper=1.0):
        return {"calibrated": {"params": [{"name": "lam", "value": value, "lower": lower,
                                           "upper": upper, "at_bound": at_bound}]}}
    assert compare(param(0.5), param(0.5 + 5e-5)) == []          # 5e-5 of the range
    assert compare(param(0.5), param(0.51)) == ["calibrated.params[0](lam): 0.5 -> 0.51"]
    # on a bound: which bound is what counts, not the last digits of the value
    assert compare(param(1e-13, "lower"), param(3e-13, "lower")) == []
    assert compare(param(0.0, "lower"), param(0.2)) == \
        ["calibrated.params[0](lam): on lower bound -> 0.2"]
    assert compare(param(2.0, upper=None), param(2.0 * (1 + 5e-6), upper=None)) == []


def test_run_preset_with_override(cli):
    code, out, err = cli("run", "moesd-qwen2-2xh800", "--gamma", "3", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["setup"]["hardware"] == "h800" and data["setup"]["tp"] == 2
    assert data["best"]["gamma"] == 3


def test_run_user_yaml(cli, tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("description: mine\ncommand: [sd]\noptions:\n  model: mixtral-8x7b\n"
                 "  hardware: h100-sxm\n  alpha: 0.7\n  gamma: 2-3\n  json: true\n")
    code, out, err = cli("run", str(p))
    assert code == 0, err
    assert json.loads(out)["setup"]["target"] == "mixtral-8x7b"


@pytest.mark.parametrize("yaml_text,message", [
    ("command: [sd]\noptions: {modle: x}\n", "has no option --modle (did you mean --model"),
    ("command: [sdd]\n", "'sdd' is not a subcommand"),
    ("comand: [sd]\n", "unknown key 'comand' (did you mean 'command'"),
    ("command: [1]\n", "command[0]: expected text, got 1"),
    ("command: []\n", "command must name an explore subcommand"),
    ("command: [sd]\noptions: [1]\n", "options: expected a mapping, got [1]"),
])
def test_bad_study_preset(cli, tmp_path, yaml_text, message):
    """A study preset with a wrong key, name or type: one error line naming it, exit 2."""
    p = tmp_path / "bad.yaml"
    p.write_text(yaml_text)
    code, _, err = cli("run", str(p))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_unknown_study_preset_names_nearest(cli):
    code, _, err = cli("run", "moesd-qwen2-2xh80")
    assert code == 2 and "nearest: moesd-qwen2-2xh800" in err


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pipeline_save_dir(cli, tmp_path):
    import csv
    d = tmp_path / "p"
    code, out, err = cli("pipeline", "breakdown", "--layers", "48", "--tp", "8", "--pp", "8",
                         "--mbs", "4", "--schedule", "1f1b", "--save-dir", str(d))
    assert code == 0, err
    assert "HBM 80.0 GiB" in out                      # the terminal per-stage chart
    rows = list(csv.DictReader((d / "per_stage_memory.csv").open()))
    data = json.loads((d / "result.json").read_text())
    assert len(rows) == 8 == len(data["breakdown"]["devices"])
    assert float(rows[0]["peak_bytes"]) == data["breakdown"]["devices"][0]["peak"]
    assert _is_png(d / "memory.png")


def test_chiplet_save_dir_figures(cli, tmp_path):
    d = tmp_path / "c"
    code, _, err = cli("chiplet", "search", "--grid", "8x8", "--save-dir", str(d))
    assert code == 0, err
    assert _is_png(d / "pareto_latency_energy.png") and _is_png(d / "energy_breakdown.png")
    assert json.loads((d / "result.json").read_text())["best"]["point"]["grid"] == "8x8"
