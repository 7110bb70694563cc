"""`explore sd fit DATA.csv`: calibrate the SD model from measurements (docs/sd.md §5.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from explore.models.spec import AT_LEAST_1, Range

from .common import AsJson
from .options import checked, uses

from .sd import app

# Accepted CSV columns. Times carry their unit in the name: _s, _ms or _us.
PAPER_COLUMNS = {"batch": ("batch", "B"), "gamma": ("gamma",), "k": ("K", "k"),
                 "experts": ("E", "experts"), "sigma": ("sigma",), "speedup": ("speedup",)}
COMPONENT_COLUMNS = {"batch": ("batch", "B"), "tokens": ("tokens_per_seq", "tokens", "t")}
TIME_COLUMNS = {"target": ("t_target", "step", "forward", "T_T"),
                "draft": ("t_draft", "draft", "T_D"), "reject": ("t_reject", "reject", "T_rej")}
UNITS = {"_s": 1.0, "_ms": 1e-3, "_us": 1e-6}
PEAK_COLUMNS = {"gamma": ("gamma",), "peak_speedup": ("peak_speedup",)}
FIT_MODES = ("paper", "component", "physical", "peaks")


def _column(rows: list[dict], names, what: str, path: str, required: bool = True):
    for n in names:
        if n in rows[0]:
            return n
    if required:
        raise _error(f"{path}: no {what} column (expected one of {', '.join(names)}; "
                     f"found {', '.join(rows[0])})")
    return None


def _time_column(rows: list[dict], stems, path: str, required: bool):
    """A time column written as <stem>_s, <stem>_ms or <stem>_us -> (name, factor to s)."""
    for stem in stems:
        for suffix, factor in UNITS.items():
            if stem + suffix in rows[0]:
                return stem + suffix, factor
    if required:
        raise _error(f"{path}: no forward-time column (expected e.g. "
                     f"{', '.join(s + '_ms' for s in stems)}; found {', '.join(rows[0])})")
    return None, None


def _error(msg: str):
    from explore.models.errors import InputError
    return InputError(msg)


# counts are whole numbers >= 1 (ctx >= 0); every other number column (times, speedups, sigma,
# alpha) is a finite number > 0, except alpha, whose range the SD model checks
COUNTS = {"batch", "B", "tokens_per_seq", "tokens", "t", "gamma", "K", "k", "E", "experts"}


def _numbers(rows: list[dict], col: str, path: str):
    """A column as a numpy array, every cell checked against the column's rule above; the
    error names the column and the cell."""
    import numpy as np

    from explore.models.errors import shown
    from explore.models.spec import AT_LEAST_1, NONNEGATIVE, POSITIVE, SHARE

    rule = (AT_LEAST_1 if col in COUNTS else NONNEGATIVE if col == "ctx" else
            SHARE if col == "alpha" else POSITIVE)
    out = []
    for r in rows:
        cell = (r.get(col) or "").strip()
        try:
            value = float(cell)
        except ValueError:
            raise _error(f"{path}: column {col!r} has a non-number {shown(cell)}") from None
        rule.check(value, f"{path}: column {col!r}")
        if (col in COUNTS or col == "ctx") and not value.is_integer():
            raise _error(f"{path}: column {col!r} must hold whole numbers, got {cell}")
        out.append(value)
    return np.array(out)


def _check_columns(rows: list[dict], path: str) -> None:
    """Every number column this command reads, checked before rows are sorted by them."""
    known = {c for table in (PAPER_COLUMNS, COMPONENT_COLUMNS, PEAK_COLUMNS) for names in
             table.values() for c in names} | {"ctx", "alpha"}
    times = {s + u for stems in TIME_COLUMNS.values() for s in stems for u in UNITS}
    for col in rows[0]:
        if col in known or col in times:
            _numbers(rows, col, path)


@app.command("fit")
@uses(shown=AsJson)
def fit(
    shown: AsJson,
    data: Path = typer.Argument(..., help="CSV of measurements: paper-style rows (batch, gamma, "
                                "K, E, sigma, speedup), component rows (batch, tokens_per_seq, "
                                "forward time as step_ms / t_target_ms [, t_draft_ms, "
                                "t_reject_ms, ctx]) or peak rows (gamma, sigma or alpha, "
                                "peak_speedup: the best speedup over batch sizes)"),
    model: str = typer.Option("qwen2-57b-a14b", "--model", "-m", help="target model preset or "
                              "config.json the data was measured on"),
    hardware: str = typer.Option(..., "--hardware", "--gpu", help="GPU preset the data was "
                                 "measured on (sets the ridge point and the load bounds)"),
    gpus: int = typer.Option(1, "--gpus", "--tp", help="GPUs the target ran on (tensor parallel)",
                             callback=checked(AT_LEAST_1)),
    draft: Optional[str] = typer.Option(None, "--draft", help="draft model preset (bounds of "
                                        "draft_bias) (default: the target's usual draft)"),
    mode: str = typer.Option("auto", "--mode", help="auto (peaks if a peak_speedup column and no "
                             "batch column exist, paper if a speedup column does, else "
                             "component), paper, component, physical or peaks"),
    engine: Optional[str] = typer.Option(None, "--engine", help="peaks mode: the engine profile "
                                         "whose terms are fitted (default: explore sd's)"),
    terms: str = typer.Option("round_overhead_step,draft_step_overhead_step", "--terms",
                              help="peaks mode: the engine-profile fields to fit"),
    where: list[str] = typer.Option([], "--where", help="keep rows whose COLUMN=VALUE "
                                    "(repeatable), e.g. --where model=qwen2-57b-a14b"),
    fit_points: int = typer.Option(21, "--fit-points", help="fit on at most this many rows "
                                   "(every k-th after sorting); the rest are held out",
                                   callback=checked(Range(2))),
    verify_tokens: str = typer.Option("gamma", "--verify-tokens", help="paper mode: positions "
                                      "scored in verification (gamma as in the paper, or "
                                      "gamma+1)"),
    context: int = typer.Option(512, "--ctx", help="physical mode: KV length when the CSV has "
                                "no ctx column", callback=checked()),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="calibration YAML to "
                                          "write (default: <data>-<mode>.calibration.yaml)"),
    residuals: bool = typer.Option(False, "--residuals", help="also print every row: measured, "
                                   "predicted, relative error, fitted or held out"),
) -> None:
    """Fit the MoESD model to your measurements, report each parameter with the bound it sits
    on, residuals and a hold-out error, and write a calibration YAML for `explore sd
    --calibration`.

    Example: explore sd fit h200.csv --where model=qwen2-57b-a14b --model qwen2-57b --hardware
    h200 --gpus 1
    """
    from explore import presets
    from explore.models import sd_fit

    from .common import emit_json
    from .output import write_yaml

    rows = presets.read_csv(data)
    for cond in where:
        col, eq, value = cond.partition("=")
        if not eq:
            raise _error(f"--where {cond!r}: write COLUMN=VALUE")
        if col not in rows[0]:
            raise _error(f"--where {cond!r}: no column {col!r} in {data}")
        rows = [r for r in rows if r[col] == value]
        if not rows:
            raise _error(f"--where {cond!r} keeps no rows of {data}")
    if fit_points < 2:
        raise _error("--fit-points must be >= 2")
    _check_columns(rows, str(data))
    target = presets.load("model", model)
    gpu = presets.load("gpu", hardware)
    if gpus < 1:
        raise _error(f"--gpus must be >= 1, got {gpus}")
    target.check_tensor_parallel(gpus)
    if mode == "auto":
        mode = "peaks" if "peak_speedup" in rows[0] and "batch" not in rows[0] else \
            "paper" if "speedup" in rows[0] else "component"
    if mode not in FIT_MODES:
        raise _error(f"--mode {mode!r}: choose auto, {', '.join(FIT_MODES)}")
    path = str(data)

    if mode == "peaks":
        res, profile = _fit_peaks(rows, path, target, draft, gpu, gpus, engine, terms,
                                  fit_points)
        out = fit_report(res, _numbers(rows, "gamma", path), mode, key="gamma")
        output = output or Path(f"{Path(data).stem}-peaks.engine.yaml")
        write_yaml(output, profile)
        out["engine_file"] = str(output)
        emit_json(out) if shown.json else render_fit(out, residuals)
        return

    if mode == "paper":
        cols = {k: _column(rows, v, k, path) for k, v in PAPER_COLUMNS.items()}
        rows.sort(key=lambda r: (float(r[cols["k"]]), float(r[cols["gamma"]]),
                                 float(r[cols["batch"]])))
        val = {k: _numbers(rows, c, path) for k, c in cols.items()}
        draft_model = presets.load("model", draft or _usual_draft(target))
        res = sd_fit.fit_paper(val["batch"], val["gamma"], val["k"], val["experts"],
                               val["sigma"], val["speedup"], target, draft_model, gpu, gpus,
                               fit_points, verify_tokens)
        batch = val["batch"]
    else:
        cols = {k: _column(rows, v, k, path) for k, v in COMPONENT_COLUMNS.items()}
        rows.sort(key=lambda r: (float(r[cols["batch"]]), float(r[cols["tokens"]])))
        batch = _numbers(rows, cols["batch"], path)
        tokens = _numbers(rows, cols["tokens"], path)
        found = {k: _time_column(rows, stems, path, k == "target")
                 for k, stems in TIME_COLUMNS.items()}
        times = {k: (_numbers(rows, c, path) * f if c else None) for k, (c, f) in found.items()}
        if mode == "component":
            draft_model = presets.load("model", draft) if draft else None
            res = sd_fit.fit_component(batch, tokens, times["target"], target, gpu, gpus,
                                       times["draft"], times["reject"], draft_model, fit_points)
        else:
            ctx = _numbers(rows, "ctx", path) if "ctx" in rows[0] else context
            res = sd_fit.fit_physical(batch, tokens, times["target"], target, gpu, gpus, ctx,
                                      fit_points=fit_points)

    out = fit_report(res, batch, mode)
    cal = sd_fit.Calibration(
        mode=mode, target=target.name, hardware=gpu.name, gpus=gpus, ridge_point=gpu.ridge_point,
        params={} if mode == "physical" else dict(zip(res.names, map(float, res.values))),
        overrides=dict(zip(res.names, map(float, res.values))) if mode == "physical" else {},
        fit={k: out[k] for k in ("points", "fit_points", "fit_seconds", "holdout")},
        source=str(data))
    output = output or Path(f"{Path(data).stem}-{mode}.calibration.yaml")
    write_yaml(output, _plain(cal))
    out["calibration_file"] = str(output)
    if shown.json:
        emit_json(out)
    else:
        render_fit(out, residuals)


def _fit_peaks(rows, path, target, draft, gpu, gpus, engine_name, terms, fit_points):
    """Peak-only fit: engine-profile terms from rows of (gamma, sigma or alpha, peak speedup)
    measured on one setup; every k-th row is fitted, the rest held out. Returns the fit and the
    fitted profile as YAML-ready data."""
    import dataclasses

    from explore import presets
    from explore.models import sd, sd_fit, sd_validate

    from .studies.sd import DEFAULT_ENGINE

    cols = {k: _column(rows, v, k, path) for k, v in PEAK_COLUMNS.items()}
    rows.sort(key=lambda r: float(r[cols["gamma"]]))
    gamma = _numbers(rows, cols["gamma"], path)
    if "sigma" in rows[0]:
        sigma = _numbers(rows, "sigma", path)
    elif "alpha" in rows[0]:
        alpha = _numbers(rows, "alpha", path)
        for a in alpha:
            sd.check_alpha(float(a))
        sigma = sd.sigma_from_alpha(alpha, gamma)
    else:
        raise _error(f"{path}: peaks mode needs a sigma or an alpha column")
    if any(g < 1 or g != int(g) for g in gamma):
        raise _error(f"{path}: gamma must be whole numbers >= 1")
    draft_model = presets.load("model", draft or _usual_draft(target))
    base = presets.load("engine", engine_name or DEFAULT_ENGINE)
    names = tuple(t.strip() for t in terms.split(",") if t.strip())
    setup = sd_validate.CellSetup(target, draft_model, gpu, gpus)
    cells = [{"model": target.name, "hardware": gpu.name, "gamma": str(int(g)),
              "sigma": str(float(s)), "peak_speedup": str(float(p))}
             for g, s, p in zip(gamma, sigma, _numbers(rows, cols["peak_speedup"], path))]
    res = sd_validate.fit_engine(cells, {(target.name, gpu.name): setup}, base, names,
                                 fit_index=sd_fit.every_kth(len(cells), fit_points))
    fitted = dataclasses.replace(base, name=f"{base.name}-fitted",
                                 **dict(zip(res.names, map(float, res.values))))
    profile = _plain(fitted)
    profile.pop("name")
    profile["description"] = (f"{base.name} with {', '.join(names)} fitted by explore sd fit "
                              f"--mode peaks on {path}")
    profile["sources"] = {**base.sources, **{n: f"[fitted] on {len(res.fit_index)} of "
                                                f"{len(cells)} rows of {path}" for n in names}}
    return res, profile


def _usual_draft(target) -> str:
    from explore import presets
    if target.name in presets.names("pairing"):
        return presets.load("pairing", target.name).draft
    raise _error(f"{target.name} has no usual draft; pass --draft NAME for the draft_bias bound")


def _plain(cal) -> dict:
    import dataclasses
    from .common import _clean
    return _clean(dataclasses.asdict(cal))


def fit_report(res, batch, mode: str, key: str = "batch") -> dict:
    """Everything `explore sd fit` shows, JSON-ready (seconds for times); `batch` is each row's
    label column (named `key`)."""
    import numpy as np
    params = res.parameters()
    residuals = [{"row": int(i), key: float(batch[i]), "measured": float(res.measured[i]),
                  "predicted": float(res.predicted[i]),
                  "relative_error": float(res.relative_error[i]),
                  "in_fit": bool(i in set(res.fit_index.tolist()))}
                 for i in range(len(res.measured))]
    fit_err = res.relative_error[res.fit_index]
    return {"mode": mode, "quantity": res.quantity, "row_key": key,
            "points": int(len(res.measured)),
            "fit_points": int(len(res.fit_index)), "fitted_on": res.fitted_on(),
            "fit_seconds": res.seconds,
            "evaluations": res.nfev, "solver": res.solver, "parameters": params,
            "fit_rms_relative": float(np.sqrt(np.mean(fit_err ** 2))),
            "holdout": res.error_stats(res.holdout_index), "warnings": res.warnings,
            "residuals": residuals}


UNIT_OF = {"lam": "", "s": "", "eta_bw": "", "eta_compute": "", "round_overhead_step": "",
           "draft_step_overhead_step": ""}


def render_fit(out: dict, residuals: bool = False) -> None:
    from .render import console, key_values, table

    c = console()
    if residuals:
        seconds = "speedup" not in out["quantity"]
        key = out["row_key"]
        show = (lambda x: f"{x * 1e3:.4f}") if seconds else (lambda x: f"{x:.4f}")
        c.print(table(f"Residuals on {out['quantity']}" + (" (ms)" if seconds else ""),
                      ["row", key, "measured", "predicted", "error", "used"],
                      [[r["row"], f"{r[key]:g}", show(r["measured"]), show(r["predicted"]),
                        f"{r['relative_error']:+.2%}", "fit" if r["in_fit"] else "held out"]
                       for r in out["residuals"]], right=(0, 1, 2, 3, 4)))
    rows = []
    for p in out["parameters"]:
        seconds = UNIT_OF.get(p["name"], "s") == "s"
        f = (lambda x: f"{x * 1e3:.4g} ms") if seconds else (lambda x: f"{x:.4g}")
        hi = "none" if p["upper"] is None else f(p["upper"])
        rows.append([p["name"], f(p["value"]), f(p["lower"]), hi, p["at_bound"] or "-"])
    c.print(table(f"Fitted parameters ({out['mode']} mode, residuals on {out['quantity']})",
                  ["parameter", "value", "lower bound", "upper bound", "sits on"], rows,
                  right=(1, 2, 3)))
    h = out["holdout"]
    c.print(key_values("Fit", [
        ("points", f"{out['fit_points']} fitted (every k-th after sorting) of {out['points']}"),
        ("time", f"{out['fit_seconds'] * 1e3:.1f} ms, {out['evaluations']} model evaluations",
         out["solver"]),
        ("fit residual", f"{out['fit_rms_relative']:.2%} RMS relative"),
        ("hold-out error", f"mean {h['mean_abs']:.2%}, max {h['max_abs']:.2%} over {h['points']} "
                           f"rows" if h["points"] else "no rows held out"),
        ("engine profile", out["engine_file"], "use: explore sd --engine FILE")
        if "engine_file" in out else
        ("calibration", out["calibration_file"], "use: explore sd --calibration FILE")]))
    for w in out["warnings"]:
        c.print(f"[bold yellow]warning:[/] {w}")
