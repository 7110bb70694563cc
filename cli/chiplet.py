"""`explore chiplet`: latency and energy of LLM training on a chiplet package (Hecaton,
docs/chiplet.md). Thin commands: the option groups, the request and its setup and space are in
cli/studies/chiplet.py, the arithmetic in models/chiplet, the tables and files in
cli/render/chiplet.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from .common import Output, SearchOptions
from .options import uses
from .studies.chiplet import (ChipletConfig, ChipletGoal, ChipletGoals, ChipletHardware,
                              ChipletModelOptions, ChipletPoint, ChipletRanking, ChipletRequest,
                              ChipletSeries, ChipletSpace, ChipletView, ChipletWorkload, unset)

app = typer.Typer(
    help="Chiplet systems for LLM training (Hecaton): latency, energy and silicon area of one "
         "training iteration on a 2D mesh of compute dies, searched over grid, SRAM per die, "
         "parallel method, D2D package, DRAM and micro-batch.\n\n"
         "Example: explore chiplet --grid 8x8 --model llama2-70b",
    no_args_is_help=False)


# ---- search and report (JSON-ready dicts; keys starting with '_' stay in-process) -----------

def _search(req: ChipletRequest, objective_text: str, first_only: bool):
    """Check, build, search: (request's setup info and notes, study, result, ranked, names)."""
    from explore.models.chiplet.study import ChipletStudy
    from explore.models.errors import InputError

    from .search_run import run_search
    from .studies.chiplet import build, info, objectives

    if req.ranking.top < 1:
        raise InputError(f"--top must be >= 1, got {req.ranking.top}")
    setup, values, notes = build(req)
    names = objectives(objective_text)[:1] if first_only else objectives(objective_text)
    study = ChipletStudy(setup, values)
    result = run_search(study, names, req.search)
    ranked = result.ranked()
    if not len(ranked):
        from collections import Counter

        from explore.models.errors import InfeasibleError
        from .common import sampled_only
        sampled = sampled_only(result)
        # per constraint: how many points it stops, with one example; layout last (another
        # layout may fit, a capacity says what to grow)
        kinds = Counter(r.split(":")[0] for r in result.reasons if r)
        example = {r.split(":")[0]: r for r in result.reasons if r}
        raise InfeasibleError(f"no feasible configuration{' ' + sampled if sampled else ''}: "
                              + "; ".join(f"{example[k]} ({n:,} points)" for k, n in
                                          sorted(kinds.items(),
                                                 key=lambda kv: (kv[0] == "layout", -kv[1]))[:2]))
    head = {"study": "chiplet", "setup": info(req, setup), "defaults": notes}
    from explore.search.engine import edges
    summary = {"engine": result.engine, "evaluated": result.n, "space_size": result.space_size,
               "feasible": int(result.feasible.sum()),
               "infeasible": result.counts()["infeasible"], "elapsed_s": result.elapsed_s,
               "interrupted": result.interrupted, "ties": result.ties(ranked),
               "edges": edges(study.space, result.point(ranked[0]), WIDENABLE)}
    return setup, head, summary, study, result, ranked, names


def _dies(grid: str) -> int:
    from explore.models.chiplet.study import parse_grid
    return parse_grid(grid).P


# searched ranges a user may widen (with how their values order): a best at an end is marked
WIDENABLE: dict[str, Callable[[Any], float]] = {"sram_mb": float, "modules": float,
                                                 "grid": _dies}


def run_default(req: ChipletRequest, objective: str) -> dict:
    """The default command: search, then report the best point and its 1D comparison."""
    from explore.models.chiplet.report import point_report

    from .studies.chiplet import result_rows
    setup, head, summary, study, result, ranked, names = _search(req, objective, True)
    return {"study": "chiplet", "command": "default", **head, "objective": names[0],
            "search": summary, "space": study.space.describe(),
            "best": point_report(setup, result.point(ranked[0])),
            "top": result_rows(result, ranked[:req.ranking.top]), "_result": result,
            "_setup": setup}


def run_search(req: ChipletRequest, objectives: str) -> dict:
    """`search`: the Pareto set over the objectives, the top ranks by the first, and the
    report of the Pareto point best in the first objective."""
    from explore.models.chiplet.report import point_report

    from .studies.chiplet import result_rows
    setup, head, summary, study, result, ranked, names = _search(req, objectives, False)
    pareto = result.pareto()
    pareto = pareto[result.score(result.objectives[0])[pareto].argsort()]
    chosen = int(pareto[0]) if len(pareto) else int(ranked[0])
    return {"study": "chiplet", "command": "search", **head, "objectives": names,
            "search": summary, "space": study.space.describe(),
            "pareto": result_rows(result, pareto),
            "top": result_rows(result, ranked[:req.ranking.top]),
            "best": point_report(setup, result.point(chosen)), "_result": result,
            "_setup": setup}


def run_one(req: ChipletRequest) -> dict:
    """`run`: one configuration with every term, and Megatron 1D on the same hardware."""
    from explore.models.chiplet.report import point_report
    from explore.models.errors import InfeasibleError

    from .studies.chiplet import build, info
    setup, values, notes = build(req, single=True)
    point = {k: v[0] for k, v in values.items()}
    rep = point_report(setup, point)
    if not rep["feasible"]:
        raise InfeasibleError(f"{point['method']} on {point['grid']}: {rep['reason']}")
    return {"study": "chiplet", "command": "run", "setup": info(req, setup), "defaults": notes,
            "best": rep, "_setup": setup}


def _finish(out: dict, view: ChipletView, output: Output) -> None:
    from .output import present
    from .render import chiplet as r
    best = out["best"]
    if view.energy_ranges and best.get("baselines"):
        from explore.models.chiplet.report import energy_ratio_ranges
        best["energy_ranges"] = energy_ratio_ranges(out["_setup"], best["point"])

    present(out, output.json, output.save_dir, lambda o: r.render(o, view.wide), r.save,
            force=output.force)


# ---- commands ------------------------------------------------------------------------------

@app.callback(invoke_without_command=True)
@uses(work=ChipletWorkload, hw=ChipletHardware, space=ChipletSpace,
      model_options=ChipletModelOptions, goal=ChipletGoal, ranking=ChipletRanking,
      search=SearchOptions, view=ChipletView, output=Output)
def chiplet_command(ctx: typer.Context, work: ChipletWorkload, hw: ChipletHardware,
                    space: ChipletSpace, model_options: ChipletModelOptions, goal: ChipletGoal,
                    ranking: ChipletRanking, search: SearchOptions, view: ChipletView,
                    output: Output) -> None:
    """Best chiplet configuration for training a model: searches SRAM per die, parallel
    method, package, DRAM and micro-batch (and the grid unless --grid is given), then shows
    where the time and energy go and the gain over Megatron 1D TP on the same hardware."""
    if ctx.invoked_subcommand:
        return
    req = ChipletRequest(work=work, hw=hw, space=space, model_options=model_options,
                         search=search, ranking=ranking)
    _finish(run_default(req, goal.objective), view, output)


@app.command("run")
@uses(work=unset(ChipletWorkload), hw=unset(ChipletHardware), point=ChipletPoint,
      model_options=unset(ChipletModelOptions), config=ChipletConfig, view=ChipletView,
      output=Output)
def run_cmd(work: ChipletWorkload, hw: ChipletHardware, point: Any,  # a ChipletPoint
            model_options: ChipletModelOptions, config: ChipletConfig, view: ChipletView,
            output: Output) -> None:
    """Evaluate one configuration (defaults: the §9 scenario) with every term of its latency,
    energy, DRAM traffic, SRAM budget and area.

    Example: explore chiplet run --model llama2-70b --grid 8x8 --method hecaton2d --package standard
    """
    from .studies.chiplet import run_request
    req = run_request(work, hw, point, model_options, config.config)
    _finish(run_one(req), view, output)


@app.command("search")
@uses(work=ChipletWorkload, hw=ChipletHardware, space=ChipletSpace,
      model_options=ChipletModelOptions, goals=ChipletGoals, ranking=ChipletRanking,
      search=SearchOptions, view=ChipletView, output=Output)
def search_cmd(work: ChipletWorkload, hw: ChipletHardware, space: ChipletSpace,
               model_options: ChipletModelOptions, goals: ChipletGoals,
               ranking: ChipletRanking, search: SearchOptions, view: ChipletView,
               output: Output) -> None:
    """Multi-objective search (latency, energy, silicon area): the Pareto set with the binding
    constraint of each point, a top-N table and an ASCII Pareto plot.

    Example: explore chiplet search --model llama2-70b --objectives latency,energy,area --top 10
    """
    req = ChipletRequest(work=work, hw=hw, space=space, model_options=model_options,
                         search=search, ranking=ranking)
    _finish(run_search(req, goals.objectives), view, output)


@app.command("scale")
@uses(series=ChipletSeries, hw=ChipletHardware, view=ChipletView, output=Output)
def scale_cmd(series: ChipletSeries, hw: ChipletHardware, view: ChipletView,
              output: Output) -> None:
    """Weak-scaling series (§8): per model and grid the proxies (W_d, forward elements per
    token, FLOP per NoP byte) and, for Hecaton-2D and 1D TP in the §9 scenario, t_comp, t_NoP,
    their ratio and the iteration latency.

    Example: explore chiplet scale --series
    llama2-7b:4x4,llama2-13b:5x5,llama2-70b:8x8,llama3.1-405b:16x16
    """
    from explore.models.chiplet.validate import series_rows

    from .output import present
    from .render import chiplet as r
    from .studies.chiplet import scenario_setups, series_pairs
    pairs = series_pairs(series.series)
    setups = scenario_setups([n for n, _ in pairs], hw.die, hw.set or [])
    rows = series_rows({setups[n].work.model.name: setups[n] for n, _ in pairs},
                       tuple((setups[n].work.model.name, g) for n, g in pairs))
    out = {"study": "chiplet", "command": "scale", "series": rows}
    present(out, output.json, output.save_dir, lambda o: r.render_scale(o, view.wide),
            lambda o, d: r.save_tables(o, d, {"series.csv": rows}),
            force=output.force)


@app.command("validate")
@uses(hw=ChipletHardware, view=ChipletView, output=Output)
def validate_cmd(hw: ChipletHardware, view: ChipletView, output: Output) -> None:
    """The §9 validation: Hecaton-2D vs Megatron 1D TP on Llama2-70B / 8x8 and the weak-scaling
    series, with reference, ours, ratio and PASS/WARN/FAIL; exit code 1 if V1 or V4 fails.

    Example: explore chiplet validate
    """
    from explore.models.chiplet.validate import check_rows, hard_failures

    from .output import present
    from .render import chiplet as r
    from .studies.chiplet import validation_result
    res = validation_result(hw.die, hw.set or [])
    out = {"study": "chiplet", "command": "validate", **res}
    present(out, output.json, output.save_dir, lambda o: r.render_validate(res, view.wide),
            lambda o, d: r.save_tables(o, d, {
                "checks.csv": check_rows(res["rows"]), "sensitivities.csv": res["sensitivities"],
                "baselines.csv": res["against"], "energy_ranges.csv": res["energy_ranges"],
                "series.csv": res["series"]}),
            force=output.force)
    if hard_failures(res):
        raise typer.Exit(1)
