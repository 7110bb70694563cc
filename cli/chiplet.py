"""`explore chiplet`: latency and energy of LLM training on a chiplet package (Hecaton,
docs/chiplet.md). No model arithmetic here: flags -> setup and space, models -> plain data,
then tables or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import List, Optional

import typer

from .common import (RANGE_HELP, NTrialsOpt, SamplerOpt, SearchOpt, SearchOptions, SeedOpt,
                     StorageOpt, StudyNameOpt, TimeoutOpt, TotalTrialsOpt, WorkersOpt,
                     emit_json)

DEFAULT_MODEL = "llama2-70b"
DEFAULT_DIE = "die-7nm"
SERIES_DEFAULT = "llama2-7b:4x4,llama2-13b:5x5,llama2-70b:8x8,llama3.1-405b:16x16"
# `run` defaults: the §9 scenario
RUN_DEFAULTS = {"grid": "8x8", "method": "hecaton2d", "schedule": "layer-major",
                "package": "standard", "modules": "1", "dram": "ddr5", "io_sides": "2",
                "micro_batch": "8", "recompute": "on", "overlap": "max"}
FLAGS = {"grid": "--grid", "sram_mb": "--sram", "method": "--method", "schedule": "--schedule",
         "package": "--package", "modules": "--modules", "dram": "--dram",
         "io_sides": "--io-sides", "micro_batch": "--micro-batch", "recompute": "--recompute",
         "overlap": "--overlap"}
SCHEDULE_ALIASES = {"lm": "layer-major", "layer": "layer-major", "mbm": "micro-batch-major",
                    "micro-batch": "micro-batch-major"}

app = typer.Typer(
    help="Chiplet systems for LLM training (Hecaton): latency, energy and silicon area of one "
         "training iteration on a 2D mesh of compute dies, searched over grid, SRAM per die, "
         "parallel method, D2D package, DRAM and micro-batch.\n\n"
         "Example: explore chiplet --grid 8x8 --model llama2-70b",
    no_args_is_help=False)

# ---- options shared by the default command, run and search ----------------------------------
P_WORK, P_HW, P_SPACE, P_MODEL = "Workload", "Hardware presets", "Design space", "Model options"
ModelOpt = typer.Option(DEFAULT_MODEL, "--model", "-m", help="model preset or a Hugging Face "
                        "config.json path", rich_help_panel=P_WORK)
SeqOpt = typer.Option(4096, "--seq", help="sequence length S (tokens)", rich_help_panel=P_WORK)
BatchOpt = typer.Option(128, "--batch", help="global batch B (sequences per iteration)",
                        rich_help_panel=P_WORK)
GradOpt = typer.Option(4.0, "--grad-bytes", help="bytes per gradient-accumulator element "
                       "beta_g (4 = fp32, 2 = bf16)", rich_help_panel=P_WORK)
AttnOpt = typer.Option("causal", "--attention", help="causal (skips masked blocks, c = 0.5) "
                       "or full (c = 1)", rich_help_panel=P_WORK)
DieOpt = typer.Option(DEFAULT_DIE, "--die", help="compute-die preset or YAML file",
                      rich_help_panel=P_HW)
SetOpt = typer.Option(None, "--set", help="override a preset field, e.g. die.f=1.5GHz, "
                      "package.router_latency=10ns, dram.eta=0.9 (repeatable)", rich_help_panel=P_HW)
GridOpt = typer.Option(None, "--grid", help="compute-die grid ROWSxCOLS (8x8; 8×8 accepted), "
                       "or a comma list (default: searched over 4x4..16x16)",
                       rich_help_panel=P_SPACE)
RectOpt = typer.Option(False, "--rect", help="search rectangular grids N1 x N2 too",
                       rich_help_panel=P_SPACE)
SramOpt = typer.Option(None, "--sram", help=f"SRAM per die in MB: {RANGE_HELP} (default: "
                       f"16,32,48,64,96,128,192,256)", rich_help_panel=P_SPACE)
MethodOpt = typer.Option(None, "--method", help="parallel methods, comma list: 1d, 1d-bi, 2d, "
                         "2.5d-qQ, 3d, hecaton2d (default: all that fit the grid)",
                         rich_help_panel=P_SPACE)
ScheduleOpt = typer.Option(None, "--schedule", help="layer-major, micro-batch-major "
                           "(default: both)", rich_help_panel=P_SPACE)
PackageOpt = typer.Option(None, "--package", help="D2D package presets or YAML files, comma "
                          "list (default: standard,advanced)", rich_help_panel=P_SPACE)
ModulesOpt = typer.Option(None, "--modules", help=f"UCIe modules per port: {RANGE_HELP} "
                          "(default: 1-4)", rich_help_panel=P_SPACE)
DramOpt = typer.Option(None, "--dram", help="DRAM presets or YAML files (default: ddr5,hbm2e)",
                       rich_help_panel=P_SPACE)
IoOpt = typer.Option(None, "--io-sides", help="I/O dies on 2 or 4 sides (default: 2,4)",
                     rich_help_panel=P_SPACE)
MbOpt = typer.Option(None, "--micro-batch", help=f"micro-batch B_m (sequences, divides B): "
                     f"{RANGE_HELP} (default: every divisor of B)", rich_help_panel=P_SPACE)
RecomputeOpt = typer.Option(None, "--recompute", help="full recomputation: on, off or both "
                            "(default: on)", rich_help_panel=P_SPACE)
OverlapOpt = typer.Option(None, "--overlap", help="max (compute, NoP and DRAM overlap) or "
                          "none, or both (default: max)", rich_help_panel=P_SPACE)
ChunkOpt = typer.Option(None, "--chunk", help="on-chip token chunk T_c (default: 256, the "
                        "smallest §6 allows: shortest pipeline fill)", rich_help_panel=P_MODEL)
PrefetchOpt = typer.Option(True, "--prefetch/--no-prefetch", help="double-buffer the next "
                           "weight shard (delta_pf)", rich_help_panel=P_MODEL)
TilingOpt = typer.Option(False, "--tiling", help="PE-array tiling efficiency per GEMM (§7)",
                         rich_help_panel=P_MODEL)
RouteDramOpt = typer.Option(False, "--route-dram", help="DRAM flows also load the mesh "
                            "links (§6)", rich_help_panel=P_MODEL)
KeepXOpt = typer.Option(False, "--keep-x", help="Hecaton-2D keeps gathered inputs for the "
                        "backward instead of re-gathering them", rich_help_panel=P_MODEL)
JsonOpt = typer.Option(False, "--json", help="print JSON instead of tables")
SaveOpt = typer.Option(None, "--save-dir", help="write pareto.csv, trials.csv, best.yaml and "
                       "breakdown.csv here")
TopOpt = typer.Option(10, "--top", help="rows in the ranking table")


@dataclass
class ChipletRequest:
    """Flags of `explore chiplet` (and of best.yaml), before defaults are filled in."""
    model: str = DEFAULT_MODEL
    grid: Optional[str] = None
    rect: bool = False
    sram: Optional[str] = None
    method: Optional[str] = None
    schedule: Optional[str] = None
    package: Optional[str] = None
    modules: Optional[str] = None
    dram: Optional[str] = None
    io_sides: Optional[str] = None
    micro_batch: Optional[str] = None
    recompute: Optional[str] = None
    overlap: Optional[str] = None
    seq: int = 4096
    batch: int = 128
    grad_bytes: float = 4.0
    attention: str = "causal"
    die: str = DEFAULT_DIE
    set: List[str] = field(default_factory=list)
    chunk: Optional[int] = None
    prefetch: bool = True
    tiling: bool = False
    route_dram: bool = False
    keep_x: bool = False


def _names(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _setup(req: ChipletRequest, packages: list[str], drams: list[str]):
    """Presets and workload -> ChipletSetup; --set overrides applied with strict keys."""
    from explore import presets
    from explore.models.chiplet.cost import Workload
    from explore.models.chiplet.study import ChipletSetup
    from explore.models.errors import ConfigError, InputError

    model = presets.load("model", req.model)
    die = presets.load("die", req.die)
    pkgs = {}
    for ref in packages:
        p = presets.load("package", ref)
        pkgs[p.name] = p
    drs = {}
    for ref in drams:
        d = presets.load("dram", ref)
        drs[d.name] = d
    changes: dict[str, dict[str, str]] = {"die": {}, "package": {}, "dram": {}}
    for item in req.set or []:
        key, eq, value = item.partition("=")
        kind, dot, name = key.strip().partition(".")
        if not eq or not dot or not name:
            raise InputError(f"--set {item!r}: write KIND.FIELD=VALUE, e.g. die.f=1.5GHz")
        if kind not in changes:
            raise ConfigError(f"--set {item!r}: unknown preset kind {kind!r}; use die, package "
                              f"or dram")
        changes[kind][name.strip()] = value.strip()
    if changes["die"]:
        die = presets.override(die, changes["die"], f"--set die ({die.name})")
    if changes["package"]:
        pkgs = {k: presets.override(v, changes["package"], f"--set package ({k})")
                for k, v in pkgs.items()}
    if changes["dram"]:
        drs = {k: presets.override(v, changes["dram"], f"--set dram ({k})")
               for k, v in drs.items()}
    if req.attention not in ("causal", "full"):
        raise InputError(f"--attention {req.attention!r}: choose causal or full")
    work = Workload(model, seq=req.seq, batch=req.batch, grad_bytes=req.grad_bytes,
                    causal=0.5 if req.attention == "causal" else 1.0, prefetch=req.prefetch,
                    tiling=req.tiling, route_dram=req.route_dram, regather=not req.keep_x,
                    chunk=req.chunk)
    return ChipletSetup(work, die, pkgs, drs)


def _choice(text: str, allowed: tuple, flag: str, aliases: dict | None = None) -> tuple:
    from explore.models.errors import InputError
    out = []
    for t in _names(text):
        t = (aliases or {}).get(t.lower(), t.lower())
        if t == "both":
            out += [a for a in allowed if a not in out]
            continue
        if t not in allowed:
            raise InputError(f"{flag} {text!r}: {t!r} is not one of {', '.join(allowed)}")
        out.append(t)
    if not out:
        raise InputError(f"{flag} is empty")
    return tuple(dict.fromkeys(out))


def build(req: ChipletRequest, single: bool = False):
    """Flags -> (setup, space values, notes on defaults). single: one configuration (`run`)."""
    from explore.models.chiplet import methods, study
    from explore.models.errors import InputError

    from .common import parse_int_range

    notes: list[str] = []
    given = {f.name: getattr(req, f.name) for f in fields(req)}
    if single:
        for k, v in RUN_DEFAULTS.items():
            if given.get(k) is None:
                given[k] = v
    pk_names = _names(given["package"]) if given["package"] else ["standard", "advanced"]
    dr_names = _names(given["dram"]) if given["dram"] else ["ddr5", "hbm2e"]
    setup = _setup(req, pk_names, dr_names)
    if req.grid is None and not single:
        notes.append("grid searched over square grids 4x4..16x16" + (
            " and rectangles" if req.rect else "") + "; fix it with --grid")
    if given["grid"]:
        grids = tuple(str(study.parse_grid(g)) for g in _names(given["grid"]))
    elif req.rect:
        grids = tuple(f"{a}x{b}" for a in study.GRID_SIDES for b in study.GRID_SIDES)
    else:
        grids = tuple(f"{n}x{n}" for n in study.GRID_SIDES)
    if given["method"] in (None, "all"):
        if len(grids) == 1:
            meths = tuple(m.label for m in methods.methods_for(study.parse_grid(grids[0])))
        else:
            meths = methods.ALL_METHODS
    else:
        meths = tuple(dict.fromkeys(methods.parse_method(m).label
                                    for m in _names(given["method"])))
    sram = (parse_int_range(given["sram"], "--sram") if given["sram"] else
            ((int(round(setup.die.sram / 1e6)),) if single else study.SRAM_MB))
    if single and not given["sram"]:
        notes.append(f"SRAM {sram[0]} MB per die: the {setup.die.name} preset")
    w = setup.work
    mb = (parse_int_range(given["micro_batch"], "--micro-batch") if given["micro_batch"]
          else tuple(d for d in range(1, w.batch + 1) if w.batch % d == 0))
    bad = [b for b in mb if w.batch % b]
    if bad:
        raise InputError(f"--micro-batch {given['micro_batch']!r}: {bad[0]} does not divide "
                         f"the batch B = {w.batch}")
    rec = {"on": (True,), "off": (False,), "both": (True, False)}.get(
        str(given["recompute"] or "on").lower())
    if rec is None:
        raise InputError(f"--recompute {given['recompute']!r}: choose on, off or both")
    values = {
        "grid": grids, "sram_mb": sram, "method": meths,
        "schedule": _choice(given["schedule"] or "both", study.SCHEDULES, "--schedule",
                            SCHEDULE_ALIASES),
        "package": tuple(setup.packages),
        "modules": parse_int_range(given["modules"] or "1-4", "--modules"),
        "dram": tuple(setup.drams),
        "io_sides": _choice(given["io_sides"] or "2,4", ("2", "4"), "--io-sides"),
        "micro_batch": mb, "recompute": rec,
        "overlap": _choice(given["overlap"] or "max", study.OVERLAPS, "--overlap"),
    }
    values["io_sides"] = tuple(int(x) for x in values["io_sides"])
    if single:
        many = [k for k, v in values.items() if len(v) != 1]
        if many:
            raise InputError(f"`run` evaluates one configuration; give one value for "
                             f"{', '.join(FLAGS.get(k, k) for k in many)} "
                             f"(or use `explore chiplet search`)")
    return setup, values, notes


def info(req: ChipletRequest, setup) -> dict:
    w = setup.work
    return {"model": w.model.name, "seq": w.seq, "batch": w.batch, "tokens": w.tokens,
            "grad_bytes": w.grad_bytes, "attention": req.attention, "die": setup.die.name,
            "packages": list(setup.packages), "drams": list(setup.drams),
            "prefetch": w.prefetch, "tiling": w.tiling, "route_dram": w.route_dram,
            "regather": w.regather, "chunk": w.chunk, "set": list(req.set or []),
            "provenance": provenance(setup)}


def provenance(setup) -> dict:
    """Where each hardware number comes from (the presets' `sources`)."""
    out = {"die": {"name": setup.die.name, **setup.die.sources}}
    out["packages"] = {k: v.sources for k, v in setup.packages.items()}
    out["drams"] = {k: v.sources for k, v in setup.drams.items()}
    return out


def _search(setup, values, objectives, opts: SearchOptions):
    from explore.models.chiplet.study import ChipletStudy

    from .search_run import run_search as search
    study = ChipletStudy(setup, values)
    return study, search(study, objectives, opts)


def _rows(result, indices) -> list[dict]:
    from explore.models.chiplet.study import binding_name
    out = []
    for i in indices:
        r = result.row(int(i))
        r["binding"] = binding_name(r["binding"]) if r.get("feasible") else \
            (r.get("reason", "").split(":")[0] or "infeasible")
        out.append(r)
    return out


def _objectives(text: str) -> list[str]:
    from explore.models.chiplet.study import OBJECTIVE_ALIASES, OBJECTIVES
    from explore.models.errors import InputError
    names = {o.name for o in OBJECTIVES}
    out = []
    for t in _names(text):
        o = OBJECTIVE_ALIASES.get(t.lower(), t)
        if o not in names:
            raise InputError(f"objective {t!r}: choose from {', '.join(OBJECTIVE_ALIASES)}")
        out.append(o)
    if not out:
        raise InputError("give at least one objective")
    return out


def _search_summary(result) -> dict:
    return {"engine": result.engine, "evaluated": result.n, "space_size": result.space_size,
            "feasible": int(result.feasible.sum()), "infeasible": result.counts()["infeasible"],
            "elapsed_s": result.elapsed_s, "interrupted": result.interrupted}


def _no_feasible(result) -> None:
    from collections import Counter

    from explore.models.errors import InfeasibleError
    common = Counter(r for r in result.reasons if r).most_common(3)
    raise InfeasibleError("no feasible configuration: " + "; ".join(r for r, _ in common))


def run_default(req: ChipletRequest, objective: str, top: int, opts: SearchOptions) -> dict:
    """The default command: search, then report the best point and its 1D comparison."""
    from explore.models.chiplet.report import point_report
    setup, values, notes = build(req)
    objs = _objectives(objective)[:1]
    study, result = _search(setup, values, objs, opts)
    ranked = result.ranked()
    if not len(ranked):
        _no_feasible(result)
    best = result.point(ranked[0])
    return {"study": "chiplet", "command": "default", "setup": info(req, setup),
            "defaults": notes, "objective": objs[0], "search": _search_summary(result),
            "space": study.space.describe(), "best": point_report(setup, best),
            "top": _rows(result, ranked[:top]), "_result": result, "_setup": setup}


def run_search(req: ChipletRequest, objectives: str, top: int, opts: SearchOptions) -> dict:
    from explore.models.chiplet.report import point_report
    setup, values, notes = build(req)
    objs = _objectives(objectives)
    study, result = _search(setup, values, objs, opts)
    ranked = result.ranked()
    if not len(ranked):
        _no_feasible(result)
    pareto = result.pareto()
    pareto = pareto[result.score(result.objectives[0])[pareto].argsort()]
    chosen = int(pareto[0]) if len(pareto) else int(ranked[0])
    return {"study": "chiplet", "command": "search", "setup": info(req, setup),
            "defaults": notes, "objectives": objs, "search": _search_summary(result),
            "space": study.space.describe(), "pareto": _rows(result, pareto),
            "top": _rows(result, ranked[:top]),
            "best": point_report(setup, result.point(chosen)),
            "_result": result, "_setup": setup}


def run_one(req: ChipletRequest) -> dict:
    from explore.models.chiplet.report import point_report
    from explore.models.errors import InfeasibleError
    setup, values, notes = build(req, single=True)
    point = {k: v[0] for k, v in values.items()}
    rep = point_report(setup, point)
    if not rep["feasible"]:
        raise InfeasibleError(f"{point['method']} on {point['grid']}: {rep['reason']}")
    return {"study": "chiplet", "command": "run", "setup": info(req, setup), "defaults": notes,
            "best": rep, "_setup": setup}


# ---- commands ------------------------------------------------------------------------------

def _request(**kw) -> ChipletRequest:
    return ChipletRequest(**{k: v for k, v in kw.items()
                             if k in ChipletRequest.__dataclass_fields__})


@app.callback(invoke_without_command=True)
def chiplet_command(
    ctx: typer.Context,
    model: str = ModelOpt, grid: Optional[str] = GridOpt, rect: bool = RectOpt,
    sram: Optional[str] = SramOpt, method: Optional[str] = MethodOpt,
    schedule: Optional[str] = ScheduleOpt, package: Optional[str] = PackageOpt,
    modules: Optional[str] = ModulesOpt, dram: Optional[str] = DramOpt,
    io_sides: Optional[str] = IoOpt, micro_batch: Optional[str] = MbOpt,
    recompute: Optional[str] = RecomputeOpt, overlap: Optional[str] = OverlapOpt,
    seq: int = SeqOpt, batch: int = BatchOpt, grad_bytes: float = GradOpt,
    attention: str = AttnOpt, die: str = DieOpt, set_: Optional[List[str]] = SetOpt,
    chunk: Optional[int] = ChunkOpt, prefetch: bool = PrefetchOpt, tiling: bool = TilingOpt,
    route_dram: bool = RouteDramOpt, keep_x: bool = KeepXOpt,
    objective: str = typer.Option("latency", "--objective", help="latency, energy, area, edp, "
                                  "throughput or j/token"),
    top: int = TopOpt, json_out: bool = JsonOpt, save_dir: Optional[Path] = SaveOpt,
    search: str = SearchOpt, sampler: str = SamplerOpt, n_trials: Optional[int] = NTrialsOpt,
    timeout: Optional[float] = TimeoutOpt, seed: Optional[int] = SeedOpt,
    storage: Optional[str] = StorageOpt, study_name: Optional[str] = StudyNameOpt,
    workers: int = WorkersOpt, total_trials: Optional[int] = TotalTrialsOpt,
) -> None:
    """Best chiplet configuration for training a model: searches SRAM per die, parallel
    method, package, DRAM and micro-batch (and the grid unless --grid is given), then shows
    where the time and energy go and the gain over Megatron 1D TP on the same hardware."""
    if ctx.invoked_subcommand:
        return
    req = _request(**locals(), set=set_ or [])
    _check_top(top)
    out = run_default(req, objective, top, SearchOptions(search, sampler, n_trials, timeout,
                                                         seed, storage, study_name, workers,
                                                         total_trials))
    _finish(out, json_out, save_dir)


@app.command("run")
def run_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model preset or config.json "
                                        f"(default: {DEFAULT_MODEL})", rich_help_panel=P_WORK),
    grid: Optional[str] = typer.Option(None, "--grid", help="ROWSxCOLS (default: 8x8)",
                                       rich_help_panel=P_SPACE),
    sram: Optional[str] = typer.Option(None, "--sram", help="SRAM per die, MB (default: the "
                                       "die preset's)", rich_help_panel=P_SPACE),
    method: Optional[str] = typer.Option(None, "--method", help="1d, 1d-bi, 2d, 2.5d-qQ, 3d, "
                                         "hecaton2d (default: hecaton2d)",
                                         rich_help_panel=P_SPACE),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="layer-major or "
                                           "micro-batch-major (default: layer-major)",
                                           rich_help_panel=P_SPACE),
    package: Optional[str] = typer.Option(None, "--package", help="package preset or YAML "
                                          "(default: standard)", rich_help_panel=P_SPACE),
    modules: Optional[str] = typer.Option(None, "--modules", help="UCIe modules per port "
                                          "(default: 1)", rich_help_panel=P_SPACE),
    dram: Optional[str] = typer.Option(None, "--dram", help="DRAM preset or YAML "
                                       "(default: ddr5)", rich_help_panel=P_SPACE),
    io_sides: Optional[str] = typer.Option(None, "--io-sides", help="2 or 4 (default: 2)",
                                           rich_help_panel=P_SPACE),
    micro_batch: Optional[str] = typer.Option(None, "--micro-batch", help="B_m sequences "
                                              "(default: 8)", rich_help_panel=P_SPACE),
    recompute: Optional[str] = typer.Option(None, "--recompute", help="on or off "
                                            "(default: on)", rich_help_panel=P_SPACE),
    overlap: Optional[str] = typer.Option(None, "--overlap", help="max or none (default: max)",
                                          rich_help_panel=P_SPACE),
    seq: Optional[int] = typer.Option(None, "--seq", help="sequence length (default: 4096)",
                                      rich_help_panel=P_WORK),
    batch: Optional[int] = typer.Option(None, "--batch", help="global batch, sequences "
                                        "(default: 128)", rich_help_panel=P_WORK),
    grad_bytes: Optional[float] = typer.Option(None, "--grad-bytes", help="beta_g: 4 or 2 "
                                               "(default: 4)", rich_help_panel=P_WORK),
    attention: Optional[str] = typer.Option(None, "--attention", help="causal or full "
                                            "(default: causal)", rich_help_panel=P_WORK),
    die: Optional[str] = typer.Option(None, "--die", help=f"die preset (default: "
                                      f"{DEFAULT_DIE})", rich_help_panel=P_HW),
    set_: Optional[List[str]] = SetOpt,
    chunk: Optional[int] = ChunkOpt, prefetch: Optional[bool] = typer.Option(
        None, "--prefetch/--no-prefetch", help="double-buffer the next weight shard "
        "(default: on)", rich_help_panel=P_MODEL),
    tiling: Optional[bool] = typer.Option(None, "--tiling/--no-tiling", help="PE-array tiling "
                                          "efficiency (default: off)", rich_help_panel=P_MODEL),
    route_dram: Optional[bool] = typer.Option(None, "--route-dram/--no-route-dram",
                                              help="DRAM flows load mesh links (default: off)",
                                              rich_help_panel=P_MODEL),
    keep_x: Optional[bool] = typer.Option(None, "--keep-x/--regather", help="Hecaton-2D keeps "
                                          "X for the backward (default: re-gather)",
                                          rich_help_panel=P_MODEL),
    config: Optional[Path] = typer.Option(None, "--config", help="a best.yaml from --save-dir "
                                          "(flags given here override it)"),
    json_out: bool = JsonOpt, save_dir: Optional[Path] = SaveOpt,
) -> None:
    """Evaluate one configuration (defaults: the §9 scenario) with every term of its latency,
    energy, DRAM traffic, SRAM budget and area.

    Example: explore chiplet run --model llama2-70b --grid 8x8 --method hecaton2d --package standard
    """
    given = {k: v for k, v in locals().items() if k not in ("config", "json_out", "save_dir")}
    given["set"] = given.pop("set_") or []
    base = _config_options(config) if config else {}
    merged = {**base, **{k: v for k, v in given.items() if v not in (None, [])}}
    req = ChipletRequest(**merged)
    _finish(run_one(req), json_out, save_dir)


@app.command("search")
def search_cmd(
    model: str = ModelOpt, grid: Optional[str] = GridOpt, rect: bool = RectOpt,
    sram: Optional[str] = SramOpt, method: Optional[str] = MethodOpt,
    schedule: Optional[str] = ScheduleOpt, package: Optional[str] = PackageOpt,
    modules: Optional[str] = ModulesOpt, dram: Optional[str] = DramOpt,
    io_sides: Optional[str] = IoOpt, micro_batch: Optional[str] = MbOpt,
    recompute: Optional[str] = RecomputeOpt, overlap: Optional[str] = OverlapOpt,
    seq: int = SeqOpt, batch: int = BatchOpt, grad_bytes: float = GradOpt,
    attention: str = AttnOpt, die: str = DieOpt, set_: Optional[List[str]] = SetOpt,
    chunk: Optional[int] = ChunkOpt, prefetch: bool = PrefetchOpt, tiling: bool = TilingOpt,
    route_dram: bool = RouteDramOpt, keep_x: bool = KeepXOpt,
    objectives: str = typer.Option("latency,energy,area", "--objectives", help="comma list of "
                                   "latency, energy, area, edp, throughput, j/token"),
    top: int = TopOpt, json_out: bool = JsonOpt, save_dir: Optional[Path] = SaveOpt,
    search: str = SearchOpt, sampler: str = SamplerOpt, n_trials: Optional[int] = NTrialsOpt,
    timeout: Optional[float] = TimeoutOpt, seed: Optional[int] = SeedOpt,
    storage: Optional[str] = StorageOpt, study_name: Optional[str] = StudyNameOpt,
    workers: int = WorkersOpt, total_trials: Optional[int] = TotalTrialsOpt,
) -> None:
    """Multi-objective search (latency, energy, silicon area): the Pareto set with the binding
    constraint of each point, a top-N table and an ASCII Pareto plot.

    Example: explore chiplet search --model llama2-70b --objectives latency,energy,area --top 10
    """
    req = _request(**locals(), set=set_ or [])
    _check_top(top)
    out = run_search(req, objectives, top, SearchOptions(search, sampler, n_trials, timeout,
                                                         seed, storage, study_name, workers,
                                                         total_trials))
    _finish(out, json_out, save_dir)


@app.command("scale")
def scale_cmd(
    series: str = typer.Option(SERIES_DEFAULT, "--series", help="comma list of MODEL:GRID"),
    die: str = DieOpt, set_: Optional[List[str]] = SetOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Weak-scaling series (§8): per model and grid the proxies (W_d, forward elements per
    token, FLOP per NoP byte) and, for Hecaton-2D and 1D TP in the §9 scenario, t_comp, t_NoP,
    their ratio and the iteration latency.

    Example: explore chiplet scale --series llama2-7b:4x4,llama2-13b:5x5,llama2-70b:8x8,llama3.1-405b:16x16
    """
    from explore.models.chiplet import validate as V
    from explore.models.chiplet.study import parse_grid
    from explore.models.errors import InputError
    pairs = []
    for item in _names(series):
        name, colon, grid = item.rpartition(":")
        if not colon or not name:
            raise InputError(f"--series {item!r}: write MODEL:GRID, e.g. llama2-70b:8x8")
        pairs.append((name, grid))
    for n, g in pairs:
        if not parse_grid(g).square:
            raise InputError(f"--series {n}:{g}: the §8 series uses square grids")
    setups = scenario_setups([n for n, _ in pairs], die, set_ or [])
    rows = V.series_rows({setups[n].work.model.name: setups[n] for n, _ in pairs},
                         tuple((setups[n].work.model.name, g) for n, g in pairs))
    out = {"study": "chiplet", "command": "scale", "series": rows}
    if json_out:
        emit_json(out)
    else:
        render_scale(out)


@app.command("validate")
def validate_cmd(
    die: str = DieOpt, set_: Optional[List[str]] = SetOpt, json_out: bool = JsonOpt,
) -> None:
    """The §9 validation: Hecaton-2D vs Megatron 1D TP on Llama2-70B / 8x8 and the weak-scaling
    series, with reference, ours, ratio and PASS/WARN/FAIL; exit code 1 if V1 or V4 fails.

    Example: explore chiplet validate
    """
    from explore.models.chiplet import validate as V
    res = validation_result(die, set_ or [])
    if json_out:
        emit_json({"study": "chiplet", "command": "validate", **res})
    else:
        render_validate(res)
    if V.hard_failures(res):
        raise typer.Exit(1)


def validation_result(die: str = DEFAULT_DIE, sets: list[str] | None = None) -> dict:
    """The §9 validation with the shipped presets (for `validate` and all-study summaries):
    rows V1-V5, sensitivities and the weak-scaling series."""
    from explore.models.chiplet import validate as V
    return V.validation(scenario_setups([n for n, _ in V.SERIES], die, sets or []))


def scenario_setups(names: list[str], die: str, sets: list[str]) -> dict:
    """§9 workload (S 4096, B 128, beta_g 4) on each model, standard/advanced, ddr5/hbm2e."""
    from explore.models.chiplet.validate import scenario_workload
    out = {}
    for name in names:
        s = _setup(ChipletRequest(model=name, die=die, set=sets), ["standard", "advanced"],
                   ["ddr5", "hbm2e"])
        out[name] = replace(s, work=scenario_workload(s.work.model))
    return out


def _check_top(top: int) -> None:
    from explore.models.errors import InputError
    if top < 1:
        raise InputError(f"--top must be >= 1, got {top}")


def _config_options(path: Path) -> dict:
    """The options of a best.yaml (study-preset shape), checked against the run flags."""
    from explore import presets
    from explore.models.errors import ConfigError
    data = presets.read_yaml(path)
    unknown = set(data) - {"description", "command", "options"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}; expected description, "
                          f"command, options")
    if data.get("command", ["chiplet", "run"]) != ["chiplet", "run"]:
        raise ConfigError(f"{path}: command {data.get('command')} is not [chiplet, run]")
    opts = {str(k).replace("-", "_"): v for k, v in (data.get("options") or {}).items()}
    allowed = set(ChipletRequest.__dataclass_fields__) - {"rect"}
    for k in opts:
        if k not in allowed:
            raise ConfigError(f"{path}: unknown option {k!r}"
                              f"{presets._did_you_mean(k, allowed)}")
    for k in ("grid", "sram", "method", "schedule", "package", "modules", "dram", "io_sides",
              "micro_batch", "recompute", "overlap"):
        if k in opts and opts[k] is not None:
            v = opts[k]
            opts[k] = ("on" if v else "off") if isinstance(v, bool) else str(v)
    return opts


def best_yaml(out: dict) -> dict:
    """A study preset that re-runs the chosen point: `explore chiplet run --config best.yaml`."""
    s, p = out["setup"], out["best"]["point"]
    options = {"model": s["model"], "grid": p["grid"], "sram": str(p["sram_mb"]),
               "method": p["method"], "schedule": p["schedule"], "package": p["package"],
               "modules": str(p["modules"]), "dram": p["dram"], "io-sides": str(p["io_sides"]),
               "micro-batch": str(p["micro_batch"]),
               "recompute": "on" if p["recompute"] else "off", "overlap": p["overlap"],
               "seq": s["seq"], "batch": s["batch"], "grad-bytes": s["grad_bytes"],
               "attention": s["attention"], "die": s["die"]}
    if s["set"]:
        options["set"] = s["set"]
    if s["chunk"]:
        options["chunk"] = s["chunk"]
    for flag, key, default in (("prefetch", "prefetch", True), ("tiling", "tiling", False),
                               ("route-dram", "route_dram", False)):
        if s[key] != default:
            options[flag] = s[key]
    if not s["regather"]:
        options["keep-x"] = True
    return {"description": f"{p['method']} on {p['grid']} for {s['model']} "
                           f"(from explore chiplet {out['command']})",
            "command": ["chiplet", "run"], "options": options}


def save(out: dict, directory: Path) -> list[Path]:
    """pareto.csv, trials.csv (every point, with infeasibility reasons), best.yaml, breakdown.csv."""
    from explore.models.chiplet.report import breakdown_rows

    from .output import prepare, write_json, write_rows, write_yaml
    directory = prepare(directory)
    written = []
    result = out.get("_result")
    if result is not None:
        from explore.models.chiplet.study import binding_name
        trials = []
        for i in range(result.n):
            r = result.row(i)
            r["binding"] = binding_name(r["binding"]) if r["feasible"] else ""
            r.setdefault("reason", "")
            trials.append(r)
        pareto = out.get("pareto") or _rows(result, result.pareto())
        for path, rows in (("trials.csv", trials), ("pareto.csv", pareto)):
            write_rows(directory / path, rows)
            written.append(directory / path)
    write_yaml(directory / "best.yaml", best_yaml(out))
    write_rows(directory / "breakdown.csv", breakdown_rows(out["best"]))
    write_json(directory / "result.json", {k: v for k, v in out.items()
                                           if not k.startswith("_")})
    return written + [directory / "best.yaml", directory / "breakdown.csv",
                      directory / "result.json", *figures(out, directory)]


def figures(out: dict, directory: Path) -> list[Path]:
    """energy_breakdown.png for the chosen point (against Megatron 1D on the same hardware)
    and, after a search, pareto_latency_energy.png with every feasible point and the choice."""
    import numpy as np

    from .output import scatter_figure, stacked_bars
    best = out["best"]
    title = _fmt_point(best["point"])
    made = [directory / "energy_breakdown.png"]
    one_d = best.get("baseline_1d", {}).get("layer-major", {})
    stacked_bars(made[0], ["chosen configuration"],
                 {e["term"]: [e["joules"] / 1e3] for e in best["energy"] if e["term"] != "E"},
                 "energy per iteration (kJ)", f"Energy per iteration by term (§7)\n{title}",
                 cap=(one_d["energy_j"] / 1e3, "Megatron 1D TP, layer-major (same hardware)")
                 if one_d.get("energy_j") else None)
    res = out.get("_result")
    if res is not None and res.feasible.sum() > 1:
        ok = [int(i) for i in np.flatnonzero(res.feasible)]
        pos = {i: k for k, i in enumerate(ok)}
        made.append(directory / "pareto_latency_energy.png")
        scatter_figure(made[-1], [float(res.metrics["latency_s"][i]) for i in ok],
                       [float(res.metrics["energy_j"][i]) / 1e3 for i in ok],
                       [pos[int(i)] for i in res.pareto() if int(i) in pos], pos.get(res.best),
                       "latency per iteration (s)", "energy per iteration (kJ)",
                       f"Feasible configurations, latency vs energy\nchosen: {title}")
    return made


def _finish(out: dict, json_out: bool, save_dir: Optional[Path]) -> None:
    files = save(out, save_dir) if save_dir else []
    public = {k: v for k, v in out.items() if not k.startswith("_")}
    if files:
        public["saved"] = [str(f) for f in files]
    if json_out:
        emit_json(public)
    else:
        render(out)
        if files:
            from .render import console
            console().print(f"saved: {', '.join(str(f) for f in files)}")


# ---- rendering -----------------------------------------------------------------------------

def _fmt_point(p: dict) -> str:
    return (f"{p['method']} on {p['grid']}, {p['sram_mb']} MB SRAM, {p['schedule']}, "
            f"{p['package']} x{p['modules']}, {p['dram']} on {p['io_sides']} sides, "
            f"B_m {p['micro_batch']}")


def render(out: dict) -> None:
    from rich.text import Text

    from explore.models.chiplet.study import METRICS

    from .render import console, key_values
    c = console()
    s, best = out["setup"], out["best"]
    labels = {m.name: m.label for m in METRICS}
    title = {"default": f"best for {labels.get(out.get('objective'), out.get('objective'))}",
             "search":
             f"Pareto search over {', '.join(out.get('objectives', []))}",
             "run": "one configuration"}[out["command"]]
    c.print(Text(f"explore chiplet: {s['model']}, S = {s['seq']}, B = {s['batch']} "
                 f"({s['tokens']:,} tokens per iteration), {title}", style="bold"))
    if "search" in out:
        se = out["search"]
        c.print(key_values("Search", [
            ("space", f"{se['space_size']:,} configurations ({se['engine']})"),
            ("evaluated", f"{se['evaluated']:,} in {se['elapsed_s']:.2f} s; "
                          f"{se['feasible']:,} feasible, {se['infeasible']:,} infeasible")]))
    if out["defaults"]:
        c.print(key_values("Defaults used", [("", n) for n in out["defaults"]]))
    _render_point(best)
    if out["command"] == "search":
        _render_pareto(out)
    if out.get("top"):
        c.print(_top_table(out["top"], f"Top {len(out['top'])}"
                           + (f" by {out['objective']}" if "objective" in out else "")))
    from rich.markup import escape   # sources say "[design]": text, not Rich markup
    prov = s["provenance"]["die"]
    c.print(key_values("Hardware provenance (die; `explore presets show NAME` for the rest)",
                       [(k, escape(v)) for k, v in prov.items() if k != "name"]))


def _render_point(rep: dict) -> None:
    from .render import console, key_values, si, table
    c = console()
    p = rep["point"]
    sm = rep["summary"]
    rows = [("configuration", _fmt_point(p)),
            ("latency / iteration", f"{sm['latency_s']:.2f} s",
             f"{sm['tokens_per_s']:,.0f} tokens/s"),
            ("energy / iteration", f"{sm['energy_j'] / 1e3:.1f} kJ",
             f"{sm['j_per_token'] * 1e3:.2f} mJ/token"),
            ("silicon area", f"{sm['area_mm2']:,.0f} mm²"),
            ("binding constraint", rep["binding"]),
            ("compute / NoP", f"{sm['t_comp_over_t_nop']:.2f}" if sm["t_comp_over_t_nop"]
             else "-", "t_comp / t_NoP over the iteration"),
            ("on-chip chunk T_c", f"{sm['chunk']:.0f} tokens")]
    if "baseline_1d" in rep:
        for sched, b in rep["baseline_1d"].items():
            rows.append((f"vs Megatron 1D ({sched})",
                         f"{b['latency_ratio']:.2f}x faster, {b['energy_ratio']:.2f}x less "
                         f"energy", f"1D on the same hardware: {b['latency_s']:.1f} s, "
                                    f"{b['energy_j'] / 1e3:.1f} kJ, binding {b['binding']}"
                         + (f"; infeasible there ({b['reason']}), costed as if it ran"
                            if b["reason"] else "")))
    c.print(key_values("Configuration", rows))
    for n in rep["notes"]:
        c.print(f"[dim]note: {n}[/]")
    lat = [x for x in rep["latency"] if x["term"] in ("t_comp", "t_nop", "t_dram", "t_io",
                                                       "t_phase", "t_mem", "t_iter")]
    c.print(table("Latency per iteration (bottleneck die)",
                  ["phase", "term", "per layer (ms)", "total (s)", "source"],
                  [[x["phase"], x["term"], "" if x["per_layer_s"] is None else
                    f"{x['per_layer_s'] * 1e3:.2f}", f"{x['total_s']:.3f}", x["equation"]]
                   for x in lat], right=(2, 3)))
    tot = rep["energy"][-1]["joules"]
    c.print(table("Energy per iteration", ["term", "energy (kJ)", "share", "source", "detail"],
                  [[e["term"], f"{e['joules'] / 1e3:.2f}", f"{e['joules'] / tot:.1%}",
                    e["equation"], e["detail"]] for e in rep["energy"]], right=(1, 2)))
    c.print(table("DRAM traffic per iteration", ["category", "bytes"],
                  [[d["category"], si(d["bytes"], "B")] for d in rep["dram"]], right=(1,)))
    c.print(table("SRAM per die", ["item", "MB", "source"],
                  [[x["item"], f"{x['bytes'] / 1e6:.2f}", x["equation"]] for x in rep["sram"]],
                  right=(1,)))


def _short(r: dict) -> str:
    sched = "LM" if r["schedule"] == "layer-major" else "MBM"
    return (f"{r['method']} {r['grid']} {r['sram_mb']}MB {sched} {r['package']}x{r['modules']} "
            f"{r['dram']}/{r['io_sides']} Bm{r['micro_batch']}")


def _top_table(rows: list[dict], title: str):
    from explore.models.chiplet.study import METRICS

    from .render import metric_headers, table
    shown = [m for m in METRICS if m.name in ("latency_s", "energy_j", "area_mm2", "t_comp_s",
                                               "t_nop_s", "t_dram_s", "e_static_j")]
    return table(title, ["#", "configuration", *metric_headers(shown), "binding"],
                 [[str(k), _short(r), *[m.show(r[m.name]) for m in shown], r["binding"]]
                  for k, r in enumerate(rows, 1)], right=tuple(range(2, 2 + len(shown))),
                 caption="configuration: method grid SRAM schedule (LM layer-major, MBM "
                         "micro-batch-major) package x modules DRAM/I/O sides B_m")


def _render_pareto(out: dict) -> None:
    import numpy as np

    from .render import console, scatter
    c = console()
    c.print(_top_table(out["pareto"][:40], f"Pareto set ({len(out['pareto'])} points over "
                                           f"{', '.join(out['objectives'])})"))
    res = out["_result"]
    ok = [int(i) for i in np.flatnonzero(res.feasible)]
    pos = {i: k for k, i in enumerate(ok)}
    c.print(f"Latency vs energy of the feasible points (chosen: "
            f"{_fmt_point(out['best']['point'])})")
    c.print(scatter([float(res.metrics["latency_s"][i]) for i in ok],
                    [float(res.metrics["energy_j"][i]) / 1e3 for i in ok],
                    [pos[int(i)] for i in res.pareto() if int(i) in pos], pos.get(res.best),
                    xlabel="latency per iteration (s)", ylabel="energy per iteration (kJ)"))


def render_scale(out: dict) -> None:
    from .render import console, table
    rows = out["series"]
    c = console()
    c.print(table(
        "Weak scaling: §8 proxies (linears only, bf16; elements per token per die per layer)",
        ["model", "grid", "P_layer", "W_d (MB)", "Hecaton fwd", "Hecaton bwd", "1D fwd",
         "1D : Hecaton", "R_hec (FLOP/B)", "R_1D (FLOP/B)", "buf/token Hec:1D (B)"],
        [[r["model"], r["grid"], f"{r['p_layer']:,}", f"{r['w_d_bytes'] / 1e6:.2f}",
          f"{r['hecaton_fwd_per_token']:,.1f}", f"{r['hecaton_bwd_per_token']:,.1f}",
          f"{r['one_d_fwd_per_token']:,.1f}", f"{r['ratio']:.3f}", f"{r['r_hec']:.1f}",
          f"{r['r_1d']:.1f}", f"{r['hecaton_buf_bytes']:,.0f} : {r['one_d_buf_bytes']:,.0f}"]
         for r in rows], right=tuple(range(2, 11))))
    c.print(table(
        "Weak scaling: times per iteration (§9 scenario: layer-major, overlap = max)",
        ["model", "grid", "Hec t_comp (s)", "Hec t_NoP (s)", "Hec comp/NoP", "Hec latency (s)",
         "1D t_comp (s)", "1D t_NoP (s)", "1D comp/NoP", "1D latency (s)", "1D : Hec"],
        [[r["model"], r["grid"], f"{r['hecaton_t_comp_s']:.1f}", f"{r['hecaton_t_nop_s']:.1f}",
          f"{r['hecaton_comp_over_nop']:.3f}", f"{r['hecaton_latency_s']:.1f}",
          f"{r['one_d_t_comp_s']:.1f}", f"{r['one_d_t_nop_s']:.1f}",
          f"{r['one_d_comp_over_nop']:.3f}", f"{r['one_d_latency_s']:.1f}",
          f"{r['latency_ratio']:.2f}x"] for r in rows], right=tuple(range(2, 11))))
    for r in rows:
        for n in r["notes"]:
            c.print(f"[dim]note: {r['model']}/{r['grid']}: {n}[/]")


def check_rows(rows: list[dict]) -> list[dict]:
    """§9 rows in the shape every validate table uses (check, reference, ours, error,
    tolerance, status, source)."""
    def show(v):
        return f"{v:.3g}x" if isinstance(v, float) else str(v)
    return [{"check": f"{r['id']}: {r['check']}", "reference": show(r["reference"]),
             "ours": show(r["ours"]),
             "error": f"ours/ref {r['ratio']:.2f}" if isinstance(r["reference"], float) else None,
             "tolerance": r["rule"], "status": r["status"], "source": r["source"]}
            for r in rows]


def render_validate(res: dict) -> None:
    from .render import checks_table, console, table
    c = console()
    c.print(checks_table("Validation against the Hecaton abstract (docs/chiplet.md §9)",
                         check_rows(res["rows"])))
    c.print(table("Sensitivities (Llama2-70B, 8x8; ratios = 1D / Hecaton)",
                  ["case", "latency (vs 1D layer-major)", "energy", "latency (vs ported)",
                   "energy (vs ported)", "Hec comp/NoP", "1D comp/NoP", "Hec binding",
                   "1D binding"],
                  [[x["case"], f"{x['latency_ratio']:.2f}x", f"{x['energy_ratio']:.2f}x",
                    f"{x['latency_ratio_ported']:.2f}x", f"{x['energy_ratio_ported']:.2f}x",
                    f"{x['hecaton_comp_over_nop']:.2f}", f"{x['one_d_comp_over_nop']:.2f}",
                    x["hecaton_binding"], x["one_d_binding"]] for x in res["sensitivities"]],
                  right=(1, 2, 3, 4, 5, 6)))
    render_scale({"series": res["series"]})
    for n in res["notes"]:
        c.print(f"[dim]note: {n}[/]")
