"""`explore pipeline`: pipeline-parallel training memory and throughput (ChronosPipe,
docs/pipeline.md). Flags become a Workload, a search space or one fixed layout; every number
comes from explore.models.pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import typer

from .common import (RANGE_HELP, NTrialsOpt, SamplerOpt, SearchOpt, SearchOptions, SeedOpt,
                     StorageOpt, StudyNameOpt, TimeoutOpt, TotalTrialsOpt, WorkersOpt,
                     emit_json)

DEFAULT_MODEL = "llama2-70b"
DEFAULT_GPU = "a100-80g"
DEFAULT_GPUS = 64
DEFAULT_EFF = 0.5
FIXTURE_PRESET = "chronos-fixture"
OBJECTIVES = {"tokens": "tokens_per_s", "mfu": "mfu", "memory": "peak_max_bytes",
              "time": "iteration_s"}

app = typer.Typer(
    help="Pipeline-parallel training memory and throughput (ChronosPipe): what fits in HBM, "
         "the fastest layout and schedule, where the memory goes.\n\n"
         "Example: explore pipeline --model llama2-70b --layers 48 --gpus 64 "
         "--hardware a100-80g",
    no_args_is_help=False)

HW = "Hardware"
WORK = "Workload"
PAR = "Parallelism"
POL = "Policy"

ModelOpt = typer.Option(DEFAULT_MODEL, "--model", "-m", help="dense model preset or a Hugging "
                        "Face config.json", rich_help_panel=WORK)
LayersOpt = typer.Option(None, "--layers", "-L", help="override the model's layer count",
                         rich_help_panel=WORK)
SeqOpt = typer.Option(4096, "--seq", help="sequence length s (tokens)", rich_help_panel=WORK)
GlobalBatchOpt = typer.Option(256, "--global-batch", help="global batch B_g (sequences)",
                              rich_help_panel=WORK)
HardwareOpt = typer.Option(DEFAULT_GPU, "--hardware", "--gpu", help="GPU preset",
                           rich_help_panel=HW)
NodeOpt = typer.Option(None, "--node", help="server preset (host RAM, links, network) "
                       "(default: the GPU's usual server)", rich_help_panel=HW)
GpusOpt = typer.Option(DEFAULT_GPUS, "--gpus", help="number of GPUs", rich_help_panel=HW)
HbmOpt = typer.Option(None, "--hbm-gib", help="HBM per GPU (GiB) (default: the GPU's)",
                      rich_help_panel=HW)
ReserveOpt = typer.Option(2.0, "--reserve-gib", help="reserve per GPU for CUDA context and "
                          "NCCL (GiB)", rich_help_panel=HW)
HostRamOpt = typer.Option(None, "--host-ram-gib", help="usable pinned host RAM per node (GiB) "
                          "(default: the server's RAM x its pinned fraction)",
                          rich_help_panel=HW)
H2dOpt = typer.Option(None, "--h2d-gbps", help="host-link bandwidth per direction (GB/s) "
                      "(default: the GPU's)", rich_help_panel=HW)
LinkShareOpt = typer.Option(None, "--link-share", help="GPUs sharing one host link "
                            "(default: the server's)", rich_help_panel=HW)
PeakOpt = typer.Option(None, "--peak-tflops", help="peak bf16 TFLOP/s (default: the GPU's)",
                       rich_help_panel=HW)
EffOpt = typer.Option(DEFAULT_EFF, "--eff", help="eta: achieved fraction of peak FLOP/s",
                      rich_help_panel=HW)
FragOpt = typer.Option(1.0, "--frag", help="fragmentation factor on dynamic memory (1.05-1.2 "
                       "in practice)", rich_help_panel=HW)
SpOpt = typer.Option(False, "--sp/--no-sp", help="sequence parallelism", rich_help_panel=PAR)
FlashOpt = typer.Option(True, "--flash/--no-flash", help="flash attention",
                        rich_help_panel=PAR)
CapOpt = typer.Option(None, "--cap", help="Chronos-Pipe cap C in chunk units (default: the "
                      "planner tries 2p..2)", rich_help_panel=POL)
RecLayersOpt = typer.Option(None, "--recompute-layers", help="'full' recompute of this many "
                            "layers per chunk (default: the fewest that fit)",
                            rich_help_panel=POL)
ZeroOpt = typer.Option(None, "--zero", help="ZeRO stage 1, 2 or 3 (16-byte Adam family)",
                       rich_help_panel=POL)
DistOptOpt = typer.Option(False, "--dist-opt", help="Megatron distributed optimizer "
                          "(6 + 12/d B/param)", rich_help_panel=POL)
JsonOpt = typer.Option(False, "--json", help="print JSON instead of tables")
SaveDirOpt = typer.Option(None, "--save-dir", help="also write result.json, "
                          "per_stage_memory.csv, top.csv and memory.png here")
TbOpt = typer.Option(1.0, "--tb-ratio", help="measured T_B / T_F of a layer (input gradient)",
                     rich_help_panel=WORK)
TwOpt = typer.Option(1.0, "--tw-ratio", help="measured T_W / T_F of a layer (weight gradient)",
                     rich_help_panel=WORK)


@dataclass
class Req:
    """Flags common to every pipeline command, before presets are loaded."""
    model: str = DEFAULT_MODEL
    layers: Optional[int] = None
    hardware: str = DEFAULT_GPU
    node: Optional[str] = None
    gpus: int = DEFAULT_GPUS
    hbm_gib: Optional[float] = None
    reserve_gib: float = 2.0
    host_ram_gib: Optional[float] = None
    h2d_gbps: Optional[float] = None
    link_share: Optional[int] = None
    peak_tflops: Optional[float] = None
    eff: float = DEFAULT_EFF
    frag: float = 1.0
    seq: int = 4096
    global_batch: int = 256
    sp: bool = False
    flash: bool = True
    tp: Optional[str] = None
    pp: Optional[str] = None
    dp: Optional[int] = None
    vpp: Optional[str] = None
    mbs: Optional[str] = None
    schedule: Optional[str] = None
    cap: Optional[int] = None
    recompute: Optional[str] = None
    recompute_layers: Optional[int] = None
    offload: Optional[str] = None
    zero: Optional[int] = None
    dist_opt: bool = False
    tb_ratio: float = 1.0
    tw_ratio: float = 1.0
    search: SearchOptions = field(default_factory=SearchOptions)


def default_node(gpu_name: str) -> str:
    from explore import presets
    for name in presets.names("node"):
        if gpu_name in presets.load("node", name).default_for:
            return name
    return "dgx-a100"


def workload(req: Req):
    """Flags -> Workload (model with its layer count, hardware with overrides)."""
    from explore import presets
    from explore.models.errors import InputError
    from explore.models.pipeline.config import Hardware
    from explore.models.pipeline.study import Workload
    from explore.models.units import GB, TFLOPS, GiB

    model = presets.load("model", req.model)
    if req.layers is not None:
        if req.layers < 1:
            raise InputError(f"--layers must be >= 1, got {req.layers}")
        model = model.with_layers(req.layers)
    gpu = presets.load("gpu", req.hardware)
    node = presets.load("node", req.node or default_node(gpu.name))
    for flag, v in (("--hbm-gib", req.hbm_gib), ("--host-ram-gib", req.host_ram_gib),
                    ("--h2d-gbps", req.h2d_gbps), ("--peak-tflops", req.peak_tflops)):
        if v is not None and v <= 0 and flag != "--host-ram-gib":
            raise InputError(f"{flag} must be > 0, got {v}")
    hw = Hardware.from_presets(
        gpu, node, req.gpus,
        hbm_bytes=None if req.hbm_gib is None else req.hbm_gib * GiB,
        reserve_bytes=req.reserve_gib * GiB, fragmentation=req.frag,
        host_ram_bytes=None if req.host_ram_gib is None else req.host_ram_gib * GiB,
        host_link_bandwidth=None if req.h2d_gbps is None else req.h2d_gbps * GB,
        link_share=req.link_share,
        peak_flops=None if req.peak_tflops is None else req.peak_tflops * TFLOPS,
        eff=req.eff)
    return Workload(model, hw, req.seq, req.global_batch, req.sp, req.flash, req.tb_ratio,
                    req.tw_ratio)


def _names(text: str | None, allowed: tuple[str, ...], flag: str,
           default: tuple[str, ...]) -> tuple[str, ...]:
    from explore.models.errors import InputError
    if text is None:
        return default
    out = []
    for part in (x.strip().lower() for x in text.split(",") if x.strip()):
        if part not in allowed:
            raise InputError(f"{flag} {part!r}: choose from {', '.join(allowed)}")
        out.append(part)
    return tuple(dict.fromkeys(out))


def _schedules(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    from explore.models.pipeline import schedules
    if text is None:
        return default
    return tuple(dict.fromkeys(schedules.canonical(x) for x in text.split(",") if x.strip()))


def _optimizers(req: Req) -> tuple[str, ...] | None:
    from explore.models.errors import InputError
    if req.zero is not None and req.dist_opt:
        raise InputError("--dist-opt is Megatron's ZeRO-1; do not combine it with --zero")
    if req.zero is not None:
        if req.zero not in (0, 1, 2, 3):
            raise InputError(f"--zero must be 0, 1, 2 or 3, got {req.zero}")
        return ("none",) if req.zero == 0 else (f"zero{req.zero}",)
    if req.dist_opt:
        return ("dist-opt",)
    return None


def space_lists(req: Req, work) -> dict:
    """The searched values of every parameter: flags, or every value that can divide."""
    from explore.models.pipeline import config, schedules

    from .common import parse_int_range

    model, hw = work.model, work.hw
    if req.tp:
        tps = parse_int_range(req.tp, "--tp")
    else:
        tps = tuple(t for t in (1, 2, 4, 8, 16) if t <= hw.gpus_per_node
                    and model.heads % t == 0 and hw.gpus % t == 0)
    if req.pp:
        pps = parse_int_range(req.pp, "--pp")
    else:
        pps = tuple(p for p in range(1, min(model.layers, hw.gpus) + 1)
                    if hw.gpus % p == 0 and model.layers % p == 0)
    scheds = _schedules(req.schedule, schedules.SCHEDULES)
    vpps = parse_int_range(req.vpp, "--vpp") if req.vpp else (
        (1, 2) if "interleaved" in scheds else (1,))
    mbss = parse_int_range(req.mbs, "--mbs") if req.mbs else (1, 2, 4, 8)
    recs = _names(req.recompute, config.RECOMPUTE, "--recompute", config.RECOMPUTE)
    offs = _names(req.offload, config.OFFLOAD, "--offload", config.OFFLOAD)
    opts = _optimizers(req) or (("none", "dist-opt") if hw.gpus > max(pps) * min(tps)
                                else ("none",))
    return {"tp": tps, "pp": pps, "vpp": vpps, "mbs": mbss, "schedule": scheds,
            "recompute": recs, "offload": offs, "optimizer": opts}


def _one(text: str | None, flag: str, default: int | None) -> int | None:
    from explore.models.errors import InputError

    from .common import parse_int_range
    if text is None:
        return default
    vals = parse_int_range(text, flag)
    if len(vals) != 1:
        raise InputError(f"{flag} {text!r}: this command takes one value")
    return vals[0]


def fixed_policy(req: Req, schedule: str | None = None):
    from explore.models.pipeline.config import Policy
    opts = _optimizers(req)
    return Policy(schedule or (req.schedule or "1f1b"), req.cap, req.recompute or "none",
                  req.recompute_layers, req.offload or "none", (opts or ("none",))[0])


# ---- search ------------------------------------------------------------------------------

def run_search(req: Req, objective: str, top: int):
    """Search the space; returns (workload, study, result, JSON-ready dict)."""
    from explore.models.errors import InfeasibleError, InputError
    from explore.models.pipeline.study import (PipelineStudy, assumptions, binding_text,
                                               breakdown, describe, performance)
    from .search_run import run_search as search

    if objective not in OBJECTIVES:
        raise InputError(f"--objective {objective!r}: choose from {', '.join(OBJECTIVES)}")
    if top < 1:
        raise InputError(f"--top must be >= 1, got {top}")
    work = workload(req)
    lists = space_lists(req, work)
    keep = None if objective == "memory" else max(top, 10)
    explicit = req.recompute is not None or req.offload is not None
    study = PipelineStudy(work, lists["tp"], lists["pp"], lists["vpp"], lists["mbs"],
                          lists["schedule"], lists["recompute"], lists["offload"],
                          lists["optimizer"], req.cap, keep, chronos_savers_everywhere=explicit)
    result = search(study, [OBJECTIVES[objective]], req.search)
    ranked = result.ranked()
    if not len(ranked):
        raise InfeasibleError(_nothing_fits(study, result, binding_text))
    rows = [result.row(i) for i in ranked[:top]]
    best = study.outcome(tuple(rows[0][p] for p in
                               ("tp", "pp", "vpp", "mbs", "schedule", "recompute", "offload",
                                "optimizer")))
    assert best is not None
    out = {"study": "pipeline", "objective": OBJECTIVES[objective],
           "workload": _workload_info(work),
           "space": {k: list(v) for k, v in lists.items()},
           "search": {"engine": result.engine, "evaluated": result.n,
                      "space_size": result.space_size,
                      "feasible": int(result.feasible.sum()), **study.counts,
                      "elapsed_s": result.elapsed_s, "interrupted": result.interrupted},
           "best": {"config": describe(best), "performance": performance(best)},
           "breakdown": breakdown(best), "top": rows,
           "assumptions": assumptions(work)}
    return work, study, best, out


def _nothing_fits(study, result, binding_text) -> str:
    """Say why nothing fits: the configuration closest to the cap and what binds there."""
    import numpy as np

    from explore.models.pipeline.evaluate import Outcome
    peak = np.asarray(result.metrics.get("peak_max_bytes", []), dtype=float)
    if not len(peak) or not np.isfinite(peak).any():
        reasons = sorted({r for r in result.reasons if r})
        return "no valid layout: " + "; ".join(reasons[:3])
    i = int(np.nanargmin(peak))
    key = tuple(result.point(i)[p] for p in ("tp", "pp", "vpp", "mbs", "schedule",
                                                "recompute", "offload", "optimizer"))
    out = study.outcome(key)
    where = (f"TP {key[0]} x PP {key[1]}, mbs {key[3]}, {key[4]}, recompute {key[5]}, "
             f"offload {key[6]}")
    text = binding_text(out) if isinstance(out, Outcome) else str(out)
    return f"{study.workload.model.name} cannot fit: the closest configuration ({where}) " \
           f"binds at {text}"


def _workload_info(work) -> dict:
    hw = work.hw
    return {"model": work.model.name, "layers": work.model.layers,
            "params": work.model.total_params, "hardware": hw.gpu.name, "node": hw.node.name,
            "gpus": hw.gpus, "hbm_bytes": hw.hbm_bytes, "reserve_bytes": hw.reserve_bytes,
            "usable_bytes": hw.usable_bytes, "fragmentation": hw.fragmentation,
            "host_ram_bytes_per_node": hw.host_ram_bytes,
            "host_link_bandwidth": hw.host_link_bandwidth, "link_share": hw.link_share,
            "peak_flops": hw.peak_flops, "eff": hw.eff, "seq": work.seq,
            "global_batch": work.global_batch, "sp": work.sp, "flash": work.flash}


def _fixed_outcome(req: Req):
    """The layout given by --tp/--pp (...) simulated, or the best found by the search."""
    from explore.models.errors import InfeasibleError
    from explore.models.pipeline.chronos import solve
    work = workload(req)
    tp = _one(req.tp, "--tp", None)
    pp = _one(req.pp, "--pp", None)
    if tp is None or pp is None:
        _, _, best, _ = run_search(req, "tokens", 1)
        return work, best, "best configuration of the default search"
    vpp = _one(req.vpp, "--vpp", 1)
    mbs = _one(req.mbs, "--mbs", 1)
    sched = _schedules(req.schedule, ("1f1b",))
    if len(sched) != 1:
        from explore.models.errors import InputError
        raise InputError("--schedule: this command takes one schedule")
    policy = fixed_policy(req, sched[0])
    layout = work.layout(tp, pp, mbs, vpp, req.dp)
    out = solve(work.terms(layout, policy)).outcome
    if not out.fits and out.plan.host_limited:
        from explore.models.pipeline.study import binding_text
        raise InfeasibleError(f"host RAM exceeded: {binding_text(out)} (raise --host-ram-gib "
                              f"or offload less)")
    return work, out, "given layout"


# ---- commands ---------------------------------------------------------------------------

@app.callback(invoke_without_command=True)
def pipeline_command(
    ctx: typer.Context,
    model: str = ModelOpt, layers: Optional[int] = LayersOpt, hardware: str = HardwareOpt,
    node: Optional[str] = NodeOpt, gpus: int = GpusOpt, hbm_gib: Optional[float] = HbmOpt,
    reserve_gib: float = ReserveOpt, host_ram_gib: Optional[float] = HostRamOpt,
    h2d_gbps: Optional[float] = H2dOpt, link_share: Optional[int] = LinkShareOpt,
    peak_tflops: Optional[float] = PeakOpt, eff: float = EffOpt, frag: float = FragOpt,
    seq: int = SeqOpt, global_batch: int = GlobalBatchOpt, tb_ratio: float = TbOpt,
    tw_ratio: float = TwOpt,
    tp: Optional[str] = typer.Option(None, "--tp", help=f"TP degrees to search: {RANGE_HELP}",
                                     rich_help_panel=PAR),
    pp: Optional[str] = typer.Option(None, "--pp", help="PP degrees to search", rich_help_panel=PAR),
    vpp: Optional[str] = typer.Option(None, "--vpp", help="interleaved chunks per device to "
                                      "search", rich_help_panel=PAR),
    mbs: Optional[str] = typer.Option(None, "--mbs", help="micro-batch sizes to search",
                                      rich_help_panel=PAR),
    sp: bool = SpOpt, flash: bool = FlashOpt,
    schedule: Optional[str] = typer.Option(None, "--schedule", help="schedules to search, "
                                           "comma list (default: all; tpipe = chronos)",
                                           rich_help_panel=POL),
    cap: Optional[int] = CapOpt,
    recompute: Optional[str] = typer.Option(None, "--recompute", help="recompute policies to "
                                            "search: none, selective, full, chronos",
                                            rich_help_panel=POL),
    recompute_layers: Optional[int] = RecLayersOpt,
    offload: Optional[str] = typer.Option(None, "--offload", help="offload policies to "
                                          "search: none, optimizer, chronos",
                                          rich_help_panel=POL),
    zero: Optional[int] = ZeroOpt, dist_opt: bool = DistOptOpt,
    objective: str = typer.Option("tokens", "--objective", help="tokens (tokens/s), mfu, "
                                  "memory (lowest peak) or time"),
    top: int = typer.Option(8, "--top", help="rows in the ranking table"),
    json_out: bool = JsonOpt, save_dir: Optional[str] = SaveDirOpt,
    search: str = SearchOpt, sampler: str = SamplerOpt, n_trials: Optional[int] = NTrialsOpt,
    timeout: Optional[float] = TimeoutOpt, seed: Optional[int] = SeedOpt,
    storage: Optional[str] = StorageOpt, study_name: Optional[str] = StudyNameOpt,
    workers: int = WorkersOpt, total_trials: Optional[int] = TotalTrialsOpt,
) -> None:
    """Fastest configuration under the HBM cap, its per-stage memory and what binds."""
    if ctx.invoked_subcommand:
        ctx.obj = None
        return
    req = Req(model, layers, hardware, node, gpus, hbm_gib, reserve_gib, host_ram_gib,
              h2d_gbps, link_share, peak_tflops, eff, frag, seq, global_batch, sp, flash, tp,
              pp, None, vpp, mbs, schedule, cap, recompute, recompute_layers, offload, zero,
              dist_opt, tb_ratio, tw_ratio, SearchOptions(search, sampler, n_trials, timeout, seed,
                                                          storage, study_name, workers,
                                                          total_trials))
    _, _, _, out = run_search(req, objective, top)
    if save_dir:
        save(out, save_dir)
    if json_out:
        emit_json(out)
        return
    from . import pipeline_render as r
    r.render_best(out, compact=True)


@app.command("best")
def best_command(
    model: str = ModelOpt, layers: Optional[int] = LayersOpt, hardware: str = HardwareOpt,
    node: Optional[str] = NodeOpt, gpus: int = GpusOpt, hbm_gib: Optional[float] = HbmOpt,
    reserve_gib: float = ReserveOpt, host_ram_gib: Optional[float] = HostRamOpt,
    h2d_gbps: Optional[float] = H2dOpt, link_share: Optional[int] = LinkShareOpt,
    peak_tflops: Optional[float] = PeakOpt, eff: float = EffOpt, frag: float = FragOpt,
    seq: int = SeqOpt, global_batch: int = GlobalBatchOpt, tb_ratio: float = TbOpt,
    tw_ratio: float = TwOpt,
    tp: Optional[str] = typer.Option(None, "--tp", help=f"TP degrees: {RANGE_HELP}",
                                     rich_help_panel=PAR),
    pp: Optional[str] = typer.Option(None, "--pp", help="PP degrees", rich_help_panel=PAR),
    vpp: Optional[str] = typer.Option(None, "--vpp", help="interleaved chunks per device",
                                      rich_help_panel=PAR),
    mbs: Optional[str] = typer.Option(None, "--mbs", help="micro-batch sizes",
                                      rich_help_panel=PAR),
    sp: bool = SpOpt, flash: bool = FlashOpt,
    schedule: Optional[str] = typer.Option(None, "--schedule", help="schedules, comma list",
                                           rich_help_panel=POL),
    cap: Optional[int] = CapOpt,
    recompute: Optional[str] = typer.Option(None, "--recompute", help="recompute policies",
                                            rich_help_panel=POL),
    recompute_layers: Optional[int] = RecLayersOpt,
    offload: Optional[str] = typer.Option(None, "--offload", help="offload policies",
                                          rich_help_panel=POL),
    zero: Optional[int] = ZeroOpt, dist_opt: bool = DistOptOpt,
    objective: str = typer.Option("tokens", "--objective", help="tokens, mfu, memory or time"),
    top: int = typer.Option(15, "--top", help="rows in the ranking"),
    json_out: bool = JsonOpt,
    search: str = SearchOpt, sampler: str = SamplerOpt, n_trials: Optional[int] = NTrialsOpt,
    timeout: Optional[float] = TimeoutOpt, seed: Optional[int] = SeedOpt,
    storage: Optional[str] = StorageOpt, study_name: Optional[str] = StudyNameOpt,
    workers: int = WorkersOpt, total_trials: Optional[int] = TotalTrialsOpt,
) -> None:
    """Ranked configurations: tokens/s, MFU, HFU, bubble, recompute, stalls, peaks, host RAM.

    Example: explore pipeline best --model llama2-70b --layers 48 --schedule 1f1b,chronos
    """
    req = Req(model, layers, hardware, node, gpus, hbm_gib, reserve_gib, host_ram_gib,
              h2d_gbps, link_share, peak_tflops, eff, frag, seq, global_batch, sp, flash, tp,
              pp, None, vpp, mbs, schedule, cap, recompute, recompute_layers, offload, zero,
              dist_opt, tb_ratio, tw_ratio, SearchOptions(search, sampler, n_trials, timeout, seed,
                                                          storage, study_name, workers,
                                                          total_trials))
    _, _, _, out = run_search(req, objective, top)
    if json_out:
        emit_json(out)
        return
    from . import pipeline_render as r
    r.render_best(out, compact=False)


@app.command("breakdown")
def breakdown_command(
    model: str = ModelOpt, layers: Optional[int] = LayersOpt, hardware: str = HardwareOpt,
    node: Optional[str] = NodeOpt, gpus: int = GpusOpt, hbm_gib: Optional[float] = HbmOpt,
    reserve_gib: float = ReserveOpt, host_ram_gib: Optional[float] = HostRamOpt,
    h2d_gbps: Optional[float] = H2dOpt, link_share: Optional[int] = LinkShareOpt,
    peak_tflops: Optional[float] = PeakOpt, eff: float = EffOpt, frag: float = FragOpt,
    seq: int = SeqOpt, global_batch: int = GlobalBatchOpt, tb_ratio: float = TbOpt,
    tw_ratio: float = TwOpt,
    tp: Optional[str] = typer.Option(None, "--tp", help="TP degree (default: search)",
                                     rich_help_panel=PAR),
    pp: Optional[str] = typer.Option(None, "--pp", help="PP degree (default: search)",
                                     rich_help_panel=PAR),
    dp: Optional[int] = typer.Option(None, "--dp", help="DP degree (default: GPUs / (TP PP))",
                                     rich_help_panel=PAR),
    vpp: Optional[str] = typer.Option(None, "--vpp", help="interleaved chunks per device",
                                      rich_help_panel=PAR),
    mbs: Optional[str] = typer.Option(None, "--mbs", help="micro-batch size (default: 1)",
                                      rich_help_panel=PAR),
    sp: bool = SpOpt, flash: bool = FlashOpt,
    schedule: Optional[str] = typer.Option(None, "--schedule", help="schedule "
                                           "(default: 1f1b)", rich_help_panel=POL),
    cap: Optional[int] = CapOpt,
    recompute: Optional[str] = typer.Option(None, "--recompute", help="none, selective, full "
                                            "or chronos", rich_help_panel=POL),
    recompute_layers: Optional[int] = RecLayersOpt,
    offload: Optional[str] = typer.Option(None, "--offload", help="none, optimizer or chronos",
                                          rich_help_panel=POL),
    zero: Optional[int] = ZeroOpt, dist_opt: bool = DistOptOpt,
    json_out: bool = JsonOpt, save_dir: Optional[str] = SaveDirOpt,
) -> None:
    """Device x category memory at each device's peak, the peak instant and op.

    Example: explore pipeline breakdown --layers 48 --tp 8 --pp 8 --mbs 4 --schedule 1f1b
    """
    req = Req(model, layers, hardware, node, gpus, hbm_gib, reserve_gib, host_ram_gib,
              h2d_gbps, link_share, peak_tflops, eff, frag, seq, global_batch, sp, flash, tp,
              pp, dp, vpp, mbs, schedule, cap, recompute, recompute_layers, offload, zero,
              dist_opt, tb_ratio, tw_ratio)
    from explore.models.pipeline.study import (assumptions, breakdown, describe,
                                               performance)
    work, out, source = _fixed_outcome(req)
    data = {"study": "pipeline", "command": "breakdown", "source": source,
            "workload": _workload_info(work), "config": describe(out),
            "performance": performance(out), "breakdown": breakdown(out),
            "assumptions": assumptions(work)}
    if save_dir:
        save(data, save_dir)
    if json_out:
        emit_json(data)
        return
    from . import pipeline_render as r
    r.render_breakdown(data)


@app.command("timeline")
def timeline_command(
    model: str = ModelOpt, layers: Optional[int] = LayersOpt, hardware: str = HardwareOpt,
    node: Optional[str] = NodeOpt, gpus: int = GpusOpt, hbm_gib: Optional[float] = HbmOpt,
    reserve_gib: float = ReserveOpt, host_ram_gib: Optional[float] = HostRamOpt,
    h2d_gbps: Optional[float] = H2dOpt, link_share: Optional[int] = LinkShareOpt,
    peak_tflops: Optional[float] = PeakOpt, eff: float = EffOpt, frag: float = FragOpt,
    seq: int = SeqOpt, global_batch: int = GlobalBatchOpt, tb_ratio: float = TbOpt,
    tw_ratio: float = TwOpt,
    tp: Optional[str] = typer.Option(None, "--tp", help="TP degree (default: search)",
                                     rich_help_panel=PAR),
    pp: Optional[str] = typer.Option(None, "--pp", help="PP degree (default: search)",
                                     rich_help_panel=PAR),
    dp: Optional[int] = typer.Option(None, "--dp", help="DP degree", rich_help_panel=PAR),
    vpp: Optional[str] = typer.Option(None, "--vpp", help="interleaved chunks per device",
                                      rich_help_panel=PAR),
    mbs: Optional[str] = typer.Option(None, "--mbs", help="micro-batch size (default: 1)",
                                      rich_help_panel=PAR),
    sp: bool = SpOpt, flash: bool = FlashOpt,
    schedule: Optional[str] = typer.Option(None, "--schedule", help="schedule (default: 1f1b)",
                                           rich_help_panel=POL),
    cap: Optional[int] = CapOpt,
    recompute: Optional[str] = typer.Option(None, "--recompute", help="recompute policy",
                                            rich_help_panel=POL),
    recompute_layers: Optional[int] = RecLayersOpt,
    offload: Optional[str] = typer.Option(None, "--offload", help="offload policy",
                                          rich_help_panel=POL),
    zero: Optional[int] = ZeroOpt, dist_opt: bool = DistOptOpt,
    device: Optional[str] = typer.Option(None, "--device", help="only these devices "
                                         f"({RANGE_HELP})"),
    plot: bool = typer.Option(False, "--plot", help="text plot of memory per device instead "
                              "of CSV"),
    out_file: Optional[str] = typer.Option(None, "--out", help="write the CSV here"),
    ops_file: Optional[str] = typer.Option(None, "--ops", help="also export the op list "
                                           "(CSV: op, kind, device, resource, start_s, end_s)"),
    json_out: bool = JsonOpt,
) -> None:
    """Memory timeline over one iteration: CSV (time_s, device, category, bytes).

    Example: explore pipeline timeline --layers 48 --tp 8 --pp 8 --mbs 4 --schedule chronos
    --plot
    """
    from pathlib import Path

    from . import output
    from .common import parse_int_range
    req = Req(model, layers, hardware, node, gpus, hbm_gib, reserve_gib, host_ram_gib,
              h2d_gbps, link_share, peak_tflops, eff, frag, seq, global_batch, sp, flash, tp,
              pp, dp, vpp, mbs, schedule, cap, recompute, recompute_layers, offload, zero,
              dist_opt, tb_ratio, tw_ratio)
    from explore.models.errors import InputError
    from explore.models.pipeline.study import (assumptions, describe, op_list, performance,
                                               profile, timeline)
    work, out, source = _fixed_outcome(req)
    devices = None
    if device is not None:
        devices = list(parse_int_range(device, "--device", minimum=0))
        bad = [d for d in devices if d >= out.terms.p]
        if bad:
            raise InputError(f"--device {bad[0]}: the pipeline has devices 0..{out.terms.p - 1}")
    rows = timeline(out, devices)
    if ops_file:
        output.write_csv(Path(ops_file), ["op", "kind", "device", "resource", "start_s", "end_s"],
                   [[o[k] for k in ("op", "kind", "device", "resource", "start_s", "end_s")]
                    for o in op_list(out)])
    if json_out:
        emit_json({"study": "pipeline", "command": "timeline", "source": source,
                   "config": describe(out), "performance": performance(out),
                   "timeline": [{"time_s": t, "device": d, "category": c, "bytes": b}
                                for t, d, c, b in rows],
                   "assumptions": assumptions(work)})
        return
    if plot:
        from . import pipeline_render as r
        r.render_plot(describe(out), performance(out), profile(out), out.makespan,
                      devices, assumptions(work))
        return
    lines = ["time_s,device,category,bytes"] + [f"{t:.6f},{d},{c},{b:.0f}"
                                                 for t, d, c, b in rows]
    if out_file:
        output.write_text(Path(out_file), "\n".join(lines) + "\n")
        typer.echo(f"wrote {len(rows)} rows to {out_file}")
    else:
        typer.echo("\n".join(lines))


@app.command("max-size")
def max_size_command(
    model: str = ModelOpt, hardware: str = HardwareOpt, node: Optional[str] = NodeOpt,
    gpus: int = GpusOpt, hbm_gib: Optional[float] = HbmOpt, reserve_gib: float = ReserveOpt,
    host_ram_gib: Optional[float] = HostRamOpt, h2d_gbps: Optional[float] = H2dOpt,
    link_share: Optional[int] = LinkShareOpt, peak_tflops: Optional[float] = PeakOpt,
    eff: float = EffOpt, frag: float = FragOpt, seq: int = SeqOpt,
    global_batch: int = GlobalBatchOpt, tb_ratio: float = TbOpt, tw_ratio: float = TwOpt,
    tp: Optional[str] = typer.Option(None, "--tp", help="TP degree (default: 8)",
                                     rich_help_panel=PAR),
    pp: Optional[str] = typer.Option(None, "--pp", help="PP degree (default: GPUs / TP)",
                                     rich_help_panel=PAR),
    vpp: Optional[str] = typer.Option(None, "--vpp", help="chunks per device for interleaved "
                                      "(default: 2)", rich_help_panel=PAR),
    mbs: Optional[str] = typer.Option(None, "--mbs", help="micro-batch size (default: 1)",
                                      rich_help_panel=PAR),
    sp: bool = SpOpt, flash: bool = FlashOpt,
    schedule: Optional[str] = typer.Option(None, "--schedule", help="schedule families, comma "
                                           "list (default: 1f1b, interleaved, zb-h1, zb-v, "
                                           "v-half, v-min, chronos)", rich_help_panel=POL),
    recompute: Optional[str] = typer.Option(None, "--recompute", help="recompute policy of "
                                            "every row (default: none; chronos rows use "
                                            "Chronos-Recomp)", rich_help_panel=POL),
    offload: Optional[str] = typer.Option(None, "--offload", help="offload policy of every row "
                                          "(default: none; chronos rows use Chronos-Offload)",
                                          rich_help_panel=POL),
    zero: Optional[int] = ZeroOpt, dist_opt: bool = DistOptOpt,
    delta: Optional[float] = typer.Option(None, "--delta", help="throughput floor: MFU >= "
                                          "(1 - delta) x 1F1B's MFU at its own L*",
                                          rich_help_panel=POL),
    max_layers: int = typer.Option(512, "--max-layers", help="search limit"),
    json_out: bool = JsonOpt,
) -> None:
    """Largest trainable model per schedule family: grid L, L*, parameters, binding constraint.

    Example: explore pipeline max-size --model llama2-70b --gpus 64 --tp 8 --pp 8 --mbs 4
    """
    from explore.models.errors import InputError
    from explore.models.pipeline.study import assumptions, max_size_table
    req = Req(model, None, hardware, node, gpus, hbm_gib, reserve_gib, host_ram_gib, h2d_gbps,
              link_share, peak_tflops, eff, frag, seq, global_batch, sp, flash, tp, pp, None,
              vpp, mbs, schedule, None, recompute, None, offload, zero, dist_opt, tb_ratio,
              tw_ratio)
    work = workload(req)
    t = _one(tp, "--tp", min(8, work.hw.gpus_per_node, work.hw.gpus))
    p = _one(pp, "--pp", max(1, work.hw.gpus // t))
    v = _one(vpp, "--vpp", 2)
    b = _one(mbs, "--mbs", 1)
    if delta is not None and not 0 <= delta < 1:
        raise InputError(f"--delta must be in [0, 1), got {delta}")
    scheds = _schedules(schedule, ("1f1b", "interleaved", "zb-h1", "zb-v", "v-half", "v-min",
                                   "chronos"))
    opt = (_optimizers(req) or ("none",))[0]
    floor, sizes = max_size_table(work, t, p, b, v, scheds, opt, recompute, offload, delta,
                                  max_layers)
    rows = [ms.as_dict() for ms in sizes]
    data = {"study": "pipeline", "command": "max-size", "workload": _workload_info(work),
            "layout": {"tp": t, "pp": p, "dp": work.hw.gpus // (t * p), "mbs": b, "vpp": v},
            "floor_mfu": floor, "rows": rows, "assumptions": assumptions(work)}
    if json_out:
        emit_json(data)
        return
    from . import pipeline_render as r
    r.render_max_size(data)


@app.command("sweep")
def sweep_command(
    vary: str = typer.Option(..., "--vary", help="the varied parameter: seq, m or h2d-gbps"),
    values: str = typer.Option(..., "--values", help="values, comma list (e.g. 2048,4096,8192)"),
    model: str = ModelOpt, layers: Optional[int] = LayersOpt, hardware: str = HardwareOpt,
    node: Optional[str] = NodeOpt, gpus: int = GpusOpt, hbm_gib: Optional[float] = HbmOpt,
    reserve_gib: float = ReserveOpt, host_ram_gib: Optional[float] = HostRamOpt,
    h2d_gbps: Optional[float] = H2dOpt, link_share: Optional[int] = LinkShareOpt,
    peak_tflops: Optional[float] = PeakOpt, eff: float = EffOpt, frag: float = FragOpt,
    seq: int = SeqOpt, global_batch: int = GlobalBatchOpt, tb_ratio: float = TbOpt,
    tw_ratio: float = TwOpt,
    tp: Optional[str] = typer.Option(None, "--tp", help="TP degree (default: 8)",
                                     rich_help_panel=PAR),
    pp: Optional[str] = typer.Option(None, "--pp", help="PP degree (default: GPUs / TP)",
                                     rich_help_panel=PAR),
    vpp: Optional[str] = typer.Option(None, "--vpp", help="chunks per device (interleaved)",
                                      rich_help_panel=PAR),
    mbs: Optional[str] = typer.Option(None, "--mbs", help="micro-batch size (default: 1)",
                                      rich_help_panel=PAR),
    sp: bool = SpOpt, flash: bool = FlashOpt,
    schedule: Optional[str] = typer.Option(None, "--schedule", help="schedule (default: 1f1b)",
                                           rich_help_panel=POL),
    cap: Optional[int] = CapOpt,
    recompute: Optional[str] = typer.Option(None, "--recompute", help="recompute policy",
                                            rich_help_panel=POL),
    offload: Optional[str] = typer.Option(None, "--offload", help="offload policy",
                                          rich_help_panel=POL),
    zero: Optional[int] = ZeroOpt, dist_opt: bool = DistOptOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Sensitivity: L*, peak and tokens/s as one parameter varies (seq, m, h2d-gbps).

    Example: explore pipeline sweep --vary h2d-gbps --values 12.5,25,50 --layers 48 --tp 8
    --pp 8 --mbs 4 --schedule chronos --offload chronos
    """
    from explore.models.errors import InputError
    from explore.models.pipeline.study import assumptions, sweep
    if vary not in ("seq", "m", "h2d-gbps"):
        raise InputError(f"--vary {vary!r}: choose seq, m or h2d-gbps")
    try:
        vals = [float(x) for x in values.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--values {values!r}: write numbers separated by commas") from None
    if not vals or min(vals) <= 0:
        raise InputError("--values must be positive numbers")
    req = Req(model, layers, hardware, node, gpus, hbm_gib, reserve_gib, host_ram_gib,
              h2d_gbps, link_share, peak_tflops, eff, frag, seq, global_batch, sp, flash, tp,
              pp, None, vpp, mbs, schedule, cap, recompute, None, offload, zero, dist_opt,
              tb_ratio, tw_ratio)
    work = workload(req)
    t = _one(tp, "--tp", min(8, work.hw.gpus_per_node, work.hw.gpus))
    p = _one(pp, "--pp", max(1, work.hw.gpus // t))
    b = _one(mbs, "--mbs", 1)
    v = _one(vpp, "--vpp", 1)
    sched = _schedules(schedule, ("1f1b",))
    if len(sched) != 1:
        raise InputError("--schedule: sweep takes one schedule")
    policy = fixed_policy(req, sched[0])
    rows = sweep(work, t, p, b, policy, v, vary, vals, work.model.layers)
    data = {"study": "pipeline", "command": "sweep", "vary": vary,
            "workload": _workload_info(work),
            "layout": {"tp": t, "pp": p, "mbs": b, "vpp": v}, "schedule": policy.schedule,
            "recompute": policy.recompute, "offload": policy.offload, "rows": rows,
            "assumptions": assumptions(work)}
    if json_out:
        emit_json(data)
        return
    from . import pipeline_render as r
    r.render_sweep(data)


@app.command("validate")
def validate_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model preset "
                                        "(default: the fixture's)", rich_help_panel=WORK),
    layers: Optional[int] = typer.Option(None, "--layers", help="layers of the OOM/fit table",
                                         rich_help_panel=WORK),
    hardware: Optional[str] = typer.Option(None, "--hardware", "--gpu", help="GPU preset",
                                           rich_help_panel=HW),
    node: Optional[str] = NodeOpt,
    gpus: Optional[int] = typer.Option(None, "--gpus", rich_help_panel=HW),
    hbm_gib: Optional[float] = HbmOpt,
    reserve_gib: Optional[float] = typer.Option(None, "--reserve-gib", rich_help_panel=HW),
    host_ram_gib: Optional[float] = HostRamOpt, h2d_gbps: Optional[float] = H2dOpt,
    link_share: Optional[int] = LinkShareOpt, peak_tflops: Optional[float] = PeakOpt,
    eff: Optional[float] = typer.Option(None, "--eff", rich_help_panel=HW),
    frag: Optional[float] = typer.Option(None, "--frag", rich_help_panel=HW),
    seq: Optional[int] = typer.Option(None, "--seq", rich_help_panel=WORK),
    global_batch: Optional[int] = typer.Option(None, "--global-batch", rich_help_panel=WORK),
    tp: Optional[int] = typer.Option(None, "--tp", rich_help_panel=PAR),
    pp: Optional[int] = typer.Option(None, "--pp", rich_help_panel=PAR),
    dp: Optional[int] = typer.Option(None, "--dp", rich_help_panel=PAR),
    mbs: Optional[int] = typer.Option(None, "--mbs", rich_help_panel=PAR),
    sp: Optional[bool] = typer.Option(None, "--sp/--no-sp", rich_help_panel=PAR),
    flash: Optional[bool] = typer.Option(None, "--flash/--no-flash", rich_help_panel=PAR),
    delta: Optional[float] = typer.Option(None, "--delta", help="throughput floor "
                                          "(default: the fixture's 0.10)", rich_help_panel=POL),
    json_out: bool = JsonOpt,
) -> None:
    """The §8 fixture: OOM/fit table at L = 48 and both ratio checks (exit 1 if a hard check
    fails). Defaults come from the shipped study preset chronos-fixture.

    Example: explore pipeline validate --json
    """
    from explore.models.pipeline.validate import validate
    given = {"model": model, "layers": layers, "hardware": hardware, "node": node,
             "gpus": gpus, "hbm_gib": hbm_gib, "reserve_gib": reserve_gib,
             "host_ram_gib": host_ram_gib, "h2d_gbps": h2d_gbps, "link_share": link_share,
             "peak_tflops": peak_tflops, "eff": eff, "frag": frag, "seq": seq,
             "global_batch": global_batch, "tp": tp, "pp": pp, "dp": dp, "mbs": mbs,
             "sp": sp, "flash": flash, "delta": delta}
    fx = fixture({k: v for k, v in given.items() if v is not None})
    data = validate(fx)
    data["assumptions"] = _fixture_assumptions(fx)
    if json_out:
        emit_json(data)
    else:
        from . import pipeline_render as r
        r.render_validate(data)
    if data["hard_fail"]:
        raise typer.Exit(1)


def save(out: dict, directory: str) -> None:
    """--save-dir: result.json, per_stage_memory.csv (bytes), top.csv when a search ran, and
    memory.png (per-device stacked categories against the HBM capacity)."""
    from pathlib import Path

    from . import output
    from .pipeline_render import MEMORY_PARTS, hbm_gib, memory_stacks

    d = output.prepare(Path(directory))
    output.write_json(d / "result.json", out)
    bd = out["breakdown"]
    keys = [k for _, key in MEMORY_PARTS for k in (key if isinstance(key, tuple) else (key,))]
    output.write_csv(d / "per_stage_memory.csv",
                     ["device", *[f"{k}_bytes" for k in keys], "peak_bytes",
                      "total_with_reserve_bytes", "peak_op", "peak_time_s"],
                     [[x["device"], *[x[k] for k in keys], x["peak"], x["total_with_reserve"],
                       x["peak_op"], x["peak_time_s"]] for x in bd["devices"]])
    if "top" in out:
        output.write_rows(d / "top.csv", out["top"])
    perf = out["best"]["performance"] if "best" in out else out["performance"]
    stacks = {k: v for k, v in memory_stacks(bd).items() if any(v)}
    w = out["workload"]
    output.stacked_bars(d / "memory.png", [f"dev {x['device']}" for x in bd["devices"]], stacks,
                        "memory at the device's peak (GiB)",
                        f"{w.get('model', '')}: per-stage memory at each device's peak\n"
                        f"binding: {bd['binding_text']}",
                        cap=(hbm_gib(bd, perf["usable_bytes"]), "HBM capacity"))


def fixture_options() -> dict:
    """The options of the shipped study preset (the §8 fixture), as flag names."""
    from explore import presets
    path = presets.ROOT / "studies" / f"{FIXTURE_PRESET}.yaml"
    data = presets.read_yaml(path)
    return {k.replace("-", "_"): v for k, v in (data.get("options") or {}).items()}


def fixture(overrides: dict):
    """The §8 Fixture from the study preset's options, with explicit flags on top."""
    from explore.models.errors import ConfigError
    from explore.models.pipeline.validate import Fixture
    opts = fixture_options()
    opts.update(overrides)
    known = set(Req.__dataclass_fields__) | {"dp", "delta"}
    unknown = [k for k in opts if k not in known]
    if unknown:
        raise ConfigError(f"study preset {FIXTURE_PRESET}: unknown option {unknown[0]!r}")
    req = Req(**{k: v for k, v in opts.items()
                 if k in Req.__dataclass_fields__ and k not in ("tp", "pp", "mbs", "layers")})
    work = workload(req)
    layers = int(opts.get("layers", work.model.layers))
    return Fixture(work.model, work.hw, layers, int(opts.get("tp", 8)), int(opts.get("pp", 8)),
                   int(opts.get("dp", 1)), work.seq, int(opts.get("mbs", 4)),
                   work.global_batch, work.sp, work.flash,
                   delta=float(opts.get("delta", 0.10)))


def _fixture_assumptions(fx) -> list[dict]:
    from explore.models.pipeline.study import assumptions
    return assumptions(fx.work)
