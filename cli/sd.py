"""`explore sd`: speculative decoding for MoE inference (MoESD, docs/sd.md). The options and the
builder are in cli/studies/sd.py, the tables and files in cli/render/sd.py."""

from __future__ import annotations

import typer

from .common import Output, SearchOptions
from .options import uses
from .studies.sd import (SdFormats, SdHardware, SdReport, SdRequest, SdSpace, SdWorkload,
                         build, objectives)

app = typer.Typer(
    help="Speculative decoding for MoE inference (MoESD): speedup and target efficiency over "
         "batch size and draft length.\n\nExample: explore sd --model qwen2-57b --hardware h800 "
         "--tp 2 --acceptance qwen2-57b-humaneval-t0",
    no_args_is_help=False)


def run(req: SdRequest) -> dict:
    """Build, search and report: the JSON-ready result of `explore sd`."""
    from explore.models.errors import InfeasibleError
    from explore.models.sd_study import report
    from explore.search.storage import mask

    from .common import sampled_only
    from .search_run import run_search

    names = objectives(req.space.objective)
    setup, study, dense, notes, warnings, info = build(req)
    result = run_search(study, names, req.search)
    ranked = result.ranked()
    if not len(ranked):
        reasons = sorted({r for r in result.reasons if r})
        sampled = sampled_only(result)
        raise InfeasibleError(f"no feasible (batch, gamma) point{' ' + sampled if sampled else ''}"
                              f": " + "; ".join(reasons[:3]))
    top = [result.row(i) for i in ranked[: req.report.top]]
    out = {"study": "sd", "setup": info, "defaults": notes, "warnings": warnings,
           "objective": ",".join(names),
           "search": {"engine": result.engine, "evaluated": result.n,
                      "space_size": result.space_size, "infeasible": result.counts()["infeasible"],
                      "elapsed_s": result.elapsed_s, "interrupted": result.interrupted,
                      "study_name": result.study_name, "storage": mask(req.search.storage)
                      if req.search.storage else None}}
    out.update(report(setup, study, result.point(ranked[0]), top, dense))
    return out


@app.callback(invoke_without_command=True)
@uses(work=SdWorkload, hw=SdHardware, formats=SdFormats, space=SdSpace, search=SearchOptions,
      report=SdReport, output=Output)
def sd_command(ctx: typer.Context, work: SdWorkload, hw: SdHardware, formats: SdFormats,
               space: SdSpace, search: SearchOptions, report: SdReport,
               output: Output) -> None:
    """Best batch size and draft length for speculative decoding, with the why."""
    if ctx.invoked_subcommand:
        return
    from .output import present

    out = run(SdRequest(work, hw, formats, space, search, report))
    from .render.sd import render, save

    present(out, output.json, output.save_dir,
            lambda o: render(o, report.plot, report.wide), save,
            force=output.force)


from . import sd_advise, sd_fit  # noqa: E402,F401  (register `explore sd advise`, `fit`)
