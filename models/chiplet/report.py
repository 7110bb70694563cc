"""One configuration of the chiplet study as plain data: where its time, energy, DRAM traffic,
SRAM and area go, each term with its unit and the section/equation it comes from, and the same
hardware running Megatron 1D tensor parallelism for comparison."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..units import MB
from . import methods
from .hardware import literature_ranges
from .study import (SCHEDULES, ChipletSetup, binding_name, evaluate_points, layer_plans,
                    parse_grid)

PHASES = (("fwd", "forward"), ("rec", "recompute"), ("bwd", "backward"))


def evaluate_one(setup: ChipletSetup, point: dict) -> dict:
    """evaluate_points for one configuration, as Python scalars."""
    raw = evaluate_points(setup, {k: np.asarray([v]) for k, v in point.items()})
    return {k: (v[0].item() if hasattr(v[0], "item") else v[0]) for k, v in raw.items()}


def baseline_point(point: dict, schedule: str | None = None, bidirectional: bool = False
                   ) -> dict:
    """The same hardware and workload running Megatron 1D TP (unidirectional ring)."""
    return {**point, "method": "1d-bi" if bidirectional else "1d",
            "schedule": schedule or point["schedule"]}


# Megatron 1D TP on the same hardware, as each reference in the literature may have run it:
# (name, the point's changes); each is reported at its better schedule (docs/chiplet.md §9)
BASELINES: tuple[tuple[str, dict[str, Any]], ...] = (("one-way ring", {"method": "1d"}),
             ("two-way ring", {"method": "1d-bi"}),
             ("one-way, no overlap", {"method": "1d", "overlap": "none"}),
             ("one-way, no overlap, B_m 1", {"method": "1d", "overlap": "none",
                                             "micro_batch": 1}))


def against_baselines(setup: ChipletSetup, point: dict, r: dict | None = None) -> list[dict]:
    """The point against every 1D baseline, each at the schedule that suits it best (lower
    latency): ratios = baseline / point."""
    r = r or evaluate_one(setup, point)
    out = []
    for name, changes in BASELINES:
        runs = versus(setup, point, changes, r)
        sched = min(runs, key=lambda s: runs[s]["latency_s"])
        out.append({"baseline": name, "changes": changes, "schedule": sched, **runs[sched]})
    return out


def versus(setup: ChipletSetup, point: dict, changes: dict, r: dict) -> dict[str, dict]:
    """The point with `changes` at each schedule against the point's result `r`
    (ratios = changed / point)."""
    out = {}
    for sched in SCHEDULES:
        b = evaluate_one(setup, {**point, **changes, "schedule": sched})
        out[sched] = {"latency_s": b["latency_s"], "energy_j": b["energy_j"],
                      "latency_ratio": b["latency_s"] / r["latency_s"],
                      "energy_ratio": b["energy_j"] / r["energy_j"],
                      "binding": binding_name(b["binding"]), "reason": b["reason"]}
    return out


def point_report(setup: ChipletSetup, point: dict, with_baseline: bool = True) -> dict:
    """Everything `explore chiplet run` shows, JSON-ready, SI units."""
    r = evaluate_one(setup, point)
    die = setup.die
    feasible = all(r[f"violation_{c}"] <= 0 for c in ("layout", "sram", "dram_capacity",
                                                      "shoreline"))
    out = {"point": dict(point), "feasible": feasible, "reason": r["reason"],
           "binding": binding_name(r["binding"]),
           "notes": [x for x in (r["notes"] or "").split("; ") if x]}
    if r["violation_layout"] > 0:
        return out
    reps = r["phase_reps"]
    out["summary"] = {k: r[k] for k in (
        "latency_s", "energy_j", "area_mm2", "tokens_per_s", "j_per_token", "edp", "t_comp_s",
        "t_nop_s", "t_dram_s", "t_io_s", "dram_bytes", "nop_bytes", "chunk", "flops")}
    out["summary"]["t_comp_over_t_nop"] = r["t_comp_s"] / r["t_nop_s"] if r["t_nop_s"] else None
    lat = []
    for key, label in PHASES:
        for term, eq in (("t_comp", "§7 FLOPs_die / (C eta)"),
                         ("t_row", "§5.3 row-link collectives"),
                         ("t_col", "§5.3 column-link collectives"),
                         ("t_mesh", "§5.3 collectives on both link classes"),
                         ("t_nop", "§7 overlap=max: mesh + max(row, col); none: sum"),
                         ("t_dram", "§6 DRAM bytes / BW_D"),
                         ("t_io", "§6 DRAM bytes / (n_io b_io)"),
                         ("t_phase", "§7 overlap rule")):
            v = r[f"{key}.{term}"]
            lat.append({"phase": label, "term": term, "per_layer_s": v, "total_s": v * reps,
                        "equation": eq})
    lat.append({"phase": "LM head", "term": "t_comp", "per_layer_s": None,
                "total_s": r["t_head_s"], "equation": "§4 6 B S H V / (P C eta)"})
    lat.append({"phase": "optimizer", "term": "t_mem", "per_layer_s": None,
                "total_s": r["t_opt_s"], "equation": "§6 Adam bytes / min(BW_D, n_io b_io)"})
    lat.append({"phase": "iteration", "term": "t_iter", "per_layer_s": None,
                "total_s": r["latency_s"],
                "equation": f"§7 {reps:g} x (forward + recompute + backward) + head + optimizer"})
    out["latency"] = lat
    sram_bytes = (r["gemm_sram_bytes"] + r["vector_sram_bytes"] + r["nop_bytes"]
                  + r["dram_bytes"])
    out["energy"] = [
        {"term": "E_MAC", "joules": r["e_mac_j"], "equation": "§7 FLOPs/2 x e_MAC",
         "detail": f"{r['flops']:.3g} FLOP x {die.mac_energy * 1e12:.3g} pJ/MAC / 2"},
        {"term": "E_SRAM", "joules": r["e_sram_j"],
         "equation": "§7 8 e_SRAM (GEMM operands + vector ops + NoP + DRAM bytes)",
         "detail": f"{sram_bytes / 1e15:.3g} PB x {die.sram_energy * 1e12:.3g} pJ/bit"},
        {"term": "E_NoP", "joules": r["e_nop_j"],
         "equation": "§7 8 e_hop (collective bytes x hops + DRAM bytes x h̄)",
         "detail": f"h̄ = {r['hbar']:.3g} hops"},
        {"term": "E_DRAM", "joules": r["e_dram_j"], "equation": "§7 8 e_D x DRAM bytes",
         "detail": f"{r['dram_bytes'] / 1e12:.3g} TB"},
        {"term": "E_static", "joules": r["e_static_j"],
         "equation": "§7 (P P_static,die + n_io P_static,io) t_iter",
         "detail": f"{r['static_w']:.1f} W x {r['latency_s']:.3g} s"},
        {"term": "E", "joules": r["energy_j"], "equation": "§7 sum", "detail": ""}]
    out["dram"] = [{"category": c, "bytes": sum(r[f"{k}.dram_{c}"] * reps for k, _ in PHASES
                                                 if f"{k}.dram_{c}" in r)}
                   for c in ("weights", "gradients", "activations")]
    out["dram"].append({"category": "optimizer (Adam)", "bytes": r["opt_bytes"]})
    out["sram"] = sram_budget(setup, point, r)
    out["nop"] = collectives(setup, point)
    out["area"] = {"die_mm2": r["die_area_mm2"], "dies": parse_grid(point["grid"]).P,
                   "io_dies": r["n_io"], "total_mm2": r["area_mm2"]}
    if with_baseline and point["method"] not in ("1d", "1d-bi"):
        out["baseline_1d"] = versus(setup, point, dict(BASELINES)["one-way ring"], r)
        out["baselines"] = against_baselines(setup, point, r)
    return out


def range_ends(setup: ChipletSetup, point: dict, ratio: Callable[[ChipletSetup], float]
               ) -> list[dict]:
    """`ratio` of the setup with each energy constant of the point's die, package and DRAM at
    both ends of the range its preset gives (`ranges`, docs/research/chiplet-energy.md); the
    same constant moves for both sides of the ratio."""
    effective = {"e_mac": "mac_energy", "e_sram": "sram_energy"}   # None: from the node
    now = ratio(setup)
    out = []
    parts = (("die", setup.die), ("package", setup.packages[point["package"]]),
             ("dram", setup.drams[point["dram"]]))
    for kind, spec_ in parts:
        for field, (lo, hi) in literature_ranges(spec_).items():
            ends = []
            for value in (lo, hi):
                moved = replace(spec_, **{field: value})
                ends.append(ratio(
                    replace(setup, die=moved) if kind == "die" else
                    replace(setup, packages={**setup.packages, point["package"]: moved})
                    if kind == "package" else
                    replace(setup, drams={**setup.drams, point["dram"]: moved})))
            out.append({"preset": spec_.name, "constant": field, "low": lo, "high": hi,
                        "now": getattr(spec_, effective.get(field, field)),
                        "energy_ratio_low": ends[0], "energy_ratio_high": ends[1],
                        "energy_ratio_now": now})
    return out


def energy_ratio_ranges(setup: ChipletSetup, point: dict) -> list[dict]:
    """The point's energy ratio against the one-way 1D ring (at its better schedule) with each
    energy constant at its range's ends: how much of the energy answer rides on them."""
    changes = dict(BASELINES)["one-way ring"]

    def ratio(s: ChipletSetup) -> float:
        runs = versus(s, point, changes, evaluate_one(s, point))
        return min(runs.values(), key=lambda x: x["latency_s"])["energy_ratio"]
    return range_ends(setup, point, ratio)


def sram_budget(setup: ChipletSetup, point: dict, r: dict) -> list[dict]:
    """The §6 residency threshold term by term for this configuration."""
    w = setup.work
    beta = w.beta
    # the layer kind with the largest shard (an MoE model's MoE layer) sets the need
    plan = max((p for _, p in _layers(setup, point)), key=lambda p: p.weight_elems)
    w_d = plan.weight_elems * beta
    resident = bool(r["resident"])
    rows = [("W_d: weight shard of one layer", w_d, "§6 P_layer beta / P (padded)"),
            ("prefetch of the next shard", w_d * w.prefetch, "§6 delta_pf W_d"),
            ("gradient accumulators", w_d * w.grad_bytes / beta if resident else 0.0,
             "§6 beta_g/beta W_d (layer-major, resident only)"),
            ("weights received per micro-batch", plan.weight_buffer_elems * beta,
             "§5 SUMMA (q-1) W_d, 3D (q-1)/q gathered W [design]"),
            (f"chunk buffers: T_c = {r['chunk']:.0f} x {plan.buf_tok * beta:,.0f} B",
             r["chunk"] * plan.buf_tok * beta, "§6 T_c buf_tok"),
            ("KV buffer (one sequence)", plan.kv_elems * beta, "§6 2 S H_kv,die beta")]
    out = [{"item": a, "bytes": b, "equation": c} for a, b, c in rows]
    out.append({"item": "total used", "bytes": r["sram_need_bytes"],
                "equation": "weights resident over all micro-batches" if resident else
                "weights re-streamed per micro-batch (below the residency threshold)"})
    out.append({"item": "M_s", "bytes": float(point["sram_mb"]) * MB, "equation": "SRAM per die"})
    return out


def collectives(setup: ChipletSetup, point: dict) -> list[dict]:
    """The collectives of one layer of each kind with their per-die volume (elements) and
    stream (an MoE model's names say which kind of layer)."""
    layers = _layers(setup, point)
    kind = (lambda p: "MoE layer: " if p.expert_elems else "dense layer: ") \
        if len(layers) > 1 else (lambda p: "")
    return [{"name": kind(plan) + c.name, "pass": c.pass_, "frequency": c.freq,
             "stream": c.stream,
             "per_die_elems": c.cost.per_die,
             "per": "token" if c.freq == "chunk" else ("micro-batch" if c.freq == "mb"
                                                        else "iteration"),
             "load_elems": c.cost.load, "latency_hops": c.cost.hops}
            for _, plan in layers for c in plan.comms]


def _layers(setup: ChipletSetup, point: dict) -> tuple[tuple[int, methods.Plan], ...]:
    """The point's (layers, plan) of each layer kind."""
    mesh = parse_grid(point["grid"])
    m = methods.parse_method(point["method"])
    whole = int(point["micro_batch"]) % methods.token_split(m, mesh) == 0
    return layer_plans(setup.work, m, mesh, whole)


def breakdown_rows(rep: dict) -> list[dict]:
    """Flat (section, phase, term, value, unit, equation) rows for breakdown.csv."""
    rows = []
    for x in rep.get("latency", []):
        rows.append({"section": "latency", "phase": x["phase"], "term": x["term"],
                     "value": x["total_s"], "unit": "s", "equation": x["equation"]})
    for x in rep.get("energy", []):
        rows.append({"section": "energy", "phase": "iteration", "term": x["term"],
                     "value": x["joules"], "unit": "J", "equation": x["equation"]})
    for x in rep.get("dram", []):
        rows.append({"section": "dram", "phase": "iteration", "term": x["category"],
                     "value": x["bytes"], "unit": "B", "equation": "§6"})
    for x in rep.get("sram", []):
        rows.append({"section": "sram", "phase": "per die", "term": x["item"],
                     "value": x["bytes"], "unit": "B", "equation": x["equation"]})
    for x in rep.get("nop", []):
        rows.append({"section": "nop", "phase": x["pass"], "term": x["name"],
                     "value": x["per_die_elems"], "unit": f"elements per die per {x['per']}",
                     "equation": f"§5.3 engine, {x['stream']} links"})
    if "area" in rep:
        a = rep["area"]
        rows += [{"section": "area", "phase": "package", "term": "A_die", "value": a["die_mm2"],
                  "unit": "mm2", "equation": "§3 n_MAC a + M_s a_MB + 4 A_port + A_fixed"},
                 {"section": "area", "phase": "package", "term": "A_total",
                  "value": a["total_mm2"], "unit": "mm2", "equation": "§3 P A_die + n_io A_io"}]
    return rows
