"""`explore sd`: speculative decoding for MoE inference (MoESD, docs/sd.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import typer

from .common import (RANGE_HELP, NTrialsOpt, SamplerOpt, SearchOpt, SearchOptions, SeedOpt,
                     StorageOpt, StudyNameOpt, TimeoutOpt, TotalTrialsOpt, WorkersOpt, emit_json)

DEFAULT_MODEL = "qwen2-57b-a14b"
DEFAULT_GPU = "h100-sxm"
DEFAULT_BATCH = "1-100"
DEFAULT_GAMMA = "1-8"
FALLBACK_ACCEPTANCE = "generic-0.8"
OBJECTIVE_ALIASES = {"speedup": "speedup", "throughput": "throughput", "latency": "latency_s",
                     "te": "target_efficiency"}

app = typer.Typer(
    help="Speculative decoding for MoE inference (MoESD): speedup and target efficiency over "
         "batch size and draft length.\n\nExample: explore sd --model qwen2-57b --hardware h800 "
         "--tp 2 --acceptance qwen2-57b-humaneval-t0",
    no_args_is_help=False)


@dataclass
class SdRequest:
    """Flags (or a preset's keys) of `explore sd`, before defaults are filled in."""
    model: str = DEFAULT_MODEL
    draft: Optional[str] = None
    hardware: Optional[str] = None
    tp: Optional[int] = None
    draft_tp: Optional[int] = None
    alpha: Optional[float] = None
    sigma: Optional[str] = None
    acceptance: Optional[str] = None
    batch: str = DEFAULT_BATCH
    gamma: str = DEFAULT_GAMMA
    ctx: int = 512
    verify_tokens: str = "gamma+1"
    overlap: str = "none"
    routing_correlation: float = 0.0
    objective: str = "speedup"
    max_latency_ms: Optional[float] = None
    dense: Optional[str] = None
    calibration: Optional[str] = None
    top: int = 5
    search: SearchOptions = field(default_factory=SearchOptions)
    plot: bool = True
    save_dir: Optional[str] = None


def build(req: SdRequest):
    """Flags -> (setup, study, dense setup or None, notes on every default used)."""
    from explore import presets
    from explore.models import sd
    from explore.models.errors import InputError
    from explore.models.sd_study import SdSetup, SdStudy, smallest_tp

    from .common import parse_int_range, parse_sigma

    notes: list[str] = []
    target = presets.load("model", req.model)
    batches = parse_int_range(req.batch, "--batch")
    gammas = parse_int_range(req.gamma, "--gamma")
    if req.ctx < 0:
        raise InputError(f"--ctx must be >= 0 tokens, got {req.ctx}")
    if req.top < 1:
        raise InputError(f"--top must be >= 1, got {req.top}")
    pairing = None
    if not presets.is_path(req.model) and target.name in presets.names("pairing"):
        pairing = presets.load("pairing", target.name)

    draft_name = req.draft or (pairing.draft if pairing else None)
    if draft_name is None:
        raise InputError(f"{target.name} has no usual draft preset; pass --draft NAME "
                         f"(`explore presets list model`)")
    draft = presets.load("model", draft_name)
    if req.draft is None:
        notes.append(f"draft {draft.name}: the usual draft of {target.name}")

    given = [n for n, v in (("--alpha", req.alpha), ("--sigma", req.sigma),
                            ("--acceptance", req.acceptance)) if v is not None]
    if len(given) > 1:
        raise InputError(f"give only one of {', '.join(given)}")
    if req.alpha is not None:
        alpha = sd.check_alpha(req.alpha)
        acceptance = f"alpha = {alpha:g} (--alpha)"
    elif req.sigma is not None:
        sigma, at = parse_sigma(req.sigma, gammas)
        alpha = float(sd.alpha_from_sigma(sigma, at))
        acceptance = f"alpha = {alpha:.4f} from sigma {sigma:g} at gamma {at}"
    else:
        name = req.acceptance or (pairing.acceptance if pairing else FALLBACK_ACCEPTANCE)
        preset = presets.load("acceptance", name)
        alpha = preset.alpha
        acceptance = f"{preset.name}: alpha = {alpha:g}"
        if req.acceptance is None:
            notes.append(f"acceptance {preset.name} (alpha {alpha:g}): "
                         + ("the pairing's default" if pairing else "no measured rate for this "
                            "pair; pass --alpha, --sigma or --acceptance"))

    calibration = None
    if req.calibration:
        from explore.models.sd_fit import Calibration
        calibration = presets.load_dataclass(Calibration, req.calibration)
        if calibration.target != target.name:
            raise InputError(f"{req.calibration} was fitted for {calibration.target}, not "
                             f"{target.name}")
        fitted_on = f"{req.calibration} was fitted on {calibration.gpus} x {calibration.hardware}"
        if req.hardware and presets.load("gpu", req.hardware).name != calibration.hardware:
            raise InputError(f"{fitted_on}; drop --hardware or refit")
        if req.tp is not None and req.tp != calibration.gpus:
            raise InputError(f"{fitted_on}; drop --tp or refit")

    gpu = presets.load("gpu", req.hardware or (calibration.hardware if calibration
                                               else DEFAULT_GPU))
    if req.hardware is None and calibration is None:
        notes.append(f"hardware {gpu.name}: default current GPU")
    draft_tp = req.draft_tp or (pairing.draft_tp if pairing else 1)
    if calibration is not None:
        tp = calibration.gpus
    elif req.tp is None:
        tp = smallest_tp(target, draft, gpu, max(batches), req.ctx, max(gammas))
        notes.append(f"tp {tp}: smallest TP degree whose GPUs hold weights + KV cache at batch "
                     f"{max(batches)}, ctx {req.ctx}")
    else:
        tp = req.tp
    if req.draft_tp is None:
        notes.append(f"draft on {draft_tp} GPU (tensor parallel {draft_tp})")

    def setup_for(model, tp_, cal=None):
        return SdSetup(sd.Deployment(model, gpu, tp_), sd.Deployment(draft, gpu, draft_tp),
                       alpha, req.ctx, req.verify_tokens, req.routing_correlation, req.overlap,
                       max_latency_s=None if req.max_latency_ms is None
                       else req.max_latency_ms * 1e-3, calibration=cal)

    setup = setup_for(target, tp, calibration)
    study = SdStudy(setup, batches, gammas)
    dense = None
    if req.dense:
        dense_model = presets.load("model", req.dense)
        dense = setup_for(dense_model, smallest_tp(dense_model, draft, gpu, max(batches),
                                                   req.ctx, max(gammas)))
    info = {"target": target.name, "draft": draft.name, "hardware": gpu.name, "tp": tp,
            "draft_tp": draft_tp, "alpha": alpha, "acceptance": acceptance, "ctx": req.ctx,
            "verify_tokens": req.verify_tokens, "overlap": req.overlap,
            "routing_correlation": req.routing_correlation, "batch": req.batch,
            "gamma": req.gamma, "calibration": req.calibration}
    return setup, study, dense, notes, info


def run(req: SdRequest) -> dict:
    """Build, search and report: the JSON-ready result of `explore sd`."""
    from explore.models.errors import InputError
    from explore.models.sd_study import report

    from .search_run import run_search

    objectives = []
    for name in req.objective.split(","):
        if name.strip() not in OBJECTIVE_ALIASES:
            raise InputError(f"--objective {req.objective!r}: choose from "
                             f"{', '.join(OBJECTIVE_ALIASES)} (or a comma list of them)")
        objectives.append(OBJECTIVE_ALIASES[name.strip()])
    setup, study, dense, notes, info = build(req)
    result = run_search(study, objectives, req.search)
    ranked = result.ranked()
    if not len(ranked):
        reasons = sorted({r for r in result.reasons if r})
        raise InputError("no feasible (batch, gamma) point: " + "; ".join(reasons[:3]))
    top = [result.row(i) for i in ranked[: req.top]]
    out = {"study": "sd", "setup": info, "defaults": notes, "objective": ",".join(objectives),
           "search": {"engine": result.engine, "evaluated": result.n,
                      "space_size": result.space_size, "infeasible": int((~result.feasible).sum()),
                      "elapsed_s": result.elapsed_s, "interrupted": result.interrupted,
                      "study_name": result.study_name, "storage": req.search.storage}}
    out.update(report(setup, study, result.point(ranked[0]), top, dense))
    return out


@app.callback(invoke_without_command=True)
def sd_command(
    ctx: typer.Context,
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="target model preset or a "
                              "Hugging Face config.json path"),
    draft: Optional[str] = typer.Option(None, "--draft", help="draft model preset (default: the "
                                        "target's usual draft)"),
    hardware: Optional[str] = typer.Option(None, "--hardware", "--gpu", help=f"GPU preset "
                                           f"(default: {DEFAULT_GPU})"),
    tp: Optional[int] = typer.Option(None, "--tp", help="tensor-parallel GPUs for the target "
                                     "(default: the smallest that holds weights + KV cache)"),
    draft_tp: Optional[int] = typer.Option(None, "--draft-tp", help="GPUs for the draft "
                                           "(default: 1)"),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="per-token acceptance "
                                          "probability in [0, 1)"),
    sigma: Optional[str] = typer.Option(None, "--sigma", help="measured sigma = tokens per "
                                        "round / (gamma+1); write 0.91@4 for sigma at gamma 4"),
    acceptance: Optional[str] = typer.Option(None, "--acceptance", help="acceptance preset "
                                             "(default: the pairing's)"),
    batch: str = typer.Option(DEFAULT_BATCH, "--batch", "-b", help=f"batch sizes: {RANGE_HELP}"),
    gamma: str = typer.Option(DEFAULT_GAMMA, "--gamma", "-g", help=f"draft lengths: "
                              f"{RANGE_HELP}"),
    context: int = typer.Option(512, "--ctx", help="KV-cache length per sequence (tokens)"),
    verify_tokens: str = typer.Option("gamma+1", "--verify-tokens", help="positions scored in "
                                      "verification: gamma+1 (real engines) or gamma (paper)"),
    overlap: str = typer.Option("none", "--overlap", help="roofline per GEMM group: none "
                                "(memory + compute add) or max (they overlap)"),
    routing_correlation: float = typer.Option(0.0, "--routing-correlation", help="fraction of "
                                              "a sequence's consecutive tokens that reuse "
                                              "experts (0 = i.i.d., the paper)"),
    objective: str = typer.Option("speedup", "--objective", help="speedup, throughput, latency "
                                  "or te (target efficiency); a comma list searches their "
                                  "Pareto set, the first ranks it"),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", help="constraint: "
                                                   "time per generated token with SD (ms)"),
    dense: Optional[str] = typer.Option(None, "--dense", help="also evaluate this dense model "
                                        "(e.g. qwen2-7b) for comparison"),
    calibration: Optional[str] = typer.Option(None, "--calibration", help="calibration YAML from "
                                              "`explore sd fit`: use the fitted model"),
    top: int = typer.Option(5, "--top", help="rows in the ranking table"),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="terminal plot of speedup over "
                              "batch size per draft length"),
    save_dir: Optional[str] = typer.Option(None, "--save-dir", help="also write result.json, "
                                           "grid.csv, top.csv, breakdown.csv and PNG figures "
                                           "here"),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
    search: str = SearchOpt, sampler: str = SamplerOpt, n_trials: Optional[int] = NTrialsOpt,
    timeout: Optional[float] = TimeoutOpt, seed: Optional[int] = SeedOpt,
    storage: Optional[str] = StorageOpt, study_name: Optional[str] = StudyNameOpt,
    workers: int = WorkersOpt, total_trials: Optional[int] = TotalTrialsOpt,
) -> None:
    """Best batch size and draft length for speculative decoding, with the why."""
    if ctx.invoked_subcommand:
        return
    req = SdRequest(model, draft, hardware, tp, draft_tp, alpha, sigma, acceptance, batch, gamma,
                    context, verify_tokens, overlap, routing_correlation, objective,
                    max_latency_ms, dense, calibration, top,
                    SearchOptions(search, sampler, n_trials, timeout, seed, storage, study_name,
                                  workers, total_trials), plot, save_dir)
    out = run(req)
    if save_dir:
        save(out, save_dir)
    if json_out:
        emit_json(out)
    else:
        render(out, plot)
        if save_dir:
            from .render import console
            console().print(f"[dim]saved result.json, grid.csv, top.csv, breakdown.csv, "
                            f"speedup_vs_batch.png, te_vs_batch.png to {save_dir}[/]")


# ---- rendering ----------------------------------------------------------------------------

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


def render(out: dict, plot: bool = True) -> None:
    from rich.text import Text

    from explore.models.units import GiB

    from .render import console, key_values, ms, si, table

    c = console()
    s, best, rng = out["setup"], out["best"], out["ranges"]
    c.print(Text(f"explore sd: {s['target']} + draft {s['draft']} on {s['tp']} x "
                 f"{s['hardware']}", style="bold"), Text(f"  [{out['mode']}]",
                                                          style="bold yellow"))
    c.print(key_values("Setup", [
        ("acceptance", s["acceptance"]), ("context", f"{s['ctx']} tokens"),
        ("verification", f"{s['verify_tokens']} positions per sequence"),
        ("roofline overlap", s["overlap"]), ("draft GPUs", s["draft_tp"]),
        ("searched", f"batch {s['batch']} x gamma {s['gamma']} "
                     f"({out['search']['space_size']} points, {out['search']['engine']}, "
                     f"{out['search']['elapsed_s'] * 1e3:.0f} ms)")]))
    if out["defaults"]:
        c.print(key_values("Defaults used", [("", n) for n in out["defaults"]]))
    c.print(key_values(f"Best for {out['objective']}", [
        ("batch size B", best["batch"]), ("draft length gamma", best["gamma"]),
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
        from .render import line_plot
        g = out["grid"]
        shown = _shown_gammas(g["gamma"], best["gamma"])
        c.print(line_plot(g["batch"], {f"gamma={gm}": [row[g["gamma"].index(gm)]
                                                       for row in g["speedup"]]
                                       for gm in shown},
                          xlabel="batch size B", ylabel="speedup (x)", hline=1.0))
    bd = out["breakdown"]
    ar, ver = bd["target_ar"], bd["target_verify"]
    rows = []
    for a, v in zip(ar["terms"], ver["terms"]):
        rows.append([a["term"], ms(a["seconds"]), ms(v["seconds"]),
                     si(v.get("bytes", 0.0), "B") if "bytes" in v else "",
                     si(v.get("flops", 0.0), "FLOP") if "flops" in v else "",
                     v.get("bound", ""), a["equation"]])
    total_ar = sum(t["seconds"] for t in ar["terms"])
    total_v = sum(t["seconds"] for t in ver["terms"])
    rows.append(["total", ms(total_ar), ms(total_v), "", "", "", ""])
    c.print(table(f"Target forward time at B = {ar['batch']} (per GPU; bytes and FLOPs of the "
                  f"verification forward)",
                  ["term", "T_T(B,1) ms", f"T_T(B,{ver['tokens_per_seq']:g}) ms", "bytes/GPU",
                   "FLOPs/GPU", "bound", "source"], rows, right=(1, 2, 3, 4)))
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


def save(out: dict, directory: str) -> None:
    """--save-dir: the JSON result, the tables as CSV (units in the headers) and figures."""
    from pathlib import Path

    from . import output

    d = output.prepare(Path(directory))
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


def _top_table(out: dict):
    from explore.models.sd_study import METRICS

    from .render import metric_headers, table

    shown = [m for m in METRICS if m.name in ("speedup", "target_efficiency", "throughput",
                                               "latency_s", "memory_bytes")]
    rows = [[str(k), str(r["batch"]), str(r["gamma"]), *[m.show(r[m.name]) for m in shown]]
            for k, r in enumerate(out["top"], 1)]
    return table(f"Top {len(rows)} by {out['objective']}", ["#", "B", "gamma",
                                                            *metric_headers(shown)],
                 rows, right=tuple(range(1, 3 + len(shown))))


def _grid_table(out: dict):
    import math

    from rich.table import Table

    g = out["grid"]
    best = out["best"]
    peak = max(max(row) for row in g["speedup"])
    t = Table(title="Speedup by batch size and draft length", title_justify="left",
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


from . import sd_fit  # noqa: E402,F401  (registers `explore sd fit` on this sub-app)
