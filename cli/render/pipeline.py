"""Rendering of `explore pipeline` results (the JSON-ready dicts of cli/studies/pipeline.py):
Rich tables designed for 80 columns (every column of the wide tables with --wide), terminal
charts, and the --save-dir files (JSON, CSV with units in the headers, PNG)."""

from __future__ import annotations

import itertools
import shlex

from pathlib import Path

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from explore.models.units import GiB

from . import checks_table, console, key_values, metric_headers, table


def _int(x) -> str:
    return "-" if x is None or x != x else str(int(x))


def gib(x) -> str:
    return "-" if x is None else f"{x / GiB:.1f}"


def _opt(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _title(w: dict, extra: str = "") -> Text:
    return Text(f"explore pipeline: {w['model']} ({w['params'] / 1e9:.2f} B parameters, "
                f"{w['layers']} layers) on {w['gpus']} x {w['hardware']} ({w['node']}){extra}",
                style="bold")


def _facts(title: str, rows: list, wide: bool):
    """Name, value and note: three columns with --wide, else the note after the value (dim),
    so that values keep the width at 80 columns."""
    if wide:
        return key_values(title, rows)
    t = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    for name, value, *note in rows:
        cell = Text(str(value))
        if note and note[0]:
            cell.append(f"  {note[0]}", style="dim")
        t.add_row(str(name), cell)
    return t


def _compact(title: str, headers, rows, right=(), caption: str | None = None):
    """A table without vertical rules sized to the terminal: headers wrap between words,
    every column keeps its longest word (cells wrap, none is cut). When even that does not fit,
    Rich's own reduction cuts cells with '…', which the width tests catch."""
    rows = [[str(c) for c in row] for row in rows]
    t = table(title, headers, rows, right=right, caption=caption, compact=True)
    room = console().width - (2 * len(headers) + 1)       # padding, separators, edges
    cells = [[h, *(row[i] for row in rows)] for i, h in enumerate(headers)]
    least = [max(len(w) for text in col for w in text.split() or [""]) for col in cells]
    if sum(least) > room:
        return t
    widths = list(least)
    for natural in ([max((len(x) for c in col[1:] for x in c.split("\n")), default=0)
                     for col in cells],
                    [len(col[0]) for col in cells]):    # cells whole first, then headers
        for i in sorted(range(len(widths)), key=lambda i: natural[i] - widths[i]):
            widths[i] += max(0, min(natural[i] - widths[i], room - sum(widths)))
    for col, w in zip(t.columns, widths):
        col.width = w
    return t


def _bullets(title: str, items: list[Text]):
    """A titled list, each item wrapped under itself (a hanging indent)."""
    t = Table.grid(padding=(0, 1))
    t.title, t.title_justify, t.title_style = title, "left", "bold"
    t.add_column(no_wrap=True)
    t.add_column()
    for item in items:
        t.add_row("-", item)
    return t


def _notes(title: str, items: list[tuple[str, str]]):
    """Long texts (binding constraints) as a list under a table instead of a wrapped column."""
    return _bullets(title, [Text(f"{label}: ", style="bold").append(text, style="")
                            for label, text in items])


def _config_line(c: dict) -> str:
    v = f", v {c['vpp']}" if c["schedule"] == "interleaved" else ""
    cap = f", C = {c['cap']}" if c.get("cap") is not None else ""
    if c.get("model_copies", 1) > 1:     # DualPipe: one copy per direction (§5.5)
        cap += f" ({c['model_copies']} model copies)"
    moe = f", EP {c['ep']} x ETP {c['etp']} (EDP {c['edp']})" if c.get("experts") else ""
    cp = f" x CP {c['cp']} ({c['cp_comm']})" if c.get("cp", 1) > 1 else ""
    split = c.get("stage_layers", [])
    if c.get("pipeline_layout"):
        v += f", layout {c['pipeline_layout']}"
    elif len(set(split)) > 1:            # uneven end stages (§11.5), runs of equal counts
        runs = [(n, len(list(g))) for n, g in itertools.groupby(split)]
        v += ", layers " + " | ".join(f"{k} x {n}" if k > 1 else str(n) for n, k in runs)
    if c.get("mtp_layers") and not c.get("pipeline_layout"):
        v += f" + {c['mtp_layers']} MTP"
    rec = c["recompute"]
    if rec == "selective":
        rec += f" ({', '.join(c.get('recompute_modules', ['core_attn'])) or 'nothing'})"
    return (f"TP {c['tp']}{cp} x PP {c['pp']} x DP {c['dp']}{moe}{v}, micro-batch {c['mbs']} x "
            f"{c['m']} per iteration, {c['schedule']}{cap}, recompute {rec}, "
            f"offload {c['offload']}, optimizer {c['optimizer']} "
            f"({c['state_bytes_per_param']:g} B/param)")


def _joules(j: float) -> str:
    return f"{j / 1e6:,.2f} MJ" if j >= 1e6 else f"{j / 1e3:,.1f} kJ"


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
        ("energy", "n/a" if p["energy_j"] is None else f"{_joules(p['energy_j'])} per iteration",
         "the GPU preset has no TDP" if p["energy_j"] is None else
         f"first estimate: {p['power_w'] / 1e3:,.1f} kW (GPUs x TDP) x iteration"),
    ]


# ---- per-stage memory ----------------------------------------------------------------------

STAGE_CAPTION = ("GiB at each device's own peak; dynamic categories include the fragmentation "
                 "factor; reserve = CUDA context + NCCL (§4.4)")


def stage_table(bd: dict, title: str, wide: bool = False):
    """Memory by device and category at each device's peak. 80 columns: the model states
    apart, the small dynamic categories summed as 'other'; --wide: every category and the
    micro-batches in flight per virtual stage."""
    if wide:
        return _stage_table_wide(bd, title)
    host = any(d["optimizer_offloaded"] for d in bd["devices"])
    rows = [[d["device"], gib(d["weights"]), gib(d["grads"]),
             gib(d["optimizer_resident"]) + ("*" if d["optimizer_offloaded"] else ""),
             gib(d["activations"]), gib(d["held_for_w"]),
             gib(d["recompute"] + d["working"] + d["stage_extras"] + d["reload_in_flight"]),
             gib(d["peak"]), d["peak_op"]] for d in bd["devices"]]
    return _compact(title, ["dev", "weights", "grads", "optim.", "activ.", "held W", "other",
                            "peak", "op at peak"], rows, right=tuple(range(8)),
                    caption="GiB at each device's own peak, dynamic categories x the "
                            "fragmentation factor. optim.: optimizer states on the GPU"
                            + (" (*: the rest in host RAM)" if host else "") + "; activ.: "
                            "stored activations; held W: kept from B to W (split backward); "
                            "other: recompute, working layer, stage extras, reloads in flight. "
                            "The bars add the reserve (CUDA context + NCCL, §4.4). --wide: "
                            "every category, the micro-batches in flight")


def _stage_table_wide(bd: dict, title: str):
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
                 rows, right=tuple(range(0, 12)), caption=STAGE_CAPTION)


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
    """Per-stage memory as stacked bars in the terminal, with the HBM capacity; the legend
    wrapped between its entries to the terminal's width."""
    import re

    from . import bar_chart

    stacks = {k: v for k, v in memory_stacks(bd).items() if any(v)}
    width = console().width
    labels = [f"dev {d['device']}" for d in bd["devices"]]
    pad = max(len(x) for x in labels) + 1
    bars = min(56, max(20, width - pad - 12))
    chart = bar_chart(labels, stacks, width=bars, unit="GiB", cap=hbm_gib(bd, usable_bytes),
                      cap_label="HBM").split("\n")
    lines, line = [], ""
    for entry in re.split(r"  (?=\[)", chart[-1].strip()):
        if line and pad + Text.from_markup(f"{line}  {entry}").cell_len > width:
            lines.append(line)
            line = entry
        else:
            line = f"{line}  {entry}" if line else entry
    return "\n".join(chart[:-1] + [" " * pad + x for x in lines + [line]])


def assumptions_list(items: list[dict]):
    """The assumptions, one a paragraph with its tag (dim), for any width."""
    return _bullets("Assumptions", [Text(a["text"]).append(f"  {a['tag']}", style="dim")
                                    for a in items])


# ---- search --------------------------------------------------------------------------------

def _top_rows(out: dict, shown, narrow: bool = False) -> list[list]:
    """Rank, layout, micro-batches, schedule, savers (one a line at 80 columns, recompute and
    offload shortened to rc and off), then the metrics."""
    rec, off = ("rc", "off") if narrow else ("recompute", "offload")
    rows = []
    for k, r in enumerate(out["top"], 1):
        lay = f"{r['tp']}x{r['pp']}x{int(r['dp'])}" + (f" v{r['vpp']}" if r["vpp"] > 1 else "") \
            + (f" ep{r['ep']}" if r.get("ep", 1) > 1 else "")
        cap = _int(r.get("cap"))
        sched = r["schedule"] + ("" if cap == "-" else f" C{cap}")
        savers = [x for x in (f"{rec} {r['recompute']}" if r["recompute"] != "none" else "",
                              f"{off} {r['offload']}" if r["offload"] != "none" else "",
                              r["optimizer"] if r["optimizer"] != "none" else "") if x]
        rows.append([k, lay, f"{r['mbs']} x {int(r['m'])}", sched,
                     ("\n" if narrow else ", ").join(savers) or "-",
                     *[m.show(r[m.name]) for m in shown]])
    return rows


RANKED = ("tokens_per_s", "mfu", "bubble", "recompute_frac", "peak_max_bytes")
DETAIL = ("hfu", "stall_s", "peak_min_bytes", "host_bytes")
NARROW = ("tokens_per_s", "mfu", "bubble", "peak_max_bytes")       # at 80 columns


def top_tables(out: dict, label: str, compact: bool, wide: bool) -> list:
    """The ranking: at 80 columns the layout, savers and headline metrics, and (best) a
    second table with the other metrics by rank; --wide: one table."""
    from explore.models.pipeline.study import METRICS

    def metrics(names):
        return [m for m in METRICS if m.name in names]

    title = f"Top {len(out['top'])} by {label}"
    if wide:
        shown = metrics(RANKED if compact else RANKED + DETAIL)
        return [table(title, ["#", "TPxPPxDP", "mbs x m", "schedule", "savers",
                              *metric_headers(shown)], _top_rows(out, shown),
                      right=(0, *range(5, 5 + len(shown))))]
    shown = metrics(NARROW)
    tables = [_compact(title, ["#", "layout", "b x m", "schedule", "savers",
                               *metric_headers(shown)], _top_rows(out, shown, narrow=True),
                       right=(0, *range(5, 5 + len(shown))),
                       caption="layout: TP x PP x DP (v: interleaved chunks); b x m: "
                               "micro-batch size x micro-batches per iteration; C: Chronos-Pipe "
                               "cap; savers: rc = recompute, off = offload, optimizer sharding")]
    if not compact:
        detail = metrics(("recompute_frac",) + DETAIL)
        tables.append(_compact(f"{title}: the other metrics", ["#", *metric_headers(detail)],
                               [[k, *[m.show(r[m.name]) for m in detail]]
                                for k, r in enumerate(out["top"], 1)],
                               right=tuple(range(len(detail) + 1))))
    return tables


def render_best(out: dict, compact: bool, wide: bool = False) -> None:
    c = console()
    w, s, best = out["workload"], out["search"], out["best"]
    c.print(_title(w))
    # parameters apart by "; ", values by ", " so that a long list wraps between values
    space = "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in out["space"].items())
    c.print(_facts("Setup", [
        ("workload", f"seq {w['seq']}, global batch {w['global_batch']} "
                     f"({w['seq'] * w['global_batch']:,} tokens), SP {'on' if w['sp'] else 'off'}"
                     f", flash {'on' if w['flash'] else 'off'}"),
        ("memory", f"{w['hbm_bytes'] / GiB:g} GiB HBM - {w['reserve_bytes'] / GiB:g} GiB "
                   f"reserve = {w['usable_bytes'] / GiB:g} GiB usable per GPU"),
        ("searched", f"{s['space_size']:,} points in {s['elapsed_s']:.1f} s ({s['engine']}): "
                     f"{s['simulated']:,} simulated, {s['feasible']:,} feasible, "
                     f"{s['pruned']:,} pruned by a lower bound on iteration time, "
                     f"{s['redundant']:,} redundant, {s['invalid']:,} invalid layouts"),
        ("space", space)], wide))
    label = {"tokens_per_s": "tokens/s", "mfu": "MFU", "peak_max_bytes": "lowest peak memory",
             "iteration_s": "iteration time"}[out["objective"]]
    c.print(_facts(f"Best for {label}", [
        ("configuration", _config_line(best["config"])),
        *_performance(best["performance"], best["config"]),
        ("binding constraint", best["performance"]["binding"],
         "the device with the highest peak, the op running then, the largest category")],
        wide))
    c.print(stage_table(out["breakdown"], "Per-stage memory of the best configuration (GiB)",
                        wide))
    c.print(memory_chart(out["breakdown"], out["best"]["performance"]["usable_bytes"]))
    for t in top_tables(out, label, compact, wide):
        c.print(t)
    c.print(assumptions_list(out["assumptions"]))
    p = best["performance"]     # the answer again, once the tables have scrolled past
    c.print(f"[bold]answer:[/] {escape(_config_line(best['config']))}: "
            f"{p['tokens_per_s']:,.0f} tok/s, MFU {p['mfu']:.1%}, peak "
            f"{max(d['peak'] for d in out['breakdown']['devices']) / GiB:.1f} GiB")


# ---- one layout ----------------------------------------------------------------------------

def render_breakdown(data: dict, wide: bool = False) -> None:
    c = console()
    c.print(_title(data["workload"], f"  [{data['source']}]"))
    cfg, p, bd = data["config"], data["performance"], data["breakdown"]
    status = "fits" if p["fits"] else "DOES NOT FIT"
    c.print(_facts("Configuration", [
        ("layout", _config_line(cfg)), ("status", status, f"{p['usable_bytes'] / GiB:.1f} GiB "
                                                          f"usable per GPU"),
        ("binding constraint", bd["binding_text"]),
        ("peak instant", f"device {bd['binding']['device']} at {bd['binding']['time_s']:.3f} s"
                         f" during {bd['binding']['op']}"),
        *_performance(p, cfg)], wide))
    c.print(stage_table(bd, "Memory by device and category at each device's peak (GiB)", wide))
    c.print(memory_chart(bd, p["usable_bytes"]))
    c.print(assumptions_list(data["assumptions"]))


def render_plot(out, devices, assumptions: list[dict]) -> None:
    """One row per device: memory over the iteration as block characters, as many instants as
    the terminal has room for (at most 60)."""
    from explore.models.pipeline.study import describe, performance, profile

    c = console()
    blocks = " ▁▂▃▄▅▆▇█"
    cap = performance(out)["usable_bytes"]
    c.print(Text(f"Memory per device over one iteration ({out.makespan:.2f} s), scale 0 - "
                 f"{cap / GiB:.0f} GiB usable; ! = above", style="bold"))
    c.print(_config_line(describe(out)))
    for prof in profile(out, bins=max(10, min(60, c.width - 26))):
        if devices is not None and prof["device"] not in devices:
            continue
        line = "".join("!" if b > cap else blocks[min(8, int(round(8 * b / cap)))]
                       for b in prof["bytes"])
        c.print(f"dev {prof['device']:>2} |{line}| peak {max(prof['bytes']) / GiB:.1f} GiB")
    c.print(assumptions_list(assumptions))


def render_timeline_summary(data: dict) -> None:
    """Per device: its peak (the simulator's, as breakdown shows it), when, the op running
    then, and how many CSV rows --csv would print."""
    rows: dict[int, int] = {}
    for r in data["timeline"]:
        rows[r["device"]] = rows.get(r["device"], 0) + 1
    cells = [[p["device"], f"{p['peak_bytes'] / GiB:.1f}", f"{p['peak_time_s']:.3f}",
              escape(p["peak_op"]), f"{rows.get(p['device'], 0):,}"] for p in data["peaks"]]
    console().print(table("Memory timeline over one iteration: the peak of each device",
                          ["device", "peak GiB", "at s", "op at peak", "CSV rows"], cells,
                          right=(0, 1, 2, 4),
                          caption=f"{len(data['timeline']):,} rows in all: --csv prints them, "
                                  f"--out FILE writes them, --plot draws them"))


def timeline_csv(data: dict) -> str:
    lines = ["time_s,device,category,bytes"] + [
        f"{r['time_s']:.6f},{r['device']},{r['category']},{r['bytes']:.0f}"
        for r in data["timeline"]]
    return "\n".join(lines) + "\n"


OP_COLUMNS = ("op", "kind", "device", "resource", "start_s", "end_s")


def write_ops(out, path: Path) -> None:
    """--ops: every op with its device, resource, start and end."""
    from explore.models.pipeline.study import op_list

    from .. import output
    output.write_csv(path, list(OP_COLUMNS), [[o[k] for k in OP_COLUMNS] for o in op_list(out)])


# ---- largest trainable model and sweeps ----------------------------------------------------

def _max_size_caption(grid: bool, throughput: bool) -> str:
    return "; ".join([*(["grid: the L step (p x chunks)"] if grid else []),
                      "fit / fail L: the largest fitting and the first failing grid L",
                      "L*: interpolated between them (§8)", "params: at L*",
                      ("peak, tokens/s and MFU at the fitting L (the peak at the failing L is "
                       "in its binding constraint)") if throughput else "MFU at the fitting L",
                      "C: Chronos-Pipe cap"])


def max_size_table(rows: list[dict], title: str, wide: bool, grid: bool = True,
                   throughput: bool = True):
    """The largest model per schedule (max-size, and validate's rows behind the checks); the
    binding constraints listed below the table at 80 columns."""
    def cells(r, fail_peak: bool = True):
        return [r["label"], *([r["grid_step"]] if grid else []), r["l_fit"], r["l_fail"] or "-",
                f"{r['l_star']:.2f}", f"{r['params_star'] / 1e9:.2f}",
                *([gib(r["peak_bytes_fit"]), *([gib(r["peak_bytes_fail"])] if fail_peak
                                               else []),
                   _opt(r["tokens_per_s"], ",.0f")] if throughput else []),
                "-" if r["mfu"] is None else f"{r['mfu']:.1%}",
                "-" if r["cap"] is None else r["cap"]]
    if wide:
        headers = ["schedule", *(["grid"] if grid else []), "largest fitting L",
                   "first failing L", "L*", "params at L* (B)",
                   *(["peak at fit (GiB)", "peak at fail (GiB)", "tokens/s at fit"]
                     if throughput else []), "MFU at fit", "C",
                   "binding constraint at the first failing L"]
        return table(title, headers, [cells(r) + [r["binding"]] for r in rows],
                     right=tuple(range(1, len(headers) - 1)))
    headers = ["schedule", *(["grid"] if grid else []), "fit L", "fail L", "L*", "params (B)",
               *(["peak (GiB)", "tokens/s"] if throughput else []), "MFU", "C"]
    return Group(_compact(title, headers, [cells(r, fail_peak=False) for r in rows],
                          right=tuple(range(1, len(headers))),
                          caption=_max_size_caption(grid, throughput)),
                 _notes("Binding constraint at the first failing L",
                        [(r["label"], r["binding"]) for r in rows]))


def render_max_size(data: dict, wide: bool = False) -> None:
    c = console()
    w, lay = data["workload"], data["layout"]
    c.print(Text(f"explore pipeline max-size: {w['model']} family on {w['gpus']} x "
                 f"{w['hardware']}, TP {lay['tp']} x PP {lay['pp']} x DP {lay['dp']}, "
                 f"micro-batch {lay['mbs']}", style="bold"))
    if data["floor_mfu"] is not None:
        c.print(f"throughput floor: MFU >= {data['floor_mfu']:.1%} (1 - delta of 1F1B's MFU at "
                f"its L*)")
    c.print(max_size_table(data["rows"], "Largest trainable model per schedule (L on the "
                           "partition grid; L* interpolates peak memory, §8)", wide))
    c.print(assumptions_list(data["assumptions"]))


def render_sweep(data: dict, wide: bool = False) -> None:
    c = console()
    w = data["workload"]
    c.print(Text(f"explore pipeline sweep over {data['vary']}: {w['model']} on {w['gpus']} x "
                 f"{w['hardware']}, {data['schedule']} (recompute {data['recompute']}, offload "
                 f"{data['offload']})", style="bold"))
    unit = {"seq": "tokens", "m": "micro-batches", "h2d-gbps": "GB/s"}[data["vary"]]
    rows = [[f"{r['value']:g}", f"{r['l_star']:.2f}", f"{r['params_star'] / 1e9:.2f}",
             gib(r.get("peak_bytes")),
             "-" if "tokens_per_s" not in r else f"{r['tokens_per_s']:,.0f}",
             "-" if "stall_s" not in r else f"{r['stall_s']:.2f}",
             "yes" if r.get("fits") else "no"] for r in data["rows"]]
    headers = [f"{data['vary']} ({unit})", "L*", "params at L* (B)", "peak (GiB)", "tokens/s",
               "stall (s)", "fits"]
    title = f"L*, and peak / tokens/s at L = {w['layers']}"
    if wide:
        c.print(table(title, headers + ["binding at L* + 1 grid step"],
                      [row + [r["binding"]] for row, r in zip(rows, data["rows"])],
                      right=tuple(range(0, 6))))
    else:
        c.print(_compact(title, headers, rows, right=tuple(range(0, 6))))
        c.print(_notes("Binding at L* + 1 grid step", [(row[0], r["binding"])
                                                       for row, r in zip(rows, data["rows"])]))
    c.print(assumptions_list(data["assumptions"]))


def render_validate(data: dict, wide: bool = False) -> None:
    c = console()
    fx = data["fixture"]
    c.print(Text(f"explore pipeline validate: §8 fixture ({fx['model']} shape, L = "
                 f"{fx['layers']}, TP {fx['tp']} x PP {fx['pp']} x DP {fx['dp']}, s {fx['seq']}, "
                 f"b {fx['mbs']}, m {fx['m']}, {fx['hbm_bytes'] / GiB:g} GiB HBM, host link "
                 f"{fx['host_link_bandwidth'] / 1e9:g} GB/s, eta {fx['eff']:g})", style="bold"))
    c.print(checks_table("Validation", data["rows"]))
    c.print(f"throughput floor for the ratio checks: MFU >= {data['floor_mfu']:.1%}")
    c.print(max_size_table(data["max_size"], "Largest trainable model behind the checks", wide,
                           grid=False, throughput=False))
    if "throughput" in data:
        c.print(throughput_table(data["throughput"]))
    if "moe_memory" in data:
        c.print(moe_memory_table(data["moe_memory"]))
    if "moe_time" in data:
        c.print(moe_time_table(data["moe_time"]))
    c.print(assumptions_list(data["assumptions"]))


def moe_memory_table(v: dict) -> Table:
    """Measured vs predicted peak memory of each measured device of the MoE runs."""
    rows = [[r["id"] + ("*" if r["inferred"] else ""), str(r["device"]),
             f"{r['measured_gib']:.2f}", f"{r['ours_gib']:.2f}", f"{r['error']:+.1%}"]
            for r in v["rows"]]
    return table("Peak memory, Megatron-Core MoE runs (max_memory_allocated)",
                 ["run", "dev", "meas. GiB", "ours GiB", "error"], rows, right=(1, 2, 3, 4),
                 caption="ours: a-priori, nothing fitted; the device peak without the reserve "
                         "(max_memory_allocated counts tensors only). * layout partly "
                         "inferred; what each run does that explore does not model is in "
                         "the data file")


def moe_time_table(v: dict) -> Table:
    """Measured vs predicted iteration time of the MoE runs that state one."""
    rows = [[r["id"] + ("*" if r["inferred"] else ""), str(r["gpus"]),
             f"{r['measured_s']:.2f}", f"{r['ours_s']:.2f}", f"{r['error']:+.1%}"]
            for r in v["rows"]]
    return table("Iteration time, MoE runs", ["run", "GPUs", "meas. s", "ours s", "error"],
                 rows, right=(1, 2, 3, 4),
                 caption="ours: a-priori, nothing fitted. * layout or time partly inferred; "
                         "what each run does that explore does not model is in the data "
                         "file")


def throughput_table(v: dict) -> Table:
    """Measured vs predicted iteration time of each run, a-priori and calibrated."""
    rows = [[r["model"], str(r["gpus"]),
             f"{r['tp']}x{r['pp']}x{r['dp']}" + (f" v{r['vpp']}" if r["vpp"] > 1 else ""),
             f"{r['measured_s']:.2f}", f"{r['apriori_s']:.2f}", f"{r['apriori_error']:+.1%}",
             f"{r['calibrated_error']:+.1%}", r["role"]] for r in v["rows"]]
    scale = v["calibrated"]["params"][0]["value"]
    return table(f"Iteration time, Megatron-LM runs on {v['gpu']} ({v['source']})",
                 ["model", "GPUs", "TPxPPxDP", "meas. s", "ours s", "error", "calib.",
                  "use"], rows, right=(1, 3, 4, 5, 6),
                 caption=f"ours: a-priori (nothing fitted); calib.: GEMM scale {scale:.3f} "
                         f"fitted on the 'fit' runs, the others only checked; measured = "
                         f"Eq. 3 FLOPs / achieved TFLOP/s")


def launch_text(launch: dict) -> str:
    """Megatron-LM arguments, one flag per line ready to paste after pretrain_gpt.py, then
    what they cannot say as comments."""
    lines: list[list[str]] = []
    for arg in launch["megatron"]:       # a flag with its values (--recompute-modules: several)
        if arg.startswith("--") or not lines:
            lines.append([arg])
        else:
            lines[-1].append(shlex.quote(arg))   # a layout's | and * are shell syntax
    text = " \\\n".join(" ".join(x) for x in lines)
    notes = [f"# {n}" for n in launch["notes"]]
    return "\n".join([f"# Megatron-LM arguments (checked against {launch['checked_against']})",
                      text, *notes])


def render_fit(out: dict) -> None:
    """explore pipeline fit: the fitted scales, every run and the hold-out error."""
    c = console()
    c.print(Text(f"explore pipeline fit: {len(out['rows'])} runs on {out['hardware']} "
                 f"({out['node']})", style="bold"))
    c.print(table("Fitted", ["parameter", "value", "bounds", "at bound"],
                  [[p["name"], f"{p['value']:.4f}", f"{p['lower']:g}-{p['upper']:g}",
                    p["at_bound"] or "-"] for p in out["parameters"]], right=(1,)))
    c.print(table("Runs", ["run", "measured s", "a-priori", "fitted s", "error", "use"],
                  [[r["id"], f"{r['measured_s']:.3f}", f"{r['apriori_error']:+.1%}",
                    f"{r['calibrated_s']:.3f}", f"{r['calibrated_error']:+.1%}", r["role"]]
                   for r in out["rows"]], right=(1, 2, 3, 4),
                  caption="a-priori: error with nothing fitted; error: after the fit"))
    h = out["holdout"]
    c.print("hold-out: " + (f"mean |error| {h['mean_abs_error']:.1%}, max "
                            f"{h['max_abs_error']:.1%} over {h['runs']} runs" if h else
                            "none (every run was fitted on)"))
    c.print(f"wrote {out['calibration_file']} (use it with --calibration)", markup=False,
            highlight=False, soft_wrap=True)


# ---- --save-dir ----------------------------------------------------------------------------

def save(out: dict, d: Path) -> list[Path]:
    """Search and breakdown: result.json, per_stage_memory.csv (bytes), top.csv when a search
    ran, and memory.png (per-device stacked categories against the HBM capacity)."""
    from .. import output

    output.write_json(d / "result.json", out)
    bd = out["breakdown"]
    keys = [k for _, key in MEMORY_PARTS for k in (key if isinstance(key, tuple) else (key,))]
    output.write_csv(d / "per_stage_memory.csv",
                     ["device", *[f"{k}_bytes" for k in keys], "peak_bytes",
                      "total_with_reserve_bytes", "peak_op", "peak_time_s"],
                     [[x["device"], *[x[k] for k in keys], x["peak"], x["total_with_reserve"],
                       x["peak_op"], x["peak_time_s"]] for x in bd["devices"]])
    names = ["result.json", "per_stage_memory.csv", "memory.png"]
    if "top" in out:
        output.write_rows(d / "top.csv", out["top"])
        names.insert(2, "top.csv")
    perf = out["best"]["performance"] if "best" in out else out["performance"]
    stacks = {k: v for k, v in memory_stacks(bd).items() if any(v)}
    w = out["workload"]
    output.stacked_bars(d / "memory.png", [f"dev {x['device']}" for x in bd["devices"]], stacks,
                        "memory at the device's peak (GiB)",
                        f"{w.get('model', '')}: per-stage memory at each device's peak\n"
                        f"binding: {bd['binding_text']}",
                        cap=(hbm_gib(bd, perf["usable_bytes"]), "HBM capacity"))
    return [d / n for n in names]


def _save_rows(data: dict, d: Path, tables: dict[str, list[dict]]) -> list[Path]:
    """result.json and one CSV per table (the rows' own keys, SI units)."""
    from .. import output

    output.write_json(d / "result.json", data)
    for name, rows in tables.items():
        output.write_rows(d / name, rows)
    return [d / "result.json", *[d / n for n in tables]]


def _flat(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in rows]


def save_max_size(data: dict, d: Path) -> list[Path]:
    return _save_rows(data, d, {"max_size.csv": _flat(data["rows"])})


def save_sweep(data: dict, d: Path) -> list[Path]:
    return _save_rows(data, d, {"sweep.csv": _flat(data["rows"])})


def save_validate(data: dict, d: Path) -> list[Path]:
    tables = {"checks.csv": data["rows"], "max_size.csv": _flat(data["max_size"])}
    if "throughput" in data:
        tables["throughput.csv"] = data["throughput"]["rows"]
    if "moe_memory" in data:
        tables["moe_memory.csv"] = data["moe_memory"]["rows"]
    if "moe_time" in data:
        tables["moe_time.csv"] = data["moe_time"]["rows"]
    return _save_rows(data, d, tables)


def save_timeline(data: dict, out, d: Path) -> list[Path]:
    from .. import output

    output.write_json(d / "result.json", data)
    output.write_text(d / "timeline.csv", timeline_csv(data))
    write_ops(out, d / "ops.csv")
    return [d / "result.json", d / "timeline.csv", d / "ops.csv"]
