"""`explore pipeline`: pipeline-parallel training memory and throughput (ChronosPipe,
docs/pipeline.md). The commands only: their option groups, the request and the answers are in
cli/studies/pipeline.py, the tables and files in cli/render/pipeline.py, every number comes
from explore.models.pipeline."""

from __future__ import annotations

from typing import Callable

import typer

from .common import Output, SearchOptions
from .options import Use, uses
from .studies.pipeline import (Emit, FamilyPolicy, FamilyWorkload, FixtureLayout,
                               FixtureWorkload, Floor, Hardware, Layout, Parallelism,
                               Policy, Ranking, Report, SweepAxis, SweepPolicy,
                               TimelineReport, Workload, request)

app = typer.Typer(
    help="Pipeline-parallel training memory and throughput (ChronosPipe): what fits in HBM, "
         "the fastest layout and schedule, where the memory goes.\n\n"
         "Without a subcommand: the fastest configuration under the HBM cap. A parallelism or "
         "policy flag left out is searched over every value that can divide: TP 1-16 within a "
         "node, PP dividing the layers, vpp 1-2 for interleaved, micro-batch 1, 2, 4, 8, every "
         "schedule and saver, the distributed optimizer when DP > 1.\n\n"
         "Example: explore pipeline --model llama2-70b --layers 48 --gpus 64 "
         "--hardware a100-80g",
    no_args_is_help=False)


def _answer(data: dict, output: Output, render: Callable[[dict], None],
            save: str = "save") -> None:
    """--save-dir files (cli/render/pipeline.py `save`), then JSON or the tables."""
    from .output import present
    from .render import pipeline as r

    present(data, output.json, output.save_dir, render, getattr(r, save),
            force=output.force)


# ---- search ------------------------------------------------------------------------------

@app.callback(invoke_without_command=True)
@uses(work=Workload, hw=Hardware, par=Parallelism, policy=Policy, rank=Ranking,
      search=SearchOptions, output=Output, report=Report, emit=Emit)
def pipeline_command(ctx: typer.Context, work: Workload, hw: Hardware, par: Parallelism,
                     policy: Policy, rank: Ranking, search: SearchOptions, output: Output,
                     report: Report, emit: Emit) -> None:
    """Fastest configuration under the HBM cap, its per-stage memory and what binds."""
    if ctx.invoked_subcommand:
        ctx.obj = None
        return
    _search_answer(request(work=work, hw=hw, par=par, policy=policy, search=search), rank,
                   output, emit, lambda d, r: r.render_best(d, compact=True, wide=report.wide))


def _search_answer(req, rank: Ranking, output: Output, emit: Emit, render) -> None:
    """A search's answer: launch arguments (--emit), or the files, JSON or tables."""
    from explore.models.errors import InputError

    from .render import pipeline as r
    from .studies.pipeline import search as run
    if emit.emit not in (None, "megatron"):
        raise InputError(f"--emit {emit.emit!r}: choose megatron")
    _, _, out = run(req, rank)
    if emit.emit:
        typer.echo(r.launch_text(out["launch"]))
        return
    _answer(out, output, lambda d: render(d, r))


@app.command("best")
@uses(work=Workload, hw=Hardware, par=Parallelism, policy=Policy, rank=Use(Ranking, top=15),
      search=SearchOptions, output=Output, report=Report, emit=Emit)
def best_command(work: Workload, hw: Hardware, par: Parallelism, policy: Policy,
                 rank: Ranking, search: SearchOptions, output: Output, report: Report,
                 emit: Emit) -> None:
    """Ranked configurations: tokens/s, MFU, HFU, bubble, recompute, stalls, peaks, host RAM.

    Flags left out are searched as without a subcommand. --emit megatron prints the best
    configuration as Megatron-LM arguments instead.

    Example: explore pipeline best --model llama2-70b --layers 48 --schedule 1f1b,chronos
    """
    _search_answer(request(work=work, hw=hw, par=par, policy=policy, search=search), rank,
                   output, emit, lambda d, r: r.render_best(d, compact=False, wide=report.wide))


# ---- one layout --------------------------------------------------------------------------

@app.command("breakdown")
@uses(work=Workload, hw=Hardware, par=Layout, policy=Policy, output=Output, report=Report)
def breakdown_command(work: Workload, hw: Hardware, par: Layout, policy: Policy,
                      output: Output, report: Report) -> None:
    """Device x category memory at each device's peak, the peak instant and op.

    One layout: --tp and --pp (one value each; without them the best of the default search),
    vpp 1, mbs 1 and schedule 1f1b unless given.

    Example: explore pipeline breakdown --layers 48 --tp 8 --pp 8 --mbs 4 --schedule 1f1b
    """
    from .render import pipeline as r
    from .studies.pipeline import breakdown_data
    data = breakdown_data(request(work=work, hw=hw, par=par, policy=policy))
    _answer(data, output, lambda d: r.render_breakdown(d, wide=report.wide))


@app.command("timeline")
@uses(work=Workload, hw=Hardware, par=Layout, policy=Policy, show=TimelineReport,
      output=Output)
def timeline_command(work: Workload, hw: Hardware, par: Layout, policy: Policy,
                     show: TimelineReport, output: Output) -> None:
    """Memory timeline over one iteration: a per-device summary (peak, when, rows), the
    whole CSV (time_s, device, category, bytes) with --csv or --out FILE, or --plot.

    The layout as for breakdown.

    Example: explore pipeline timeline --layers 48 --tp 8 --pp 8 --mbs 4 --schedule chronos
    --plot
    """
    from pathlib import Path

    from . import output as files
    from .render import pipeline as r
    from .studies.pipeline import timeline_data
    _, out, devices, data = timeline_data(
        request(work=work, hw=hw, par=par, policy=policy), show.device)
    if show.ops:
        r.write_ops(out, Path(show.ops))

    def show_timeline(d: dict) -> None:
        if show.plot:
            r.render_plot(out, devices, d["assumptions"])
        elif show.out:
            files.write_text(Path(show.out), r.timeline_csv(d))
            typer.echo(f"wrote {len(d['timeline'])} rows to {show.out}")
        elif show.csv:
            typer.echo(r.timeline_csv(d), nl=False)
        else:       # thousands of rows would scroll the answer away: summarise them
            r.render_timeline_summary(d)

    files.present(data, output.json, output.save_dir, show_timeline,
                  lambda d, directory: r.save_timeline(d, out, directory),
                  force=output.force)


@app.command("max-size")
@uses(work=FamilyWorkload, hw=Hardware, par=Parallelism, policy=FamilyPolicy, output=Output,
      report=Report)
def max_size_command(work: FamilyWorkload, hw: Hardware, par: Parallelism,
                     policy: FamilyPolicy, output: Output, report: Report) -> None:
    """Largest trainable model per schedule family: grid L, L*, parameters, binding constraint.

    One layout: TP 8 (at most a node), PP the GPUs / TP, vpp 2, mbs 1 unless given; the
    families 1f1b, interleaved, zb-h1, zb-v, v-half, v-min and chronos; recompute and offload
    none, the chronos rows Chronos-Recomp and Chronos-Offload unless given; no throughput floor
    unless --delta.

    Example: explore pipeline max-size --model llama2-70b --gpus 64 --tp 8 --pp 8 --mbs 4
    """
    from .render import pipeline as r
    from .studies.pipeline import max_size_data
    data = max_size_data(request(work=work, hw=hw, par=par, policy=policy), work,
                         policy)
    _answer(data, output, lambda d: r.render_max_size(d, wide=report.wide),
            "save_max_size")


@app.command("sweep")
@uses(axis=SweepAxis, work=Workload, hw=Hardware, par=Parallelism, policy=SweepPolicy,
      output=Output, report=Report)
def sweep_command(axis: SweepAxis, work: Workload, hw: Hardware, par: Parallelism,
                  policy: SweepPolicy, output: Output, report: Report) -> None:
    """Sensitivity: L*, peak and tokens/s as one parameter varies (seq, m, h2d-gbps).

    One layout: TP 8 (at most a node), PP the GPUs / TP, mbs 1, vpp 1, schedule 1f1b unless
    given.

    Example: explore pipeline sweep --vary h2d-gbps --values 12.5,25,50 --layers 48 --tp 8
    --pp 8 --mbs 4 --schedule chronos --offload chronos
    """
    from .render import pipeline as r
    from .studies.pipeline import sweep_data
    data = sweep_data(request(work=work, hw=hw, par=par, policy=policy), axis)
    _answer(data, output, lambda d: r.render_sweep(d, wide=report.wide), "save_sweep")


# ---- validation --------------------------------------------------------------------------

@app.command("validate")
@uses(work=Use(FixtureWorkload, model=None, seq=None, global_batch=None),
      hw=Use(Hardware, hardware=None, gpus=None, reserve_gib=None, eff=None, frag=None,
             time_model=None),
      par=Use(FixtureLayout, sp=None, flash=None), floor=Floor, output=Output, report=Report)
def validate_command(work: FixtureWorkload, hw: Hardware, par: FixtureLayout, floor: Floor,
                     output: Output, report: Report) -> None:
    """The §8 fixture: its OOM/fit table and both ratio checks (exit 1 if a hard check fails).

    Every option left out takes the value of the shipped study preset chronos-fixture, or the
    fixture's own default (models/pipeline/validate.py).

    Example: explore pipeline validate --json
    """
    from .render import pipeline as r
    from .studies.pipeline import fixture, fixture_data
    given = {k: v for g in (work, hw, par, floor) for k, v in vars(g).items()}
    data = fixture_data(fixture(given))
    _answer(data, output, lambda d: r.render_validate(d, wide=report.wide), "save_validate")
    if data["hard_fail"]:
        raise typer.Exit(1)


from . import pipeline_fit  # noqa: E402,F401  (registers `explore pipeline fit`)
