"""Tables, plots and files of `explore chiplet` (the JSON-ready dicts of cli/chiplet.py).

Every table is designed for 80 columns first: few columns, abbreviations explained once in a
caption; `--wide` adds the detail for 120+ columns, and the JSON and CSV files carry all of it.
Texts from the models and presets (sources say "[design]") are escaped, not read as markup."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.text import Text

from . import checks_table, console, si
from . import key_values as _key_values
from . import table as _table

SCHEDULE_SHORT = {"layer-major": "LM", "micro-batch-major": "MBM"}
CONFIG_CAPTION = ("configuration: method grid SRAM schedule (LM layer-major, MBM "
                  "micro-batch-major) package x modules DRAM/I/O sides B_m")
MAIN_TERMS = ("t_comp", "t_nop", "t_dram", "t_io", "t_phase")


def fit(t):
    """Column widths that fit the terminal without cutting a word: headers wrap first, then
    the widest columns give way, none below its longest word or number (Rich's own collapse
    levels the widest columns and may cut a name to '…'). A table that cannot fit is left to
    Rich."""
    from rich.measure import Measurement

    c = console()
    pads = _padding_widths(t)

    def size(cells, pad):
        sizes = [Measurement.get(c, c.options, cell) for cell in cells] or [Measurement(0, 0)]
        return max(m.minimum for m in sizes) + pad, max(m.maximum for m in sizes) + pad
    least = [size((col.header, *col.cells), pad)[0] for col, pad in zip(t.columns, pads)]
    body = [size(tuple(col.cells), pad)[1] for col, pad in zip(t.columns, pads)]
    natural = [size((col.header, *col.cells), pad)[1] for col, pad in zip(t.columns, pads)]
    rules = (2 if t.box and t.show_edge else 0) + (len(t.columns) - 1 if t.box else 0)
    widths, room = list(natural), c.options.max_width - rules
    for floor in ([max(a, b) for a, b in zip(least, body)], least):
        while sum(widths) > room:
            shrinkable = [i for i, w in enumerate(widths) if w > floor[i]]
            if not shrinkable:
                break
            widths[max(shrinkable, key=lambda i: widths[i])] -= 1
    if sum(widths) > room:
        return t
    if sum(natural) > room:
        for col, w, pad in zip(t.columns, widths, pads):
            col.width = w - pad
    return t


def _padding_widths(t) -> list[int]:
    """Horizontal padding of each column, as Rich lays it out (public attributes only, so a
    new Rich release cannot break it)."""
    _, right, _, left = t.padding
    if t.collapse_padding:
        left = 0            # Rich keeps the right padding between collapsed columns
    last = len(t.columns) - 1
    return [(0 if i == 0 and not t.pad_edge else left)
            + (0 if i == last and not t.pad_edge else right) for i in range(len(t.columns))]


def table(*args, **kwargs):
    """cli/render.table, fitted to the terminal (`fit`)."""
    return fit(_table(*args, **kwargs))


def key_values(*args, **kwargs):
    """cli/render.key_values, fitted to the terminal (`fit`)."""
    return fit(_key_values(*args, **kwargs))


def fmt_point(p: dict) -> str:
    return (f"{p['method']} on {p['grid']}, {p['sram_mb']} MB SRAM, {p['schedule']}, "
            f"{p['package']} x{p['modules']}, {p['dram']} on {p['io_sides']} sides, "
            f"B_m {p['micro_batch']}")


def _short(r: dict) -> str:
    return (f"{r['method']} {r['grid']} {r['sram_mb']}MB {SCHEDULE_SHORT[r['schedule']]} "
            f"{r['package']} x{r['modules']} {r['dram']}/{r['io_sides']} Bm{r['micro_batch']}")


def energy_ranges_table(rows: list[dict], against: str):
    """The energy ratio with each constant at the ends of its literature range."""
    def q(v: float) -> str:       # energies in pJ (per bit or MAC), powers in W
        return f"{v * 1e12:.3g} pJ" if v < 1e-6 else f"{v:.3g} W"
    cells = [[f"{r['preset']} {r['constant']}", q(r["now"]), f"{q(r['low'])}-{q(r['high'])}",
              f"{r['energy_ratio_low']:.2f}x", f"{r['energy_ratio_high']:.2f}x"] for r in rows]
    return table(f"Energy ratio vs {against}; now {rows[0]['energy_ratio_now']:.2f}x) with "
                 f"each constant at the ends of its literature range",
                 ["constant", "now", "range", "at low", "at high"], cells, right=(3, 4),
                 caption="the presets' ranges and their sources: "
                         "docs/research/chiplet-energy.md; one constant moved at a time, for "
                         "both designs")


def search_notes(se: dict, labels: dict) -> list[str]:
    """What the reader of a 'best' must know: it was sampled, it won a tie, it sits on the
    edge of what was searched."""
    notes = []
    if se["engine"] != "exhaustive":
        notes.append(f"sampled: {se['evaluated']:,} of {se['space_size']:,} configurations "
                     f"({se['evaluated'] / se['space_size']:.2%}); --search exhaustive sweeps "
                     f"them all")
    t = se.get("ties")
    if t:
        notes.append(f"{t['tied']} configurations lie within {t['rtol']:.1%} of the best "
                     f"{labels.get(t['objective'], t['objective'])}; the tie goes to lower "
                     f"{', then '.join(labels.get(b, b) for b in t['broken_by'][:2])}")
    notes += [f"on the edge: {e}" for e in se.get("edges", [])]
    return notes


def render(out: dict, wide: bool = False) -> None:
    """The default command, `search` and `run`."""
    from explore.models.chiplet.study import METRICS

    c = console()
    s, best = out["setup"], out["best"]
    labels = {m.name: m.label for m in METRICS}
    objective = out.get("objective")                           # only the default command's
    label = labels.get(objective, objective) if isinstance(objective, str) else objective
    title = {"default": f"best for {label}",
             "search": f"Pareto search over {', '.join(out.get('objectives', []))}",
             "run": "one configuration"}[out["command"]]
    c.print(Text(f"explore chiplet: {s['model']}, S = {s['seq']}, B = {s['batch']} "
                 f"({s['tokens']:,} tokens per iteration), {title}", style="bold"))
    if "search" in out:
        se = out["search"]
        c.print(key_values("Search", [
            ("space", f"{se['space_size']:,} configurations ({se['engine']})"),
            ("evaluated", f"{se['evaluated']:,} in {se['elapsed_s']:.2f} s; "
                          f"{se['feasible']:,} feasible, {se['infeasible']:,} infeasible")]))
        for n in search_notes(se, labels):
            c.print(f"[dim]note: {escape(n)}[/]")
    if out["defaults"]:
        c.print(key_values("Defaults used", [("", escape(n)) for n in out["defaults"]]))
    render_point(best, wide)
    if out["command"] == "search":
        _render_pareto(out, wide)
    if out.get("top"):
        c.print(_top_table(out["top"], f"Top {len(out['top'])}"
                           + (f" by {out['objective']}" if "objective" in out else ""), wide))
    prov = s["provenance"]["die"]
    c.print(key_values("Hardware provenance (die; `explore presets show NAME` for the rest)",
                       [(k, escape(v)) for k, v in prov.items() if k != "name"]))
    if "summary" in best:       # the answer again, once the tables have scrolled past
        sm = best["summary"]
        c.print(f"[bold]answer:[/] {escape(fmt_point(best['point']))}: {sm['latency_s']:.2f} s "
                f"and {sm['energy_j'] / 1e3:.1f} kJ per iteration, "
                f"{sm['area_mm2']:,.0f} mm²")


def render_point(rep: dict, wide: bool = False) -> None:
    """One configuration: summary, the 1D comparison, latency, energy, DRAM and SRAM."""
    c = console()
    sm = rep["summary"]
    c.print(key_values(f"Configuration: {fmt_point(rep['point'])}", [
        ("latency / iteration", f"{sm['latency_s']:.2f} s", f"{sm['tokens_per_s']:,.0f} tokens/s"),
        ("energy / iteration", f"{sm['energy_j'] / 1e3:.1f} kJ",
         f"{sm['j_per_token'] * 1e3:.2f} mJ/token"),
        ("silicon area", f"{sm['area_mm2']:,.0f} mm²"),
        ("binding constraint", rep["binding"]),
        ("compute / NoP", f"{sm['t_comp_over_t_nop']:.2f}" if sm["t_comp_over_t_nop"] else "-",
         "t_comp / t_NoP over the iteration"),
        ("on-chip chunk T_c", f"{sm['chunk']:.0f} tokens")]))
    if "baselines" in rep:
        c.print(baselines_table(rep["baselines"]))
        failing: dict[str, list[str]] = {}          # one note per reason
        for b in rep["baselines"]:
            if b["reason"]:
                failing.setdefault(b["reason"], []).append(b["baseline"])
        for reason, names in failing.items():
            who = ("every 1D baseline is" if len(names) == len(rep["baselines"]) else
                   f"1D {'; '.join(names)} {'is' if len(names) == 1 else 'are'}")
            c.print(f"[dim]note: {who} infeasible there ({escape(reason)}); costed as if it "
                    f"ran[/]")
    if rep.get("energy_ranges"):
        c.print(energy_ranges_table(rep["energy_ranges"], "the one-way 1D ring ("
                                    "at its better schedule"))
    for n in rep["notes"]:
        c.print(f"[dim]note: {escape(n)}[/]")
    c.print(_latency_wide(rep) if wide else _latency(rep))
    if not wide:
        c.print(_iteration(rep))
    tot = rep["energy"][-1]["joules"]
    c.print(table("Energy per iteration", ["term", "energy (kJ)", "share", "source"]
                  + ["detail"] * wide,
                  [[e["term"], f"{e['joules'] / 1e3:.2f}", f"{e['joules'] / tot:.1%}",
                    escape(e["equation"])] + [escape(e["detail"])] * wide
                   for e in rep["energy"]], right=(1, 2)))
    c.print(table("DRAM traffic per iteration", ["category", "bytes"],
                  [[d["category"], si(d["bytes"], "B")] for d in rep["dram"]], right=(1,)))
    c.print(table("SRAM per die", ["item", "MB", "source"],
                  [[escape(x["item"]), f"{x['bytes'] / 1e6:.2f}", escape(x["equation"])]
                   for x in rep["sram"]], right=(1,)))


def baselines_table(rows: list[dict], title: str = "vs Megatron 1D TP on the same hardware, "
                                                  "each baseline at its better schedule"):
    """The point against every 1D baseline (ratios = 1D / this)."""
    return table(title, ["1D baseline", "schedule", "latency ratio", "energy ratio",
                         "1D binding"],
                 [[b["baseline"], "LM" if b["schedule"] == "layer-major" else "MBM",
                   f"{b['latency_ratio']:.2f}x", f"{b['energy_ratio']:.2f}x", b["binding"]]
                  for b in rows], right=(2, 3),
                 caption="LM: layer-major, MBM: micro-batch-major; ratios above 1: this "
                         "point is faster or uses less energy")


def _latency(rep: dict):
    """Per-layer times of the main terms, one column per phase."""
    rows = [x for x in rep["latency"] if x["per_layer_s"] is not None
            and x["term"] in MAIN_TERMS]
    phases = list(dict.fromkeys(x["phase"] for x in rows))
    cell = {(x["term"], x["phase"]): x for x in rows}
    terms = list(dict.fromkeys(x["term"] for x in rows))
    return table("Latency per iteration (bottleneck die): ms per layer", ["term", *phases,
                                                                         "source"],
                 [[t, *[f"{cell[t, p]['per_layer_s'] * 1e3:.2f}" for p in phases],
                   escape(next(x["equation"] for x in rows if x["term"] == t))]
                  for t in terms], right=tuple(range(1, 1 + len(phases))))


def _iteration(rep: dict):
    """How the per-layer times add up to t_iter."""
    lat = rep["latency"]
    phase = [x for x in lat if x["term"] == "t_phase"]
    layers = round(phase[0]["total_s"] / phase[0]["per_layer_s"]) if phase and \
        phase[0]["per_layer_s"] else 0
    once = [x for x in lat if x["per_layer_s"] is None]
    return key_values("", [
        ("layers", f"{sum(x['total_s'] for x in phase):.3f} s",
         f"{layers} x t_phase ({' + '.join(x['phase'] for x in phase)})"),
        *[(f"{x['term']} ({x['phase']})", f"{x['total_s']:.3f} s", escape(x["equation"]))
          for x in once]])


def _latency_wide(rep: dict):
    return table("Latency per iteration (bottleneck die)",
                 ["phase", "term", "per layer (ms)", "total (s)", "source"],
                 [[x["phase"], x["term"], "" if x["per_layer_s"] is None else
                   f"{x['per_layer_s'] * 1e3:.2f}", f"{x['total_s']:.3f}", escape(x["equation"])]
                  for x in rep["latency"]], right=(2, 3))


TOP_HEADERS = {"latency_s": "latency", "energy_j": "energy", "area_mm2": "area",
               "t_comp_s": "t_comp", "t_nop_s": "t_NoP", "t_dram_s": "t_DRAM",
               "e_static_j": "E_static"}


def _top_table(rows: list[dict], title: str, wide: bool = False):
    from explore.models.chiplet.study import METRICS
    names = ("latency_s", "energy_j", "area_mm2") + (
        ("t_comp_s", "t_nop_s", "t_dram_s", "e_static_j") if wide else ())
    shown = [m for m in METRICS if m.name in names]
    return table(title, ["#", "configuration", *[f"{TOP_HEADERS[m.name]} ({m.unit})"
                                                 for m in shown], "binding"],
                 [[str(k), _short(r), *[m.show(r[m.name]) for m in shown], r["binding"]]
                  for k, r in enumerate(rows, 1)], right=tuple(range(2, 2 + len(shown))),
                 caption=f"per iteration; area: silicon; {CONFIG_CAPTION}")


def _render_pareto(out: dict, wide: bool) -> None:
    import numpy as np

    from . import scatter
    c = console()
    c.print(_top_table(out["pareto"][:40], f"Pareto set ({len(out['pareto'])} points over "
                                           f"{', '.join(out['objectives'])})", wide))
    res = out["_result"]
    ok = [int(i) for i in np.flatnonzero(res.feasible)]
    pos = {i: k for k, i in enumerate(ok)}
    c.print(f"Latency vs energy of the feasible points (chosen: "
            f"{fmt_point(out['best']['point'])})")
    c.print(scatter([float(res.metrics["latency_s"][i]) for i in ok],
                    [float(res.metrics["energy_j"][i]) / 1e3 for i in ok],
                    [pos[int(i)] for i in res.pareto() if int(i) in pos], pos.get(res.best),
                    xlabel="latency per iteration (s)", ylabel="energy per iteration (kJ)"))


def render_scale(out: dict, wide: bool = False) -> None:
    """The §8 series: proxies, then the §9-scenario times of Hecaton-2D and 1D TP."""
    rows = out["series"]
    c = console()
    proxies = [("W_d (MB)", lambda r: f"{r['w_d_bytes'] / 1e6:.2f}"),
               ("Hec fwd", lambda r: f"{r['hecaton_fwd_per_token']:,.0f}"),
               ("1D fwd", lambda r: f"{r['one_d_fwd_per_token']:,.0f}"),
               ("1D : Hec", lambda r: f"{r['ratio']:.3f}"),
               ("R_hec", lambda r: f"{r['r_hec']:.1f}"), ("R_1D", lambda r: f"{r['r_1d']:.1f}")]
    if wide:
        proxies[1:1] = [("P_layer", lambda r: f"{r['p_layer']:,}")]
        proxies[3:3] = [("Hec bwd", lambda r: f"{r['hecaton_bwd_per_token']:,.1f}")]
        proxies.append(("buf/token Hec : 1D (B)", lambda r: f"{r['hecaton_buf_bytes']:,.0f} : "
                                                          f"{r['one_d_buf_bytes']:,.0f}"))
    c.print(table("Weak scaling: §8 proxies (linears only, bf16, per die per layer)",
                  ["model", "grid", *[h for h, _ in proxies]],
                  [[r["model"], r["grid"], *[f(r) for _, f in proxies]] for r in rows],
                  right=tuple(range(2, 2 + len(proxies))),
                  caption="W_d weight shard; fwd: elements each die sends per token in the "
                          "forward; R: forward FLOP per NoP byte; Hec Hecaton-2D, 1D Megatron "
                          "TP" + ("; buf: on-chip buffer per token" if wide else "")))
    times = [("Hec latency (s)", lambda r: f"{r['hecaton_latency_s']:.1f}"),
             ("Hec comp/NoP", lambda r: f"{r['hecaton_comp_over_nop']:.3f}"),
             ("1D latency (s)", lambda r: f"{r['one_d_latency_s']:.1f}"),
             ("1D comp/NoP", lambda r: f"{r['one_d_comp_over_nop']:.3f}"),
             ("1D : Hec", lambda r: f"{r['latency_ratio']:.2f}x")]
    if wide:
        times[0:0] = [("Hec t_comp (s)", lambda r: f"{r['hecaton_t_comp_s']:.1f}"),
                      ("Hec t_NoP (s)", lambda r: f"{r['hecaton_t_nop_s']:.1f}")]
        times[4:4] = [("1D t_comp (s)", lambda r: f"{r['one_d_t_comp_s']:.1f}"),
                      ("1D t_NoP (s)", lambda r: f"{r['one_d_t_nop_s']:.1f}")]
    c.print(table("Weak scaling: times per iteration (§9 scenario: layer-major, overlap = max)",
                  ["model", "grid", *[h for h, _ in times]],
                  [[r["model"], r["grid"], *[f(r) for _, f in times]] for r in rows],
                  right=tuple(range(2, 2 + len(times))),
                  caption="comp/NoP: t_comp / t_NoP; 1D : Hec: latency ratio"))
    for r in rows:
        for n in r["notes"]:
            c.print(f"[dim]note: {r['model']}/{r['grid']}: {escape(n)}[/]")


def render_validate(res: dict, wide: bool = False) -> None:
    from explore.models.chiplet.validate import check_rows
    c = console()
    c.print(checks_table("Validation against the Hecaton abstract (docs/chiplet.md §9)",
                         check_rows(res["rows"])))
    ratios = [("lat LM", "latency_ratio", "x"), ("E LM", "energy_ratio", "x"),
              ("lat MBM", "latency_ratio_ported", "x"), ("E MBM", "energy_ratio_ported", "x")]
    if wide:
        ratios += [("Hec c/N", "hecaton_comp_over_nop", ""), ("1D c/N", "one_d_comp_over_nop", "")]
    c.print(table("Sensitivities (Llama2-70B, 8x8; ratios = 1D / Hecaton)",
                  ["case", *[h for h, _, _ in ratios], "Hec binding", "1D binding"],
                  [[x["case"], *[f"{x[k]:.2f}{u}" for _, k, u in ratios], x["hecaton_binding"],
                    x["one_d_binding"]] for x in res["sensitivities"]],
                  right=tuple(range(1, 1 + len(ratios))),
                  caption="lat latency, E energy, against 1D layer-major (LM, the method "
                          "alone) and micro-batch-major (MBM, the ported design)"
                          + ("; c/N t_comp / t_NoP" if wide else "")))
    c.print(baselines_table(res["against"], "The §9 Hecaton point (70B, 8x8) against every 1D "
                                            "baseline, each at its better schedule"))
    if res.get("energy_ranges"):
        c.print(energy_ranges_table(res["energy_ranges"], "1D layer-major (70B, 8x8"))
    render_scale({"series": res["series"]}, wide)
    for n in res["notes"]:
        c.print(f"[dim]note: {escape(n)}[/]")


# ---- files ----------------------------------------------------------------------------------

def save(out: dict, directory: str | Path) -> list[Path]:
    """pareto.csv, trials.csv (every point, with infeasibility reasons), best.yaml,
    breakdown.csv, result.json and the figures."""
    from explore.models.chiplet.report import breakdown_rows

    from ..output import prepare, write_json, write_rows, write_yaml
    from ..studies.chiplet import best_yaml, result_rows
    directory = prepare(Path(directory))
    written: list[Path] = []
    result = out.get("_result")
    if result is not None:
        from explore.models.chiplet.study import binding_name
        trials = []
        for i in range(result.n):
            r = result.row(i)
            r["binding"] = binding_name(r["binding"]) if r["feasible"] else ""
            r.setdefault("reason", "")
            trials.append(r)
        pareto = out.get("pareto") or result_rows(result, result.pareto())
        for path, rows in (("trials.csv", trials), ("pareto.csv", pareto)):
            write_rows(directory / path, rows)
            written.append(directory / path)
    write_yaml(directory / "best.yaml", best_yaml(out))
    write_rows(directory / "breakdown.csv", breakdown_rows(out["best"]))
    write_json(directory / "result.json", {k: v for k, v in out.items()
                                           if not k.startswith("_")})
    return written + [directory / "best.yaml", directory / "breakdown.csv",
                      directory / "result.json", *figures(out, directory)]


def save_tables(out: dict, directory: str | Path, tables: dict[str, list[dict]]) -> list[Path]:
    """result.json and one CSV per table (`scale`, `validate`); list cells joined by '; '."""
    from ..output import prepare, write_json, write_rows
    directory = prepare(Path(directory))
    write_json(directory / "result.json", out)
    for name, rows in tables.items():
        write_rows(directory / name, [{k: "; ".join(v) if isinstance(v, list) else v
                                       for k, v in r.items()} for r in rows])
    return [directory / "result.json", *[directory / n for n in tables]]


def figures(out: dict, directory: Path) -> list[Path]:
    """energy_breakdown.png for the chosen point (against Megatron 1D on the same hardware)
    and, after a search, pareto_latency_energy.png with every feasible point and the choice."""
    import numpy as np

    from ..output import scatter_figure, stacked_bars
    best = out["best"]
    title = fmt_point(best["point"])
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
