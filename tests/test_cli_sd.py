"""`explore sd` end to end, and every bad input of issue 2: message and exit code 2."""

import json

import pytest


def test_default_run_names_best_point(cli):
    code, out, err = cli("sd", "--model", "qwen2-57b")
    assert code == 0, err
    for needle in ("a-priori (uncalibrated", "Best for speedup", "batch size B",
                   "draft length gamma", "target efficiency", "effective range",
                   "Target forward time", "routed experts", "Defaults used", "tp 2"):
        assert needle in out, needle


def test_json_carries_the_table_numbers(cli):
    code, out, _ = cli("sd", "--model", "qwen2-57b", "--hardware", "h800", "--tp", "2",
                       "--gamma", "4", "--json")
    assert code == 0
    data = json.loads(out)
    best = data["best"]
    assert data["setup"]["tp"] == 2 and best["gamma"] == 4
    assert 1 <= best["batch"] <= 100
    assert best["speedup"] <= best["tokens_per_round"]
    grid = data["grid"]
    b = grid["batch"].index(best["batch"])
    assert grid["speedup"][b][0] == pytest.approx(best["speedup"])
    lo, hi = data["ranges"]["effective"]
    assert lo <= best["batch"] <= hi


def test_dense_comparison_and_objective(cli):
    code, out, _ = cli("sd", "--dense", "qwen2-7b", "--objective", "throughput", "--json",
                       "--hardware", "h800")
    assert code == 0
    data = json.loads(out)
    assert data["objective"] == "throughput" and data["dense"]["model"] == "qwen2-7b"


def test_latency_constraint_binds(cli):
    code, out, _ = cli("sd", "--json", "--max-latency-ms", "9", "--hardware", "h800")
    assert code == 0
    data = json.loads(out)
    assert data["best"]["latency_s"] <= 9e-3
    assert data["search"]["infeasible"] > 0


def test_hf_config_path_as_model(cli, tmp_path):
    from test_presets import HF_QWEN2_MOE
    p = tmp_path / "config.json"
    p.write_text(json.dumps(HF_QWEN2_MOE))
    code, out, err = cli("sd", "--model", str(p), "--draft", "qwen2-0.5b", "--json")
    assert code == 0, err
    assert json.loads(out)["setup"]["tp"] == 2


BAD = [
    (("sd", "--model", "qwen2-75b"),
     "unknown model preset 'qwen2-75b'; nearest: qwen2-7b, qwen2-57b"),
    (("sd", "--hardware", "h900"), "unknown gpu preset 'h900'; nearest:"),
    (("sd", "--acceptance", "humaneval"), "unknown acceptance preset"),
    (("sd", "--batch", "8x"), "--batch '8x': cannot read '8x'; use N, A-B"),
    (("sd", "--batch", "10-2"), "must go up"),
    (("sd", "--gamma", "0"), "--gamma '0': values must be >= 1"),
    (("sd", "--batch", "0-4"), "--batch '0-4': values must be >= 1"),
    (("sd", "--alpha", "1.0"), "alpha must be in [0, 1)"),
    (("sd", "--alpha", "-0.1"), "alpha must be in [0, 1)"),
    (("sd", "--sigma", "0.9"), "write the gamma it was measured at"),
    (("sd", "--sigma", "1.2@4"), "sigma must lie in"),
    (("sd", "--alpha", "0.8", "--acceptance", "generic-0.8"), "give only one of"),
    (("sd", "--ctx", "-5"), "--ctx must be >= 0"),
    (("sd", "--tp", "3"), "TP degree 3 does not divide the 28 attention heads"),
    (("sd", "--tp", "0"), "tensor-parallel degree must be >= 1"),
    (("sd", "--objective", "cost"), "--objective 'cost': choose from"),
    (("sd", "--verify-tokens", "all"), "verify tokens must be one of"),
    (("sd", "--model", "olmoe-1b-7b"), "has no usual draft preset; pass --draft"),
    (("sd", "--search", "annealing"), "unknown search engine"),
    (("presets", "show", "h900"), "no preset called 'h900'"),
    (("presets", "list", "gpus"), "unknown preset kind 'gpus' (did you mean 'gpu'"),
]


# nothing in the space can run: exit 3 (not 2, bad input), the line names what binds
INFEASIBLE = [
    (("sd", "--model", "qwen2-7b", "--tp", "1", "--batch", "4000", "--ctx", "32768"),
     "no feasible (batch, gamma) point: memory"),
    (("sd", "--model", "llama3.1-405b", "--hardware", "l40"), "does not fit on up to 8 x l40"),
]


@pytest.mark.parametrize("args,message,expected", [(a, m, 2) for a, m in BAD]
                         + [(a, m, 3) for a, m in INFEASIBLE])
def test_bad_input_is_one_clear_line(cli, args, message, expected):
    code, out, err = cli(*args)
    assert code == expected
    assert message in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_malformed_yaml_model_file(cli, tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("layers: [28\n")
    code, _, err = cli("sd", "--model", str(p), "--draft", "qwen2-0.5b")
    assert code == 2 and "malformed YAML" in err


def test_unreadable_config_json(cli, tmp_path):
    p = tmp_path / "config.json"
    p.write_text('{"hidden_size": 8,')
    code, _, err = cli("sd", "--model", str(p), "--draft", "qwen2-0.5b")
    assert code == 2 and "malformed JSON" in err


def test_negative_size_in_user_model(cli, tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("layers: -2\nhidden: 8\nheads: 2\nkv_heads: 2\nhead_dim: 4\nintermediate: 8\n"
                 "vocab: 10\n")
    code, _, err = cli("sd", "--model", str(p), "--draft", "qwen2-0.5b")
    assert code == 2 and "layers must be >= 1, got -2" in err


def test_debug_shows_traceback(cli):
    from explore.models.errors import InputError
    with pytest.raises(InputError):
        cli("sd", "--batch", "8x", "--debug")


def test_presets_list_and_show(cli):
    code, out, _ = cli("presets", "list", "gpu")
    assert code == 0 and "h800" in out and "rtx-4090" in out
    code, out, _ = cli("presets", "show", "h200", "--json")
    data = json.loads(out)
    assert data["kind"] == "gpu" and data["hbm_bandwidth"] == pytest.approx(4.8e12)
    code, out, _ = cli("presets", "show", "qwen2-57b")
    assert code == 0 and "experts_per_token" in out


def test_presets_fields_document_every_key(cli):
    import dataclasses
    from explore.models.hardware import GpuSpec
    code, out, _ = cli("presets", "fields", "gpu", "--json")
    rows = json.loads(out)
    assert [r["field"] for r in rows] == [f.name for f in dataclasses.fields(GpuSpec)]
    assert all(r["meaning"] for r in rows)
    by = {r["field"]: r for r in rows}
    assert by["hbm_bandwidth"]["unit"] == "B/s" and by["hbm_bandwidth"]["required"]
    assert by["eta_bw"]["default"] == 0.85 and by["name"]["default"] == "the file name"


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("explore ")


def test_save_dir_writes_tables_and_figures(cli, tmp_path):
    import csv
    d = tmp_path / "out"
    code, out, err = cli("sd", "--hardware", "h800", "--gamma", "2-4", "--dense", "qwen2-7b",
                         "--save-dir", str(d))
    assert code == 0, err
    assert "speedup (x)" in out and "batch size B" in out      # the terminal plot
    data = json.loads((d / "result.json").read_text())
    rows = list(csv.DictReader((d / "grid.csv").open()))
    assert len(rows) == 100 * 3 and set(rows[0]) == {"batch", "gamma", "speedup_x",
                                                     "target_efficiency"}
    best = next(r for r in rows if int(r["batch"]) == data["best"]["batch"]
                and int(r["gamma"]) == data["best"]["gamma"])
    assert float(best["speedup_x"]) == pytest.approx(data["best"]["speedup"])
    terms = list(csv.DictReader((d / "breakdown.csv").open()))
    assert {"seconds", "bytes_per_gpu", "flops_per_gpu", "source"} <= set(terms[0])
    for png in ("speedup_vs_batch.png", "te_vs_batch.png"):
        assert (d / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_dir_that_cannot_be_created(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = cli("sd", "--save-dir", str(blocker / "sub"))
    assert code == 2 and "--save-dir" in err


def test_every_command_has_help_with_an_example(cli):
    from typer.main import get_command

    from explore.cli.app import app
    missing = []

    def walk(cmd, path):
        if "Example:" not in (cmd.help or ""):
            missing.append(" ".join(path))
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, path + [name])
    walk(get_command(app), ["explore"])
    assert not missing
    code, out, _ = cli("chiplet", "search", "--help")
    assert code == 0 and "Example:" in out


def test_default_gamma_grid_is_the_measured_range(cli):
    """Issue 12: the acceptance preset says at which gamma its alpha was measured; the default
    grid stays there and says so, and the best point on its edge is marked."""
    code, out, _ = cli("sd", "--model", "qwen2-57b", "--json")
    data = json.loads(out)
    assert code == 0 and data["grid"]["gamma"] == [2, 3, 4]
    assert data["setup"]["measured_gamma"] == [2, 4] and not data["warnings"]
    assert any("gamma 2-4: the range the acceptance rate was measured at" in n
               for n in data["defaults"])
    assert data["best"]["gamma"] == 4 and data["ranges"]["best_on_edge"]["gamma"] == "upper"
    code, out, _ = cli("sd", "--model", "qwen2-57b")
    assert "on the upper edge of the searched range" in out


def test_gamma_beyond_the_measured_range_warns(cli):
    code, out, _ = cli("sd", "--model", "qwen2-57b", "--gamma", "2-6", "--json")
    warnings = json.loads(out)["warnings"]
    assert code == 0 and len(warnings) == 1
    assert "gamma 5-6 lies outside 2-4" in warnings[0] and "alpha is extrapolated" in warnings[0]
    code, out, _ = cli("sd", "--model", "qwen2-57b", "--gamma", "2-6")
    assert "warning: gamma 5-6 lies outside 2-4" in " ".join(out.split())
    code, out, _ = cli("sd", "--model", "qwen2-57b", "--alpha", "0.8", "--json")
    assert not json.loads(out)["warnings"]      # a rate the user gives carries no range


def test_flatness_of_the_optimum_is_reported(cli):
    """The batch and gamma ranges within 5 % of the best speedup contain exactly the grid
    points that are that close (2 x H800: the paper's peak is flat from B ~ 16 to 48)."""
    code, out, _ = cli("run", "moesd-qwen2-2xh800", "--json")
    data = json.loads(out)
    g, best, rng = data["grid"], data["best"], data["ranges"]
    gi, bi = g["gamma"].index(best["gamma"]), g["batch"].index(best["batch"])
    near = [b for b, row in zip(g["batch"], g["speedup"])
            if row[gi] >= (1 - rng["within"]) * best["speedup"]]
    assert rng["near_best_batch"] == [min(near), max(near)]
    assert near == list(range(min(near), max(near) + 1))
    assert rng["near_best_batch"][0] <= 16 and rng["near_best_batch"][1] >= 48
    near_g = [gm for gm, v in zip(g["gamma"], g["speedup"][bi])
              if v >= (1 - rng["within"]) * best["speedup"]]
    assert rng["near_best_gamma"] == [min(near_g), max(near_g)]


def test_engine_profile_is_named_and_bad_ones_are_refused(cli, tmp_path):
    code, out, _ = cli("sd", "--model", "qwen2-57b", "--engine", "none", "--json")
    assert code == 0 and json.loads(out)["setup"]["engine"] == "none"
    code, _, err = cli("sd", "--engine", "cuda-graph")
    assert code == 2 and "unknown engine preset 'cuda-graph'; nearest: cuda-graphs" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("round_overhead_s: -1 ms\n")
    code, _, err = cli("sd", "--engine", str(bad))
    assert code == 2 and "round_overhead_s must be >= 0, got -0.001" in err
    assert err.count("\n") == 1
