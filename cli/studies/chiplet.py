"""`explore chiplet`: its option groups, the request they form, the setup and search space built
from it, and the best.yaml that re-runs a chosen point. No Typer here: tests and benchmarks build
chiplet studies from this module.

The space's defaults are the model's (models/chiplet/study.py `default_values`, the §10 space);
`run`'s are the §9 scenario (models/chiplet/validate.py `scenario_point`). The help texts name
them; tests/test_cli_chiplet.py checks that they say what the models do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, List, Optional

from explore.models.spec import AT_LEAST_1

from ..common import SearchOptions
from ..options import Use, file_value, option

DEFAULT_MODEL = "llama2-70b"
DEFAULT_DIE = "die-7nm"
SCHEDULE_ALIASES = {"lm": "layer-major", "layer": "layer-major", "mbm": "micro-batch-major",
                    "micro-batch": "micro-batch-major"}


def _shown(value: Any) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" \
        if isinstance(value, float) else str(value)


def _named(default: Any, *flags: str, **kw: Any) -> Any:
    """An option whose default the help names when a command starts it at None (`run`, where
    an option not given comes from --config first)."""
    return option(default, *flags, default_text=kw.pop("default_text", _shown(default)), **kw)


# ---- option groups ---------------------------------------------------------------------------

@dataclass
class ChipletWorkload:
    """What is trained: the model and the tokens of one iteration."""
    PANEL: ClassVar[str] = "Workload"
    model: Optional[str] = _named(DEFAULT_MODEL, "--model", "-m", help="model preset or a "
                                  "Hugging Face config.json path")
    seq: Optional[int] = _named(4096, "--seq", help="sequence length S", unit="tokens")
    batch: Optional[int] = _named(128, "--batch", help="global batch B",
                                  unit="sequences per iteration")
    grad_bytes: Optional[float] = _named(4.0, "--grad-bytes", help="bytes per "
                                         "gradient-accumulator element beta_g (4 = fp32, "
                                         "2 = bf16)")
    attention: Optional[str] = _named("causal", "--attention", help="causal (skips masked "
                                      "blocks, c = 0.5) or full (c = 1)")
    number_format: Optional[str] = _named("bf16", "--format", help="number format of weights, "
                                          "activations and MACs: one the die preset lists "
                                          "under formats (shipped dies: bf16)")


@dataclass
class ChipletHardware:
    """The compute die and changes to any preset."""
    PANEL: ClassVar[str] = "Hardware presets"
    die: Optional[str] = _named(DEFAULT_DIE, "--die", help="compute-die preset or YAML file")
    set: Optional[List[str]] = option(None, "--set", help="override a preset field, e.g. "
                                      "die.f=1.5GHz, package.router_latency=10ns, dram.eta=0.9 "
                                      "(repeatable)")


@dataclass
class ChipletSpace:
    """The searched configurations: each option one value, a comma list or (numbers) a range;
    not given, the §10 space."""
    PANEL: ClassVar[str] = "Design space: one value, a comma list or (numbers) A-B[:STEP]"
    grid: Optional[str] = option(None, "--grid", help="compute-die grid ROWSxCOLS (8x8; 8×8 "
                                 "accepted)", default_text="square grids 4x4..16x16")
    rect: bool = option(False, "--rect", help="search rectangular grids N1 x N2 too")
    sram: Optional[str] = option(None, "--sram", ints=1, help="SRAM per die", unit="MB",
                                 default_text="16,32,48,64,96,128,192,256")
    method: Optional[str] = option(None, "--method", help="parallel method: 1d, 1d-bi, 2d, "
                                   "2.5d-qQ, 3d, hecaton2d", default_text="all that fit the grid")
    schedule: Optional[str] = option(None, "--schedule", help="DRAM schedule: layer-major (lm) "
                                     "or micro-batch-major (mbm)", default_text="both")
    package: Optional[str] = option(None, "--package", help="D2D package preset or YAML file",
                                    default_text="standard,advanced")
    modules: Optional[str] = option(None, "--modules", ints=1, help="UCIe modules per port",
                                    default_text="1-4")
    dram: Optional[str] = option(None, "--dram", help="DRAM preset or YAML file (also "
                                 "hbm3e-beside: HBM stacks next to the edge dies)",
                                 default_text="ddr5,hbm2e")
    io_sides: Optional[str] = option(None, "--io-sides", help="I/O dies on 2 or 4 sides",
                                     default_text="2,4")
    micro_batch: Optional[str] = option(None, "--micro-batch", ints=1, help="micro-batch B_m, "
                                        "dividing B", unit="sequences",
                                        default_text="every divisor of B")
    recompute: Optional[str] = option(None, "--recompute", help="full recomputation: on, off "
                                      "or both", default_text="on")
    overlap: Optional[str] = option(None, "--overlap", help="max (compute, NoP and DRAM "
                                    "overlap), none or both", default_text="max")


# `run` evaluates the §9 scenario unless told otherwise (SRAM: the die preset's size)
RUN_POINT_TEXT = {"grid": "8x8", "sram": "the die preset's", "method": "hecaton2d",
                  "schedule": "layer-major", "package": "standard", "modules": "1",
                  "dram": "ddr5", "io_sides": "2", "micro_batch": "8", "recompute": "on",
                  "overlap": "max"}


POINT_PANEL = "Configuration: one value each (default: the §9 scenario)"


def _one_point(space: type, default_text: dict[str, str]) -> type:
    """The space's options taking one value each (the same flags and help), with the
    defaults `default_text` names."""
    made = []
    for f in dataclasses.fields(space):
        if f.name in default_text:
            m = f.metadata
            made.append((f.name, Optional[str],
                         option(None, *m["flags"], help=m["help"], unit=m["unit"],
                                default_text=default_text[f.name])))
    return dataclasses.make_dataclass(
        "ChipletPoint", made, namespace={
            "PANEL": POINT_PANEL,
            "__doc__": "One configuration of the space (`explore chiplet run`)."})


ChipletPoint = _one_point(ChipletSpace, RUN_POINT_TEXT)
ChipletPoint.__module__ = __name__


@dataclass
class ChipletConfig:
    """A chosen point to re-run (`run`)."""
    PANEL: ClassVar[str] = POINT_PANEL
    config: Optional[Path] = option(None, "--config", help="a best.yaml from --save-dir (flags "
                                    "given here override it)")


@dataclass
class ChipletModelOptions:
    """Switches of the cost model."""
    PANEL: ClassVar[str] = "Model options"
    chunk: Optional[int] = option(None, "--chunk", help="on-chip token chunk T_c",
                                  unit="tokens", default_text="256, the smallest §6 allows: "
                                  "shortest pipeline fill")
    prefetch: Optional[bool] = _named(True, "--prefetch/--no-prefetch", help="double-buffer "
                                      "the next weight shard (delta_pf)")
    tiling: Optional[bool] = _named(False, "--tiling/--no-tiling", help="PE-array tiling "
                                    "efficiency per GEMM (§7)")
    route_dram: Optional[bool] = _named(True, "--route-dram/--no-route-dram", help="DRAM "
                                        "flows from the edge I/O dies also load the mesh links "
                                        "they cross (§6; off: a separate memory network)")
    keep_x: Optional[bool] = _named(False, "--keep-x/--regather", help="Hecaton-2D keeps "
                                    "gathered inputs for the backward instead of re-gathering "
                                    "them", default_text="re-gather")


@dataclass
class ChipletGoal:
    """What the default command ranks by."""
    PANEL: ClassVar[str] = "Objective"
    objective: str = option("latency", "--objective", help="latency, energy, area, edp, "
                            "throughput or j/token")


@dataclass
class ChipletGoals:
    """What `search` finds the Pareto set of."""
    PANEL: ClassVar[str] = "Objective"
    objectives: str = option("latency,energy,area", "--objectives", help="comma list of "
                             "latency, energy, area, edp, throughput, j/token")


@dataclass
class ChipletRanking:
    """How many ranked rows the tables show."""
    PANEL: ClassVar[str] = "Output"
    top: int = option(10, "--top", range=AT_LEAST_1, help="rows in the ranking table")


@dataclass
class ChipletView:
    """How much detail the tables show."""
    PANEL: ClassVar[str] = "Output"
    wide: bool = option(False, "--wide", help="wide tables for 120+ columns: every latency "
                        "term with per-layer and total times, the time and static-energy "
                        "columns of the rankings, every §8 proxy, the numbers behind each "
                        "energy term")
    energy_ranges: bool = option(False, "--energy-ranges", help="how the best point's energy "
                                 "ratio against the one-way 1D ring moves with each energy "
                                 "constant at the ends of its literature range "
                                 "(docs/research/chiplet-energy.md)")


@dataclass
class ChipletSeries:
    """The (model, grid) pairs of `scale`."""
    PANEL: ClassVar[str] = "Workload"
    series: Optional[str] = option(None, "--series", help="comma list of MODEL:GRID (square "
                                   "grids)", default_text="the §8 series llama2-7b:4x4,"
                                   "llama2-13b:5x5,llama2-70b:8x8,llama3.1-405b:16x16")


def unset(group: type) -> Use:
    """`group` with every option starting at None (not given)."""
    return Use(group, **{f.name: None for f in dataclasses.fields(group) if f.metadata})


@dataclass
class ChipletRequest:
    """Everything `explore chiplet` (default, search, run) is asked, before defaults are
    filled in."""
    work: ChipletWorkload = field(default_factory=ChipletWorkload)
    hw: ChipletHardware = field(default_factory=ChipletHardware)
    space: ChipletSpace = field(default_factory=ChipletSpace)
    model_options: ChipletModelOptions = field(default_factory=ChipletModelOptions)
    search: SearchOptions = field(default_factory=SearchOptions)
    ranking: ChipletRanking = field(default_factory=ChipletRanking)


# ---- request -> setup and space -------------------------------------------------------------

def _names(text: Any) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def setup(req: ChipletRequest, packages: list[str] | tuple[str, ...],
          drams: list[str] | tuple[str, ...]):
    """Presets and workload -> ChipletSetup; --set overrides applied with strict keys."""
    from explore import presets
    from explore.models.chiplet.cost import Workload
    from explore.models.chiplet.study import ChipletSetup
    from explore.models.errors import ConfigError, InputError

    w, mo = req.work, req.model_options
    # None only before defaults are filled in: the default and `search` commands start these
    # options at their defaults and `run_request` fills in the ones `run` is not given
    assert w.model is not None and req.hw.die is not None
    model = presets.load("model", w.model)
    die = presets.load("die", req.hw.die)
    pkgs = {}
    for ref in packages:
        p = presets.load("package", ref)
        pkgs[p.name] = p
    drs = {}
    for ref in drams:
        d = presets.load("dram", ref)
        drs[d.name] = d
    changes: dict[str, dict[str, str]] = {"die": {}, "package": {}, "dram": {}}
    for item in req.hw.set or []:
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
    if w.number_format and w.number_format != "bf16":
        from dataclasses import replace
        die = die.in_format(w.number_format)
        model = replace(model, weight_format=die.number_format)
    if w.attention not in ("causal", "full"):
        raise InputError(f"--attention {w.attention!r}: choose causal or full")
    assert w.seq is not None and w.batch is not None and w.grad_bytes is not None
    assert mo.prefetch is not None and mo.tiling is not None and mo.route_dram is not None
    work = Workload(model, seq=w.seq, batch=w.batch, grad_bytes=w.grad_bytes,
                    causal=0.5 if w.attention == "causal" else 1.0, prefetch=mo.prefetch,
                    tiling=mo.tiling, route_dram=mo.route_dram, regather=not mo.keep_x,
                    chunk=mo.chunk)
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


def _flag(name: str) -> str:
    """A space parameter's flag (sram_mb is --sram)."""
    fields_ = {f.name: f for f in dataclasses.fields(ChipletSpace)}
    return fields_["sram" if name == "sram_mb" else name].metadata["flags"][0]


def build(req: ChipletRequest, single: bool = False):
    """Request -> (setup, space values, notes on defaults). single: one configuration (`run`),
    every option not given taken from the §9 scenario."""
    from explore.models.chiplet import methods, study
    from explore.models.chiplet.validate import scenario_point
    from explore.models.errors import InputError

    from ..common import parse_int_range

    notes: list[str] = []
    given = dataclasses.asdict(req.space)
    if single:
        scenario = {("sram" if k == "sram_mb" else k): _shown(v)
                    for k, v in scenario_point("8x8").items() if k != "sram_mb"}
        given = {k: scenario[k] if v is None and k in scenario else v for k, v in given.items()}
    elif given["grid"] is None:
        notes.append("grid searched over square grids 4x4..16x16" + (
            " and rectangles" if req.space.rect else "") + "; fix it with --grid")
    s = setup(req, _names(given["package"]) if given["package"] else study.PACKAGES,
              _names(given["dram"]) if given["dram"] else study.DRAMS)
    values = study.default_values(s, _names(given["grid"]) if given["grid"] else None,
                                  req.space.rect)
    if given["method"] not in (None, "all"):
        values["method"] = tuple(dict.fromkeys(methods.parse_method(m).label
                                               for m in _names(given["method"])))
    if given["sram"]:
        values["sram_mb"] = parse_int_range(given["sram"], "--sram")
    elif single:
        values["sram_mb"] = (int(round(s.die.sram / 1e6)),)
        notes.append(f"SRAM {values['sram_mb'][0]} MB per die: the {s.die.name} preset")
    w = s.work
    if given["micro_batch"]:
        values["micro_batch"] = parse_int_range(given["micro_batch"], "--micro-batch")
        bad = [b for b in values["micro_batch"] if w.batch % b]
        if bad:
            raise InputError(f"--micro-batch {given['micro_batch']!r}: {bad[0]} does not "
                             f"divide the batch B = {w.batch}")
    if given["recompute"]:
        rec = {"on": (True,), "off": (False,), "both": (True, False)}.get(
            str(given["recompute"]).lower())
        if rec is None:
            raise InputError(f"--recompute {given['recompute']!r}: choose on, off or both")
        values["recompute"] = rec
    if given["schedule"]:
        values["schedule"] = _choice(given["schedule"], study.SCHEDULES, "--schedule",
                                     SCHEDULE_ALIASES)
    if given["modules"]:
        values["modules"] = parse_int_range(given["modules"], "--modules")
    if given["io_sides"]:
        values["io_sides"] = tuple(int(x) for x in _choice(given["io_sides"], ("2", "4"),
                                                           "--io-sides"))
    if given["overlap"]:
        values["overlap"] = _choice(given["overlap"], study.OVERLAPS, "--overlap")
    if single:
        many = [k for k, v in values.items() if len(v) != 1]
        if many:
            raise InputError(f"`run` evaluates one configuration; give one value for "
                             f"{', '.join(_flag(k) for k in many)} "
                             f"(or use `explore chiplet search`)")
    return s, values, notes


def info(req: ChipletRequest, s) -> dict:
    """The setup as the JSON output and best.yaml record it."""
    w = s.work
    return {"model": w.model.name, "seq": w.seq, "batch": w.batch, "tokens": w.tokens,
            "grad_bytes": w.grad_bytes, "attention": req.work.attention, "die": s.die.name,
            "packages": list(s.packages), "drams": list(s.drams),
            "prefetch": w.prefetch, "tiling": w.tiling, "route_dram": w.route_dram,
            "regather": w.regather, "chunk": w.chunk, "set": list(req.hw.set or []),
            "provenance": provenance(s)}


def provenance(s) -> dict:
    """Where each hardware number comes from (the presets' `sources`)."""
    return {"die": {"name": s.die.name, **s.die.sources},
            "packages": {k: v.sources for k, v in s.packages.items()},
            "drams": {k: v.sources for k, v in s.drams.items()}}


def objectives(text: str) -> list[str]:
    """--objective(s) aliases -> metric names."""
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


def result_rows(result, indices) -> list[dict]:
    """Rows of a search result with the binding constraint named (or why it is infeasible)."""
    from explore.models.chiplet.study import binding_name
    out = []
    for i in indices:
        r = result.row(int(i))
        r["binding"] = binding_name(r["binding"]) if r.get("feasible") else \
            (r.get("reason", "").split(":")[0] or "infeasible")
        out.append(r)
    return out


# ---- `run`: one point, from flags and a best.yaml ---------------------------------------------

RUN_GROUPS = (ChipletWorkload, ChipletHardware, ChipletPoint, ChipletModelOptions)


def run_request(work: ChipletWorkload, hw: ChipletHardware, point, model_options:
                ChipletModelOptions, config: Optional[Path] = None) -> ChipletRequest:
    """`run`'s request: each option as given, else from the --config best.yaml, else its
    default (the point's: None, the §9 scenario filled in by `build`)."""
    base = config_options(config) if config else {}

    def filled(given):
        return type(given)(**{f.name: (getattr(given, f.name)
                                       if getattr(given, f.name) not in (None, [])
                                       else base.get(f.name, f.default))
                              for f in dataclasses.fields(given)})
    return ChipletRequest(work=filled(work), hw=filled(hw),
                          space=ChipletSpace(**dataclasses.asdict(filled(point))),
                          model_options=filled(model_options))


def config_options(path: Path) -> dict:
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
    allowed = {f.name for g in RUN_GROUPS for f in dataclasses.fields(g)}
    for k, v in opts.items():
        if k not in allowed:
            raise ConfigError(f"{path}: unknown option {k!r}"
                              f"{presets._did_you_mean(k, allowed)}")
        if v is None:     # "seq:" with nothing after it: say so instead of failing later
            raise ConfigError(f"{path}: option {k!r} has no value; give one or drop the key")
    for k in (f.name for f in dataclasses.fields(ChipletPoint)):
        if k in opts and opts[k] is not None:
            v = opts[k]
            opts[k] = ("on" if v else "off") if isinstance(v, bool) else str(v)
    groups = {f.name: g for g in RUN_GROUPS for f in dataclasses.fields(g)}
    return {k: file_value(groups[k], k, v, str(path)) for k, v in opts.items()}


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
                               ("route-dram", "route_dram", True)):
        if s[key] != default:
            options[flag] = s[key]
    if not s["regather"]:
        options["keep-x"] = True
    return {"description": f"{p['method']} on {p['grid']} for {s['model']} "
                           f"(from explore chiplet {out['command']})",
            "command": ["chiplet", "run"], "options": options}


# ---- §8 series and §9 validation ---------------------------------------------------------------

def series_pairs(text: Optional[str]) -> list[tuple[str, str]]:
    """--series MODEL:GRID,... -> [(model, grid)]; None: the §8 series."""
    from explore.models.chiplet.study import parse_grid
    from explore.models.chiplet.validate import SERIES
    from explore.models.errors import InputError
    if text is None:
        return list(SERIES)
    pairs = []
    for item in _names(text):
        name, colon, grid = item.rpartition(":")
        if not colon or not name:
            raise InputError(f"--series {item!r}: write MODEL:GRID, e.g. llama2-70b:8x8")
        pairs.append((name, grid))
    for n, g in pairs:
        if not parse_grid(g).square:
            raise InputError(f"--series {n}:{g}: the §8 series uses square grids")
    return pairs


def scenario_setups(names: list[str], die: Optional[str], sets: list[str]) -> dict:
    """The §9 workload (S 4096, B 128, beta_g 4) on each model, with the §10 packages and
    DRAMs."""
    from explore.models.chiplet.study import DRAMS, PACKAGES
    from explore.models.chiplet.validate import scenario_setup
    return {name: scenario_setup(setup(ChipletRequest(
        work=ChipletWorkload(model=name), hw=ChipletHardware(die=die or DEFAULT_DIE, set=sets)),
        PACKAGES,
        DRAMS)) for name in names}


def validation_result(die: Optional[str] = DEFAULT_DIE, sets: list[str] | None = None) -> dict:
    """The §9 validation with the shipped presets, the one every chiplet validation path
    calls (`chiplet validate`, `validate chiplet`, the all-study summary): rows V1-V5,
    sensitivities and the weak-scaling series."""
    from explore.models.chiplet import validate as V
    return V.validation(scenario_setups([n for n, _ in V.SERIES], die, sets or []))
