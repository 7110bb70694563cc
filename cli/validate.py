"""`explore validate`: how far each study's model is from published and measured results."""

from __future__ import annotations

import typer

from .common import AsJson
from .options import uses
from .registry import STUDIES

app = typer.Typer(help="Compare the models with published and measured results; exit code 1 "
                       "when an error exceeds the stated tolerance.\n\nExample: explore "
                       "validate sd --summary")

# MoESD's model and hardware labels -> presets (the draft runs on one GPU of the same kind)
MOESD_MODELS = {"Qwen2-57B-A14B": ("qwen2-57b-a14b", "qwen2-0.5b"),
                "Mixtral-8x7B+EAGLE": ("mixtral-8x7b", "eagle-mixtral-8x7b")}
H200_MODELS = ("qwen2-57b-a14b", "qwen2-7b", "qwen2-0.5b")
MOESD_ENGINE = "vllm-v0-spec-decode"   # the engine profile of the MoESD measurements


def moesd_cells() -> tuple[list[dict], dict]:
    """The 60 published cells of MoESD Tables 1-2 and the setup (models, GPU kind, count) of
    each (model, hardware) label."""
    from explore import presets
    from explore.models import sd_validate as v

    cells = presets.read_csv(presets.data_path("validation", "sd", "moesd_peak_speedups.csv"))
    setups = {}
    for c in cells:
        count, gpu = c["hardware"].split("x")
        target, draft = MOESD_MODELS[c["model"]]
        setups[(c["model"], c["hardware"])] = v.CellSetup(
            presets.load("model", target), presets.load("model", draft),
            presets.load("gpu", gpu.lower()), int(count))
    return cells, setups


def sd_validation() -> dict:
    """Read the packaged tables, run the pure comparisons, return JSON-ready results."""
    from dataclasses import replace

    from explore import presets
    from explore.models import sd_validate as v

    cells, setups = moesd_cells()
    peaks = v.engine_validation(cells, setups, presets.load("engine", MOESD_ENGINE),
                                presets.load("engine", "none"))
    fitted = presets.load("engine", MOESD_ENGINE)
    fitted = replace(fitted, **{p["name"]: p["value"] for p in peaks["fitted"]["params"]})
    order = v.orderings(peaks["rows"], setups, engine=fitted)
    timings = presets.read_csv(presets.data_path("validation", "sd",
                                                 "h200_qwen2_layer_times.csv"))
    h200 = presets.load("gpu", "h200")
    ratios = {m: v.h200_ratios([r for r in timings if r["model"] == m],
                               presets.load("model", m), h200) for m in H200_MODELS}
    return {"study": "sd", "peaks": peaks["rows"],
            "peak_summary": {k: peaks[k] for k in ("engine", "kernels_only", "fitted")},
            "orderings": order, "h200": ratios,
            "checks": v.checks(peaks, order, ratios["qwen2-57b-a14b"]),
            "assumptions": ["context 512 tokens, verification scores gamma+1 positions, "
                            "roofline overlap none (the tool's defaults)",
                            "alpha of each cell from its published sigma and gamma",
                            f"engine {MOESD_ENGINE}: its round and draft-step costs fitted on "
                            f"the cells marked fit, every other cell only checked",
                            "draft on one GPU of the same kind; peak over B = 1..100",
                            "H200: one GPU, the h200 preset; t = 1 rows (ratio 1 by "
                            "definition) left out of the error statistics"]}


def chiplet_validation() -> dict:
    """The Hecaton checks of docs/chiplet.md §9 in the summary's shape."""
    from explore.models.chiplet.validate import check_rows

    from .studies.chiplet import validation_result

    out = validation_result()
    checks = check_rows(out["rows"])
    return {"study": "chiplet", "checks": checks, **out}


def pipeline_validation() -> dict:
    """The ChronosPipe checks of docs/pipeline.md §8 on the shipped fixture."""
    from .studies.pipeline import fixture, fixture_data

    out = fixture_data(fixture({}))
    out.pop("assumptions")
    checks = [{**r, "reference": str(r["reference"]), "ours": str(r["ours"]),
               "error": r["error"] if r["error"] != "" else None} for r in out["rows"]]
    return {"study": "pipeline", "checks": checks, **out}


def render_checks(rows: list[dict], title: str = "Validation summary") -> None:
    from .render import checks_table, console
    console().print(checks_table(title, rows))


def _exit_code(rows: list[dict]) -> int:
    return 1 if any(r["status"] == "FAIL" for r in rows) else 0


@app.command("sd")
@uses(output=AsJson)
def validate_sd(
    output: AsJson,
    summary: bool = typer.Option(False, "--summary", help="only the summary tables"),
) -> None:
    """The SD model against MoESD's 60 published peak speedups and real H200 layer timings.

    Example: explore validate sd --summary
    """
    from .common import emit_json

    out = sd_validation()
    if output.json:
        emit_json(out)
    else:
        from .render.sd import render_validation
        render_validation(out, summary)
    raise typer.Exit(_exit_code(out["checks"]))


def _mount_study_validations() -> None:
    """`explore validate STUDY` and `explore STUDY validate` are one command, for every study
    of the registry."""
    from .registry import resolve

    def names(typer_app) -> set:
        return {c.name for c in typer_app.registered_commands}

    for study in STUDIES:
        command = resolve(study.validate)
        if study.name not in names(app):
            app.command(study.name)(command)
        study_app = resolve(f"{study.cli}:app")
        if "validate" not in names(study_app):
            study_app.command("validate")(command)


_mount_study_validations()
VALIDATIONS = tuple(s.name for s in STUDIES)


@app.callback(invoke_without_command=True)
@uses(output=AsJson)
def validate_all(
    output: AsJson,
    ctx: typer.Context,
) -> None:
    """Run every study's validation and end with one summary table."""
    if ctx.invoked_subcommand:
        return
    from .common import emit_json

    from .registry import resolve

    results = {s.name: resolve(s.validation)() for s in STUDIES}
    rows = [dict(r, study=name) for name, out in results.items() for r in out["checks"]]
    if output.json:
        emit_json({"checks": rows, "studies": results})
    else:
        render_checks(rows, "Validation summary (all studies)")
    raise typer.Exit(_exit_code(rows))
