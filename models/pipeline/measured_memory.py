"""Peak memory against measured Megatron-Core MoE runs (docs/pipeline.md §11.7): each public
run rebuilt as explore sees it and its measured devices predicted a-priori. Nothing is fitted
on these runs; they are only checked.

Pure functions over rows already read from presets/validation/pipeline/moe_peak_memory.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from ..shapes import ModelShape
from ..units import GiB
from .config import Hardware, Layout, Policy

SOURCE = "public Megatron-Core MoE runs (presets/validation/pipeline/moe_peak_memory.json)"
TOLERANCE = 0.05                  # the target on peak memory


@dataclass(frozen=True)
class MemoryRun:
    """One measured run: its model, layout and the measured peaks of some devices."""
    id: str
    source: str
    shape: ModelShape
    gpu: str
    node: str
    gpus: int
    layout: Layout
    policy: Policy
    measured: tuple[dict, ...]            # {"device", "peak_gib", "what"}
    measured_iteration_s: float | None
    differs: str
    inferred: tuple[str, ...]


def memory_runs(data: dict) -> list[MemoryRun]:
    """The runs of the data file as explore configurations."""
    out = []
    for r in data["runs"]:
        shape = ModelShape(**r["model"])
        dp = r["gpus"] // (r["tp"] * r["pp"])
        layout = Layout(r["tp"], r["pp"], dp, r["seq"], r["mbs"], r["global_batch"], r["vpp"],
                        r["sp"], r["flash"], ep=r["ep"], etp=r["etp"],
                        first_layers=r.get("first_stage_layers"),
                        last_layers=r.get("last_stage_layers"),
                        pipeline_layout=r.get("pipeline_layout"))
        policy = Policy("interleaved" if r["vpp"] > 1 else "1f1b", recompute=r["recompute"],
                        optimizer=r["optimizer"],
                        recompute_modules=tuple(r.get("recompute_modules", ["core_attn"])))
        out.append(MemoryRun(r["id"], r["source"], shape, r["gpu"], r["node"], r["gpus"],
                             layout, policy, tuple(r["measured"]), r["measured_iteration_s"],
                             r.get("differs", ""), tuple(r.get("inferred", ()))))
    return out


def validation(runs: list[MemoryRun], load: Callable[[str, str], Any]) -> dict[str, Any]:
    """Measured vs predicted peak (tensors only: explore's device peak without the reserve)
    for every measured device of every run, a-priori; `load(kind, name)` gives the GPU and
    node presets."""
    from .chronos import solve
    from .costs import Terms

    rows = []
    for run in runs:
        hw = Hardware.from_presets(load("gpu", run.gpu), load("node", run.node), run.gpus)
        out = solve(Terms(run.shape, run.layout, hw, run.policy), timelines=False).outcome
        assert out is not None          # no incumbent: solve always returns an outcome
        for m in run.measured:
            d = m["device"]
            if not 0 <= d < run.layout.pp:
                raise InputError(f"run {run.id}: device {d} is not a pipeline stage")
            ours = out.peaks[d] / GiB
            rows.append({"id": run.id, "device": d, "what": m["what"],
                         "measured_gib": m["peak_gib"], "ours_gib": ours,
                         "error": ours / m["peak_gib"] - 1.0, "inferred": list(run.inferred),
                         "differs": run.differs, "source": run.source})
        if run.measured_iteration_s:
            rows[-1]["measured_iteration_s"] = run.measured_iteration_s
            rows[-1]["ours_iteration_s"] = out.iteration_s
    complete = [r["error"] for r in rows if not r["inferred"]]
    return {"rows": rows, "source": SOURCE, "tolerance": TOLERANCE,
            "complete": _stats(complete), "all": _stats([r["error"] for r in rows])}


def _stats(errors: list[float]) -> dict[str, float] | None:
    if not errors:
        return None
    a = np.abs(errors)
    return {"points": len(errors), "mean_abs_error": float(a.mean()),
            "max_abs_error": float(a.max()), "mean_signed_error": float(np.mean(errors))}


def check_rows(v: dict) -> list[dict]:
    """The peak-memory checks as validation rows: the runs whose layout is complete against
    the tolerance (WARN beyond it: a-priori, few runs), the inferred ones for information."""
    out = []
    for key, label, judged in (("complete", "layout complete", True),
                               ("all", "all runs, incl. inferred layouts", False)):
        s = v[key]
        if s is None:
            continue
        status = ("PASS" if s["max_abs_error"] <= v["tolerance"] else "WARN") if judged \
            else "INFO"
        out.append({"check": f"MoE peak memory, {s['points']} measured devices ({label}), "
                             f"a-priori (max |error|)",
                    "reference": "measured", "ours": f"{s['max_abs_error']:.1%} (mean "
                    f"{s['mean_abs_error']:.1%}, signed {s['mean_signed_error']:+.1%})",
                    "error": s["max_abs_error"], "tolerance": f"<= {v['tolerance']:.0%}",
                    "status": status, "source": v["source"]})
    return out
