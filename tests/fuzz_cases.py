"""Bad inputs for every reader and every numeric flag (issue 18), as one generated table.

`cases(tmp)` writes the files it needs under `tmp` and returns (label, argv) pairs; every one is
bad input, so explore must answer each with exit code 2 and exactly one `error:` line on
stderr, never a traceback, and quickly (the check happens before any search). The in-suite
test (tests/test_fuzz_inputs.py) runs them in-process; benchmarks/fuzz_cli.py runs them as
subprocesses with time and memory limits and counts what goes wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

PRESETS = Path(__file__).resolve().parents[1] / "presets"
HUGE_INT = "9" * 5000
HUGE = "__HUGE__"   # stands for HUGE_INT in a mapping; written out as the 5,000 digits

# values no numeric flag may take (a whole number flag also refuses "1.5")
BAD_NUMBERS = ("abc", "nan", "inf", "-inf", "-1", "1e400", HUGE_INT, "")
BAD_INTS = BAD_NUMBERS + ("1.5",)
# range / list flags written as text: bad numbers, and ranges too large to build
BAD_RANGES = ("abc", "nan", "inf", "-1", "0-", "1-100000000", HUGE_INT, "1-" + HUGE_INT)
# any text flag (names, paths, lists): empty, a NUL byte, longer than any path
BAD_TEXT = ("", ",", "a\x00b", "x" * 5000)

# (command path, required arguments) for every command whose flags are fuzzed; study commands
# belong to the storage work and are fuzzed only through their parse errors
COMMANDS = {
    ("sd",): (), ("sd", "advise"): (), ("pipeline",): (), ("pipeline", "best"): (),
    ("pipeline", "breakdown"): (), ("pipeline", "timeline"): (), ("pipeline", "max-size"): (),
    ("pipeline", "sweep"): ("--vary", "seq", "--values", "1024"), ("pipeline", "validate"): (),
    ("chiplet",): (), ("chiplet", "run"): (), ("chiplet", "search"): (), ("regress",): (),
    ("sd", "fit"): ("x.csv", "--hardware", "h200"), ("pipeline", "fit"): ("x.csv",),
}
# text flags that take numbers: (flag, commands it belongs to, found by introspection below)
RANGE_FLAGS = {"--batch", "--gamma", "--sigma", "--accept-len", "--tp", "--pp", "--mbs", "--ep",
               "--cp", "--vpp", "--sram", "--micro-batch", "--grid", "--draft-steps",
               "--position-rates", "--chunk"}
SKIP_FLAGS = {"--storage", "--study-name", "--workers", "--total-trials"}  # storage work (wt19)


def _options(path: tuple[str, ...]):
    """(flag, python type) of every option of the command at `path`."""
    import typer

    from explore.cli.app import app

    cmd = typer.main.get_command(app)
    for part in path:
        cmd = cmd.commands[part]   # type: ignore[attr-defined]
    for p in cmd.params:
        flags = [o for o in getattr(p, "opts", []) if o.startswith("--")]
        if flags and p.param_type_name == "option":
            yield flags[0], p.type_descriptor.annotation


def flag_cases() -> list[tuple[str, list[str]]]:
    out = []
    for path, required in COMMANDS.items():
        for flag, kind in _options(path):
            if flag in SKIP_FLAGS:
                continue
            if kind in (int, float):
                values = BAD_INTS if kind is int else BAD_NUMBERS
            elif flag in RANGE_FLAGS:
                values = BAD_RANGES + BAD_TEXT
            elif kind is str or flag == "--set":
                values = BAD_TEXT
            else:
                continue
            for v in values:
                out.append((f"{' '.join(path)} {flag} {v[:24]!r}{'...' if len(v) > 24 else ''}",
                            [*path, *required, flag, v]))
    return out


def _mutations(base: dict, ints: set[str]) -> list[tuple[str, dict]]:
    """The base mapping with one field replaced by a value of the wrong type or range."""
    wrong = {"text": "abc", "null": None, "list": [1], "map": {"a": 1}, "nan": float("nan"),
             "inf": float("inf"), "negative": -2, "zero": 0, "huge": HUGE}
    out = []
    for key in base:
        if key in ("description", "source", "sources", "name", "aliases", "ranges"):
            continue
        for label, value in wrong.items():
            if label == "zero" and key not in ints:
                continue   # 0 is a legal value of some float fields (tdp_w 0: not known)
            out.append((f"{key}={label}", {**base, key: value}))
    out.append(("unknown key", {**base, "layerz": 1}))
    return out


def _write(path: Path, data) -> Path:
    text = yaml.safe_dump(data) if path.suffix == ".yaml" else json.dumps(data)
    path.write_text(text.replace(f'"{HUGE}"', HUGE_INT).replace(HUGE, HUGE_INT))
    return path


def yaml_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    out = []
    model = yaml.safe_load((PRESETS / "models" / "llama3.1-8b.yaml").read_text())
    gpu = yaml.safe_load((PRESETS / "gpus" / "h100-sxm.yaml").read_text())
    die = yaml.safe_load((PRESETS / "chiplet" / "dies" / "die-7nm.yaml").read_text())
    for kind, base, argv, ints in (
            ("model", model, ("pipeline", "--model"), set(model)),
            ("gpu", gpu, ("sd", "--hardware"), {"sm_count", "gemm_tile_m", "gemm_tile_n"}),
            ("die", die, ("chiplet", "run", "--die"), {"n_mac", "array_rows", "array_cols",
                                                       "node_nm"})):
        for i, (label, data) in enumerate(_mutations(base, ints)):
            f = _write(tmp / f"{kind}-{i}.yaml", data)
            out.append((f"{kind} yaml {label}", [*argv, str(f)]))
    # the model's cross-field rules and a peak written without its unit
    for label, data in (("dense_layers > layers", {**model, "experts": 8,
                                                   "experts_per_token": 2,
                                                   "expert_intermediate": 1024,
                                                   "dense_layers": 40}),
                        ("bytes_per_param", {**model, "bytes_per_param": -2})):
        out.append((f"model yaml {label}", ["sd", "--model",
                                            str(_write(tmp / f"m-{label[:5]}.yaml", data))]))
    out.append(("gpu peak_flops 400", ["pipeline", "--hardware", str(_write(
        tmp / "gpu-unit.yaml", {**gpu, "peak_flops": 400}))]))
    # files that are not YAML mappings, or would cost unbounded time or memory to read
    raw = {"not-utf8": b"layers: \xff\xfe 32\n",
           "deep": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
           "deep-map": b"".join(b"  " * i + b"k:\n" for i in range(3000)),
           "alias-bomb": b"a: &a [x,x,x,x,x,x,x,x,x]\n" + b"".join(
               b"%s: &%s [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n" % ((bytes([c]),) * 2
                                                                    + (bytes([c - 1]),) * 9)
               for c in range(ord("b"), ord("j"))),
           "tag": b"layers: !!python/object/apply:os.system ['echo pwned']\n",
           "tag-name": b"!!python/name:os.system\n",
           "list": b"- 1\n- 2\n", "empty": b"", "duplicate": b"layers: 1\nlayers: 2\n",
           "tab": b"layers:\t\t[\n"}
    for label, data in raw.items():
        f = tmp / f"raw-{label}.yaml"
        f.write_bytes(data)
        out.append((f"yaml {label}", ["pipeline", "--model", str(f)]))
        out.append((f"yaml {label} as study", ["run", str(f)]))
    for label, text in (("command [1]", "command: [1]\n"), ("command 5", "command: 5\n"),
                        ("command []", "command: []\n"), ("no command", "options: {}\n"),
                        ("options list", "command: [sd]\noptions: [1]\n"),
                        ("option nan", "command: [sd]\noptions: {alpha: .nan}\n"),
                        ("unknown option", "command: [sd]\noptions: {batchh: 4}\n")):
        f = tmp / f"study-{len(out)}.yaml"
        f.write_text(text)
        out.append((f"study preset {label}", ["run", str(f)]))
    # chiplet run --config best.yaml: the options a file gives take the flags' checks
    for key in ("seq", "batch", "chunk", "grad_bytes", "model", "sram", "micro_batch"):
        for label, value in (("nan", float("nan")), ("text", "abc"), ("negative", -3),
                             ("empty", ""), ("list", [1]), ("fraction", 1.5)):
            if key == "model" and label == "text":
                continue   # a name: unknown presets are covered above
            f = _write(tmp / f"config-{key}-{label}.yaml",
                       {"command": ["chiplet", "run"], "options": {key: value}})
            out.append((f"chiplet --config {key}={label}", ["chiplet", "run", "--config",
                                                           str(f)]))
    for label, sets in (("unclosed list", "die.f=[1"), ("nan", "die.f=nan"),
                        ("text", "die.f=abc"), ("negative", "die.sram=-1 MB"),
                        ("unknown", "die.ff=1"), ("no value", "die.f"), ("inf", "die.eta=inf"),
                        ("mapping", "die.f={a: 1}"), ("huge", "die.n_mac=" + HUGE_INT)):
        out.append((f"--set {label}", ["chiplet", "run", "--set", sets]))
    return out


DEFAULTED = {"num_key_value_heads", "intermediate_size"}   # null: the reader's default, valid


def hf_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    base = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
            "vocab_size": 128256}
    moe = {**base, "model_type": "deepseek_v3", "n_routed_experts": 64,
           "num_experts_per_tok": 6, "moe_intermediate_size": 1408}
    variants = [(f"{k}={label}", {**base, k: v}) for k in base if k != "model_type"
                for label, v in (("0", 0), ("text", "abc"), ("null", None), ("list", [1]),
                                 ("negative", -4), ("float", 1.5), ("huge", HUGE))
                if not (v is None and k in DEFAULTED)]
    variants += [("text_config null", {"text_config": None}),
                 ("text_config list", {"text_config": [1]}),
                 ("n_shared_experts without moe_intermediate_size",
                  {**{k: v for k, v in moe.items() if k != "moe_intermediate_size"},
                   "n_shared_experts": 2}),
                 ("experts text", {**moe, "n_routed_experts": "many"}),
                 ("layer_types not a list", {**base, "layer_types": 5}),
                 ("sliding_window text", {**base, "sliding_window": "wide"}),
                 ("head_dim 0", {**base, "head_dim": 0}),
                 ("aux text", {**moe, "router_aux_loss_coef": "x"}),
                 ("name 300 chars", {**base, "_name_or_path": "m" * 300,
                                     "num_attention_heads": 0})]
    out = []
    for i, (label, cfg) in enumerate(variants):
        f = tmp / f"hf-{i}" / "config.json"
        f.parent.mkdir(exist_ok=True)
        _write(f, cfg)
        out.append((f"config.json {label}", ["pipeline", "--model", str(f)]))
    nan = tmp / "hf-nan" / "config.json"
    nan.parent.mkdir(exist_ok=True)
    nan.write_text(json.dumps(base).replace("4096", "NaN"))
    out.append(("config.json NaN", ["sd", "--model", str(nan)]))
    return out


def csv_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    good = [(1, 1, 10.0), (2, 1, 10.5), (4, 1, 11.0), (8, 1, 12.0), (16, 1, 14.0),
            (32, 1, 18.0), (64, 1, 26.0), (128, 1, 40.0)]
    out = []
    for col in (0, 1, 2):
        for label, cell in (("empty", ""), ("text", "abc"), ("nan", "nan"), ("inf", "inf"),
                            ("negative", "-4"), ("zero", "0"), ("fraction", "1.5")):
            if col == 2 and label == "fraction":
                continue
            rows = [list(r) for r in good]
            rows[3][col] = cell
            f = tmp / f"sd-{col}-{label}.csv"
            f.write_text("batch,tokens_per_seq,step_ms\n"
                         + "".join(",".join(map(str, r)) + "\n" for r in rows))
            out.append((f"sd fit csv {('batch', 'tokens', 'time')[col]} {label}",
                        ["sd", "fit", str(f), "--hardware", "h200", "--mode", "component"]))
    one = tmp / "sd-one.csv"
    one.write_text("batch,tokens_per_seq,step_ms\n1,1,10\n")
    out.append(("sd fit csv one row", ["sd", "fit", str(one), "--hardware", "h200",
                                       "--mode", "component"]))
    header = tmp / "sd-header.csv"
    header.write_text("batch,tokens_per_seq,step_ms\n")
    out.append(("sd fit csv no rows", ["sd", "fit", str(header), "--hardware", "h200"]))
    binary = tmp / "sd-binary.csv"
    binary.write_bytes(b"\xff\xfe\x00batch\n")
    out.append(("sd fit csv binary", ["sd", "fit", str(binary), "--hardware", "h200"]))
    runs = tmp / "runs-bad.csv"
    runs.write_text("tp,pp,mbs,global_batch,iteration_s\n1,1,1,8,nan\n")
    out.append(("pipeline fit csv nan time", ["pipeline", "fit", str(runs)]))
    return out


def output_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    afile = tmp / "a-file"
    afile.write_text("x")
    return [("chiplet --save-dir file", ["chiplet", "run", "--save-dir", str(afile)]),
            ("sd --save-dir file", ["sd", "--save-dir", str(afile)]),
            ("--save-dir under a file", ["chiplet", "run", "--save-dir", str(afile / "d")])]


def parse_cases() -> list[tuple[str, list[str]]]:
    """Typer's own errors: unknown option or command, missing value, bad choice."""
    return [("unknown option", ["sd", "--nope"]), ("unknown command", ["sdd"]),
            ("missing value", ["sd", "--batch"]), ("missing argument", ["sd", "fit"]),
            ("missing command", ["presets"]), ("missing option", ["sd", "fit", "x.csv"]),
            ("study show top", ["study", "show", "--top", "abc"]),
            ("study export format", ["study", "export", "--output"]),
            ("presets show missing", ["presets", "show"]),
            ("unknown preset", ["sd", "--model", "qwen9-xyz"]),
            ("long model name", ["sd", "--model", "m" * 300]),
            ("model name newline", ["sd", "--model", "a\nb"])]


def cases(tmp: Path) -> list[tuple[str, list[str]]]:
    tmp.mkdir(parents=True, exist_ok=True)
    return (parse_cases() + flag_cases() + yaml_cases(tmp) + hf_cases(tmp) + csv_cases(tmp)
            + output_cases(tmp))
