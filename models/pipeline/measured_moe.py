"""Peak memory and iteration time against measured MoE training runs (docs/pipeline.md §11.7):
each public run rebuilt as explore sees it, its measured devices' peaks and its iteration time
predicted a-priori. Nothing is fitted on these runs; they are only checked.

Pure functions over rows already read from presets/validation/pipeline/moe_runs.json."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from ..shapes import ModelShape
from ..units import GiB
from .config import Hardware, Layout, Policy
from .kernels import TimeModel

SOURCE = "public MoE training runs (presets/validation/pipeline/moe_runs.json)"
TOLERANCE = 0.05                  # the target on peak memory
TIME_TOLERANCE = 0.10             # and on iteration time


@dataclass(frozen=True)
class MoeRun:
    """One measured run: its model, layout, the measured peaks of some devices and its
    iteration time (either may be missing)."""
    id: str
    source: str
    shape: ModelShape
    gpu: str
    node: str
    gpus: int
    layout: Layout
    policy: Policy
    time: TimeModel                       # the run's overlap switches and GEMM format
    measured: tuple[dict, ...]            # {"device", "peak_gib", "what"}
    measured_iteration_s: float | None
    differs: str
    inferred: tuple[str, ...]


def moe_runs(data: dict, load: Callable[[str, str], Any]) -> list[MoeRun]:
    """The runs of the data file as explore configurations: a run's model is its own shape or
    a model preset's name with `model_overrides` (what the run changed, e.g. the vocabulary
    of a mock-data tokenizer)."""
    out = []
    for r in data["runs"]:
        m = r["model"]
        shape = ModelShape(**m) if isinstance(m, dict) else replace(
            load("model", m), **r.get("model_overrides", {}))
        dp = r["gpus"] // (r["tp"] * r["pp"])
        layout = Layout(r["tp"], r["pp"], dp, r["seq"], r["mbs"], r["global_batch"], r["vpp"],
                        r["sp"], r["flash"], ep=r["ep"], etp=r["etp"],
                        first_layers=r.get("first_stage_layers"),
                        last_layers=r.get("last_stage_layers"),
                        pipeline_layout=r.get("pipeline_layout"))
        schedule = r.get("schedule", "interleaved" if r["vpp"] > 1 else "1f1b")
        policy = Policy(schedule, recompute=r["recompute"], optimizer=r["optimizer"],
                        recompute_modules=tuple(r.get("recompute_modules", ["core_attn"])))
        out.append(MoeRun(r["id"], r["source"], shape, r["gpu"], r["node"], r["gpus"],
                          layout, policy, TimeModel(**r.get("time", {})),
                          tuple(r.get("measured", ())), r.get("measured_iteration_s"),
                          r.get("differs", ""), tuple(r.get("inferred", ()))))
    return out


def validation(runs: list[MoeRun], load: Callable[[str, str], Any]) -> dict[str, Any]:
    """Measured vs predicted peak (tensors only: explore's device peak without the reserve)
    for every measured device of every run, and iteration time for every run that states
    one, all a-priori; `load(kind, name)` gives the GPU and node presets."""
    from .chronos import solve
    from .costs import Terms

    rows: list[dict[str, Any]] = []
    times: list[dict[str, Any]] = []
    for run in runs:
        hw = Hardware.from_presets(load("gpu", run.gpu), load("node", run.node), run.gpus,
                                   time=run.time)
        out = solve(Terms(run.shape, run.layout, hw, run.policy), timelines=False).outcome
        assert out is not None          # no incumbent: solve always returns an outcome
        common = {"id": run.id, "inferred": list(run.inferred), "differs": run.differs,
                  "source": run.source}
        for m in run.measured:
            d = m["device"]
            if not 0 <= d < run.layout.pp:
                raise InputError(f"run {run.id}: device {d} is not a pipeline stage")
            ours = out.peaks[d] / GiB
            rows.append({**common, "device": d, "what": m["what"],
                         "measured_gib": m["peak_gib"], "ours_gib": ours,
                         "error": ours / m["peak_gib"] - 1.0})
        if run.measured_iteration_s:
            measured = run.measured_iteration_s
            times.append({**common, "gpus": run.gpus, "gpu": run.gpu,
                          "schedule": run.policy.schedule, "measured_s": measured,
                          "ours_s": out.iteration_s, "error": out.iteration_s / measured - 1.0,
                          "tokens_per_s_per_gpu": run.layout.global_batch * run.layout.seq
                          / measured / run.gpus})
    memory = {"rows": rows, "source": SOURCE, "tolerance": TOLERANCE,
              "complete": _stats([r["error"] for r in rows if not r["inferred"]]),
              "all": _stats([r["error"] for r in rows])}
    time = {"rows": times, "source": SOURCE, "tolerance": TIME_TOLERANCE,
            "complete": _stats([r["error"] for r in times if not r["inferred"]]),
            "all": _stats([r["error"] for r in times])}
    return {"memory": memory, "time": time}


def _stats(errors: list[float]) -> dict[str, float] | None:
    if not errors:
        return None
    a = np.abs(errors)
    return {"points": len(errors), "mean_abs_error": float(a.mean()),
            "max_abs_error": float(a.max()), "mean_signed_error": float(np.mean(errors))}


def check_rows(v: dict, what: str = "peak memory", points: str = "measured devices"
               ) -> list[dict]:
    """The checks of one validation (validation()'s "memory" or "time") as rows: the runs
    whose layout is complete against the tolerance (WARN beyond it: a-priori, few runs), all
    runs with the inferred ones for information."""
    out = []
    for key, label, judged in (("complete", "layout complete", True),
                               ("all", "all runs, incl. inferred layouts", False)):
        s = v[key]
        if s is None or (key == "all" and s == v["complete"]):
            continue
        status = ("PASS" if s["max_abs_error"] <= v["tolerance"] else "WARN") if judged \
            else "INFO"
        out.append({"check": f"MoE {what}, {s['points']} {points} ({label}), "
                             f"a-priori (max |error|)",
                    "reference": "measured", "ours": f"{s['max_abs_error']:.1%} (mean "
                    f"{s['mean_abs_error']:.1%}, signed {s['mean_signed_error']:+.1%})",
                    "error": s["max_abs_error"], "tolerance": f"<= {v['tolerance']:.0%}",
                    "status": status, "source": v["source"]})
    return out
