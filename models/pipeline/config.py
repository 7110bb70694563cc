"""Inputs of the pipeline study: the node around the GPUs (a preset kind), the hardware as
used (GPU + node + overrides), the parallel layout and the memory/schedule policy."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from ..errors import InputError
from ..formats import number_format
from ..hardware import GpuSpec
from ..shapes import ModelShape
from ..spec import spec
from ..units import GiB
from . import schedules
from .kernels import TimeModel
from .memory import SELECTIVE_DEFAULT, check_modules
from .moe import MoeLayout, check_imbalance

RECOMPUTE = ("none", "selective", "full", "full-fit", "chronos")
FULL_RECOMPUTE = ("full", "full-fit")     # Megatron full recompute of k layers per chunk
OFFLOAD = ("none", "optimizer", "chronos")
OPTIMIZERS = ("none", "dist-opt", "zero1", "zero2", "zero3")
CP_COMM = ("p2p", "a2a")                  # Megatron's --cp-comm-type values modelled (§12)


@dataclass(frozen=True)
class NodeSpec:
    """A server around the GPUs: how many share a host, its RAM, host links and network."""
    name: str = spec("preset name")
    gpus_per_node: int = spec("GPUs per server", default=8)
    host_ram_bytes: float = spec("host DRAM per server", "B", default=1024 * GiB)
    pinned_fraction: float = spec("share of host DRAM usable as pinned offload buffers",
                                  default=0.8)
    gpus_per_host_link: int = spec("GPUs behind one PCIe switch uplink (share its bandwidth)",
                                   default=1)
    inter_node_bandwidth: float = spec("network bandwidth per GPU per direction", "B/s",
                                       default=25e9)
    inter_node_latency_s: float = spec("network latency per message (alpha)", "s",
                                       default=10e-6)
    network_efficiency: float = spec("achieved share of the NICs' line rate in NCCL collectives "
                                     "across nodes", default=0.9)
    default_for: tuple[str, ...] = spec("GPU presets this node is the default for", default=())
    sources: dict = spec("field -> where the value comes from", default={})
    description: str = spec("one line shown in preset lists", default="")

    def __post_init__(self) -> None:
        if self.gpus_per_node < 1 or self.gpus_per_host_link < 1:
            raise InputError(f"node {self.name!r}: GPU counts must be >= 1")
        if not 0 < self.pinned_fraction <= 1:
            raise InputError(f"node {self.name!r}: pinned_fraction must be in (0, 1]")
        if not 0 < self.network_efficiency <= 1:
            raise InputError(f"node {self.name!r}: network_efficiency must be in (0, 1]")
        for f in ("host_ram_bytes", "inter_node_bandwidth"):
            if not getattr(self, f) > 0:
                raise InputError(f"node {self.name!r}: {f} must be positive")


@dataclass(frozen=True)
class Hardware:
    """GPUs as the pipeline study uses them (§10 hardware flags override the presets)."""
    gpu: GpuSpec
    node: NodeSpec
    gpus: int
    hbm_bytes: float
    reserve_bytes: float = 2 * GiB            # CUDA context, NCCL buffers (§4.4)
    fragmentation: float = 1.0                # factor on dynamic memory (§4.4)
    host_ram_bytes: float = 0.0               # usable pinned host RAM per node
    host_link_bandwidth: float = 25e9         # per GPU per direction, before sharing
    link_share: int = 1                       # GPUs sharing one host link
    peak_flops: float = 312e12
    eff: float = 0.5                          # eta of the flat time model (§8 fixture)
    time: TimeModel = TimeModel()             # how op times are computed (§7.2)

    def __post_init__(self) -> None:
        if self.gpus < 1:
            raise InputError(f"--gpus must be >= 1, got {self.gpus}")
        if self.hbm_bytes <= self.reserve_bytes:
            raise InputError(f"HBM ({self.hbm_bytes / GiB:g} GiB) must exceed the reserve "
                             f"({self.reserve_bytes / GiB:g} GiB)")
        if self.reserve_bytes < 0:
            raise InputError("--reserve-gib must be >= 0")
        if self.fragmentation < 1:
            raise InputError(f"fragmentation factor must be >= 1, got {self.fragmentation}")
        if not 0 < self.eff <= 1:
            raise InputError(f"--eff must be in (0, 1], got {self.eff}")
        if self.peak_flops <= 0 or self.host_link_bandwidth <= 0:
            raise InputError("--peak-tflops and --h2d-gbps must be > 0")
        if self.link_share < 1:
            raise InputError(f"--link-share must be >= 1, got {self.link_share}")
        if self.host_ram_bytes < 0:
            raise InputError("--host-ram-gib must be >= 0")
        if self.time.gemm_format != "bf16":       # the GPU must have the tensor cores
            self.gpu.peak_for(number_format(self.time.gemm_format))

    @classmethod
    def from_presets(cls, gpu: GpuSpec, node: NodeSpec, gpus: int,
                     **overrides: Any) -> "Hardware":
        # mixed value types (specs, ints, floats) forwarded as Hardware's keyword arguments
        base: dict[str, Any] = dict(gpu=gpu, node=node, gpus=gpus, hbm_bytes=gpu.hbm_bytes,
                                    host_ram_bytes=node.host_ram_bytes * node.pinned_fraction,
                                    host_link_bandwidth=gpu.host_link_bandwidth,
                                    link_share=node.gpus_per_host_link,
                                    peak_flops=gpu.peak_flops)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    @property
    def usable_bytes(self) -> float:
        """M_cap = HBM - reserve."""
        return self.hbm_bytes - self.reserve_bytes

    @property
    def link_bandwidth(self) -> float:
        """Host-link bandwidth one GPU gets per direction (shared behind a switch)."""
        return self.host_link_bandwidth / self.link_share

    @property
    def achieved_flops(self) -> float:
        return self.peak_flops * self.eff

    @property
    def gpus_per_node(self) -> int:
        return self.node.gpus_per_node

    def with_(self, **kw) -> "Hardware":
        return replace(self, **kw)


@dataclass(frozen=True)
class Layout:
    """Parallel layout and workload: t x p x d GPUs, v chunks, micro-batch b, global batch."""
    tp: int
    pp: int
    dp: int
    seq: int
    mbs: int
    global_batch: int
    vpp: int = 1
    sp: bool = False
    flash: bool = True
    tb_ratio: float = 1.0             # measured T_B / T_F of a layer's compute (§7)
    tw_ratio: float = 1.0             # measured T_W / T_F
    ep: int = 1                       # expert parallelism (MoE, §11)
    etp: int | None = None            # expert tensor parallelism (None: Megatron's, = TP)
    moe_imbalance: float = 1.0        # routed tokens of the busiest GPU over the mean (§11)
    first_layers: int | None = None   # decoder layers of the first / last pipeline stage
    last_layers: int | None = None    # (Megatron's --decoder-first/last-pipeline-num-layers)
    cp: int = 1                       # context parallelism: the sequence split over cp GPUs
    cp_comm: str = "p2p"              # ring attention (p2p) or all-to-all (a2a, Ulysses) (§12)
    pipeline_layout: str | None = None  # Megatron's --pipeline-model-parallel-layout (§11.5)

    def __post_init__(self) -> None:
        if not (self.tb_ratio > 0 and self.tw_ratio > 0):
            raise InputError("--tb-ratio and --tw-ratio must be > 0")
        check_imbalance(self.moe_imbalance)
        if self.cp_comm not in CP_COMM:
            raise InputError(f"--cp-comm must be one of {', '.join(CP_COMM)}, got "
                             f"{self.cp_comm!r}")
        for flag, v in (("--first-stage-layers", self.first_layers),
                        ("--last-stage-layers", self.last_layers)):
            if v is not None and v < 0:
                raise InputError(f"{flag} must be >= 0, got {v}")
        if self.pipeline_layout is not None:
            if (self.first_layers, self.last_layers) != (None, None):
                raise InputError("--pipeline-layout already places every layer: drop "
                                 "--first-stage-layers / --last-stage-layers")
            parse_pipeline_layout(self.pipeline_layout)

    @property
    def moe(self) -> MoeLayout:
        """The expert side of this layout (Megatron-Core's rules, §11)."""
        return MoeLayout(self.gpus, self.tp, self.pp, self.cp, self.ep, self.etp)

    @property
    def local_seq(self) -> int:
        """Tokens of each sequence on one GPU: s / CP (§12)."""
        return self.seq // self.cp

    @property
    def m(self) -> int:
        """Micro-batches per iteration per pipeline: B_g / (b d)."""
        return self.global_batch // (self.mbs * self.dp)

    @property
    def gpus(self) -> int:
        return self.stage_gpus * self.pp

    @property
    def stage_gpus(self) -> int:
        """GPUs of one pipeline stage, TP x CP x DP (Megatron's rank order: TP fastest, then
        CP, DP, PP)."""
        return self.tp * self.cp * self.dp


@dataclass(frozen=True)
class Policy:
    """Schedule and memory savers. 'full' recompute is Megatron's uniform full recomputation:
    every layer of every chunk its own checkpoint, for every micro-batch (recompute_layers: only
    the first k layers); 'full-fit' the same for the smallest k that fits. cap is Chronos-Pipe's
    C (None: the planner picks it)."""
    schedule: str = "1f1b"
    cap: int | None = None
    recompute: str = "none"
    recompute_layers: int | None = None
    offload: str = "none"
    optimizer: str = "none"          # none (Megatron 18 B), dist-opt, zero1..3
    fp32_grads: bool = True
    recompute_modules: tuple[str, ...] = SELECTIVE_DEFAULT   # what 'selective' recomputes

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", schedules.canonical(self.schedule))
        if self.recompute not in RECOMPUTE:
            raise InputError(f"unknown recompute policy {self.recompute!r}; choose from "
                             f"{', '.join(RECOMPUTE)}")
        if self.offload not in OFFLOAD:
            raise InputError(f"unknown offload policy {self.offload!r}; choose from "
                             f"{', '.join(OFFLOAD)}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimizer sharding {self.optimizer!r}; choose from "
                             f"{', '.join(OPTIMIZERS)}")
        if self.recompute_layers is not None and self.recompute_layers < 0:
            raise InputError("--recompute-layers must be >= 0")
        check_modules(self.recompute_modules)
        if self.cap is not None and self.cap < 2:
            raise InputError(f"--cap must be >= 2 chunk units, got {self.cap}")

    @property
    def full(self) -> bool:
        return self.recompute in FULL_RECOMPUTE

    @property
    def zero(self) -> int:
        return int(self.optimizer[-1]) if self.optimizer.startswith("zero") else 0

    @property
    def dist_opt(self) -> bool:
        return self.optimizer == "dist-opt"


def check_layout(shape: ModelShape, layout: Layout, gpus: int, schedule: str) -> None:
    """Every divisibility rule a layout must meet on `gpus` GPUs; InputError names the one
    that fails."""
    for name in ("tp", "pp", "dp", "vpp", "seq", "mbs", "global_batch", "cp"):
        if getattr(layout, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got "
                             f"{getattr(layout, name)}")
    if layout.gpus != gpus:
        cp = f" x CP {layout.cp}" if layout.cp > 1 else ""
        raise InputError(f"layout TP {layout.tp}{cp} x PP {layout.pp} x DP {layout.dp} = "
                         f"{layout.gpus} GPUs does not divide the {gpus} GPUs exactly")
    shape.check_tensor_parallel(layout.tp)
    check_context_parallel(shape, layout)
    if shape.local_attention and not layout.flash:
        raise InputError(f"{shape.name}: local ({shape.local_attention}) attention layers run "
                         f"in flash attention only (Transformer Engine's window); drop "
                         f"--no-flash")
    if shape.local_attention and layout.cp > 1:
        raise InputError(f"{shape.name}: context parallelism with local "
                         f"({shape.local_attention}) attention is not modelled; use CP 1")
    if shape.is_moe or layout.ep != 1 or layout.etp is not None:
        layout.moe.check(shape)
        if shape.is_moe and layout.tp > 1 and not layout.sp:
            raise InputError("MoE layers with TP > 1 need sequence parallelism (--sp), as "
                             "Megatron-Core requires with expert parallelism")
    chunk_layers(shape, layout.seq, layout.pp, schedule, layout.vpp, layout.first_layers,
                 layout.last_layers, layout.pipeline_layout)
    if layout.global_batch % (layout.mbs * layout.dp):
        raise InputError(f"micro-batch {layout.mbs} x DP {layout.dp} does not divide the global "
                         f"batch {layout.global_batch}")
    if schedule == "interleaved" and layout.m % layout.pp:
        raise InputError(f"interleaved 1F1B needs micro-batches per pipeline ({layout.m}) to be "
                         f"a multiple of PP {layout.pp}")
    if schedule == "dualpipev" and layout.m < 2 * layout.pp:
        raise InputError(f"dualpipev needs at least 2 x PP = {2 * layout.pp} micro-batches per "
                         f"pipeline, got {layout.m}")
    if schedule == "dualpipe" and (layout.pp % 2 or layout.m % 2 or layout.m < 2 * layout.pp):
        raise InputError(f"dualpipe needs an even PP and an even number of at least 2 x PP "
                         f"micro-batches per pipeline (half enter each end), got PP "
                         f"{layout.pp} and {layout.m}")
    if schedule != "interleaved" and layout.vpp != 1:
        raise InputError(f"--vpp {layout.vpp} applies to the interleaved schedule only")


def check_context_parallel(shape: ModelShape, layout: Layout) -> None:
    """Megatron-Core's context-parallel rules (§12): the sequence in 2 CP chunks (causal load
    balancing), flash attention (TE's fused attention runs CP), and for the all-to-all the
    heads of a TP rank spread evenly over the CP ranks."""
    cp = layout.cp
    if cp == 1:
        return
    if layout.seq % (2 * cp):
        raise InputError(f"CP {cp} needs the sequence ({layout.seq}) to be a multiple of 2 x CP "
                         f"= {2 * cp} (causal load balancing)")
    if not layout.flash:
        raise InputError("context parallelism runs with flash attention only (--flash)")
    if layout.cp_comm == "a2a" and (shape.heads // layout.tp) % cp:
        raise InputError(f"--cp-comm a2a: the {shape.heads // layout.tp} heads per TP rank do "
                         f"not spread evenly over CP {cp}")


def chunk_layers(shape: ModelShape, seq: int, pp: int, schedule: str, vpp: int = 1,
                 first: int | None = None, last: int | None = None,
                 pipeline_layout: str | None = None) -> tuple[int, ...]:
    """Decoder layers per virtual stage (§11.5): as `pipeline_layout` places them, else each
    rank's (stage_layers) split evenly over its chunks; on a V placement the first and last
    virtual stages (both on device 0) take `first` and `last` layers and the others share the
    rest evenly (balanced like balanced_ends where the layers do not divide)."""
    if pipeline_layout is not None:
        return layout_chunks(shape, pipeline_layout, pp, schedule, vpp)
    if schedule == "dualpipe":            # two copies of one linear split (§5.5)
        return stage_layers(shape, seq, pp, "1f1b", 1, first, last) * 2
    if schedule not in schedules.V_SHAPED:
        per_rank = stage_layers(shape, seq, pp, schedule, vpp, first, last)
        chunks = schedules.chunks_per_device(schedule, vpp)
        return tuple(per_rank[d] // chunks for d in schedules.placement(schedule, pp, vpp))
    nvs, layers = 2 * pp, shape.layers
    if first is None and last is None:
        if layers % nvs == 0:
            return (layers // nvs,) * nvs
        first, last = balanced_ends(shape, seq, pp, 1, v_shaped=True)
    return _with_ends(layers, nvs, first, last, "virtual stage(s)",
                      f"chunks of the V (schedule {schedule})")


LAYOUT_SYMBOLS = {"E": "embedding", "t": "decoder layer", "m": "MTP module", "L": "loss"}


@lru_cache(maxsize=64)
def parse_pipeline_layout(text: str) -> tuple[str, ...]:
    """Megatron-Core's --pipeline-model-parallel-layout as one string per virtual stage, in
    its order (virtual stage v of rank r at v PP + r): '|' separates them, E is the
    embedding, t a decoder layer, m an MTP module, L the loss and LM head; '(...)*n' and 'x*n'
    repeat, commas are cosmetic. "Et*3|(tt|)*6tmL" is 8 virtual stages."""
    def repeat(g: re.Match) -> str:
        if len(g.group(2)) > 5 or len(g.group(1)) * int(g.group(2)) > 100_000:
            raise InputError(f"--pipeline-layout {text!r}: {g.group(0)} repeats too often")
        return g.group(1) * int(g.group(2))

    flat = text.replace(",", "").replace(" ", "")
    for pattern in (r"\(([^()]+)\)\*(\d+)", r"(.)\*(\d+)"):
        flat = re.sub(pattern, repeat, flat)
    bad = sorted(set(flat) - set(LAYOUT_SYMBOLS) - {"|"})
    if bad:
        raise InputError(f"--pipeline-layout {text!r}: unknown symbol {bad[0]!r}; use "
                         + ", ".join(f"{k} ({v})" for k, v in LAYOUT_SYMBOLS.items())
                         + ", | between virtual stages, (...)*n to repeat")
    stages = tuple(flat.split("|"))
    if len(stages) > 4096:
        raise InputError(f"--pipeline-layout {text!r}: {len(stages)} virtual stages")
    if flat.count("E") != 1 or not stages[0].startswith("E"):
        raise InputError(f"--pipeline-layout {text!r}: the embedding E comes once, first")
    if flat.count("L") != 1 or not stages[-1].endswith("L"):
        raise InputError(f"--pipeline-layout {text!r}: the loss L comes once, last")
    return stages


def layout_chunks(shape: ModelShape, text: str, pp: int, schedule: str,
                  vpp: int) -> tuple[int, ...]:
    """Decoder layers per virtual stage of a --pipeline-layout, checked against the model and
    the schedule's placement (Megatron's validate_layer_layout, and the MTP modules in the
    last virtual stage, where the study places them)."""
    stages = parse_pipeline_layout(text)
    if schedule in schedules.V_SHAPED:
        raise InputError(f"--pipeline-layout places virtual stages round robin; schedule "
                         f"{schedule} uses a V")
    chunks = pp * schedules.chunks_per_device(schedule, vpp)
    if len(stages) != chunks:
        raise InputError(f"--pipeline-layout has {len(stages)} virtual stages; PP {pp} x "
                         f"{chunks // pp} chunks per device (schedule {schedule}) needs "
                         f"{chunks}")
    counts = tuple(x.count("t") for x in stages)
    if sum(counts) != shape.layers:
        raise InputError(f"--pipeline-layout places {sum(counts)} decoder layers (t); "
                         f"{shape.name} has {shape.layers}")
    mtp = "".join(stages).count("m")
    if mtp != shape.mtp_layers or mtp and stages[-1].count("m") != mtp:
        raise InputError(f"--pipeline-layout places {mtp} MTP module(s) (m); {shape.name} has "
                         f"{shape.mtp_layers}, all in the last virtual stage with the loss")
    empty = [v for v, (x, n) in enumerate(zip(stages, counts)) if not n and "m" not in x]
    if empty:
        raise InputError(f"--pipeline-layout: virtual stage {empty[0]} holds no decoder layer "
                         f"or MTP module (the study costs every chunk by its layers)")
    return counts


def _with_ends(layers: int, n: int, first: int | None, last: int | None, ends_are: str,
               others_are: str) -> tuple[int, ...]:
    """n counts: `first` and `last` at the ends (when given), the rest of the layers evenly
    over the others; InputError when they do not divide."""
    ends = [x for x in (first, last) if x is not None]
    rest, middle = layers - sum(ends), n - len(ends)
    if rest < 0 or (rest % middle if middle else rest):
        raise InputError(f"with {' and '.join(str(x) for x in ends)} layers on the end "
                         f"{ends_are}, the other {rest} of {layers} layers do not split evenly "
                         f"over the {middle} other {others_are}")
    out = [rest // middle if middle else 0] * n
    if first is not None:
        out[0] = first
    if last is not None:
        out[-1] = last
    return tuple(out)


def stage_layers(shape: ModelShape, seq: int, pp: int, schedule: str, vpp: int = 1,
                 first: int | None = None, last: int | None = None) -> tuple[int, ...]:
    """Decoder layers per pipeline rank by Megatron-Core's rules (get_num_layers_to_build,
    docs/pipeline.md §11.5): the first (last) rank holds `first` (`last`) layers and the ranks
    between share the rest evenly; with neither given, evenly, or when the layers do not
    divide, the balanced split of `balanced_ends`. Every rank's layers split evenly over its
    chunks; InputError names the rule a split breaks."""
    chunks = schedules.chunks_per_device(schedule, vpp)
    layers = shape.layers
    if first is None and last is None:
        if layers % (pp * chunks) == 0:
            return (layers // pp,) * pp
        if pp == 1:
            raise InputError(f"PP 1 x {chunks} chunks does not divide the {layers} layers of "
                             f"{shape.name} (schedule {schedule})")
        first, last = balanced_ends(shape, seq, pp, chunks)
    if pp == 1:
        raise InputError("--first-stage-layers / --last-stage-layers need PP > 1")
    out = _with_ends(layers, pp, first, last, "stage(s)", "pipeline stage(s)")
    if any(n % chunks for n in out):
        raise InputError(f"layers per stage {'/'.join(map(str, sorted(set(out))))} must be "
                         f"multiples of the {chunks} chunks per device")
    return tuple(out)


@lru_cache(maxsize=256)
def balanced_ends(shape: ModelShape, seq: int, pp: int, chunks: int,
                  v_shaped: bool = False) -> tuple[int, int]:
    """(first, last) layers of the split Megatron's --decoder-first/last-pipeline-num-layers
    can express where the layers do not divide evenly: the ranks between hold floor(L / p) or
    ceil(L / p) layers each, the end stages at most as many and at least one per chunk; of
    those, the one whose busiest stage has the fewest forward FLOPs (its layers by kind, the
    LM head and the MTP modules on the last, §11.5). Ties go to fewer layers on the first
    stage, which holds the most micro-batches in flight. v_shaped: the 2p virtual stages of a
    V instead (the ends both on device 0, the others paired r with 2p-1-r)."""
    L = shape.layers
    fl = [shape.layer_flops_per_token(seq, i) for i in range(L)]
    cum = [0.0]
    for x in fl:
        cum.append(cum[-1] + x)
    tail = shape.tail_flops_per_token(seq)
    best: tuple | None = None
    stages = 2 * pp if v_shaped else pp
    for n in sorted({L // stages, -(-L // stages)} if stages > 2 else {0}):
        rest = L - (stages - 2) * n
        for f in range(chunks, rest - chunks + 1, chunks):
            last = rest - f
            if last % chunks or (stages > 2 and max(f, last) > n) or n % chunks:
                continue
            mid = [cum[f + (r + 1) * n] - cum[f + r * n] for r in range(stages - 2)]
            ends = [cum[f], cum[L] - cum[L - last] + tail]
            if v_shaped:        # device 0 holds both ends, device r chunks r and 2p-1-r
                per_device = [sum(ends)] + [mid[r - 1] + mid[stages - 2 - r]
                                            for r in range(1, pp)]
            else:
                per_device = ends + mid
            cost = max(per_device)
            # within 1e-9 counts as a tie, so rounding never decides the split
            if best is None or cost < best[0] * (1 - 1e-9):
                best = (cost, (f, last))
    if best is None:
        where = f"PP {pp}" + (f" ({stages} virtual stages of a V)" if v_shaped else "")
        raise InputError(f"the {L} layers of {shape.name} do not split over {where}: the "
                         f"stages between the ends hold {L // stages} or {-(-L // stages)} "
                         f"layers, the ends at least {chunks} and at most as many (give "
                         f"--first-stage-layers / --last-stage-layers)")
    return best[1]
