"""Every command's default output reads at 80 columns as well as wide (issue 11): no cell cut
to '…', no line wider than the terminal. Each study lists its commands here."""

from __future__ import annotations

import pytest

WIDTHS = (80, 120)

def _h200_times() -> str:
    from explore import presets
    return str(presets.data_path("validation", "sd", "h200_qwen2_layer_times.csv"))


SD = [
    ("sd", "--model", "qwen2-57b"),
    ("sd", "--model", "qwen2-57b", "--dense", "qwen2-7b"),
    ("sd", "--model", "mixtral-8x7b", "--objective", "throughput,latency"),
    ("sd", "fit", _h200_times(), "--model", "qwen2-57b", "--hardware", "h200", "--where",
     "model=qwen2-57b-a14b", "--residuals", "-o", "/dev/null"),
]
PIPELINE: list[tuple[str, ...]] = [
    ("pipeline", "--model", "llama2-70b", "--layers", "48", "--gpus", "64", "--hardware",
     "a100-80g"),
    ("pipeline", "best", "--layers", "32", "--tp", "8", "--pp", "4,8", "--mbs", "2,4",
     "--schedule", "1f1b,interleaved,zb-h1,chronos", "--top", "5"),
    ("pipeline", "breakdown", "--layers", "48", "--tp", "8", "--pp", "8", "--mbs", "4",
     "--schedule", "chronos"),
    ("pipeline", "breakdown", "--layers", "64", "--tp", "8", "--pp", "16", "--gpus", "128",
     "--mbs", "4", "--schedule", "chronos", "--offload", "chronos"),
    ("pipeline", "timeline", "--layers", "48", "--tp", "8", "--pp", "8", "--mbs", "4",
     "--schedule", "chronos", "--plot"),
    # the same tables as the study presets print, on a smaller layout (the suite's time)
    ("pipeline", "max-size", "--tp", "8", "--pp", "4", "--gpus", "32", "--mbs", "4"),
    ("pipeline", "max-size", "--tp", "8", "--pp", "8", "--mbs", "4", "--schedule",
     "1f1b,chronos", "--delta", "0.1"),
    ("pipeline", "sweep", "--vary", "h2d-gbps", "--values", "12.5,50", "--layers", "32",
     "--tp", "8", "--pp", "8", "--mbs", "4", "--schedule", "chronos", "--offload", "chronos"),
    ("pipeline", "validate"),
]
CHIPLET: list[tuple[str, ...]] = [
    ("chiplet", "--grid", "8x8", "--model", "llama2-70b"),
    ("chiplet", "run"),
    ("chiplet", "run", "--sram", "64"),
    ("chiplet", "search", "--grid", "8x8"),
    ("chiplet", "--model", "llama2-7b", "--n-trials", "25"),
    ("chiplet", "scale"),
    ("chiplet", "validate"),
]
OTHER = [
    ("validate",),
    ("validate", "sd"),
    ("presets", "list"),
    ("presets", "show", "h100-sxm"),
    ("presets", "show", "qwen2-57b"),
    ("presets", "fields", "model"),
    ("regress", "--preset", "moesd-qwen2-2xh800"),
]


def _lines_over(text: str, width: int) -> list[str]:
    from rich.cells import cell_len
    return [line for line in text.splitlines() if cell_len(line) > width]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("args", SD + PIPELINE + CHIPLET + OTHER, ids=" ".join)
def test_output_fits_the_terminal(cli, monkeypatch, width, args):
    from explore.cli import render
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.setattr(render, "_console", None)      # a console of this width
    code, out, err = cli(*args)
    assert code in (0, 1), err
    assert not [line for line in out.splitlines() if "…" in line], out
    assert not _lines_over(out, width), out


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A stored sd study and a stored pipeline study (eight parameters; 12 trials may find no
    feasible layout, exit 3, and are stored all the same) to show."""
    from explore.cli.app import main
    url = f"sqlite:///{tmp_path_factory.mktemp('show') / 'runs.db'}"
    for name, args in (("s", ("sd", "--model", "qwen2-57b")),
                       ("p", ("pipeline", "--layers", "48", "--gpus", "64"))):
        assert main([*args, "--search", "optuna", "--n-trials", "12", "--storage", url,
                     "--study-name", name, "--json"]) in (0, 3)
    return url


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["s", "p"])
def test_stored_study_fits_the_terminal(cli, monkeypatch, stored, width, name):
    from explore.cli import render
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.setattr(render, "_console", None)
    for args in (("study", "show", "--storage", stored, "--study-name", name),
                 ("study", "list", "--storage", stored)):
        code, out, err = cli(*args)
        assert code == 0, err
        assert not [line for line in out.splitlines() if "…" in line], out
        assert not _lines_over(out, width), out
