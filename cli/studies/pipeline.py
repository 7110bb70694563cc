"""`explore pipeline`: its option groups, the request they form, and the answers built from it
(a search, one fixed layout, max-size, sweep, the §8 fixture) as JSON-ready dicts.

Every flag is a field declared once. The groups that only some commands take whole are built
from small field sets (a command lacking a flag uses a group without it): max-size finds the
layer count itself, so it has no --layers; validate takes the fixture's options only. A range
flag (--tp 4,8) is searched; the commands on one layout take it as one value (--tp 8)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, overload

from explore.models.spec import AT_LEAST_1, FRACTION, POSITIVE, SHARE, Range

from ..common import RANGE_HELP, SearchOptions
from ..options import option

DEFAULT_MODEL = "llama2-70b"
DEFAULT_GPU = "a100-80g"
DEFAULT_GPUS = 64
DEFAULT_EFF = 0.5
FIXTURE_PRESET = "chronos-fixture"
OBJECTIVES = {"tokens": "tokens_per_s", "mfu": "mfu", "memory": "peak_max_bytes",
              "time": "iteration_s"}
FIXTURE = "the fixture's"          # what None means for validate's options


# ---- Workload ------------------------------------------------------------------------------

@dataclass
class _Shape:
    PANEL: ClassVar[str] = "Workload"          # inherited by every Workload group
    model: str = option(DEFAULT_MODEL, "--model", "-m", help="model preset (dense or MoE) or a "
                        "Hugging Face config.json", default_text=FIXTURE)
    seq: int = option(4096, "--seq", range=AT_LEAST_1, help="sequence length s", unit="tokens",
                      default_text=FIXTURE)
    global_batch: int = option(256, "--global-batch", range=AT_LEAST_1, help="global batch B_g",
                               unit="sequences", default_text=FIXTURE)


@dataclass
class _Depth:
    layers: Optional[int] = option(None, "--layers", "-L", help="layer count L of the model",
                                   default_text="the preset's; validate: the fixture's",
                                   range=AT_LEAST_1)
    mtp_layers: Optional[int] = option(None, "--mtp-layers", help="multi-token-prediction "
                                       "modules trained on the last stage (0: none)",
                                       default_text="the preset's (DeepSeek-V3: 1)")


@dataclass
class _Measured:
    tb_ratio: float = option(1.0, "--tb-ratio", help="measured T_B / T_F of a layer (input "
                             "gradient)", range=POSITIVE)
    tw_ratio: float = option(1.0, "--tw-ratio", help="measured T_W / T_F of a layer (weight "
                             "gradient)")
    moe_imbalance: float = option(1.0, "--moe-imbalance", help="MoE: routed tokens of the "
                                  "busiest GPU over the mean (dropless routing; 1 = balanced)",
                                  range=AT_LEAST_1)


@dataclass
class Workload(_Measured, _Depth, _Shape):
    """What is trained: model and its depth, sequence, global batch, measured ratios."""


@dataclass
class FamilyWorkload(_Measured, _Shape):
    """max-size: the model family (its layer count is the answer) and the search limit."""
    max_layers: int = option(512, "--max-layers", help="largest layer count tried",
                             range=AT_LEAST_1)


@dataclass
class FixtureWorkload(_Depth, _Shape):
    """validate: the fixture's model, depth, sequence and batch."""


# ---- Hardware ------------------------------------------------------------------------------

@dataclass
class Hardware:
    """Where it runs: GPU and server presets with overrides."""
    PANEL: ClassVar[str] = "Hardware"
    hardware: str = option(DEFAULT_GPU, "--hardware", "--gpu", help="GPU preset",
                           default_text=FIXTURE)
    node: Optional[str] = option(None, "--node", help="server preset (host RAM, links, "
                                 "network)", default_text="the GPU's usual server")
    gpus: int = option(DEFAULT_GPUS, "--gpus", help="number of GPUs", default_text=FIXTURE,
                       range=AT_LEAST_1)
    hbm_gib: Optional[float] = option(None, "--hbm-gib", help="HBM per GPU", unit="GiB",
                                      default_text="the GPU's", range=POSITIVE)
    reserve_gib: float = option(2.0, "--reserve-gib", help="reserve per GPU for CUDA context "
                                "and NCCL", unit="GiB", default_text=FIXTURE)
    host_ram_gib: Optional[float] = option(None, "--host-ram-gib", help="usable pinned host "
                                           "RAM per node", unit="GiB", default_text="the "
                                           "server's RAM x its pinned fraction")
    h2d_gbps: Optional[float] = option(None, "--h2d-gbps", help="host-link bandwidth per "
                                       "direction", unit="GB/s", default_text="the GPU's",
                                       range=POSITIVE)
    link_share: Optional[int] = option(None, "--link-share", help="GPUs sharing one host link",
                                       default_text="the server's", range=AT_LEAST_1)
    peak_tflops: Optional[float] = option(None, "--peak-tflops", help="peak bf16 compute",
                                          unit="TFLOP/s", default_text="the GPU's", range=POSITIVE)
    frag: float = option(1.0, "--frag", help="fragmentation factor on dynamic memory "
                         "(1.05-1.2 in practice)", default_text=FIXTURE, range=AT_LEAST_1)
    time_model: str = option("kernels", "--time-model", help="kernels: every GEMM on the GPU's "
                             "efficiency curve, norms, softmax and dropout by their measured "
                             "rates, NCCL bus bandwidths (docs/pipeline.md §7.2); flat: every "
                             "FLOP at --eff x peak (§7.1, the §8 fixture)", panel="Time model",
                             default_text=FIXTURE)
    eff: Optional[float] = option(None, "--eff", help="flat time model: achieved fraction of "
                                  "peak FLOP/s", default_text=f"{DEFAULT_EFF}; validate: the "
                                  "fixture's", panel="Time model", range=FRACTION)
    overlap_grad_reduce: bool = option(False, "--overlap-grad-reduce/--no-overlap-grad-reduce",
                                       help="DP gradient reduction under the backward "
                                       "(Megatron-LM's flag, off by default there too)",
                                       panel="Time model")
    overlap_param_gather: bool = option(False, "--overlap-param-gather/"
                                        "--no-overlap-param-gather", help="distributed-"
                                        "optimizer all-gather under the forward",
                                        panel="Time model")
    tp_comm_overlap: bool = option(False, "--tp-comm-overlap/--no-tp-comm-overlap",
                                   help="TP collectives under the GEMMs (needs --sp)",
                                   panel="Time model")
    overlap_p2p_comm: Optional[bool] = option(None, "--overlap-p2p-comm/--no-overlap-p2p-comm",
                                              help="pipeline send/recv off the compute stream "
                                              "(off: they block it)", panel="Time model",
                                              default_text="Megatron-LM's: on for the "
                                              "interleaved schedule only")
    overlap_moe_a2a: bool = option(False, "--overlap-moe-expert-parallel-comm/"
                                   "--no-overlap-moe-expert-parallel-comm", help="MoE: a "
                                   "micro-batch's all-to-alls under another's compute in the "
                                   "steady state (Megatron-LM's flag; 1F1B at PP 1 or "
                                   "interleaved; DualPipe overlaps its own)", panel="Time model")
    grad_accumulation: str = option("fused", "--grad-accumulation", help="fused: weight "
                                    "gradients accumulate inside their GEMM (Megatron-LM "
                                    "--gradient-accumulation-fusion); separate: an add kernel "
                                    "per micro-batch", panel="Time model")
    calibration: Optional[str] = option(None, "--calibration", help="calibration YAML from "
                                        "`explore pipeline fit`: its GEMM and communication "
                                        "scales", panel="Time model",
                                        default_text="none, the a-priori model")
    gemm_format: str = option("bf16", "--gemm-format", help="linear layers' GEMM inputs: "
                              "bf16, fp8 (Transformer Engine hybrid), mxfp8 or nvfp4 on GPUs "
                              "with those tensor cores; quantised copies of the weights are "
                              "cached and the linear inputs saved quantised (§7.4)",
                              panel="Time model")


# ---- Parallelism: a range for the searches, one value for one layout -----------------------

@dataclass
class _Degrees:
    PANEL: ClassVar[str] = "Parallelism"
    tp: Optional[str] = option(None, "--tp", help="tensor-parallel degree: one value, or for "
                               f"a search {RANGE_HELP}", ints=1)
    pp: Optional[str] = option(None, "--pp", ints=1, help="pipeline stages p: one value or a range "
                               "(as --tp)")
    mbs: Optional[str] = option(None, "--mbs", help="micro-batch size b, one value or a range",
                                unit="sequences", ints=1)
    ep: Optional[str] = option(None, "--ep", help="expert-parallel degree of an MoE model: one "
                               "value or a range (as --tp)", default_text="1; searched: the "
                               "powers of two dividing the experts", ints=1)
    etp: Optional[int] = option(None, "--etp", help="expert tensor-parallel degree (MoE)",
                                default_text="TP, as Megatron-Core", range=AT_LEAST_1)
    cp: Optional[str] = option(None, "--cp", help="context-parallel degree: the sequence split "
                               "over CP GPUs; one value or a range (as --tp)",
                               default_text="1; searched from 16K tokens: 2-8, >= 8K tokens "
                               "per GPU", ints=1)
    cp_comm: str = option("p2p", "--cp-comm", help="context-parallel attention: p2p (ring, "
                          "KV blocks passed around under the attention) or a2a (all-to-all "
                          "of Q, K, V and output, DeepSpeed-Ulysses)",
                          choices="explore.models.pipeline.config:CP_COMM")
    sp: Optional[bool] = option(None, "--sp/--no-sp", help="sequence parallelism",
                                default_text="off (MoE models: on, as Megatron-Core needs "
                                "it with TP); validate: the fixture's")
    flash: bool = option(True, "--flash/--no-flash", help="flash attention",
                         default_text=FIXTURE)


@dataclass
class _Chunks:
    vpp: Optional[str] = option(None, "--vpp", ints=1, help="chunks per device of the interleaved "
                                "schedule: one value or a range")
    first_stage_layers: Optional[int] = option(
        None, "--first-stage-layers", help="decoder layers of the first pipeline stage "
        "(Megatron's --decoder-first-pipeline-num-layers); the stages between share the rest",
        default_text="even; balanced by FLOPs where the layers do not divide")
    last_stage_layers: Optional[int] = option(
        None, "--last-stage-layers", help="decoder layers of the last pipeline stage "
        "(--decoder-last-pipeline-num-layers)", default_text="as --first-stage-layers")
    pipeline_layout: Optional[str] = option(
        None, "--pipeline-layout", help="every virtual stage's layers in Megatron-Core's "
        "pipeline layout syntax: E embedding, t decoder layer, m MTP module, L loss, | "
        "between virtual stages, (...)*n repeats; e.g. Et*3|(tt|)*6tmL (its stages fix PP x "
        "VPP)", default_text="from the stage layer counts")


@dataclass
class _DataParallel:
    dp: Optional[int] = option(None, "--dp", range=AT_LEAST_1, help="data-parallel degree",
                               default_text="GPUs / (TP x PP); validate: the fixture's")


@dataclass
class Parallelism(_Chunks, _Degrees):
    """How the model is split (searched, or one layout)."""


@dataclass
class Layout(_DataParallel, Parallelism):
    """One layout, DP included (breakdown, timeline)."""


@dataclass
class FixtureLayout(_DataParallel, _Degrees):
    """validate: the fixture's layout."""


# ---- Policy --------------------------------------------------------------------------------

@dataclass
class _Savers:
    PANEL: ClassVar[str] = "Policy"
    schedule: Optional[str] = option(None, "--schedule", help="schedules, comma list: gpipe, "
                                     "1f1b, interleaved, zb-h1, zb-h2, zb-v, v-half, v-min, "
                                     "dualpipev, dualpipe (two model copies; not searched "
                                     "unless named), chronos (tpipe = chronos)")
    recompute: Optional[str] = option(None, "--recompute", help="recompute policies, comma "
                                      "list: none, selective (the --recompute-modules), full "
                                      "(every layer, Megatron's uniform full recomputation), "
                                      "full-fit (the fewest layers that fit), chronos",
                                      default_text="searched: none, selective, full-fit, "
                                      "chronos")
    recompute_modules: str = option("core_attn", "--recompute-modules", help="what selective "
                                    "recompute reruns, comma list (Megatron's "
                                    "--recompute-modules): core_attn, moe_act, layernorm, "
                                    "mla_up_proj, mlp, moe, shared_experts")
    offload: Optional[str] = option(None, "--offload", help="offload policies, comma list: "
                                    "none, optimizer, chronos")
    zero: Optional[int] = option(None, "--zero", help="ZeRO stage 1, 2 or 3 (16-byte Adam "
                                 "family)", range=Range(1, 3))
    dist_opt: bool = option(False, "--dist-opt", help="Megatron distributed optimizer "
                            "(6 + 12/d B/param)")


@dataclass
class _Cap:
    cap: Optional[int] = option(None, "--cap", help="Chronos-Pipe cap C", unit="chunk units",
                                default_text="the planner tries 2p..2", range=AT_LEAST_1)


@dataclass
class _RecomputeLayers:
    recompute_layers: Optional[int] = option(None, "--recompute-layers", help="full "
                                             "recompute of only this many layers per chunk",
                                             default_text="full: every layer; full-fit: the "
                                             "fewest that fit")


@dataclass
class Policy(_RecomputeLayers, _Cap, _Savers):
    """Schedule, memory savers and optimizer sharding."""


@dataclass
class SweepPolicy(_Cap, _Savers):
    """sweep: the policy without a fixed recompute depth."""


@dataclass
class Floor:
    """The "comparable throughput" floor of §8."""
    PANEL: ClassVar[str] = "Policy"
    delta: Optional[float] = option(None, "--delta", help="throughput floor: MFU >= (1 - delta)"
                                    " x 1F1B's MFU at its own L*", default_text="max-size: "
                                    "no floor; validate: the fixture's", range=SHARE)


@dataclass
class FamilyPolicy(Floor, _Savers):
    """max-size: the schedule families, their savers and the floor."""


# ---- what a command reports ----------------------------------------------------------------

@dataclass
class Ranking:
    """What the search ranks by, and how many rows."""
    PANEL: ClassVar[str] = "Ranking"
    objective: str = option("tokens", "--objective", help="tokens (tokens/s), mfu, memory "
                            "(lowest peak) or time")
    top: int = option(8, "--top", range=AT_LEAST_1, help="rows in the ranking table")


@dataclass
class Report:
    """How wide the tables are."""
    PANEL: ClassVar[str] = "Output"
    wide: bool = option(False, "--wide", help="every column (tables wider than 80 columns); "
                        "the JSON and CSV files always carry every number")


@dataclass
class Emit:
    """The answer as launch arguments instead of tables."""
    PANEL: ClassVar[str] = "Output"
    emit: Optional[str] = option(None, "--emit", help="print the best configuration as the "
                                 "arguments of a training framework: megatron (Megatron-LM's "
                                 "pretrain_gpt.py), nothing else")


@dataclass
class TimelineReport:
    """timeline: which devices, and CSV, plot or op list."""
    PANEL: ClassVar[str] = "Timeline"
    device: Optional[str] = option(None, "--device", help=f"only these devices ({RANGE_HELP})",
                                   ints=0)
    plot: bool = option(False, "--plot", help="text plot of memory per device")
    out: Optional[str] = option(None, "--out", help="write the CSV here")
    csv: bool = option(False, "--csv", help="print the whole CSV (time_s, device, category, "
                       "bytes) instead of the per-device summary")
    ops: Optional[str] = option(None, "--ops", help="also export the op list (CSV: op, kind, "
                                "device, resource, start_s, end_s)")


@dataclass
class SweepAxis:
    """sweep: the varied parameter and its values."""
    PANEL: ClassVar[str] = "Sweep"
    vary: str = option(..., "--vary", help="the varied parameter: seq, m or h2d-gbps")
    values: Optional[str] = option(None, "--values", help="values, comma list (e.g. "
                                   "2048,4096,8192)", default_text="seq 1024-16384 "
                                   "doubling, m 8-64 doubling, h2d-gbps 12.5-100 doubling")


@dataclass
class PipelineRequest:
    """Everything a pipeline command is asked, before presets are loaded: the full groups (a
    command that takes fewer flags makes its request with `request`)."""
    work: Workload = field(default_factory=Workload)
    hw: Hardware = field(default_factory=Hardware)
    par: Layout = field(default_factory=Layout)
    policy: Policy = field(default_factory=Policy)
    search: SearchOptions = field(default_factory=SearchOptions)


def request(work: Any = None, hw: Hardware | None = None, par: Any = None, policy: Any = None,
            search: SearchOptions | None = None) -> PipelineRequest:
    """A request from a command's groups: a narrower group (FamilyWorkload, Parallelism,
    SweepPolicy, ...) becomes the full one with the flags it lacks at their defaults."""
    def widen(cls: type, group: Any) -> Any:
        if group is None or isinstance(group, cls):
            return group or cls()
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in vars(group).items() if k in names})

    return PipelineRequest(work=widen(Workload, work), hw=hw or Hardware(),
                           par=widen(Layout, par), policy=widen(Policy, policy),
                           search=search or SearchOptions())


# ---- flags -> model inputs -----------------------------------------------------------------

def default_node(gpu_name: str) -> str:
    from explore import presets
    for name in presets.names("node"):
        if gpu_name in presets.load("node", name).default_for:
            return name
    return "dgx-a100"


def model_shape(work: Workload):
    """--model (with --layers when given) -> ModelShape."""
    from explore import presets
    from explore.models.errors import InputError

    model = presets.load("model", work.model)
    if work.layers is not None:
        if work.layers < 1:
            raise InputError(f"--layers must be >= 1, got {work.layers}")
        model = model.with_layers(work.layers)
    if work.mtp_layers is not None:
        if work.mtp_layers < 0:
            raise InputError(f"--mtp-layers must be >= 0, got {work.mtp_layers}")
        model = dataclasses.replace(model, mtp_layers=work.mtp_layers)
    return model


def hardware(h: Hardware):
    """The Hardware flags -> the pipeline Hardware (GPU + node presets with overrides)."""
    from explore import presets
    from explore.models.errors import InputError
    from explore.models.pipeline.config import Hardware as PipelineHardware
    from explore.models.pipeline.kernels import TimeModel
    from explore.models.units import GB, TFLOPS, GiB

    gpu = presets.load("gpu", h.hardware)
    node = presets.load("node", h.node or default_node(gpu.name))
    for flag, v in (("--hbm-gib", h.hbm_gib), ("--h2d-gbps", h.h2d_gbps),
                    ("--peak-tflops", h.peak_tflops)):
        if v is not None and v <= 0:
            raise InputError(f"{flag} must be > 0, got {v}")
    # each time model has its own knob; the other's would be silently ignored
    if h.time_model == "flat" and h.calibration is not None:
        raise InputError("--calibration applies to --time-model kernels; the flat model takes "
                         "--eff")
    if h.time_model != "flat" and h.eff is not None:
        raise InputError("--eff applies to --time-model flat; calibrate the kernel model with "
                         "`explore pipeline fit` and --calibration")
    return PipelineHardware.from_presets(
        gpu, node, h.gpus,
        hbm_bytes=None if h.hbm_gib is None else h.hbm_gib * GiB,
        reserve_bytes=h.reserve_gib * GiB, fragmentation=h.frag,
        host_ram_bytes=None if h.host_ram_gib is None else h.host_ram_gib * GiB,
        host_link_bandwidth=None if h.h2d_gbps is None else h.h2d_gbps * GB,
        link_share=h.link_share,
        peak_flops=None if h.peak_tflops is None else h.peak_tflops * TFLOPS,
        eff=DEFAULT_EFF if h.eff is None else h.eff,
        time=TimeModel(h.time_model, **calibration_scales(h.calibration, gpu.name),
                       overlap_grad_reduce=h.overlap_grad_reduce,
                       overlap_param_gather=h.overlap_param_gather,
                       tp_comm_overlap=h.tp_comm_overlap, overlap_p2p_comm=h.overlap_p2p_comm,
                       overlap_moe_a2a=h.overlap_moe_a2a,
                       grad_accumulation=h.grad_accumulation, gemm_format=h.gemm_format))


def calibration_scales(path: str | None, gpu: str) -> dict[str, float]:
    """--calibration FILE -> the fitted scales; the file must be for the same GPU."""
    if path is None:
        return {}
    from explore import presets
    from explore.models.errors import ConfigError

    data = presets.read_yaml(path)
    if data.get("kind") != "pipeline-calibration":
        raise ConfigError(f"--calibration {path}: not a pipeline calibration (write one with "
                          f"`explore pipeline fit`)")
    if data.get("hardware") != gpu:
        raise ConfigError(f"--calibration {path} was fitted on {data.get('hardware')}, not "
                          f"{gpu}")
    out = {}
    for key in ("gemm_scale", "comm_scale"):
        v = data.get(key, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"--calibration {path}: {key} must be a number, got {v!r}")
        out[key] = float(v)
    return out


def workload(req: PipelineRequest):
    """Flags -> the study's Workload (model with its layer count, hardware with overrides)."""
    from explore.models.pipeline import memory as mem
    from explore.models.pipeline.study import Workload as StudyWorkload

    w, p = req.work, req.par
    model = model_shape(w)
    return StudyWorkload(model=model, hw=hardware(req.hw), seq=w.seq,
                         global_batch=w.global_batch,
                         sp=model.is_moe if p.sp is None else p.sp, flash=p.flash,
                         tb_ratio=w.tb_ratio, tw_ratio=w.tw_ratio, etp=p.etp,
                         moe_imbalance=w.moe_imbalance, first_layers=p.first_stage_layers,
                         last_layers=p.last_stage_layers, cp_comm=p.cp_comm,
                         pipeline_layout=p.pipeline_layout,
                         recompute_modules=_names(req.policy.recompute_modules,
                                                  tuple(mem.RECOMPUTE_MODULES),
                                                  "--recompute-modules") or ())


def _names(text: str | None, allowed: tuple[str, ...], flag: str) -> tuple[str, ...] | None:
    from explore.models.errors import InputError
    if text is None:
        return None
    out = []
    for part in (x.strip().lower() for x in text.split(",") if x.strip()):
        if part not in allowed:
            raise InputError(f"{flag} {part!r}: choose from {', '.join(allowed)}")
        out.append(part)
    return tuple(dict.fromkeys(out))


def schedules_of(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    from explore.models.pipeline import schedules
    if text is None:
        return default
    return tuple(dict.fromkeys(schedules.canonical(x) for x in text.split(",") if x.strip()))


def _range(text: str | None, flag: str) -> tuple[int, ...] | None:
    from ..common import parse_int_range
    return parse_int_range(text, flag) if text else None


@overload
def one(text: str | None, flag: str, default: int) -> int: ...
@overload
def one(text: str | None, flag: str, default: None) -> int | None: ...


def one(text, flag, default):
    """A range flag on a command that takes one value."""
    from explore.models.errors import InputError

    from ..common import parse_int_range
    if text is None:
        return default
    vals = parse_int_range(str(text), flag)
    if len(vals) != 1:
        raise InputError(f"{flag} {text!r}: this command takes one value")
    return vals[0]


def optimizer(policy: Policy) -> str | None:
    """--zero / --dist-opt -> the optimizer sharding (None: neither given)."""
    from explore.models.pipeline.memory import sharding
    return sharding(policy.zero, policy.dist_opt)


def space(req: PipelineRequest, work) -> dict:
    """The searched values of every parameter: the flags, else the study's default space."""
    from explore.models.pipeline import config
    from explore.models.pipeline.study import search_space

    p, pol = req.par, req.policy
    tps, pps, eps = _range(p.tp, "--tp"), _range(p.pp, "--pp"), _range(p.ep, "--ep")
    cps = _range(p.cp, "--cp")
    scheds = None if pol.schedule is None else schedules_of(pol.schedule, ())
    vpps, mbss = _range(p.vpp, "--vpp"), _range(p.mbs, "--mbs")
    recs = _names(pol.recompute, config.RECOMPUTE, "--recompute")
    offs = _names(pol.offload, config.OFFLOAD, "--offload")
    opt = optimizer(pol)
    return search_space(work, tp=tps, pp=pps, vpp=vpps, mbs=mbss, schedule=scheds,
                        recompute=recs, offload=offs, optimizer=None if opt is None else (opt,),
                        ep=eps, cp=cps)


def build(req: PipelineRequest, keep: int | None = 10):
    """Flags -> (workload, searched values, PipelineStudy)."""
    from explore.models.pipeline.study import PipelineStudy

    work = workload(req)
    lists = space(req, work)
    explicit = req.policy.recompute is not None or req.policy.offload is not None
    study = PipelineStudy(work, tps=lists["tp"], pps=lists["pp"], vpps=lists["vpp"],
                          mbss=lists["mbs"], schedule_names=lists["schedule"],
                          recomputes=lists["recompute"], offloads=lists["offload"],
                          optimizers=lists["optimizer"], cap=req.policy.cap, keep=keep,
                          chronos_savers_everywhere=explicit, eps=lists["ep"],
                          cps=lists["cp"])
    return work, lists, study


def fixed_policy(work, policy: Policy, schedule: str):
    """The one policy of a command that runs one configuration (the workload's recompute
    modules)."""
    return work.policy(schedule, policy.cap, policy.recompute or "none",
                       policy.recompute_layers, policy.offload or "none",
                       optimizer(policy) or "none")


def one_schedule(policy: Policy, command: str = "this command") -> str:
    from explore.models.errors import InputError
    sched = schedules_of(policy.schedule, ("1f1b",))
    if len(sched) != 1:
        raise InputError(f"--schedule: {command} takes one schedule")
    return sched[0]


# ---- the answers ---------------------------------------------------------------------------

def workload_info(work) -> dict:
    hw = work.hw
    return {"model": work.model.name, "layers": work.model.layers,
            "params": work.model.total_params, "hardware": hw.gpu.name, "node": hw.node.name,
            "gpus": hw.gpus, "hbm_bytes": hw.hbm_bytes, "reserve_bytes": hw.reserve_bytes,
            "usable_bytes": hw.usable_bytes, "fragmentation": hw.fragmentation,
            "host_ram_bytes_per_node": hw.host_ram_bytes,
            "host_link_bandwidth": hw.host_link_bandwidth, "link_share": hw.link_share,
            "peak_flops": hw.peak_flops, "time_model": hw.time.kind,
            "gemm_format": hw.time.gemm_format,
            "eff": hw.eff if hw.time.kind == "flat" else None, "seq": work.seq,
            "global_batch": work.global_batch, "sp": work.sp, "flash": work.flash}


def search(req: PipelineRequest, rank: Ranking):
    """Search the space; returns (workload, best outcome, JSON-ready dict)."""
    from explore.models.errors import InfeasibleError, InputError
    from explore.models.pipeline.megatron import launch
    from explore.models.pipeline.study import (PARAMS, assumptions, breakdown, describe,
                                               performance)

    from ..search_run import run_search

    if rank.objective not in OBJECTIVES:
        raise InputError(f"--objective {rank.objective!r}: choose from {', '.join(OBJECTIVES)}")
    if rank.top < 1:
        raise InputError(f"--top must be >= 1, got {rank.top}")
    work, lists, study = build(req, None if rank.objective == "memory" else max(rank.top, 10))
    result = run_search(study, [OBJECTIVES[rank.objective]], req.search)
    ranked = result.ranked()
    if not len(ranked):
        raise InfeasibleError(_nothing_fits(study, result))
    rows = [result.row(i) for i in ranked[:rank.top]]
    best = study.outcome(tuple(rows[0][p] for p in PARAMS))
    assert best is not None
    out = {"study": "pipeline", "objective": OBJECTIVES[rank.objective],
           "workload": workload_info(work),
           "space": {k: list(v) for k, v in lists.items()},
           "search": {"engine": result.engine, "evaluated": result.n,
                      "space_size": result.space_size,
                      "feasible": int(result.feasible.sum()), **study.counts,
                      "elapsed_s": result.elapsed_s, "interrupted": result.interrupted},
           "best": {"config": describe(best), "performance": performance(best)},
           "breakdown": breakdown(best), "top": rows, "launch": launch(best),
           "assumptions": assumptions(work)}
    return work, best, out


def _nothing_fits(study, result) -> str:
    """Say why nothing fits: the configuration closest to the cap and what binds there."""
    import numpy as np

    from explore.models.pipeline.evaluate import Outcome
    from explore.models.pipeline.study import PARAMS, binding_text

    from ..common import sampled_only

    peak = np.asarray(result.metrics.get("peak_max_bytes", []), dtype=float)
    if not len(peak) or not np.isfinite(peak).any():
        reasons = sorted({r for r in result.reasons if r})
        where = sampled_only(result)
        return f"no valid layout{' ' + where if where else ''}: " + "; ".join(reasons[:3])
    i = int(np.nanargmin(peak))
    key = tuple(result.point(i)[p] for p in PARAMS)
    out = study.outcome(key)
    where = (f"TP {key[0]} x PP {key[1]}, mbs {key[3]}, {key[4]}, recompute {key[5]}, "
             f"offload {key[6]}")
    text = binding_text(out) if isinstance(out, Outcome) else str(out)
    sampled = sampled_only(result)
    if sampled:
        return f"no configuration fits {sampled}; the closest ({where}) binds at {text}"
    return f"{study.workload.model.name} cannot fit: the closest configuration ({where}) " \
           f"binds at {text}"


def fixed_outcome(req: PipelineRequest):
    """The layout given by --tp/--pp (...) simulated, or the best found by the default search:
    (workload, outcome, where it came from)."""
    from explore.models.errors import InfeasibleError
    from explore.models.pipeline.chronos import solve
    from explore.models.pipeline.study import binding_text

    work = workload(req)
    p = req.par
    tp, pp = one(p.tp, "--tp", None), one(p.pp, "--pp", None)
    if tp is None or pp is None:
        _, best, _ = search(req, Ranking(top=1))
        return work, best, "best configuration of the default search"
    vpp, mbs = one(p.vpp, "--vpp", work.layout_vpp(pp)), one(p.mbs, "--mbs", 1)
    sched = one_schedule(req.policy) if req.policy.schedule or vpp == 1 else "interleaved"
    policy = fixed_policy(work, req.policy, sched)
    lay = work.layout(tp, pp, mbs, vpp, p.dp, one(p.ep, "--ep", 1), one(p.cp, "--cp", 1))
    out = solve(work.terms(lay, policy)).outcome
    assert out is not None                      # no incumbent: nothing is pruned
    if not out.fits and out.plan.host_limited:
        raise InfeasibleError(f"host RAM exceeded: {binding_text(out)} (raise --host-ram-gib "
                              f"or offload less)")
    return work, out, "given layout"


def breakdown_data(req: PipelineRequest) -> dict:
    from explore.models.pipeline.study import assumptions, breakdown, describe, performance

    work, out, source = fixed_outcome(req)
    return {"study": "pipeline", "command": "breakdown", "source": source,
            "workload": workload_info(work), "config": describe(out),
            "performance": performance(out), "breakdown": breakdown(out),
            "assumptions": assumptions(work)}


def timeline_data(req: PipelineRequest, device: str | None):
    """(workload, outcome, devices or None, JSON-ready dict with the timeline rows)."""
    from explore.models.errors import InputError
    from explore.models.pipeline.study import assumptions, describe, performance, timeline

    from ..common import parse_int_range

    work, out, source = fixed_outcome(req)
    devices = None
    if device is not None:
        devices = list(parse_int_range(device, "--device", minimum=0))
        bad = [d for d in devices if d >= out.terms.p]
        if bad:
            raise InputError(f"--device {bad[0]}: the pipeline has devices 0..{out.terms.p - 1}")
    rows = timeline(out, devices)
    data = {"study": "pipeline", "command": "timeline", "source": source,
            "config": describe(out), "performance": performance(out),
            "timeline": [{"time_s": t, "device": d, "category": c, "bytes": b}
                         for t, d, c, b in rows],
            "peaks": [{"device": d, "peak_bytes": out.peaks[d],
                       "peak_time_s": out.memory[d].peak_time, "peak_op": out.peak_label(d)}
                      for d in (range(out.terms.p) if devices is None else devices)],
            "assumptions": assumptions(work)}
    return work, out, devices, data


def max_size_data(req: PipelineRequest, family: FamilyWorkload, floor: FamilyPolicy) -> dict:
    """Largest trainable model per schedule family on one layout."""
    from explore.models.errors import InputError
    from explore.models.pipeline.study import (MAX_SIZE_SCHEDULES, assumptions,
                                               default_degrees, max_size_table)

    work = workload(req)
    p, pol = req.par, req.policy
    t = one(p.tp, "--tp", default_degrees(work.hw)[0])
    pp = one(p.pp, "--pp", default_degrees(work.hw, t)[1])
    v, b = one(p.vpp, "--vpp", 2), one(p.mbs, "--mbs", 1)
    if floor.delta is not None and not 0 <= floor.delta < 1:
        raise InputError(f"--delta must be in [0, 1), got {floor.delta}")
    from ..render import steps

    scheds = schedules_of(pol.schedule, MAX_SIZE_SCHEDULES)
    with steps("largest model per schedule", 1 + len(scheds)) as advance:
        floor_mfu, sizes = max_size_table(work, t, pp, b, v, scheds, optimizer(pol) or "none",
                                          pol.recompute, pol.offload, floor.delta,
                                          family.max_layers, advance)
    return {"study": "pipeline", "command": "max-size", "workload": workload_info(work),
            "layout": {"tp": t, "pp": pp, "dp": work.hw.gpus // (t * pp), "mbs": b, "vpp": v},
            "floor_mfu": floor_mfu, "rows": [ms.as_dict() for ms in sizes],
            "assumptions": assumptions(work)}


# the values a sweep takes when --values is left out
SWEEP_VALUES = {"seq": "1024,2048,4096,8192,16384", "m": "8,16,32,64",
                "h2d-gbps": "12.5,25,50,100"}


def sweep_data(req: PipelineRequest, axis: SweepAxis) -> dict:
    """L*, peak and tokens/s as one parameter varies."""
    from explore.models.errors import InputError
    from explore.models.pipeline.study import assumptions, default_degrees, sweep

    from ..common import parse_floats

    if axis.vary not in SWEEP_VALUES:
        raise InputError(f"--vary {axis.vary!r}: choose seq, m or h2d-gbps")
    vals = parse_floats(axis.values or SWEEP_VALUES[axis.vary], "--values")
    if min(vals) <= 0:
        raise InputError("--values must be positive numbers")
    work = workload(req)
    p = req.par
    t = one(p.tp, "--tp", default_degrees(work.hw)[0])
    pp = one(p.pp, "--pp", default_degrees(work.hw, t)[1])
    b, v = one(p.mbs, "--mbs", 1), one(p.vpp, "--vpp", 1)
    policy = fixed_policy(work, req.policy, one_schedule(req.policy, "sweep"))
    rows = sweep(work, t, pp, b, policy, v, axis.vary, vals, work.model.layers)
    return {"study": "pipeline", "command": "sweep", "vary": axis.vary,
            "workload": workload_info(work),
            "layout": {"tp": t, "pp": pp, "mbs": b, "vpp": v}, "schedule": policy.schedule,
            "recompute": policy.recompute, "offload": policy.offload, "rows": rows,
            "assumptions": assumptions(work)}


# ---- the §8 fixture ------------------------------------------------------------------------

FIXTURE_GROUPS = (FixtureWorkload, Hardware, FixtureLayout, Floor)


def fixture_options() -> dict:
    """The options of the shipped study preset (the §8 fixture), as field names."""
    from explore import presets
    path = presets.ROOT / "studies" / f"{FIXTURE_PRESET}.yaml"
    data = presets.read_yaml(path)
    return {k.replace("-", "_"): v for k, v in (data.get("options") or {}).items()}


def fixture(overrides: dict):
    """The §8 Fixture: the study preset's options, explicit flags on top; what neither gives
    takes the Fixture's own default (models/pipeline/validate.py) or the flag's."""
    from explore.models.errors import ConfigError
    from explore.models.pipeline.validate import Fixture

    opts = fixture_options()
    opts.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for g in FIXTURE_GROUPS for f in dataclasses.fields(g)}
    unknown = [k for k in opts if k not in known]
    if unknown:
        raise ConfigError(f"study preset {FIXTURE_PRESET}: unknown option {unknown[0]!r}")

    def group(cls):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in opts.items() if k in names})

    shape = model_shape(dataclasses.replace(group(Workload), layers=None))  # layers: the table's
    hw = hardware(group(Hardware))
    layout: dict[str, Any] = {k: one(opts[k], f"--{k}", None) for k in ("tp", "pp", "mbs")
                              if k in opts}
    cast = {"layers": int, "dp": int, "seq": int, "global_batch": int, "sp": bool,
            "flash": bool, "delta": float}
    given = {k: conv(opts[k]) for k, conv in cast.items() if k in opts}
    return Fixture(shape, hw, **layout, **given)


def fixture_data(fx) -> dict:
    """The §8 validation on a fixture and the iteration-time validation on the SC'21 runs
    (their own layouts on A100, whatever the fixture flags say), with the assumptions every
    output ends with."""
    from explore.models.pipeline import throughput as tp
    from explore.models.pipeline.study import assumptions
    from explore.models.pipeline.validate import validate

    from explore.models.pipeline import measured_moe

    data = validate(fx)
    data["throughput"] = throughput_validation()
    moe = moe_validation()
    data["moe_memory"], data["moe_time"] = moe["memory"], moe["time"]
    data["rows"] = data["rows"] + tp.check_rows(data["throughput"]) \
        + measured_moe.check_rows(moe["memory"]) \
        + measured_moe.check_rows(moe["time"], "iteration time", "runs")
    data["hard_fail"] = any(r["status"] == "FAIL" for r in data["rows"])
    data["assumptions"] = assumptions(fx.work)
    return data


SC21_DATA = ("validation", "pipeline", "megatron_sc21_table1.json")
MOE_DATA = ("validation", "pipeline", "moe_runs.json")


def _validation_data(parts: tuple[str, ...]) -> dict:
    import json

    from explore import presets
    from explore.models.errors import ConfigError

    path = presets.data_path(*parts)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None


def moe_validation() -> dict:
    """Peak memory and iteration time of the public MoE runs, a-priori
    (models/pipeline/measured_moe.py)."""
    from explore import presets
    from explore.models.pipeline import measured_moe

    data = _validation_data(MOE_DATA)
    return measured_moe.validation(measured_moe.moe_runs(data, presets.load), presets.load)


def throughput_validation() -> dict:
    """The SC'21 Table 1 runs on the a100-80g and dgx-a100 presets (models/pipeline/
    throughput.py)."""
    from explore import presets
    from explore.models.pipeline import throughput as tp

    data = _validation_data(SC21_DATA)
    return tp.validation(tp.sc21_runs(data), presets.load("gpu", "a100-80g"),
                         presets.load("node", "dgx-a100"))
