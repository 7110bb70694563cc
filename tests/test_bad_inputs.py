"""Issue 18's reproductions at the input boundary, each with its message and exit code: readers
that crashed on wrong types, values outside what the code can take, silent nonsense, unbounded
work and the message format (tests/test_fuzz_inputs.py runs the generated table)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from explore.models.errors import nearest, shown

PRESETS = Path(__file__).resolve().parents[1] / "presets"
LLAMA = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
         "vocab_size": 128256}


def one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def config(tmp_path: Path, text: str) -> str:
    f = tmp_path / "config.json"
    f.write_text(text)
    return str(f)


@pytest.mark.parametrize("change,message", [
    ({"num_attention_heads": 0}, "num_attention_heads must be >= 1, got 0"),
    ({"hidden_size": "abc"}, "hidden_size must be a whole number, got 'abc'"),
    ({"hidden_size": 1.5}, "hidden_size must be a whole number, got 1.5"),
    ({"num_hidden_layers": -4}, "num_hidden_layers must be >= 0, got -4"),
    ({"text_config": [1]}, "text_config must be a JSON object"),
    ({"n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 2},
     "n_shared_experts needs moe_intermediate_size"),
])
def test_config_json_wrong_types(cli, tmp_path, change, message):
    code, _, err = cli("pipeline", "--model", config(tmp_path, json.dumps({**LLAMA, **change})))
    assert code == 2 and message in one_error(err)


def test_config_json_nan_and_huge_numbers(cli, tmp_path):
    code, _, err = cli("sd", "--model", config(tmp_path, json.dumps(LLAMA).replace(
        "4096", "NaN")))
    assert code == 2 and "hidden_size must be a whole number, got nan" in one_error(err)
    code, _, err = cli("sd", "--model", config(tmp_path, json.dumps(LLAMA).replace(
        "4096", "9" * 5000)))
    assert code == 2 and "cannot read it" in one_error(err)


def test_config_json_text_config_null_reads_the_top_level(tmp_path):
    from explore import presets
    shape = presets.load("model", config(tmp_path, json.dumps({**LLAMA, "text_config": None})))
    assert shape.layers == 32 and shape.hidden == 4096


def test_yaml_not_utf8_deep_and_alias_bomb(cli, tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("source: caf\xe9\n".encode("latin-1"))
    code, _, err = cli("pipeline", "--model", str(bad))
    assert code == 2 and "not UTF-8 text (byte 0xe9 at offset 11)" in one_error(err)

    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    code, _, err = cli("pipeline", "--model", str(deep))
    assert code == 2 and "nested more than 32 levels deep" in one_error(err)

    # 307 bytes that expand to 9^9 values: refused from the node graph, never expanded
    lines = ["a: &a [" + ",".join(["lol"] * 9) + "]"]
    lines += [f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh",
                                                                             "bcdefghi")]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    code, _, err = cli("sd", "--model", str(bomb))   # counted on the nodes, never built
    assert code == 2 and "expands to more than 100,000 values through aliases" in one_error(err)
    assert len(bomb.read_bytes()) < 400


def test_yaml_integer_of_5000_digits(cli, tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("layers: " + "9" * 5000 + "\n")
    code, _, err = cli("pipeline", "--model", str(f))
    assert code == 2 and "cannot read a value: Exceeds the limit (4300 digits)" in one_error(err)


def test_yaml_file_too_large(cli, tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("description: " + "x" * (1 << 20) + "\n")
    code, _, err = cli("pipeline", "--hardware", str(big))
    assert code == 2 and "bytes; a YAML file is at most 1,048,576" in one_error(err)


@pytest.mark.parametrize("setting,message", [
    ("die.f=[1", "--set die (die-7nm): f: line 1 malformed YAML: expected ',' or ']'"),
    ("die.f=.nan", "f must be a finite number, got nan"),
    ("die.array_cols=0", "array_cols must be >= 1, got 0"),
    ("die.sram=-1 MB", "sram must be >= 0, got -1000000"),
    ("die.n_mac=" + "9" * 5000, "99999': longer than 4096 "
                                "characters"),
    ("die.n_mac=" + "9" * 60, "n_mac 999999999999999999...9999999999999999999 is too large"),
])
def test_set_values(cli, setting, message):
    code, _, err = cli("chiplet", "run", "--set", setting)
    assert code == 2 and message in one_error(err)


def component_csv(tmp_path: Path, rows: list[str]) -> str:
    f = tmp_path / "times.csv"
    f.write_text("batch,tokens_per_seq,step_ms\n" + "\n".join(rows) + "\n")
    return str(f)


GOOD_ROWS = [f"{b},1,{10 + b / 8}" for b in (1, 2, 4, 8, 16, 32, 64, 128)]


@pytest.mark.parametrize("row,message", [
    (",1,10", "column 'batch' has a non-number ''"),
    ("abc,1,10", "column 'batch' has a non-number 'abc'"),
    ("nan,1,10", "column 'batch' must be a finite number >= 1, got nan"),
    ("-4,1,10", "column 'batch' must be >= 1, got -4"),
    ("2.5,1,10", "column 'batch' must hold whole numbers, got 2.5"),
    ("4,,10", "column 'tokens_per_seq' has a non-number ''"),
    ("4,x,10", "column 'tokens_per_seq' has a non-number 'x'"),
    ("4,NaN,10", "column 'tokens_per_seq' must be a finite number >= 1, got nan"),
    ("4,1,-3", "column 'step_ms' must be > 0, got -3"),
])
def test_sd_fit_csv_cells(cli, tmp_path, row, message):
    code, _, err = cli("sd", "fit", component_csv(tmp_path, GOOD_ROWS + [row]), "--hardware",
                       "h200", "--mode", "component")
    assert code == 2 and message in one_error(err)


def test_sd_fit_refuses_fewer_rows_than_parameters(cli, tmp_path):
    code, _, err = cli("sd", "fit", component_csv(tmp_path, ["1,1,10"]), "--hardware", "h200",
                       "--mode", "component")
    assert code == 2 and "1 measured values to fit 6 parameters" in one_error(err)


@pytest.mark.parametrize("args,message", [
    (("sd", "--seed", "-1"), "--seed must be in [0, 4294967295], got -1"),
    (("sd", "--seed", "9" * 5000), "Invalid value for '--seed'"),
    (("sd", "--seed", "9" * 60), "--seed 999999999999999999...9999999999999999999 is too "
                                  "large (it must be in [0, 4294967295])"),
    (("regress", "--rtol", "-1"), "--rtol must be >= 0, got -1"),
    (("regress", "--rtol", "nan"), "--rtol must be a finite number >= 0, got nan"),
    (("pipeline", "validate", "--hbm-gib", "nan"), "--hbm-gib must be a finite number > 0, "
                                                   "got nan"),
    (("pipeline", "--peak-tflops", "inf"), "--peak-tflops must be a finite number > 0, got inf"),
    (("pipeline", "--tb-ratio", "inf"), "--tb-ratio must be a finite number > 0, got inf"),
    (("sd", "--sigma", "nan@4"), "--sigma 'nan@4': 'nan' is not a finite number"),
    (("sd", "--timeout", "nan"), "--timeout must be a finite number > 0, got nan"),
    (("sd", "--timeout", "-5"), "--timeout must be > 0, got -5"),
    (("sd", "--batch", "1-100000000"), "--batch '1-100000000': 100,000,000 values, more than "
                                       "the 10,000 one flag may list; use a step"),
    (("chiplet", "--sram", "1-1000000"), "--sram '1-1000000': 1,000,000 values"),
    (("pipeline", "validate", "--cp", "abc"), "--cp 'abc': cannot read 'abc'"),
    (("pipeline", "validate", "--cp-comm", "p2q"), "--cp-comm 'p2q': choose p2p, a2a (did you "
                                                   "mean p2p?)"),
    (("sd", "--gamma", "1-10000"), "--gamma '1-10000': values must be <= 64"),
    (("sd", "--hardware", ""), "--hardware: empty value; give one or leave the flag out"),
    (("pipeline", "--recompute-modules", ","), "--recompute-modules: empty value"),
    (("sd", "--calibration", "a\x00b"), "--calibration 'a\\x00b': has control characters"),
    (("sd", "--model", "m" * 300), "unknown model preset 'mmmmmmmmmmmmmmmmmmmmmmmmmmm...mmmm"),
    (("sd", "--model", "m" * 300 + ".yaml"), "model file not found: 'mmmmmmmmmmmm"),
])
def test_values_outside_range(cli, args, message):
    code, _, err = cli(*args)
    assert code == 2 and message in one_error(err)


def test_model_and_gpu_fields(cli, tmp_path):
    llama = (PRESETS / "models" / "llama3.1-8b.yaml").read_text()
    m = tmp_path / "m.yaml"
    m.write_text(llama + "experts: 8\nexperts_per_token: 2\nexpert_intermediate: 1024\n"
                 "dense_layers: 40\n")
    code, _, err = cli("sd", "--model", str(m))
    assert code == 2 and "dense_layers (40) must be in 0..layers (32)" in one_error(err)
    m.write_text(llama + "bytes_per_param: -2\n")   # the format is weight_format now
    code, _, err = cli("sd", "--model", str(m))
    assert code == 2 and "unknown key 'bytes_per_param'" in one_error(err)
    m.write_text(llama.replace("layers: 32", "layers: .inf"))
    code, _, err = cli("sd", "--model", str(m))
    assert code == 2 and "layers: expected an integer, got inf" in one_error(err)

    gpu = (PRESETS / "gpus" / "h100-sxm.yaml").read_text()
    g = tmp_path / "g.yaml"
    g.write_text(gpu.replace("peak_flops: 989.4 TFLOP/s", "peak_flops: 400"))
    code, _, err = cli("pipeline", "--hardware", str(g))
    assert code == 2 and ("peak_flops: 400 FLOP/s is implausible (expected 1e+12 to 1e+18 "
                          "FLOP/s); did you mean 400 TFLOP/s?") in one_error(err)
    g.write_text(gpu.replace("hbm_bytes: 80 GiB", "hbm_bytes: -80 GiB"))
    code, _, err = cli("pipeline", "--hardware", str(g))
    assert code == 2 and "hbm_bytes must be > 0" in one_error(err)
    g.write_text(gpu.replace("tdp_w: 700 W", "tdp_w: .inf"))
    code, _, err = cli("pipeline", "--hardware", str(g))
    assert code == 2 and "tdp_w must be a finite number, got inf" in one_error(err)


def test_typer_parse_errors_are_one_line(cli):
    code, _, err = cli("sd", "--batch")
    assert code == 2 and one_error(err) == "error: Option '--batch' requires an argument."
    code, _, err = cli("sd", "--top", "abc")
    line = one_error(err)
    assert code == 2 and line.startswith("error: explore sd: Invalid value for '--top'")
    assert "╭" not in err and line.endswith("(see `explore sd --help`)")
    code, _, err = cli("sd", "fit")
    assert code == 2 and "explore sd fit: Missing argument 'data'" in one_error(err)
    code, _, err = cli("presets")
    assert code == 2 and "explore presets: Missing command" in one_error(err)


def test_unknown_names_suggest_only_close_ones_once(cli):
    code, _, err = cli("sd", "--nope")
    assert code == 2 and one_error(err).startswith("error: explore sd: no such option --nope "
                                                   "(see")   # not '--top, --no-plot'
    code, _, err = cli("sd", "--modle", "x")
    assert code == 2 and "no such option --modle (did you mean --model?)" in one_error(err)
    code, _, err = cli("sd", "--model", "zzzzzz")
    assert code == 2 and one_error(err) == ("error: unknown model preset 'zzzzzz' (`explore "
                                            "presets list model` shows all)")
    # qwen2-57b is an alias of qwen2-57b-a14b: one suggestion for the one preset
    code, _, err = cli("sd", "--model", "qwen2-57")
    close = one_error(err).split("nearest: ")[1].split(" (")[0].split(", ")
    assert len(close) == len(set(close)) and not {"qwen2-57b", "qwen2-57b-a14b"} <= set(close)
    assert nearest("abc", ["abd", "abd", "xyz"]) == ["abd"]


def test_error_lines_are_bounded(cli, tmp_path):
    code, _, err = cli("sd", "--batch", "1," * 4000)
    assert code == 2 and len(one_error(err)) < 300   # the value is shown cut
    from explore.cli.app import MAX_LINE, error_line
    line = error_line("what is wrong " + "x" * 5000 + " how to fix it")
    assert len(line) <= len("error: ") + MAX_LINE and line.endswith(" how to fix it")
    assert line.startswith("error: what is wrong xxx")
    assert len(shown(list(range(10**6)))) < 100 and len(shown("y" * 10**6)) < 100


def test_runtime_warnings_stay_off_stderr(cli, monkeypatch):
    import numpy as np

    from explore.cli import sd
    from explore.models.errors import InputError

    def warn(req):
        np.log(np.zeros(1))          # RuntimeWarning: divide by zero
        raise InputError("after a warning")
    monkeypatch.setattr(sd, "run", warn)
    code, _, err = cli("sd")
    assert code == 2 and one_error(err) == "error: after a warning"


@pytest.mark.parametrize("args", [("chiplet", "run", "--save-dir", "{file}"),
                                  ("chiplet", "run", "--save-dir", "{file}/sub"),
                                  ("pipeline", "timeline", "--out", "/dev/full"),
                                  ("pipeline", "timeline", "--out", "{missing}/t.csv")])
def test_unwritable_outputs(cli, tmp_path, args):
    (tmp_path / "f").write_text("x")
    args = [a.format(file=tmp_path / "f", missing=tmp_path / "none") for a in args]
    code, _, err = cli(*args)
    line = one_error(err)
    assert code == 2 and ("cannot write" in line or "--save-dir" in line)


@pytest.mark.parametrize("options,message", [
    ("{seq: .nan}", "--seq: expected an integer, got nan"),
    ("{batch: abc}", "--batch: expected an integer, got 'abc'"),
    ("{seq: 1.5}", "--seq: expected an integer, got 1.5"),
    ("{model: ''}", "--model: empty value"),
])
def test_chiplet_config_values_take_the_flag_checks(cli, tmp_path, options, message):
    f = tmp_path / "best.yaml"
    f.write_text(f"command: [chiplet, run]\noptions: {options}\n")
    code, _, err = cli("chiplet", "run", "--config", str(f))
    assert code == 2 and f"{f}: {message}" in one_error(err)


def test_study_show_bounds_and_names_only_close_studies(cli, tmp_path):
    """study show --top/--trials take at least 1; an unknown study name suggests only close
    names as "nearest", else lists what the storage holds, labelled as such."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert cli("sd", "--search", "optuna", "--n-trials", "3", "--storage", url,
               "--study-name", "alpha")[0] == 0
    for flag in ("--top", "--trials"):
        code, _, err = cli("study", "show", "--storage", url, "--study-name", "alpha", flag,
                           "-1")
        assert code == 2 and f"{flag} must be >= 1" in err and len(err.splitlines()) == 1
    code, _, err = cli("study", "show", "--storage", url, "--study-name", "alpah")
    assert code == 2 and "nearest: alpha" in err
    code, _, err = cli("study", "show", "--storage", url, "--study-name", "zzz")
    assert code == 2 and "studies there: alpha" in err and "nearest" not in err
