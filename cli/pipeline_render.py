"""Rich rendering of `explore pipeline` results (the JSON-ready dicts of cli/pipeline.py)."""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text

from explore.models.units import GiB

from .render import checks_table, console, key_values, table



def _int(x) -> str:
    return "-" if x is None or x != x else str(int(x))


def gib(x) -> str:
    return "-" if x is None else f"{x / GiB:.1f}"


def _title(w: dict, extra: str = "") -> Text:
    return Text(f"explore pipeline: {w['model']} ({w['params'] / 1e9:.2f} B parameters, "
                f"{w['layers']} layers) on {w['gpus']} x {w['hardware']} ({w['node']}){extra}",
                style="bold")


def _config_line(c: dict) -> str:
    v = f", v {c['vpp']}" if c["schedule"] == "interleaved" else ""
    cap = f", C = {c['cap']}" if c.get("cap") is not None else ""
    return (f"TP {c['tp']} x PP {c['pp']} x DP {c['dp']}{v}, micro-batch {c['mbs']} x "
            f"{c['m']} per iteration, {c['schedule']}{cap}, recompute {c['recompute']}, "
            f"offload {c['offload']}, optimizer {c['optimizer']} "
            f"({c['state_bytes_per_param']:g} B/param)")


def _performance(p: dict, c: dict) -> list:
    off = c["offloaded"]
    offl = ", ".join(f"{n} {k}" for k, n in off.items() if n) or "nothing"
    return [
        ("tokens/s", f"{p['tokens_per_s']:,.0f} tok/s", "B_g s / iteration  (§7)"),
        ("MFU / HFU", f"{p['mfu']:.1%} / {p['hfu']:.1%}",
         "model FLOPs (+ recompute) / (iteration x GPUs x peak)  (§7)"),
        ("iteration", f"{p['iteration_s']:.2f} s", f"makespan {p['makespan_s']:.2f} + DP "
         f"{p['dp_s']:.3f} + step {p['step_s']:.3f}  (§7)"),
        ("bubble", f"{p['bubble']:.1%}", "mean over devices of 1 - busy / makespan  (§5.1)"),
        ("recompute", f"{p['recompute_fraction']:.1%} of model FLOPs",
         f"{c['recomputed_layer_passes']} layer passes recomputed"),
        ("offloaded", offl, f"host RAM {p['host_bytes_per_node'] / GiB:.0f} GiB per node; "
                            f"stalls {p['stall_s']:.2f} s"),
    ]


def stage_table(bd: dict, title: str):
    rows = []
    for d in bd["devices"]:
        fl = " ".join(f"vs{c['vs']}:{c['in_flight']}" + (f"+{c['held_for_w']}w"
                                                          if c["held_for_w"] else "")
                      for c in d["chunks"])
        opt = gib(d["optimizer_resident"]) + (f" (+{gib(d['optimizer_offloaded'])} host)"
                                              if d["optimizer_offloaded"] else "")
        rows.append([d["device"], gib(d["weights"]), gib(d["grads"]), opt,
                     gib(d["activations"]), gib(d["held_for_w"]), gib(d["recompute"]),
                     gib(d["working"]), f"{d['stage_extras'] / GiB:.2f}",
                     gib(d["reload_in_flight"]), gib(d["peak"]),
                     gib(d["total_with_reserve"]), fl, d["peak_op"]])
    return table(title, ["dev", "weights", "grads", "optimizer", "activations", "held for W",
                         "recompute", "working", "extras", "reload", "peak",
                         "+reserve", "in flight (mb per vs, +w held)", "op at peak"],
                 rows, right=tuple(range(0, 12)),
                 caption="GiB at each device's own peak; dynamic categories include the "
                         "fragmentation factor; reserve = CUDA context + NCCL (§4.4)")


MEMORY_PARTS = (("weights", "weights"), ("grads", "grads"), ("optimizer", "optimizer_resident"),
                ("activations", "activations"), ("held for W", "held_for_w"),
                ("recompute", "recompute"), ("working + extras", ("working", "stage_extras")),
                ("reload", "reload_in_flight"), ("reserve", "reserve"))


def memory_stacks(bd: dict) -> dict[str, list[float]]:
    """GiB per device for each memory category (the parts of the per-stage table)."""
    def value(d, key):
        return sum(d[k] for k in key) if isinstance(key, tuple) else d[key]
    return {label: [value(d, key) / GiB for d in bd["devices"]] for label, key in MEMORY_PARTS}


def hbm_gib(bd: dict, usable_bytes: float) -> float:
    """HBM per GPU: the usable cap plus the reserve it leaves out."""
    return (usable_bytes + bd["devices"][0]["reserve"]) / GiB


def memory_chart(bd: dict, usable_bytes: float) -> str:
    """Per-stage memory as stacked bars in the terminal, with the HBM capacity."""
    from .render import bar_chart
    stacks = {k: v for k, v in memory_stacks(bd).items() if any(v)}
    return bar_chart([f"dev {d['device']}" for d in bd["devices"]], stacks, unit="GiB",
                     cap=hbm_gib(bd, usable_bytes), cap_label="HBM")


def assumptions_table(items: list[dict]):
    return table("Assumptions", ["assumption", "tag"],
                 [[escape(a["text"]), escape(a["tag"])] for a in items])


def render_best(out: dict, compact: bool) -> None:
    from explore.models.pipeline.study import METRICS

    from .render import metric_headers
    c = console()
    w, s, best = out["workload"], out["search"], out["best"]
    c.print(_title(w))
    space = ", ".join(f"{k} {','.join(map(str, v))}" for k, v in out["space"].items())
    c.print(key_values("Setup", [
        ("workload", f"seq {w['seq']}, global batch {w['global_batch']} "
                     f"({w['seq'] * w['global_batch']:,} tokens), SP {'on' if w['sp'] else 'off'}"
                     f", flash {'on' if w['flash'] else 'off'}"),
        ("memory", f"{w['hbm_bytes'] / GiB:g} GiB HBM - {w['reserve_bytes'] / GiB:g} GiB "
                   f"reserve = {w['usable_bytes'] / GiB:g} GiB usable per GPU"),
        ("searched", f"{s['space_size']:,} points in {s['elapsed_s']:.1f} s ({s['engine']}): "
                     f"{s['simulated']:,} simulated, {s['feasible']:,} feasible, "
                     f"{s['pruned']:,} pruned by a lower bound on iteration time, "
                     f"{s['redundant']:,} redundant, {s['invalid']:,} invalid layouts"),
        ("space", space)]))
    label = {"tokens_per_s": "tokens/s", "mfu": "MFU", "peak_max_bytes": "lowest peak memory",
             "iteration_s": "iteration time"}[out["objective"]]
    c.print(key_values(f"Best for {label}", [
        ("configuration", _config_line(best["config"])),
        *_performance(best["performance"], best["config"]),
        ("binding constraint", best["performance"]["binding"],
         "the device with the highest peak, the op running then, the largest category")]))
    c.print(stage_table(out["breakdown"], "Per-stage memory of the best configuration (GiB)"))
    c.print(memory_chart(out["breakdown"], out["best"]["performance"]["usable_bytes"]))
    shown = [m for m in METRICS if m.name in (
        ("tokens_per_s", "mfu", "bubble", "recompute_frac", "peak_max_bytes") if compact else
        ("tokens_per_s", "mfu", "hfu", "bubble", "recompute_frac", "stall_s", "peak_max_bytes",
         "peak_min_bytes", "host_bytes"))]
    rows = []
    for k, r in enumerate(out["top"], 1):
        lay = f"{r['tp']}x{r['pp']}x{int(r['dp'])}" + (f" v{r['vpp']}" if r["vpp"] > 1 else "")
        cap = _int(r.get("cap"))
        sched = r["schedule"] + ("" if cap == "-" else f" C{cap}")
        savers = [x for x in (f"recompute {r['recompute']}" if r["recompute"] != "none" else "",
                              f"offload {r['offload']}" if r["offload"] != "none" else "",
                              r["optimizer"] if r["optimizer"] != "none" else "") if x]
        rows.append([k, lay, f"{r['mbs']} x {int(r['m'])}", sched, ", ".join(savers) or "-",
                     *[m.show(r[m.name]) for m in shown]])
    c.print(table(f"Top {len(rows)} by {label}",
                  ["#", "TPxPPxDP", "mbs x m", "schedule", "savers",
                   *metric_headers(shown)], rows, right=(0, *range(5, 5 + len(shown)))))
    c.print(assumptions_table(out["assumptions"]))


def render_breakdown(data: dict) -> None:
    c = console()
    c.print(_title(data["workload"], f"  [{data['source']}]"))
    cfg, p, bd = data["config"], data["performance"], data["breakdown"]
    status = "fits" if p["fits"] else "DOES NOT FIT"
    c.print(key_values("Configuration", [
        ("layout", _config_line(cfg)), ("status", status, f"{p['usable_bytes'] / GiB:.1f} GiB "
                                                          f"usable per GPU"),
        ("binding constraint", bd["binding_text"]),
        ("peak instant", f"device {bd['binding']['device']} at {bd['binding']['time_s']:.3f} s"
                         f" during {bd['binding']['op']}"),
        *_performance(p, cfg)]))
    c.print(stage_table(bd, "Memory by device and category at each device's peak (GiB)"))
    c.print(memory_chart(bd, p["usable_bytes"]))
    c.print(assumptions_table(data["assumptions"]))


def render_plot(cfg: dict, perf: dict, profiles: list[dict], makespan: float,
                devices, assumptions: list[dict]) -> None:
    """One row per device: memory over the iteration as block characters."""
    c = console()
    blocks = " ▁▂▃▄▅▆▇█"
    cap = perf["usable_bytes"]
    c.print(Text(f"Memory per device over one iteration ({makespan:.2f} s), scale 0 - "
                 f"{cap / GiB:.0f} GiB usable; ! = above", style="bold"))
    c.print(_config_line(cfg))
    for prof in profiles:
        if devices is not None and prof["device"] not in devices:
            continue
        line = "".join("!" if b > cap else blocks[min(8, int(round(8 * b / cap)))]
                       for b in prof["bytes"])
        c.print(f"dev {prof['device']:>2} |{line}| peak {max(prof['bytes']) / GiB:.1f} GiB")
    c.print(assumptions_table(assumptions))


def render_max_size(data: dict) -> None:
    c = console()
    w, lay = data["workload"], data["layout"]
    c.print(Text(f"explore pipeline max-size: {w['model']} family on {w['gpus']} x "
                 f"{w['hardware']}, TP {lay['tp']} x PP {lay['pp']} x DP {lay['dp']}, "
                 f"micro-batch {lay['mbs']}", style="bold"))
    if data["floor_mfu"] is not None:
        c.print(f"throughput floor: MFU >= {data['floor_mfu']:.1%} (1 - delta of 1F1B's MFU at "
                f"its L*)")
    rows = []
    for r in data["rows"]:
        rows.append([r["label"], r["grid_step"], r["l_fit"], r["l_fail"] or "-",
                     f"{r['l_star']:.2f}", f"{r['params_star'] / 1e9:.2f}",
                     gib(r["peak_bytes_fit"]), gib(r["peak_bytes_fail"]),
                     "-" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}",
                     "-" if r["mfu"] is None else f"{r['mfu']:.1%}",
                     "-" if r["cap"] is None else r["cap"], r["binding"]])
    c.print(table("Largest trainable model per schedule (L on the partition grid; L* "
                  "interpolates peak memory, §8)",
                  ["schedule", "grid", "largest fitting L", "first failing L", "L*",
                   "params at L* (B)", "peak at fit (GiB)", "peak at fail (GiB)",
                   "tokens/s at fit", "MFU at fit", "C", "binding constraint at the first "
                   "failing L"], rows, right=tuple(range(1, 11))))
    c.print(assumptions_table(data["assumptions"]))


def render_sweep(data: dict) -> None:
    c = console()
    w = data["workload"]
    c.print(Text(f"explore pipeline sweep over {data['vary']}: {w['model']} on {w['gpus']} x "
                 f"{w['hardware']}, {data['schedule']} (recompute {data['recompute']}, offload "
                 f"{data['offload']})", style="bold"))
    unit = {"seq": "tokens", "m": "micro-batches", "h2d-gbps": "GB/s"}[data["vary"]]
    rows = []
    for r in data["rows"]:
        rows.append([f"{r['value']:g}", f"{r['l_star']:.2f}", f"{r['params_star'] / 1e9:.2f}",
                     gib(r.get("peak_bytes")),
                     "-" if "tokens_per_s" not in r else f"{r['tokens_per_s']:,.0f}",
                     "-" if "stall_s" not in r else f"{r['stall_s']:.2f}",
                     "yes" if r.get("fits") else "no", r["binding"]])
    c.print(table(f"L*, and peak / tokens/s at L = {w['layers']}",
                  [f"{data['vary']} ({unit})", "L*", "params at L* (B)", "peak (GiB)",
                   "tokens/s", "stall (s)", "fits", "binding at L* + 1 grid step"], rows,
                  right=tuple(range(0, 6))))
    c.print(assumptions_table(data["assumptions"]))


def render_validate(data: dict) -> None:
    c = console()
    fx = data["fixture"]
    c.print(Text(f"explore pipeline validate: §8 fixture ({fx['model']} shape, L = "
                 f"{fx['layers']}, TP {fx['tp']} x PP {fx['pp']} x DP {fx['dp']}, s {fx['seq']}, "
                 f"b {fx['mbs']}, m {fx['m']}, {fx['hbm_bytes'] / GiB:g} GiB HBM, host link "
                 f"{fx['host_link_bandwidth'] / 1e9:g} GB/s, eta {fx['eff']:g})", style="bold"))
    c.print(checks_table("Validation", data["rows"]))
    c.print(f"throughput floor for the ratio checks: MFU >= {data['floor_mfu']:.1%}")
    ms = []
    for r in data["max_size"]:
        ms.append([r["label"], r["l_fit"], r["l_fail"] or "-", f"{r['l_star']:.2f}",
                   f"{r['params_star'] / 1e9:.2f}",
                   "-" if r["mfu"] is None else f"{r['mfu']:.1%}",
                   "-" if r["cap"] is None else r["cap"], r["binding"]])
    c.print(table("Largest trainable model behind the checks",
                  ["schedule", "largest fitting L", "first failing L", "L*", "params (B)",
                   "MFU at fit", "C", "binding at the first failing L"], ms,
                  right=(1, 2, 3, 4, 5, 6)))
    c.print(assumptions_table(data["assumptions"]))
