"""`explore pipeline` end to end, and every bad input of the issue: message and exit code 2."""

import json

import pytest


def test_headline_search_answers_with_best_memory_table_and_binding(cli):
    code, out, err = cli("pipeline", "--model", "llama2-70b", "--layers", "48", "--gpus", "64",
                         "--hardware", "a100-80g")
    assert code == 0, err
    for needle in ("Best for tokens/s", "configuration", "Per-stage memory of the best",
                   "binding constraint", "op at peak", "Top 8 by tokens/s", "Assumptions",
                   "[literature]", "[design]"):
        assert needle in out, needle


def test_search_json_carries_the_table_numbers(cli):
    code, out, _ = cli("pipeline", "--layers", "48", "--tp", "8", "--pp", "8", "--mbs", "4",
                       "--schedule", "1f1b,chronos", "--json")
    assert code == 0
    d = json.loads(out)
    best = d["best"]
    assert d["search"]["feasible"] >= 1
    assert best["config"]["schedule"] == "chronos"           # 1F1B runs out of memory
    assert best["performance"]["fits"]
    rows = d["breakdown"]["devices"]
    assert len(rows) == 8
    assert max(r["peak"] for r in rows) <= best["performance"]["usable_bytes"]
    assert d["top"][0]["tokens_per_s"] == pytest.approx(best["performance"]["tokens_per_s"])
    assert any(a["tag"].startswith("[design]") for a in d["assumptions"])


def test_tpipe_is_chronos(cli):
    code, out, _ = cli("pipeline", "--layers", "48", "--tp", "8", "--pp", "8", "--mbs", "4",
                       "--schedule", "tpipe", "--recompute", "none", "--offload", "none",
                       "--json")
    assert code == 0
    assert json.loads(out)["best"]["config"]["schedule"] == "chronos"


def test_best_ranks_with_all_columns(cli):
    code, out, _ = cli("pipeline", "best", "--layers", "32", "--tp", "8", "--pp", "4,8",
                       "--mbs", "2,4", "--schedule", "1f1b,interleaved,zb-h1", "--top", "5")
    assert code == 0
    for needle in ("HFU (%)", "stall (s)", "min peak", "RAM/node", "bubble (%)", "(GiB)"):
        assert needle in out, needle


def test_breakdown_of_a_fixed_layout(cli):
    code, out, _ = cli("pipeline", "breakdown", "--layers", "48", "--tp", "8", "--pp", "8",
                       "--dp", "1", "--mbs", "4", "--schedule", "1f1b", "--json")
    assert code == 0
    d = json.loads(out)
    dev0 = d["breakdown"]["devices"][0]
    assert not d["performance"]["fits"]
    assert dev0["chunks"][0]["in_flight"] == 8
    assert dev0["activations"] / 2**20 == pytest.approx(48 * 1432.5)
    assert d["breakdown"]["binding"]["op"] == "F(vs 0, mb 7)"
    assert "device 0, activations" in d["performance"]["binding"]


def test_breakdown_flags_of_section_10(cli):
    code, out, _ = cli("pipeline", "breakdown", "--layers", "32", "--tp", "4", "--pp", "4",
                       "--dp", "4", "--vpp", "2", "--sp", "--no-flash", "--seq", "2048",
                       "--mbs", "2", "--global-batch", "128", "--schedule", "interleaved",
                       "--recompute", "selective")
    assert code == 0, out
    assert "DOES NOT FIT" in out or "fits" in out


def test_timeline_csv_plot_and_op_list(cli, tmp_path):
    ops = tmp_path / "ops.csv"
    code, out, _ = cli("pipeline", "timeline", "--layers", "16", "--tp", "8", "--pp", "8",
                       "--mbs", "4", "--device", "0", "--ops", str(ops), "--csv")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == "time_s,device,category,bytes"
    assert {ln.split(",")[1] for ln in lines[1:]} == {"0"}
    assert ops.read_text().startswith("op,kind,device,resource,start_s,end_s")
    code, out, _ = cli("pipeline", "timeline", "--layers", "16", "--tp", "8", "--pp", "8",
                       "--mbs", "4", "--schedule", "chronos", "--plot")
    assert code == 0 and "dev  7 |" in out


def test_timeline_summary_peaks_are_the_breakdowns(cli):
    """Without --csv the timeline is summarised: each device's peak, which equals the
    breakdown's, and how many rows --csv would print."""
    layout = ("--layers", "16", "--tp", "8", "--pp", "8", "--mbs", "4", "--schedule",
              "chronos")
    code, out, _ = cli("pipeline", "timeline", *layout)
    assert code == 0 and "--csv prints them" in out and len(out.splitlines()) < 24
    code, js, _ = cli("pipeline", "breakdown", *layout, "--json")
    peaks = [f"{d['peak'] / 2**30:.1f}" for d in json.loads(js)["breakdown"]["devices"]]
    rows = [ln.split("│")[1:3] for ln in out.splitlines() if ln.startswith("│")]
    assert [p.strip() for _, p in rows] == peaks


def test_max_size_table(cli):
    code, out, _ = cli("pipeline", "max-size", "--tp", "8", "--pp", "8", "--mbs", "4",
                       "--schedule", "1f1b,interleaved", "--json")
    assert code == 0
    rows = {r["schedule"]: r for r in json.loads(out)["rows"]}
    assert rows["1f1b"]["l_star"] == pytest.approx(46.86, abs=0.01)
    assert rows["1f1b"]["l_fit"] == 40 and rows["1f1b"]["l_fail"] == 48
    assert rows["interleaved"]["l_star"] < rows["1f1b"]["l_star"]
    assert "device 0, activations" in rows["1f1b"]["binding"]


def test_sweep_over_micro_batches(cli):
    code, out, _ = cli("pipeline", "sweep", "--vary", "m", "--values", "8,32", "--layers",
                       "32", "--tp", "8", "--pp", "8", "--mbs", "4", "--json")
    assert code == 0
    rows = json.loads(out)["rows"]
    assert rows[0]["tokens_per_s"] < rows[1]["tokens_per_s"]     # smaller bubble
    assert rows[0]["l_star"] == pytest.approx(rows[1]["l_star"])  # 1F1B memory: min(m, p)


def test_validate_prints_the_fixture_table(cli):
    code, out, _ = cli("pipeline", "validate", "--json")
    d = json.loads(out)
    rows = {r["check"]: r for r in d["rows"]}
    assert rows["1F1B at L = 48"]["ours"].startswith("OOM")
    assert rows["interleaved 1F1B (v = 2) at L = 48"]["ours"].startswith("OOM")
    assert rows["ChronosPipe at L = 48"]["ours"].startswith("fits")
    check1 = [r for r in d["rows"] if r["check"].startswith("check 1")][0]
    check2 = [r for r in d["rows"] if r["check"].startswith("check 2")]
    assert check1["status"] in ("PASS", "FAIL")
    assert len(check2) == 2 and all(r["status"] in ("PASS", "WARN") for r in check2)
    assert code == (1 if d["hard_fail"] else 0)
    assert d["fixture"]["hbm_bytes"] == 80 * 2**30 and d["fixture"]["m"] == 64


def test_validate_uses_the_shipped_fixture_preset():
    """The study preset holds the §8 values and validate reads them."""
    from explore.cli.studies.pipeline import fixture, fixture_options
    from explore import presets
    data = presets.read_yaml(presets.ROOT / "studies" / "chronos-fixture.yaml")
    assert set(data) == {"description", "command", "options"}
    assert data["command"] == ["pipeline", "validate"]
    opts = fixture_options()
    assert (opts["hbm_gib"], opts["reserve_gib"], opts["seq"], opts["mbs"],
            opts["global_batch"], opts["h2d_gbps"], opts["eff"]) == (80, 2, 4096, 4, 256, 25,
                                                                     0.5)
    fx = fixture({})
    assert (fx.tp, fx.pp, fx.dp, fx.layers, fx.sp, fx.flash) == (8, 8, 1, 48, False, True)
    assert fx.hw.link_bandwidth == 25e9 and fx.hw.fragmentation == 1.0


def test_fixture_defaults_live_in_the_model(monkeypatch):
    """What neither the preset nor a flag gives is the Fixture's own default, not a second
    copy in the CLI; flags override the preset."""
    from dataclasses import fields

    from explore.cli.studies import pipeline as study
    from explore.models.pipeline.validate import Fixture

    monkeypatch.setattr(study, "fixture_options", lambda: {"model": "llama2-70b"})
    fx = study.fixture({"tp": "4", "delta": 0.2})
    defaults = {f.name: f.default for f in fields(Fixture)}
    assert (fx.tp, fx.delta) == (4, 0.2)
    for name in ("layers", "pp", "dp", "seq", "mbs", "global_batch", "sp", "flash", "vpp"):
        assert getattr(fx, name) == defaults[name], name


def test_studies_build_without_the_typer_commands():
    """Tests and benchmarks build the study from cli/studies/pipeline.py alone."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from explore.cli.studies.pipeline import PipelineRequest, Workload, build\n"
            "work, lists, study = build(PipelineRequest(work=Workload(layers=48)))\n"
            "assert study.space.size > 1000, study.space.size\n"
            "assert 'explore.cli.pipeline' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_validate_flags_override_the_fixture(cli):
    code, out, _ = cli("pipeline", "validate", "--delta", "0.2", "--json")
    assert json.loads(out)["fixture"]["delta"] == 0.2


def test_every_command_has_its_own_flags_only(cli):
    """Option groups: a flag a command cannot use is not offered (max-size finds L itself,
    validate takes the fixture's options)."""
    from typer.main import get_command

    from explore.cli.app import app

    group = get_command(app).commands["pipeline"]

    def flags(cmd):
        return {o for p in cmd.params for o in p.opts if o.startswith("--")}

    assert "--layers" not in flags(group.commands["max-size"])
    assert {"--tb-ratio", "--vpp", "--schedule"} & flags(group.commands["validate"]) == set()
    assert "--dp" in flags(group.commands["breakdown"]) and "--dp" not in flags(group)
    assert "--recompute-layers" not in flags(group.commands["sweep"])
    for name in ("", "best", "breakdown", "max-size", "sweep", "validate"):
        assert "--wide" in flags(group.commands[name] if name else group), name


def test_help_has_examples(cli):
    for args in (("pipeline", "--help"), ("pipeline", "max-size", "--help"),
                 ("pipeline", "best", "--help"), ("pipeline", "breakdown", "--help"),
                 ("pipeline", "timeline", "--help"), ("pipeline", "sweep", "--help"),
                 ("pipeline", "validate", "--help")):
        code, out, _ = cli(*args)
        assert code == 0 and "Example" in out, args


BAD = [
    (("pipeline", "breakdown", "--layers", "49", "--tp", "8", "--pp", "8", "--schedule",
      "interleaved", "--vpp", "2"), "49 layers of llama2-70b-L49 do not split over PP 8"),
    (("pipeline", "breakdown", "--layers", "48", "--tp", "8", "--pp", "8", "--schedule",
      "chronos", "--layers", "40"), "40 layers of llama2-70b-L40 do not split over PP 8 (16 "),
    (("pipeline", "breakdown", "--tp", "8", "--pp", "8", "--first-stage-layers", "-1"),
     "--first-stage-layers must be >= 0, got -1"),
    (("pipeline", "breakdown", "--tp", "8", "--pp", "8", "--first-stage-layers", "100"),
     "the other -20 of 80 layers do not split evenly over the 7 other pipeline stage"),
    (("pipeline", "breakdown", "--tp", "8", "--pp", "8", "--first-stage-layers", "4",
      "--schedule", "zb-v"), "the other 76 of 80 layers do not split evenly over the 15"),
    (("pipeline", "breakdown", "--model", "deepseek-v3", "--gpus", "256", "--tp", "2",
      "--pp", "16", "--ep", "4", "--mtp-layers", "-1"), "--mtp-layers must be >= 0, got -1"),
    (("pipeline", "breakdown", "--tp", "3", "--pp", "8", "--gpus", "24"),
     "TP degree 3 does not divide the 64 attention heads"),
    (("pipeline", "breakdown", "--tp", "8", "--pp", "3", "--layers", "48"),
     "TP 8 x PP 3 does not divide the 64 GPUs"),
    (("pipeline", "breakdown", "--tp", "8", "--pp", "8", "--dp", "2"),
     "= 128 GPUs does not divide the 64 GPUs"),
    (("pipeline", "breakdown", "--layers", "48", "--tp", "8", "--pp", "8", "--mbs", "3"),
     "micro-batch 3 x DP 1 does not divide the global batch 256"),
    (("pipeline", "--schedule", "1f2b"), "unknown schedule '1f2b' (did you mean 1f1b"),
    (("pipeline", "breakdown", "--tp", "8", "--pp", "8", "--schedule", "zb-h3"),
     "unknown schedule 'zb-h3'"),
    (("pipeline", "--recompute", "everything"), "--recompute 'everything': choose from"),
    (("pipeline", "--model", "llama2-70b", "--gpus", "8", "--hardware", "rtx-4090",
      "--tp", "8", "--pp", "1", "--mbs", "1", "--global-batch", "8"),
     "llama2-70b cannot fit: the closest configuration"),
    (("pipeline", "breakdown", "--layers", "64", "--tp", "8", "--pp", "8", "--mbs", "4",
      "--offload", "optimizer", "--host-ram-gib", "4"), "host RAM exceeded"),
    (("pipeline", "sweep", "--vary", "batch", "--values", "1"), "--vary 'batch'"),
    (("pipeline", "breakdown", "--tp", "8", "--pp", "8", "--zero", "1", "--dist-opt"),
     "do not combine"),
]


# nothing can run: exit 3 (not bad input), the binding constraint named
INFEASIBLE = ("llama2-70b cannot fit", "host RAM exceeded")


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_exits_2_with_one_line(cli, args, message):
    code, out, err = cli(*args)
    assert code == (3 if message.startswith(INFEASIBLE) else 2), (out, err)
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert message in err, err


def test_model_that_cannot_fit_names_device_and_category(cli):
    code, _, err = cli("pipeline", "--model", "llama2-70b", "--gpus", "8", "--hardware",
                       "rtx-4090", "--tp", "8", "--pp", "1", "--mbs", "1", "--global-batch",
                       "8")
    assert code == 3
    assert "device 0, model states" in err


def test_save_dir_of_every_table_command_carries_the_json(cli, tmp_path):
    """--save-dir (the shared Output group): result.json holds the --json numbers, one CSV per
    table."""
    args = ("pipeline", "max-size", "--tp", "8", "--pp", "8", "--mbs", "4", "--schedule",
            "1f1b")
    code, out, _ = cli(*args, "--json")
    assert code == 0
    code, _, _ = cli(*args, "--save-dir", str(tmp_path))
    assert code == 0
    assert json.loads((tmp_path / "result.json").read_text())["rows"][0]["l_star"] == \
        pytest.approx(json.loads(out)["rows"][0]["l_star"])
    assert (tmp_path / "max_size.csv").read_text().startswith("schedule,label,grid_step")


def test_wide_tables_keep_every_column(cli):
    args = ("pipeline", "breakdown", "--layers", "48", "--tp", "8", "--pp", "8", "--mbs", "4")
    code, wide, _ = cli(*args, "--wide")
    assert code == 0
    code, narrow, _ = cli(*args)
    assert code == 0
    for column in ("+reserve", "recompute", "working", "extras", "reload"):
        assert f" {column} " in wide, column
    assert " +reserve " not in narrow and " other " in narrow


def test_search_with_uneven_stages_marks_chronos_points_invalid(cli):
    """30 layers do not split evenly over every PP: the Chronos savers' points with uneven
    stages are invalid points of the search, not an error that ends it (Llama-3.1-405B's 126
    layers on 1,024 GPUs ended this way)."""
    code, out, err = cli("pipeline", "--model", "llama2-7b", "--layers", "30", "--gpus", "16",
                         "--hardware", "h100", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["search"]["invalid"] > 0 and data["best"]["performance"]["tokens_per_s"] > 0
