"""Study presets and their regression (issue 7): `explore run`, `explore regress` against the
golden files, and a model change caught with a readable diff."""

import json

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


def test_compare_rules():
    from explore.cli.run import compare
    assert compare({"a": 1.0, "elapsed_s": 3}, {"a": 1.0 + 1e-9, "elapsed_s": 9}, 1e-6) == []
    assert compare({"a": 1.0}, {"a": 1.01}, 1e-6) == ["a: 1 -> 1.01 (+1.000%)"]
    assert compare({"cfg": {"tp": 2}}, {"cfg": {"tp": 4}}, 1e-6) == ["cfg.tp: 2 -> 4"]
    assert compare([1, 2], [1, 2, 3], 1e-6) == [": 2 items -> 3"]
    assert compare({"x": "a"}, {"y": "a"}, 1e-6) == ['x: removed (was "a")', 'y: new ("a")']


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
])
def test_bad_study_preset(cli, tmp_path, yaml_text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml_text)
    code, _, err = cli("run", str(p))
    assert code == 2 and message in err, err


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
