"""The `chiplet` study for the search engine: a setup (workload + hardware presets), a space of
configurations (§10), a vectorised `evaluate`, and the per-configuration report as plain data."""

from __future__ import annotations

import dataclasses

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from explore.search.space import Param, Space
from explore.search.study import Evaluation, Metric, Objective

from ..errors import InputError
from ..units import MB
from . import cost, methods
from . import mesh as nop
from .hardware import DieSpec

SCHEDULES = ("layer-major", "micro-batch-major")
OVERLAPS = ("max", "none")
SRAM_MB = (16, 32, 48, 64, 96, 128, 192, 256)
GRID_SIDES = tuple(range(4, 17))
MAX_SIDE = 128                          # dies per grid side (--grid); costs grow ~P log P
MODULES = (1, 2, 3, 4)                  # UCIe modules per port
IO_SIDES = (2, 4)
PACKAGES = ("standard", "advanced")     # the package and DRAM presets §10 searches
DRAMS = ("ddr5", "hbm2e")
PARAMS = ("grid", "sram_mb", "method", "schedule", "package", "modules", "dram", "io_sides",
          "micro_batch", "recompute", "overlap")
CONSTRAINTS = ("layout", "sram", "dram_capacity", "shoreline")

METRICS = (
    Metric("latency_s", "latency/iter", "s", fmt=".2f"),
    Metric("energy_j", "energy/iter", "kJ", scale=1e-3, fmt=".1f"),
    Metric("area_mm2", "silicon area", "mm²", fmt=",.0f"),
    Metric("tokens_per_s", "throughput", "tok/s", fmt=",.0f"),
    Metric("j_per_token", "energy/token", "mJ", scale=1e3, fmt=".1f"),
    Metric("edp", "EDP", "MJ·s", scale=1e-6, fmt=".2f"),
    Metric("t_comp_s", "compute", "s", fmt=".1f"),
    Metric("t_nop_s", "NoP", "s", fmt=".1f"),
    Metric("t_dram_s", "DRAM", "s", fmt=".1f"),
    Metric("t_io_s", "I/O links", "s", fmt=".1f"),
    Metric("e_static_j", "static E", "kJ", scale=1e-3, fmt=".1f"),
    Metric("dram_bytes", "DRAM traffic", "TB", scale=1e-12, fmt=".2f"),
    Metric("sram_need_bytes", "SRAM used", "MB", scale=1e-6, fmt=".1f"),
    Metric("chunk", "T_c", "tokens", fmt=".0f"),
    Metric("binding", "binding", ""),
)
METRIC_NAMES = tuple(m.name for m in METRICS) + (
    "e_mac_j", "e_sram_j", "e_nop_j", "e_dram_j", "resident")
OBJECTIVES = (Objective("latency_s", "minimize"), Objective("energy_j", "minimize"),
              Objective("area_mm2", "minimize"), Objective("edp", "minimize"),
              Objective("tokens_per_s", "maximize"), Objective("j_per_token", "minimize"))
OBJECTIVE_ALIASES = {"latency": "latency_s", "energy": "energy_j", "area": "area_mm2",
                     "edp": "edp", "throughput": "tokens_per_s", "tokens/s": "tokens_per_s",
                     "j/token": "j_per_token", "energy/token": "j_per_token"}


def parse_grid(text: str) -> nop.Mesh:
    """'8x8', '8X4', '8*8' or '8×8' (the multiplication sign) -> Mesh; InputError otherwise."""
    t = str(text).strip()
    m = re.fullmatch(r"(\d+)\s*[xX×*]\s*(\d+)", t)
    if not m:
        raise InputError(f"grid {text!r}: write ROWSxCOLS with two positive integers, e.g. 8x8")
    rows, cols = int(m.group(1)), int(m.group(2))
    if not (2 <= rows <= MAX_SIDE and 2 <= cols <= MAX_SIDE):
        raise InputError(f"grid {text!r}: each dimension must be between 2 and {MAX_SIDE} dies")
    return nop.Mesh(rows, cols)


def binding_name(code: float) -> str:
    return cost.BINDING[int(code)] if np.isfinite(code) else "-"


@dataclass(frozen=True)
class ChipletSetup:
    work: cost.Workload
    die: DieSpec
    packages: dict          # name -> PackageSpec
    drams: dict             # name -> DramSpec


class ChipletStudy:
    """Configurations (grid, SRAM, method, schedule, package, DRAM, micro-batch, ...) of one
    workload; `evaluate` groups points by (grid, method, attention layout) so each group shares
    one cached plan and is costed with numpy."""
    name = "chiplet"
    metrics = METRICS
    objectives = OBJECTIVES
    exhaustive_limit = 1_000_000     # ~200,000 configurations/s: the whole §10 space in seconds
    tie_breakers = (Objective("energy_j", "minimize"), Objective("area_mm2", "minimize"))

    def __init__(self, setup: ChipletSetup, values: dict[str, tuple]):
        missing = [p for p in PARAMS if p not in values]
        if missing:
            raise InputError(f"chiplet space lacks {', '.join(missing)}")
        self.setup = setup
        for name in values["package"]:
            if name not in setup.packages:
                raise InputError(f"package {name!r} is not loaded")
        for name in values["dram"]:
            if name not in setup.drams:
                raise InputError(f"dram {name!r} is not loaded")
        labels = {"grid": ("grid", "dies"), "sram_mb": ("SRAM per die", "MB"),
                  "method": ("parallel method", ""), "schedule": ("DRAM schedule", ""),
                  "package": ("D2D package", ""), "modules": ("modules per port", ""),
                  "dram": ("DRAM", ""), "io_sides": ("I/O sides", ""),
                  "micro_batch": ("micro-batch B_m", "seq"), "recompute": ("recompute", ""),
                  "overlap": ("overlap", "")}
        self.space = Space(tuple(Param(p, tuple(values[p]), *labels[p]) for p in PARAMS))

    def fingerprint(self) -> dict:
        """The fixed inputs: a stored search resumes only with the same ones."""
        return dataclasses.asdict(self.setup)

    # ---- evaluation ----------------------------------------------------------------------
    def evaluate(self, points: dict[str, np.ndarray]) -> Evaluation:
        raw = evaluate_points(self.setup, points)
        metrics = {k: raw[k] for k in METRIC_NAMES}
        violations = {c: raw[f"violation_{c}"] for c in CONSTRAINTS}
        return Evaluation(metrics, violations, raw["reason"])


def evaluate_points(s: ChipletSetup, points: dict) -> dict[str, np.ndarray]:
    """Every term of cost.evaluate for each point (arrays of the PARAMS), plus 'reason'
    (infeasible points) and 'notes' (layout remarks)."""
    w = s.work
    n = len(points["grid"])
    grid = np.asarray(points["grid"]).astype(str)
    method = np.asarray(points["method"]).astype(str)
    bm = np.asarray(points["micro_batch"]).astype(int)
    if np.any(bm < 1) or np.any(w.batch % bm):
        bad = sorted(set(bm[(bm < 1) | (w.batch % np.maximum(bm, 1) != 0)].tolist()))
        raise InputError(f"micro-batch {bad} must divide the batch B = {w.batch}")
    pts = _hardware(s, points)
    meshes = {g: parse_grid(g) for g in np.unique(grid)}
    meths = {m: methods.parse_method(m) for m in np.unique(method)}
    pair, inv = np.unique(np.char.add(np.char.add(grid, "|"), method), return_inverse=True)
    split = np.array([_split(meshes, meths, *k.split("|")) for k in pair])[inv]
    whole = bm % split == 0
    key = np.char.add(np.char.add(np.char.add(grid, "|"), method),
                      np.where(whole, "|w", "|p"))
    keys, inverse = np.unique(key, return_inverse=True)
    out: dict[str, np.ndarray] = {}
    notes = np.empty(n, dtype=object)
    reasons = np.full(n, "", dtype=object)
    for k, name in enumerate(keys):
        idx = np.flatnonzero(inverse == k)
        g, m, wh = name.split("|")
        layers = layer_plans(w, meths[m], meshes[g], wh == "w")
        sub = cost.evaluate(w, s.die, layers, cost.Points(
            **{f: getattr(pts, f)[idx] for f in cost.Points.__dataclass_fields__}))
        for key_, arr in sub.items():
            if key_ not in out:
                out[key_] = np.full(n, np.nan)
            out[key_][idx] = arr
        notes[idx] = "; ".join(dict.fromkeys(x for _, plan in layers for x in plan.notes))
        reasons[idx] = next((plan.reason for _, plan in layers if plan.reason), "")
    for c in CONSTRAINTS:
        out.setdefault(f"violation_{c}", np.full(n, -1.0))
        out[f"violation_{c}"] = np.nan_to_num(out[f"violation_{c}"], nan=-1.0)
    for metric in METRIC_NAMES:
        out.setdefault(metric, np.full(n, np.nan))
    out["binding"] = np.where(out["violation_layout"] > 0, 6.0, out["binding"])
    _reasons(out, reasons, pts)
    out["reason"] = reasons
    out["notes"] = notes
    return out


def layer_plans(w: cost.Workload, method: methods.Method, mesh: nop.Mesh, whole: bool
                ) -> tuple[tuple[int, methods.Plan], ...]:
    """(layers, plan) of each layer kind of the workload's model (dense, MoE)."""
    return tuple((count, methods.plan(method, mesh, w.model, w.seq, w.causal, whole, w.regather,
                                      moe)) for count, moe in methods.layer_kinds(w.model))


def _split(meshes, meths, g, m) -> int:
    if methods.layout_reason(meths[m], meshes[g]):
        return 1
    return methods.token_split(meths[m], meshes[g])


def _hardware(s: ChipletSetup, points) -> cost.Points:
    """Preset names and knobs -> per-point hardware numbers."""
    pk = np.asarray(points["package"]).astype(str)
    dr = np.asarray(points["dram"]).astype(str)
    modules = np.asarray(points["modules"]).astype(float)
    if np.any(modules < 1):
        raise InputError("modules per port must be >= 1")
    sides = np.asarray(points["io_sides"]).astype(int)
    if np.any((sides != 2) & (sides != 4)):
        raise InputError("I/O dies sit on 2 or 4 sides")

    def col(table, names, attr):
        return _lookup(names, {k: float(getattr(v, attr)) for k, v in table.items()})
    sched = np.asarray(points["schedule"]).astype(str)
    bad = set(sched) - set(SCHEDULES)
    if bad:
        raise InputError(f"unknown schedule {sorted(bad)[0]!r}; choose from "
                         f"{', '.join(SCHEDULES)}")
    ov = np.asarray(points["overlap"]).astype(str)
    bad = set(ov) - set(OVERLAPS)
    if bad:
        raise InputError(f"unknown overlap {sorted(bad)[0]!r}; choose none or max")
    sram = np.asarray(points["sram_mb"]).astype(float)
    if np.any(sram <= 0):
        raise InputError("SRAM per die must be > 0 MB")
    lane_bw = col(s.packages, pk, "lanes") * col(s.packages, pk, "rate") / 8
    # an I/O die's port: its own module count, or as wide as the mesh ports (0); none beside
    io_modules = col(s.drams, dr, "io_port_modules")
    beside = _lookup(dr, {k: float(v.placement == "beside") for k, v in s.drams.items()})
    io_b = np.where(beside > 0, np.inf, np.where(io_modules > 0, io_modules, modules) * lane_bw)
    return cost.Points(
        sram=sram * MB, layer_major=sched == "layer-major",
        micro_batch=np.asarray(points["micro_batch"]).astype(float),
        recompute=np.asarray(points["recompute"]).astype(bool), overlap_max=ov == "max",
        b=modules * lane_bw, alpha=col(s.packages, pk, "alpha_hop"),
        e_hop=col(s.packages, pk, "e_hop"),
        port_area_mm2=modules * col(s.packages, pk, "port_area_mm2"),
        shoreline=col(s.packages, pk, "shoreline"), io_sides=sides,
        bw_site=col(s.drams, dr, "bw_site"), io_b=io_b, dram_hop=1.0 - beside,
        eta_d=col(s.drams, dr, "eta"), e_dram=col(s.drams, dr, "e_dram"),
        dram_capacity=col(s.drams, dr, "capacity") * col(s.drams, dr, "stacks"),
        io_static=col(s.drams, dr, "io_static"), io_area_mm2=col(s.drams, dr, "io_area_mm2"))


def _reasons(out, reasons, pts) -> None:
    """One line per infeasible point naming the first constraint that fails."""
    for i in np.flatnonzero(out["violation_sram"] > 0):
        if not reasons[i]:
            need = (out["violation_sram"][i] + 1) * pts.sram[i]
            reasons[i] = (f"SRAM capacity: a weight shard with prefetch, the chunk buffers "
                          f"and the KV buffer need {need / MB:.1f} MB of "
                          f"{pts.sram[i] / MB:.0f} MB")
    for i in np.flatnonzero(out["violation_dram_capacity"] > 0):
        if not reasons[i]:
            cap = out["n_io"][i] * pts.dram_capacity[i]
            sites = "I/O dies" if pts.dram_hop[i] else "edge dies' stacks"
            reasons[i] = (f"DRAM capacity: training state and checkpoints need "
                          f"{out['capacity_need_bytes'][i] / 1e12:.2f} TB of "
                          f"{cap / 1e12:.2f} TB on {out['n_io'][i]:.0f} {sites}")
    for i in np.flatnonzero(out["violation_shoreline"] > 0):
        if not reasons[i]:
            port = max(pts.b[i], pts.io_b[i] if pts.dram_hop[i] else 0.0)
            reasons[i] = (f"shoreline: a port of 2 x {port / 1e9:.0f} GB/s exceeds "
                          f"{pts.shoreline[i] / 1e9:.0f} GB/s/mm x "
                          f"{np.sqrt(out['die_area_mm2'][i]):.1f} mm of die edge")


def _lookup(names: np.ndarray, values: dict[str, float]) -> np.ndarray:
    keys = np.array(list(values))
    vals = np.array([values[k] for k in keys])
    order = np.argsort(keys)
    return vals[order][np.searchsorted(keys[order], names)]


def default_grids(rect: bool = False) -> tuple[str, ...]:
    """§10: the square grids 4x4..16x16 (rect: every N1 x N2 of those sides)."""
    if rect:
        return tuple(f"{a}x{b}" for a in GRID_SIDES for b in GRID_SIDES)
    return tuple(f"{n}x{n}" for n in GRID_SIDES)


def default_methods(grids: tuple[str, ...]) -> tuple[str, ...]:
    """Every method variant that fits one fixed grid; all of them when grids are searched."""
    if len(grids) == 1:
        return tuple(m.label for m in methods.methods_for(parse_grid(grids[0])))
    return methods.ALL_METHODS


def micro_batches(batch: int) -> tuple[int, ...]:
    """Every micro-batch B_m that divides the batch B."""
    return tuple(d for d in range(1, batch + 1) if batch % d == 0)


def default_values(setup: ChipletSetup, grid: str | Sequence[str] | None = None,
                   rect: bool = False) -> dict[str, tuple]:
    """The space of §10, the one default search space: the grid fixed (one or several) or
    searched over square grids 4..16 (rect: rectangles too); every method that fits; the
    loaded packages and DRAMs."""
    if grid is None:
        grids = default_grids(rect)
    else:
        grids = tuple(str(parse_grid(g)) for g in ((grid,) if isinstance(grid, str) else grid))
    return {"grid": grids, "sram_mb": SRAM_MB, "method": default_methods(grids),
            "schedule": SCHEDULES, "package": tuple(setup.packages), "modules": MODULES,
            "dram": tuple(setup.drams), "io_sides": IO_SIDES,
            "micro_batch": micro_batches(setup.work.batch), "recompute": (True,),
            "overlap": ("max",)}
