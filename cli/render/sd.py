"""How `explore sd` and `explore validate sd` look: the tables, the terminal plot and the
--save-dir files (docs/sd.md §8)."""

from __future__ import annotations

from pathlib import Path

def _grid_rows(batches: list[int], best_b: int, limit: int = 14) -> list[int]:
    """Indices of batch rows to show: all if few, else a spread including the best."""
    if len(batches) <= limit:
        return list(range(len(batches)))
    marks = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024, best_b,
             batches[0], batches[-1]}
    return [i for i, b in enumerate(batches) if b in marks]


def _shown_gammas(gammas: list[int], best: int, limit: int = 6) -> list[int]:
    """At most `limit` draft lengths for plots: spread over the range, always the best."""
    if len(gammas) <= limit:
        return gammas
    step = (len(gammas) - 1) / (limit - 1)
    picked = {gammas[round(i * step)] for i in range(limit)} | {best}
    return sorted(picked)


WIDE_COLUMNS = 120   # terminals this wide show every breakdown column without --wide


def _energy(best: dict) -> tuple[str, str]:
    if best["energy_j_per_token"] is None:
        return "n/a", "the GPU preset has no TDP"
    return (f"{best['energy_j_per_token']:.3g} J with SD, {best['energy_ar_j_per_token']:.3g} "
            f"without", f"first estimate: {best['power_w']:,.0f} W (GPUs x TDP) / throughput")


def _formats(f: dict) -> str:
    experts = f", experts {f['experts']}" if f["experts"] != f["weights"] else ""
    return (f"weights {f['weights']}{experts}, KV cache {f['kv_cache']}, GEMM inputs "
            f"{f['activations']}")


def render(out: dict, plot: bool = True, wide: bool = False) -> None:
    from rich.text import Text

    from explore.models.units import GiB

    from . import console, key_values, ms, si, table

    c = console()
    s, best, rng = out["setup"], out["best"], out["ranges"]
    c.print(Text(f"explore sd: {s['target']} + draft {s['draft']} on {s['tp']} x "
                 f"{s['hardware']}", style="bold"), Text(f"  [{out['mode']}]",
                                                          style="bold yellow"))
    tree = s.get("draft_topk", 1) > 1 or s.get("draft_tokens")
    c.print(key_values("Setup", [
        ("draft", f"{s['draft']} ({s.get('draft_family', 'model')}"
                  + (f", {s['draft_vocab']:,}-token head" if s.get("draft_vocab") else "")
                  + ")"),
        ("acceptance", s["acceptance"]), ("context", f"{s['ctx']} tokens"),
        ("verification", f"tree of gamma steps x topk {s['draft_topk']}, "
                         f"{s['draft_tokens'] or 'steps x topk + 1'} positions per sequence"
         if tree else f"{s['verify_tokens']} positions per sequence"),
        ("number formats", _formats(s["formats"])),
        ("roofline overlap", s["overlap"]), ("draft GPUs", s["draft_tp"]),
        *([("experts", f"EP {s['ep']} over the TP GPUs"
            + (", attention data-parallel" if s.get("dp_attention") else "")
            + f", routing {s.get('routing', 'uniform')}")]
          if s.get("ep", 1) > 1 or s.get("routing", "uniform") != "uniform" else []),
        ("engine", f"{s['engine']} (fixed costs around the kernels, §5.3)"),
        ("searched", f"batch {s['batch']} x gamma {s['gamma']} "
                     f"({out['search']['space_size']} points, {out['search']['engine']}, "
                     f"{out['search']['elapsed_s'] * 1e3:.0f} ms)")]))
    if out["defaults"]:
        c.print(key_values("Defaults used", [("", n) for n in out["defaults"]]))
    for w in out["warnings"]:
        c.print(f"[bold yellow]warning:[/] {w}")
    near = f"within {rng['within']:.0%} of the best speedup"
    edge = rng["best_on_edge"]

    def flat(name: str, value: int, span: list[int]) -> tuple[int, str]:
        where = {"upper": "on the upper edge of the searched range: a larger value may be "
                          "better", "lower": "on the lower edge of the searched range"}
        values = f"{name} {span[0]}-{span[1]}" if span[0] != span[1] else f"only {name} {value}"
        note = f"{values} {near}" + (f"; {where[edge[name]]}" if edge[name] else "")
        return value, note

    c.print(key_values(f"Best for {out['objective']}", [
        ("batch size B", *flat("batch", best["batch"], rng["near_best_batch"])),
        ("draft length gamma", *flat("gamma", best["gamma"], rng["near_best_gamma"])),
        ("speedup", f"{best['speedup']:.3f}x", "sigma(gamma+1) T_T(B,1) / T_round  (§3)"),
        ("target efficiency", f"{best['target_efficiency']:.3f}",
         "T_T(B,1) / T_T(B,verify)  (§3)"),
        ("tokens per round", f"{best['tokens_per_round']:.3f}",
         f"sigma {best['sigma']:.3f} x (gamma+1)"),
        ("throughput", f"{best['throughput']:,.0f} tok/s with SD, "
                       f"{best['throughput_ar']:,.0f} without"),
        ("latency per token", f"{best['latency_s'] * 1e3:.2f} ms with SD, "
                              f"{best['latency_ar_s'] * 1e3:.2f} ms without"),
        ("memory per GPU", f"{best['memory_bytes'] / GiB:.1f} GiB (weights + KV, incl. draft)"),
        ("energy per token", *_energy(best)),
    ]))
    eff, win = rng["effective"], rng["speedup_above_1"]
    c.print(key_values(f"Batch ranges at gamma {rng['gamma']}", [
        ("peak", f"{rng['peak_speedup']:.3f}x at B = {rng['peak_batch']}"),
        ("effective range", f"B {eff[0]}-{eff[1]}" if eff else "none",
         "speedup >= peak / sqrt(2) (the paper's effective range)"),
        ("SD helps", f"B {win[0]}-{win[1]}" if win else "nowhere", "speedup >= 1")]))

    c.print(_top_table(out))
    c.print(_grid_table(out))
    if plot:
        from . import line_plot
        g = out["grid"]
        shown = _shown_gammas(g["gamma"], best["gamma"])
        c.print(line_plot(g["batch"], {f"gamma={gm}": [row[g["gamma"].index(gm)]
                                                       for row in g["speedup"]]
                                       for gm in shown},
                          xlabel="batch size B", ylabel="speedup (x)", hline=1.0))
    bd = out["breakdown"]
    ar, ver = bd["target_ar"], bd["target_verify"]
    wide = wide or c.width >= WIDE_COLUMNS
    rows = []
    for a, v in zip(ar["terms"], ver["terms"]):
        detail = [si(v["bytes"], "B") if "bytes" in v else "",
                  si(v["flops"], "FLOP") if "flops" in v else ""] if wide else []
        rows.append([a["term"], ms(a["seconds"]), ms(v["seconds"]), *detail,
                     v.get("bound", ""), a["equation"]])
    total_ar = sum(t["seconds"] for t in ar["terms"])
    total_v = sum(t["seconds"] for t in ver["terms"])
    rows.append(["total", ms(total_ar), ms(total_v), *([""] * 2 * wide), "", ""])
    t_v = f"T_T(B,{ver['tokens_per_seq']:g})"
    c.print(table(f"Target forward time at B = {ar['batch']}, per GPU (ms)",
                  ["term", "T_T(B,1)", t_v, *(["bytes/GPU", "FLOPs/GPU"] if wide else []),
                   "bound", "source"], rows, right=(1, 2, 3, 4) if wide else (1, 2),
                  caption=f"T_T(B,1): a decode step; {t_v}: the verification forward"
                  + ("; bytes and FLOPs of the verification forward" if wide
                     else "; --wide adds its bytes and FLOPs")))
    rnd = bd["round"]
    total = sum(r["seconds"] for r in rnd)
    c.print(table("One SD round", ["part", "ms", "share", "source"],
                  [[r["term"], ms(r["seconds"]), f"{r['seconds'] / total:.1%}", r["equation"]]
                   for r in rnd] + [["T_round", ms(total), "100%", "§3"]], right=(1, 2)))
    if "experts" in out:
        e = out["experts"]
        c.print(key_values("Experts per MoE layer", [
            ("E, K", f"{e['E']}, {e['K']} (rho = {e['K'] / e['E']:.3f})"),
            ("T_thres", f"{e['T_thres']} tokens", "tokens for 95 % activation (§4)"),
            ("N(n) decode / verify", f"{e['N_decode']:.2f} / {e['N_verify']:.2f} experts",
             "E (1 - (1 - rho)^n)  (§4)"),
            ("T_exp decode / verify", f"{e['T_exp_decode']:.2f} / {e['T_exp_verify']:.2f} "
                                      f"tokens per expert", "n K / N(n)  (§4)")]))
    if "dense" in out:
        d = out["dense"]
        idx = _grid_rows(d["batch"], best["batch"])
        c.print(table(f"MoE vs dense {d['model']} (TP {d['tp']}) at gamma {d['gamma']}",
                      ["B", "MoE speedup", "dense speedup", "dense TE"],
                      [[d["batch"][i], f"{d['moe_speedup'][i]:.3f}", f"{d['speedup'][i]:.3f}",
                        f"{d['target_efficiency'][i]:.3f}"] for i in idx], right=(0, 1, 2, 3)))
    # the answer again where the reader's eyes end up, once the tables have scrolled past
    c.print(f"[bold]answer:[/] batch {best['batch']}, gamma {best['gamma']}: speedup "
            f"{best['speedup']:.2f}x, {best['throughput']:,.0f} tok/s with SD "
            f"({out['mode']})")


SAVED = ["result.json", "grid.csv", "top.csv", "breakdown.csv", "speedup_vs_batch.png",
         "te_vs_batch.png"]


def save(out: dict, d: Path) -> list[Path]:
    """--save-dir: the JSON result, the tables as CSV (units in the headers) and figures;
    returns the files written."""
    from .. import output

    output.write_json(d / "result.json", out)
    g = out["grid"]
    output.write_csv(d / "grid.csv", ["batch", "gamma", "speedup_x", "target_efficiency"],
                     [[b, gm, g["speedup"][i][j], g["target_efficiency"][i][j]]
                      for i, b in enumerate(g["batch"]) for j, gm in enumerate(g["gamma"])])
    top_cols = ["batch", "gamma", "speedup", "target_efficiency", "throughput", "throughput_ar",
                "latency_s", "latency_ar_s", "memory_bytes"]
    output.write_csv(d / "top.csv", ["batch", "gamma", "speedup_x", "target_efficiency",
                                     "throughput_tok_s", "throughput_ar_tok_s", "latency_s",
                                     "latency_ar_s", "memory_bytes"],
                     [[r[k] for k in top_cols] for r in out["top"]])
    bd = out["breakdown"]
    rows = [["T_T(B,1)", t["term"], t["seconds"], t.get("bytes", ""), t.get("flops", ""),
             t.get("bound", ""), t["equation"]] for t in bd["target_ar"]["terms"]]
    rows += [[f"T_T(B,{bd['target_verify']['tokens_per_seq']:g})", t["term"], t["seconds"],
              t.get("bytes", ""), t.get("flops", ""), t.get("bound", ""), t["equation"]]
             for t in bd["target_verify"]["terms"]]
    rows += [["round", r["term"], r["seconds"], "", "", "", r["equation"]] for r in bd["round"]]
    output.write_csv(d / "breakdown.csv", ["forward", "term", "seconds", "bytes_per_gpu",
                                           "flops_per_gpu", "bound", "source"], rows)
    best, rng, s = out["best"], out["ranges"], out["setup"]
    shown = _shown_gammas(g["gamma"], best["gamma"])
    column = {gm: g["gamma"].index(gm) for gm in shown}
    title = (f"{s['target']} + {s['draft']} on {s['tp']} x {s['hardware']}\n"
             f"{s['acceptance']}; {out['mode']}")
    eff = rng["effective"]
    curves = {f"gamma = {gm}": [row[j] for row in g["speedup"]] for gm, j in column.items()}
    if "dense" in out:
        curves[f"dense {out['dense']['model']}, gamma = {out['dense']['gamma']}"] = \
            out["dense"]["speedup"]
    output.line_figure(
        d / "speedup_vs_batch.png", g["batch"], curves,
        "batch size B (sequences)", "speedup over autoregressive decoding (x)", title,
        mark=(best["batch"], best["speedup"], f"best: B={best['batch']}, gamma={best['gamma']}"),
        span=(eff[0], eff[1], f"effective range at gamma={rng['gamma']}") if eff else None,
        hline=(1.0, "no gain"))
    output.line_figure(
        d / "te_vs_batch.png", g["batch"],
        {f"gamma = {gm}": [row[j] for row in g["target_efficiency"]]
         for gm, j in column.items()},
        "batch size B (sequences)", "target efficiency T_T(B,1) / T_T(B,verify)", title)
    return [d / n for n in SAVED]


def _top_table(out: dict):
    from explore.models.sd_study import METRICS

    from . import metric_headers, table

    shown = [m for m in METRICS if m.name in ("speedup", "target_efficiency", "throughput",
                                               "latency_s", "memory_bytes")]
    rows = [[str(k), str(r["batch"]), str(r["gamma"]), *[m.show(r[m.name]) for m in shown]]
            for k, r in enumerate(out["top"], 1)]
    return table(f"Top {len(rows)} by {out['objective']}", ["#", "B", "gamma",
                                                            *metric_headers(shown)],
                 rows, right=tuple(range(1, 3 + len(shown))),
                 caption="TE: target efficiency; throughput and latency with SD; memory: "
                         "weights + KV cache incl. draft")


def _grid_table(out: dict):
    import math

    from rich.table import Table

    g = out["grid"]
    best = out["best"]
    peak = max(max(row) for row in g["speedup"])
    t = Table(title="Speedup (x) by B and gamma", title_justify="left",
              caption="green: >= peak/sqrt(2); red: < 1; reversed: best", caption_justify="left",
              header_style="bold")
    t.add_column("B", justify="right")
    for gm in g["gamma"]:
        t.add_column(f"g={gm}", justify="right")
    for i in _grid_rows(g["batch"], best["batch"]):
        cells = []
        for j, v in enumerate(g["speedup"][i]):
            style = "green" if v >= peak / math.sqrt(2) else ("red" if v < 1 else "")
            if g["batch"][i] == best["batch"] and g["gamma"][j] == best["gamma"]:
                style = "bold reverse green"
            cells.append(f"[{style}]{v:.2f}[/]" if style else f"{v:.2f}")
        t.add_row(str(g["batch"][i]), *cells)
    return t


DATASETS = {"humaneval": "HE", "mtbench": "MT"}   # short names for 80-column tables


def _short_model(label: str) -> str:
    """'Qwen2-57B-A14B' -> 'Qwen2-57B', 'Mixtral-8x7B+EAGLE' -> 'Mixtral-8x7B'."""
    return "-".join(label.split("+")[0].split("-")[:2])


def render_validation(out: dict, summary_only: bool) -> None:
    from . import checks_table, console, key_values, table

    c = console()
    if not summary_only:
        c.print(table("MoESD peak speedups: published vs predicted (peak over B = 1..100)",
                      ["model", "GPUs", "data", "T", "g", "pub x", "none x", "ours x",
                       "at B", "error", "use"],
                      [[_short_model(r["model"]), r["hardware"],
                        DATASETS.get(r["dataset"], r["dataset"]), f"{r['temperature']:g}",
                        r["gamma"], f"{r['published']:.2f}", f"{r['kernels_only']:.2f}",
                        f"{r['ours']:.2f}", r["peak_batch"], f"{r['error']:+.1%}", r["role"]]
                       for r in out["peaks"]], right=(3, 4, 5, 6, 7, 8, 9), compact=True,
                      caption="Table 1: the 2xA800 cells, Table 2: the others; data: "
                      + ", ".join(f"{v} {k}" for k, v in DATASETS.items())
                      + "; T temperature; g draft length gamma; pub the published peak "
                      "speedup; none kernels only; ours with engine "
                      f"{out['peak_summary']['engine']}, at batch B; use: fit = the engine "
                      "terms were fitted on this cell, check = only checked"))
    s = out["peak_summary"]
    f = s["fitted"]

    def errors(e: dict) -> str:
        return (f"mean {e['mean_abs_error']:.1%}, max {e['max_abs_error']:.1%}, signed "
                f"{e['mean_signed_error']:+.1%} over {e['cells']} cells")

    c.print(key_values("Peak speedups: |predicted - published| / published", [
        (f"kernels only ({s['kernels_only']['engine']})", errors(s["kernels_only"]),
         "no engine cost: the reference the engine terms close"),
        (f"{s['engine']}, fit cells", errors(f["fit"]), f["fitted_on"]),
        (f"{s['engine']}, check cells", errors(f["check"]),
         f"tolerance: mean <= {f['tolerance']['mean']:.0%}, max <= {f['tolerance']['max']:.0%}"),
        *[(p["name"], f"{p['value']:.3f} x T_T(B,1)" + (f" (on the {p['at_bound']} bound)"
                                                        if p["at_bound"] else ""),
           f"fitted, bounds {p['lower']:g}-{p['upper']:g}") for p in f["params"]]]))
    c.print(table("The paper's orderings", ["ordering", "pairs", "published holds",
                                            "ours holds", "reproduced"],
                  [[o["ordering"], o["pairs"], o["published_holds"], o["ours_holds"],
                    "yes" if o["holds"] else "no"] for o in out["orderings"]], right=(1, 2, 3)))
    for name, h in out["h200"].items():
        if not summary_only and name == "qwen2-57b-a14b":
            c.print(table(f"H200 {name}: T_T(B,t)/T_T(B,1), measured vs predicted "
                          f"(* = row used by the calibration fit)",
                          ["B", "t", "measured", "a-priori", "error", "calibrated", "error"],
                          [[r["batch"], r["tokens_per_seq"], f"{r['measured']:.3f}",
                            f"{r['apriori']:.3f}",
                            f"{(r['apriori'] - r['measured']) / r['measured']:+.1%}",
                            f"{r['calibrated']:.3f}" + ("*" if r["in_fit"] else ""),
                            f"{(r['calibrated'] - r['measured']) / r['measured']:+.1%}"]
                           for r in h["rows"] if r["tokens_per_seq"] > 1],
                          right=(0, 1, 2, 3, 4, 5, 6)))
    c.print(table("H200 T_T(B,t)/T_T(B,1) errors by model (t > 1)",
                  ["model", "a-priori", "max", "calibrated", "max", "fit rows", "time"],
                  [[m, f"{h['apriori']['mean_abs_error']:.1%}",
                    f"{h['apriori']['max_abs_error']:.1%}",
                    f"{h['calibrated']['mean_abs_error']:.1%}",
                    f"{h['calibrated']['max_abs_error']:.1%}", h["calibrated"]["fit_points"],
                    f"{h['calibrated']['fit_seconds'] * 1e3:.0f} ms"]
                   for m, h in out["h200"].items()], right=(1, 2, 3, 4, 5, 6),
                  caption="mean and max |error|; calibrated: scored on the held-out rows "
                          "only; fit rows: rows the fit saw (every k-th); time: fit time"))
    c.print(checks_table("SD validation summary", out["checks"]))
    for a in out["assumptions"]:
        c.print(f"[dim]assumption: {a}[/]")
