"""`explore study`: list, show and export searches stored in an Optuna storage."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from explore.models.spec import AT_LEAST_1

from .common import AsJson
from .options import checked, uses

app = typer.Typer(help="Inspect searches kept in an Optuna storage (--storage on any study "
                       "command). A stored study also opens in optuna-dashboard.\n\nExample: "
                       "explore study show --storage sqlite:///runs.db --study-name sd-demo")

StorageArg = typer.Option(..., "--storage", help="Optuna storage URL (sqlite:///runs.db, "
                          "postgresql://user@host/db)")
NameArg = typer.Option(..., "--study-name", help="stored study name (`explore study list`)")


@app.command("list")
@uses(output=AsJson)
def list_studies(output: AsJson, storage: str = StorageArg) -> None:
    """Every study in a storage with its trial count and start time.

    Example: explore study list --storage sqlite:///runs.db
    """
    from explore.search.optuna_engine import stored_record, study_names
    from explore.search.storage import mask

    from .common import emit_json
    from .render import console, table

    rows = []
    for s in study_names(storage):
        record = stored_record(s.user_attrs) or {}
        rows.append({"study_name": s.study_name, "trials": s.n_trials,
                     "explore_study": record.get("explore_study", "-"),
                     "objectives": record.get("objectives", []),
                     "started": s.datetime_start.isoformat(timespec="seconds")
                     if s.datetime_start else None})
    if output.json:
        emit_json(rows)
        return
    console().print(table(f"Studies in {mask(storage)}", ["name", "study", "objectives", "trials",
                                                    "started"],
                          [[r["study_name"], r["explore_study"], ", ".join(r["objectives"]),
                            r["trials"], r["started"] or "-"] for r in rows], right=(3,)))


def _states(ostudy) -> dict:
    counts: dict = {}
    for t in ostudy.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return counts


@app.command("show")
@uses(output=AsJson)
def show(output: AsJson, storage: str = StorageArg, study_name: str = NameArg,
         top: int = typer.Option(10, "--top", help="rows of the best / Pareto table",
                                 callback=checked(AT_LEAST_1)),
         trials: int = typer.Option(20, "--trials", help="rows of the per-trial table (latest)",
                                    callback=checked(AT_LEAST_1)),
         wide: bool = typer.Option(False, "--wide", help="every metric as a column (default: "
                                   "the objectives only, to fit 80 columns)")) -> None:
    """The best point (or Pareto set) and the per-trial table of a stored search, with the
    study's own metric labels and units, plus why infeasible trials were rejected.

    Example: explore study show --storage sqlite:///runs.db --study-name sd-demo
    """
    from collections import Counter

    from explore.search.optuna_engine import load_stored
    from explore.search.storage import mask

    from .common import emit_json
    from .render import console, key_values, metric_headers, scatter, table

    ostudy, result, meta = load_stored(storage, study_name)
    # studies stored before issue 19 kept the command as typed
    meta["command"] = mask(meta["command"]) if meta.get("command") else None
    ranked = result.ranked()
    multi = len(result.objectives) > 1
    best = result.pareto() if multi else ranked[:1]
    reasons = Counter(r for r in result.reasons if r)
    if output.json:
        emit_json({"study_name": study_name, "explore_study": meta.get("explore_study"),
                   "command": meta.get("command"), "objectives": meta["objectives"],
                   "states": _states(ostudy), "best": [result.row(i) for i in best],
                   "ranked": [result.row(i) for i in ranked[:top]],
                   "infeasible_reasons": dict(reasons)})
        return
    c = console()
    objective_names = {o.name for o in result.objectives}
    metrics = [m for m in meta["metrics"] if m.name in result.metrics
               and (wide or m.name in objective_names)]
    names = list(result.params)

    def configuration(i: int) -> str:
        """The point as one cell: name=value pairs (wraps between pairs, never inside one)."""
        point = result.point(i)
        return " ".join(f"{p}={point[p]}" for p in names)

    def values(i: int) -> list[str]:
        return [m.show(float(result.metrics[m.name][i])) for m in metrics]
    c.print(key_values(f"Study {study_name}", [
        ("study", meta.get("explore_study", "-")), ("command", meta.get("command") or "-"),
        ("objectives", ", ".join(f"{o.name} ({o.direction})" for o in result.objectives)),
        ("trials", ", ".join(f"{n} {s}" for s, n in _states(ostudy).items())),
        ("feasible", f"{int(result.feasible.sum())} of {result.n} complete"),
        ("space", "; ".join(f"{p.name}: {len(p.values)} values" for p in meta["space"].params)
         + f" ({meta['space'].size:,} points)")]))
    title = "Pareto set" if multi else "Best"
    if len(best):
        c.print(table(f"{title} ({min(len(best), top)} shown of {len(ranked)} distinct "
                      f"feasible points)", ["#", "configuration", *metric_headers(metrics)],
                      [[str(k), configuration(i), *values(i)]
                       for k, i in enumerate(best[:top], 1)],
                      right=tuple(range(2, 2 + len(metrics)))))
    else:
        c.print(f"[bold]{title}:[/] no feasible point among the {result.n} trials yet "
                f"(why: the last table)")
    if multi and len(best):
        o1, o2 = result.objectives[:2]
        by = {m.name: m for m in metrics}
        sx = by[o1.name].scale if o1.name in by else 1.0
        sy = by[o2.name].scale if o2.name in by else 1.0
        feas = [int(i) for i in range(result.n) if result.feasible[i]]
        xs = [result.metrics[o1.name][i] * sx for i in feas]
        ys = [result.metrics[o2.name][i] * sy for i in feas]
        pos = {i: k for k, i in enumerate(feas)}
        c.print(scatter(xs, ys, [pos[i] for i in best if i in pos], pos.get(int(ranked[0])),
                        xlabel=_label(by.get(o1.name), o1.name),
                        ylabel=_label(by.get(o2.name), o2.name)))
    latest = list(range(result.n))[-trials:]
    rows = [[str(i), configuration(i), *values(i),
             str(result.status[i]) + (f": {result.reasons[i]}" if result.reasons[i] else "")]
            for i in latest]
    c.print(table(f"Latest {len(rows)} complete trials", ["#", "configuration",
                                                          *metric_headers(metrics), "status"],
                  rows, right=tuple(range(2, 2 + len(metrics)))))
    if reasons:
        c.print(table("Why trials were infeasible", ["reason", "trials"],
                      [[r, n] for r, n in reasons.most_common(8)], right=(1,)))


def _label(metric, name: str) -> str:
    return f"{metric.label} ({metric.unit})" if metric and metric.unit else name


@app.command("export")
def export(storage: str = StorageArg, study_name: str = NameArg,
           fmt: str = typer.Option("csv", "--format", help="csv or json"),
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="file to write "
                                                 "(default: standard output)")) -> None:
    """Every trial of a stored search (all states) with parameters, metrics, feasibility,
    reason and timing, as CSV or JSON.

    Example: explore study export --storage sqlite:///runs.db --study-name sd-demo -o t.csv
    """
    import json

    from explore.models.errors import InputError
    from explore.search.optuna_engine import load_stored

    from .common import _clean
    from .output import rows_csv_text, write_text

    if fmt not in ("csv", "json"):
        raise InputError(f"--format {fmt!r}: choose csv or json")
    ostudy, _, meta = load_stored(storage, study_name)
    params = [p.name for p in meta["space"].params]
    metric_names = [m.name for m in meta["metrics"]]
    rows = []
    for t in ostudy.get_trials(deepcopy=False):
        row = {"number": t.number, "state": t.state.name.lower(),
               "datetime_start": t.datetime_start.isoformat() if t.datetime_start else "",
               "duration_s": t.duration.total_seconds() if t.duration else ""}
        row.update({p: t.params.get(p, "") for p in params})
        stored = t.user_attrs.get("metrics", {})
        row.update({m: stored.get(m, "") for m in metric_names})
        row["feasible"] = all(v <= 0 for v in (t.constraints or {}).values()) \
            if t.state.name == "COMPLETE" else ""
        row["reason"] = t.user_attrs.get("reason", "")
        rows.append(row)
    if fmt == "json":
        text = json.dumps(_clean(rows), indent=2) + "\n"
    else:
        text = rows_csv_text(rows, ["number"])
    if output:
        write_text(output, text)
    else:
        typer.echo(text, nl=False)
