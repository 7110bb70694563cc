"""`explore pipeline fit RUNS.csv`: calibrate the kernel time model from measured iteration
times (docs/pipeline.md §7.3), the same contract as `explore sd fit`: fit on some rows, report
the hold-out error on the others, write a calibration YAML for `--calibration`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from explore.models.spec import AT_LEAST_1

from .common import AsJson
from .options import checked, uses
from .pipeline import app

# CSV columns: required, and optional with their default
REQUIRED = ("tp", "pp", "mbs", "global_batch")
INTS = {"tp", "pp", "dp", "vpp", "mbs", "global_batch", "seq", "layers"}
BOOLS = {"sp", "flash"}
TEXT = {"model", "schedule", "recompute", "id"}
TIME_COLUMNS = {"iteration_s": 1.0, "iteration_ms": 1e-3}


def _error(msg: str):
    from explore.models.errors import InputError
    return InputError(msg)


def _cell(row: dict, col: str, line: int, path: str):
    text = (row.get(col) or "").strip()
    if col in TEXT:
        return text or None
    if not text:
        return None
    if col in BOOLS:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise _error(f"{path} line {line}: {col} {text!r} is not true or false")
    try:
        value = float(text)
    except ValueError:
        raise _error(f"{path} line {line}: {col} {text!r} is not a number") from None
    if col in INTS:
        if not value.is_integer() or value < 1:
            raise _error(f"{path} line {line}: {col} must be a whole number >= 1, got {text!r}")
        return int(value)
    return value


def read_runs(path: Path, model: str, seq: int, time):
    """The CSV's rows as throughput.Run objects (line numbers in every error)."""
    from explore import presets
    from explore.models.pipeline import throughput

    rows = presets.read_csv(path)
    if not rows:
        raise _error(f"{path}: no rows")
    cols = set(rows[0])
    missing = [c for c in REQUIRED if c not in cols]
    times = [c for c in TIME_COLUMNS if c in cols]
    if missing or not times:
        need = missing + ([] if times else ["iteration_s (or iteration_ms)"])
        raise _error(f"{path}: missing column {', '.join(need)} (found {', '.join(rows[0])})")
    known = set(REQUIRED) | INTS | BOOLS | TEXT | set(TIME_COLUMNS)
    unknown = sorted(cols - known)
    if unknown:
        close = presets.nearest(unknown[0], known)
        raise _error(f"{path}: unknown column {unknown[0]!r}"
                     + (f" (did you mean {', '.join(close)}?)" if close else ""))
    runs = []
    for i, row in enumerate(rows, start=2):
        v = {c: _cell(row, c, i, str(path)) for c in cols}
        for c in REQUIRED + (times[0],):
            if v[c] is None:
                raise _error(f"{path} line {i}: {c} is empty")
        shape = presets.load("model", v.get("model") or model)
        if v.get("layers"):
            shape = shape.with_layers(v["layers"])
        dp = v.get("dp") or 1
        run = throughput.make_run(
            v.get("id") or f"row {i - 1}", shape, v["tp"], v["pp"], dp, v.get("seq") or seq,
            v["mbs"], v["global_batch"], v[times[0]] * TIME_COLUMNS[times[0]],
            vpp=v.get("vpp") or 1, sp=bool(v.get("sp")), flash=v.get("flash") is not False,
            schedule=v.get("schedule"), recompute=v.get("recompute") or "none", time=time)
        runs.append(run)
    return runs


def fit_rows(n: int, given: Optional[str]) -> list[int]:
    """0-based indices of the rows to fit on: --fit-rows (1-based), else up to three spread
    evenly (first, middle, last)."""
    if given:
        try:
            idx = sorted({int(x) - 1 for x in given.split(",") if x.strip()})
        except ValueError:
            raise _error(f"--fit-rows {given!r}: write row numbers, e.g. 1,3") from None
        bad = [i + 1 for i in idx if not 0 <= i < n]
        if bad:
            raise _error(f"--fit-rows: row {bad[0]} is not in 1..{n}")
        return idx
    return sorted({0, (n - 1) // 2, n - 1}) if n >= 3 else list(range(n))


@app.command("fit")
@uses(shown=AsJson)
def fit_command(
    shown: AsJson,
    data: Path = typer.Argument(..., help="CSV of measured runs: tp, pp, mbs, global_batch, "
                                "iteration_s (or iteration_ms), and optionally model, layers, "
                                "dp, vpp, seq, sp, flash, schedule, recompute, id"),
    hardware: str = typer.Option("a100-80g", "--hardware", "--gpu", help="GPU preset the "
                                 "runs were measured on"),
    node: Optional[str] = typer.Option(None, "--node", help="server preset (default: the "
                                       "GPU's usual server)"),
    model: str = typer.Option("llama2-70b", "--model", "-m", help="model preset for rows "
                              "without a model column"),
    seq: int = typer.Option(4096, "--seq", help="sequence length for rows without a seq "
                            "column (tokens)", callback=checked(AT_LEAST_1)),
    terms: str = typer.Option("gemm_scale", "--terms", help="what to fit: gemm_scale, "
                              "comm_scale or both"),
    rows_to_fit: Optional[str] = typer.Option(None, "--fit-rows", help="row numbers to fit on, "
                                              "e.g. 1,4 (default: first, middle and last); "
                                              "the others are held out"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="calibration YAML to "
                                          "write (default: <data>.calibration.yaml)"),
) -> None:
    """Fit the kernel time model's GEMM and communication scales to your measured iteration
    times, report the error on the rows held out, and write a calibration YAML for `explore
    pipeline --calibration`.

    Example: explore pipeline fit runs.csv --hardware h100-sxm --model llama3.1-70b
    """
    from explore import presets
    from explore.models.pipeline import throughput
    from explore.models.pipeline.kernels import TimeModel

    from .common import emit_json
    from .output import write_yaml
    from .studies.pipeline import default_node

    gpu = presets.load("gpu", hardware)
    srv = presets.load("node", node or default_node(gpu.name))
    names = tuple(t.strip() for t in terms.split(",") if t.strip())
    runs = read_runs(data, model, seq, TimeModel())
    idx = fit_rows(len(runs), rows_to_fit)
    fit_ids = tuple(runs[i].id for i in idx)
    res = throughput.fit_and_check(runs, gpu, srv, fit_ids, names)
    holdout = res["holdout"]
    calibration = {"kind": "pipeline-calibration", "hardware": gpu.name, "node": srv.name,
                   **{k: float(v) for k, v in res["fit"]["scales"].items()},
                   "fitted_on": list(fit_ids), "holdout": holdout, "source": str(data)}
    path = output or Path(f"{data.stem}.calibration.yaml")
    write_yaml(path, calibration)
    out = {"study": "pipeline", "command": "fit", "hardware": gpu.name, "node": srv.name,
           "parameters": res["fit"]["params"], "rows": res["rows"], "apriori": res["apriori"],
           "holdout": holdout, "fitted_on": list(fit_ids),
           "fit_seconds": res["fit"]["fit_seconds"], "calibration_file": str(path)}
    if shown.json:
        emit_json(out)
        return
    from .render.pipeline import render_fit
    render_fit(out)
