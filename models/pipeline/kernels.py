"""Time of one transformer layer from its kernels (docs/pipeline.md §7.2): every GEMM costed
from its own shape on the GPU's efficiency curve, with a memory-bound floor; normalisation,
activation, softmax and dropout kernels by the bytes they move; flash attention at its own
efficiency; the bus bandwidth a collective group reaches. The backward is its own GEMMs:
input gradients (B) and weight gradients (W) have other shapes than the forward.

Pure functions of the model shape, the layout and the GPU; no simulator state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from typing import TYPE_CHECKING

from ..errors import InputError, did_you_mean
from ..formats import NumberFormat, number_format
from ..hardware import GpuSpec
from ..shapes import ModelShape

if TYPE_CHECKING:                     # config imports this module for TimeModel
    from .config import NodeSpec
    from .moe import MoeLayout

TIME_MODELS = ("kernels", "flat")
GRAD_ACCUMULATION = ("fused", "separate")
GEMM_FORMATS = ("bf16", "fp8", "mxfp8", "nvfp4")
ELEMENT = 2            # bytes per activation element (bf16 / fp16 mixed precision)
MASK = 1               # bytes per dropout-mask element (Megatron stores uint8 masks)
LOGIT = 4              # bytes per logit element in the cross-entropy (computed in fp32)
# Cross-entropy over the vocabulary shard, bytes per logit element [estimate]: forward reads
# the bf16 logits and writes fp32, then max, exp-sum and the target gather (~4 fp32 passes);
# backward writes softmax - one-hot and its bf16 copy.
CE_FORWARD_BYTES = ELEMENT + 4 * LOGIT
CE_BACKWARD_BYTES = 2 * LOGIT + 2 * ELEMENT


@dataclass(frozen=True)
class TimeModel:
    """How op times are computed, and the Megatron-LM overlap switches, each at Megatron-LM's
    own default (off; P2P overlap on for the interleaved schedule)."""
    kind: str = "kernels"              # kernels (§7.2) | flat (every FLOP at eff x peak, §8)
    gemm_scale: float = 1.0            # calibration: scales the GEMM efficiency curve
    comm_scale: float = 1.0            # calibration: scales every achieved bus bandwidth
    overlap_grad_reduce: bool = False  # --overlap-grad-reduce: DP reduce under the backward
    overlap_param_gather: bool = False  # --overlap-param-gather: dist-opt all-gather under F
    tp_comm_overlap: bool = False      # --tp-comm-overlap: TP collectives under the GEMMs (SP)
    # --overlap-p2p-comm: P2P off the compute stream; None: Megatron-LM's default since 2023-05,
    # on for the interleaved schedule only
    overlap_p2p_comm: bool | None = None
    # how each micro-batch's weight gradient joins the accumulated one: "fused" into the
    # weight-gradient GEMM (--gradient-accumulation-fusion, Megatron-LM since 2022-02) or a
    # "separate" add kernel (earlier Megatron-LM, PyTorch autograd)
    grad_accumulation: str = "fused"
    # --overlap-moe-expert-parallel-comm: in the steady state a micro-batch's forward and
    # another's backward run as one step, each one's MoE all-to-alls under the other's
    # compute (§11.4)
    overlap_moe_a2a: bool = False
    # the linear layers' GEMM input format (Transformer Engine FP8/FP4 training, §7.4): bf16,
    # fp8 (--fp8-format hybrid), mxfp8, nvfp4
    gemm_format: str = "bf16"

    def __post_init__(self) -> None:
        if self.kind not in TIME_MODELS:
            raise InputError(f"unknown time model {self.kind!r}; choose from "
                             f"{', '.join(TIME_MODELS)}")
        if self.grad_accumulation not in GRAD_ACCUMULATION:
            raise InputError(f"unknown gradient accumulation {self.grad_accumulation!r}; "
                             f"choose from {', '.join(GRAD_ACCUMULATION)}")
        if self.gemm_format not in GEMM_FORMATS:
            raise InputError(f"unknown GEMM format {self.gemm_format!r}"
                             f"{did_you_mean(self.gemm_format, GEMM_FORMATS)}; choose from "
                             f"{', '.join(GEMM_FORMATS)}")
        if self.gemm_format != "bf16" and self.kind == "flat":
            raise InputError("--gemm-format applies to --time-model kernels; the flat model "
                             "prices every FLOP at eff x the bf16 peak")
        for name in ("gemm_scale", "comm_scale"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise InputError(f"{name} must be a finite number > 0, got {v}")


# ---- one GEMM -----------------------------------------------------------------------------

MIN_TILE = 16


def _tile(extent: int, largest: int) -> int:
    """The tile edge a GEMM library picks along one dimension: the large tile, or for a
    skinny dimension the smallest power of two (>= 16) that covers it."""
    return min(largest, max(MIN_TILE, 1 << max(0, math.ceil(math.log2(extent)))))


SPLIT_K_DEPTH = 256    # the shortest slice of k a split-K GEMM gives one tile [design]


def split_k(m: int, n: int, k: int, batch: int, gpu: GpuSpec) -> int:
    """Slices of k per output tile: a GEMM with fewer tiles than SMs splits its depth (as
    cuBLAS and CUTLASS do) until the SMs are busy or a slice is SPLIT_K_DEPTH deep."""
    tm, tn = _tile(m, gpu.gemm_tile_m), _tile(n, gpu.gemm_tile_n)
    tiles = math.ceil(m / tm) * math.ceil(n / tn) * batch
    return max(1, min(gpu.sm_count // tiles, k // SPLIT_K_DEPTH))


def quantisation(m: int, n: int, batch: int, gpu: GpuSpec, splits: int = 1) -> float:
    """Share of the tensor cores a GEMM keeps busy: output tiles of gemm_tile_m x
    gemm_tile_n (smaller for a skinny GEMM), each split in `splits` slices of k, spread over
    sm_count SMs in waves; the partial last tile (tile quantisation) and the partial last wave
    (wave quantisation) idle the rest."""
    tm, tn = _tile(m, gpu.gemm_tile_m), _tile(n, gpu.gemm_tile_n)
    tiles = math.ceil(m / tm) * math.ceil(n / tn) * batch * splits
    waves = math.ceil(tiles / gpu.sm_count)
    return (m * n * batch * splits) / (waves * gpu.sm_count * tm * tn)


def gemm_efficiency(m: int, n: int, k: int, gpu: GpuSpec, batch: int = 1,
                    scale: float = 1.0) -> float:
    """Achieved fraction of peak FLOP/s while compute bound: the GPU's largest-GEMM efficiency
    (measured maximum achievable matmul FLOP/s) x quantisation x the main loop's share of a
    tile's time, k' / (k' + gemm_k_overhead) with k' the depth of one split-K slice."""
    splits = split_k(m, n, k, batch, gpu)
    depth = k / splits
    return min(1.0, gpu.gemm_efficiency * scale * quantisation(m, n, batch, gpu, splits)
               * depth / (depth + gpu.gemm_k_overhead))


def gemm_s(m: int, n: int, k: int, gpu: GpuSpec, batch: int = 1, scale: float = 1.0,
           fmt: NumberFormat | None = None) -> float:
    """Seconds of `batch` GEMMs (m x k) @ (k x n): the longer of compute on the efficiency curve
    and the bytes of both operands and the result at the achieved bandwidth, plus one kernel's
    fixed cost. With `fmt` (FP8/FP4 inputs) the peak is that format's and the operands take
    its bytes; the result stays bf16. The efficiency curve is bf16's (§7.4)."""
    flops = 2.0 * m * n * k * batch
    peak = gpu.peak_flops if fmt is None else gpu.peak_for(fmt)
    operand = ELEMENT if fmt is None else fmt.bytes
    compute = flops / (peak * gemm_efficiency(m, n, k, gpu, batch, scale))
    memory = ((m * k + k * n) * operand + m * n * ELEMENT) * batch / gpu.achieved_bandwidth
    return max(compute, memory) + gpu.kernel_overhead_s


def bytes_s(nbytes: float, gpu: GpuSpec, kind: str = "elementwise", kernels: int = 1) -> float:
    """A memory-bound kernel of one class (elementwise, norm, softmax): its bytes at that
    class's measured bandwidth plus its fixed cost."""
    return nbytes / gpu.kernel_bandwidth(kind) + kernels * gpu.kernel_overhead_s


def dropout_s(elements: float, nbytes: float, gpu: GpuSpec) -> float:
    """A forward dropout kernel: its bytes, or its random numbers at the GPU's dropout rate,
    whichever is slower (PyTorch's Philox generation bounds it on A100/H100-class GPUs)."""
    rng = elements / gpu.dropout_rate if gpu.dropout_rate else 0.0
    return max(nbytes / gpu.kernel_bandwidth("elementwise"), rng) + gpu.kernel_overhead_s


# ---- one layer ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PassTimes:
    """Seconds of one layer for one micro-batch on one GPU, per pass, with the terms."""
    f: float
    b: float
    w: float
    terms: dict = field(default_factory=dict)   # "pass: term" -> seconds

    def gemms(self, pass_: str) -> float:
        """Seconds of one pass's GEMMs ("F", "B" or "W"): what TP communication can hide
        under (summed once per PassTimes: a search asks for each many times)."""
        if "_gemms" not in self.__dict__:
            totals = {x: 0.0 for x in "FBW"}
            for k, v in self.terms.items():
                if "GEMM" in k:
                    totals[k[0]] += v
            object.__setattr__(self, "_gemms", totals)
        return self.__dict__["_gemms"][pass_]


def _moe_dense_gemms(shape: ModelShape, tokens: int, tp: int
                     ) -> list[tuple[str, int, int, int]]:
    """An MoE layer's GEMMs besides the routed experts: the router on the s b / TP tokens of
    one TP rank (replicated weights) and the shared experts as a TP-sharded SwiGLU MLP."""
    h, fs = shape.hidden, shape.shared_expert_intermediate
    out = [("router", tokens // tp, shape.experts, h)]
    if fs:
        out += [("shared gate_up", tokens, 2 * fs // tp, h), ("shared down", tokens, h, fs // tp)]
    return out


def _add_experts(add, shape: ModelShape, seq: int, mbs: int, lay: "MoeLayout", gpu: GpuSpec,
                 scale: float, imbalance: float = 1.0, fmt: NumberFormat | None = None) -> None:
    """The routed experts of an MoE layer (§11): their GEMMs at their own token counts, the
    weighted SwiGLU and the token permutation before and after the all-to-alls, by bytes;
    with FP8/FP4 GEMMs the casts of fc1's and fc2's inputs and output gradients (§7.4)."""
    from .moe import expert_gemm_times          # moe builds on this module
    f_, b_, w_ = expert_gemm_times(shape, seq, mbs, lay, gpu, scale, imbalance, fmt)
    add("F: expert GEMMs", f_)
    add("B: expert GEMMs", b_)
    add("W: expert GEMMs", w_)
    routed = shape.experts_per_token * seq * mbs / lay.tp * lay.expert_tp * imbalance
    f_exp = shape.expert_intermediate / lay.expert_tp
    if fmt is not None:     # fc1: X (h) and dY (2 f); fc2: X (f) and dY (h), per routed token
        cast = ELEMENT + fmt.bytes
        add("F: FP8/FP4 casts", bytes_s(routed * (shape.hidden + f_exp) * cast, gpu, kernels=2))
        add("B: FP8/FP4 casts", bytes_s(routed * (2 * f_exp + shape.hidden) * cast, gpu,
                                        kernels=2))
    add("F: expert activation", bytes_s(routed * f_exp * 3 * ELEMENT, gpu))
    add("B: expert activation", bytes_s(routed * f_exp * 5 * ELEMENT, gpu))
    moved = routed * shape.hidden * 2 * ELEMENT            # read and write the h-wide rows
    add("F: permute + unpermute", 2 * bytes_s(moved, gpu))
    add("B: permute + unpermute", 2 * bytes_s(moved, gpu))


def linears(shape: ModelShape, tokens: int, tp: int, sp: bool = True
            ) -> list[tuple[str, int, int, int]]:
    """(name, M, N, K) of the layer's weight GEMMs on one TP shard: Y (M x N) = X (M x K) W.
    Column-parallel (qkv, up) split N, row-parallel (o, down) split K; MLA's replicated
    down-projections run on a TP rank's sequence shard under SP."""
    out = []
    for name, k, n in shape.linears():
        if name in REPLICATED:       # MLA's down-projections: whole weights, SP-sharded rows
            out.append((name, tokens // tp if sp else tokens, n, k))
            continue
        column = name in COLUMN_PARALLEL
        out.append((name, tokens, n // tp if column else n, k if column else k // tp))
    return out


COLUMN_PARALLEL = ("qkv", "q", "q_up", "kv_up", "gate_up", "fc1")
REPLICATED = ("q_down", "kv_down")


# a search costs many points of one layout on one GPU: their kernels are costed once
@lru_cache(maxsize=512)
def layer_times(shape: ModelShape, seq: int, mbs: int, tp: int, sp: bool, flash: bool,
                gpu: GpuSpec, tm: TimeModel, moe: "MoeLayout | None" = None,
                imbalance: float = 1.0, cp: int = 1, span: int | None = None) -> PassTimes:
    """F, B and W of one layer (docs/pipeline.md §7.2; an MoE layer's block §11) on one GPU:
    with context parallelism its s / CP tokens, their queries against all s keys (§12); a
    local-attention layer's queries against `span` keys each (its window or chunk, flash
    attention only, §11.8). TP and CP communication and the MoE all-to-alls excluded (the
    caller adds them)."""
    s, b, h = seq, mbs, shape.hidden
    tokens = s * b // cp
    heads = shape.heads // tp
    d = shape.head_dim
    f = shape.intermediate
    terms: dict[str, float] = {}

    def add(key: str, seconds: float) -> None:
        terms[key] = terms.get(key, 0.0) + seconds

    g = tm.gemm_scale
    fmt = None if tm.gemm_format == "bf16" else number_format(tm.gemm_format)
    gemms = linears(shape, tokens, tp, sp)
    if shape.is_moe:
        assert moe is not None                   # an MoE layer needs its expert layout
        gemms = [x for x in gemms if x[0] not in ("gate_up", "fc1", "down")] \
            + _moe_dense_gemms(shape, tokens, tp)
        _add_experts(add, shape, seq // cp, mbs, moe, gpu, g, imbalance, fmt)
    for name, m, n, k in gemms:
        q = None if name == "router" else fmt    # Megatron's router is no TE linear
        add(f"F: {name} GEMM", gemm_s(m, n, k, gpu, scale=g, fmt=q))
        add("B: input-gradient GEMMs", gemm_s(m, k, n, gpu, scale=g, fmt=q))  # dX = dY W^T
        add("W: weight-gradient GEMMs", gemm_s(k, n, m, gpu, scale=g, fmt=q))  # dW = X^T dY
        if q is not None:            # quantise the input X (forward) and dY (backward, once)
            add("F: FP8/FP4 casts", bytes_s(m * k * (ELEMENT + q.bytes), gpu))
            add("B: FP8/FP4 casts", bytes_s(m * n * (ELEMENT + q.bytes), gpu))

    # attention core, per head: QK^T (s x s, depth d) and AV (s x d, depth s)
    if flash:                        # QK^T and AV: 4 a d (MLA: 2 a (d_qk + d_v)) per key
        fwd = b * (s // cp) * (span or s) * shape.attention_flops_per_token_per_ctx / tp
        add("F: flash attention", fwd / (gpu.peak_flops * gpu.flash_fwd_efficiency)
            + gpu.kernel_overhead_s)
        add("B: flash attention", 2.5 * fwd / (gpu.peak_flops * gpu.flash_bwd_efficiency)
            + gpu.kernel_overhead_s)
    else:                            # MLA: QK^T at depth d + d_rope, AV at d_v
        bh = b * heads
        dqk, dv = d + shape.qk_rope_head_dim, shape.v_head_dim or d
        add("F: attention GEMMs", gemm_s(s, s, dqk, gpu, bh, g) + gemm_s(s, dv, s, gpu, bh, g))
        # backward: dS = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q
        add("B: attention GEMMs", gemm_s(s, s, dv, gpu, bh, g) + gemm_s(s, dv, s, gpu, bh, g)
            + 2 * gemm_s(s, dqk, s, gpu, bh, g))
        scores = b * heads * s * s
        # fused scale-mask-softmax (read, write); with the model's dropout, dropout on the
        # probabilities (read, write, mask; PyTorch returns its input at p = 0)
        drop_f = dropout_s(scores, scores * (2 * ELEMENT + MASK), gpu) if shape.dropout else 0.0
        drop_b = bytes_s(scores * (2 * ELEMENT + MASK), gpu) if shape.dropout else 0.0
        add("F: softmax + dropout", bytes_s(scores * 2 * ELEMENT, gpu, "softmax") + drop_f)
        # softmax backward (probabilities, gradient in, gradient out); dropout backward
        add("B: softmax + dropout", bytes_s(scores * 3 * ELEMENT, gpu, "softmax") + drop_b)

    # element-wise kernels; without SP the norms and residual regions are replicated over TP
    rows = tokens // tp if sp else tokens
    elements = rows * h
    drop = MASK if shape.dropout else 0
    # two norms (x -> y; x, dy -> dx) and two (bias-)dropout-residual adds per layer
    resid_f, resid_b = elements * (3 * ELEMENT + drop), elements * (2 * ELEMENT + drop)
    resid = dropout_s(elements, resid_f, gpu) if drop else bytes_s(resid_f, gpu)
    add("F: norms + residuals", 2 * bytes_s(elements * 2 * ELEMENT, gpu, "norm") + 2 * resid)
    add("B: norms + residuals", 2 * bytes_s(elements * 3 * ELEMENT, gpu, "norm")
        + 2 * bytes_s(resid_b, gpu))
    ffn = tokens * (shape.shared_expert_intermediate if shape.is_moe else f) // tp
    act_f, act_b = (3 * ELEMENT, 5 * ELEMENT) if shape.gated_ffn else (2 * ELEMENT, 3 * ELEMENT)
    if ffn:
        add("F: activation", bytes_s(ffn * act_f, gpu))
        add("B: activation", bytes_s(ffn * act_b, gpu))

    def total(prefix: str) -> float:
        return sum(v for k, v in terms.items() if k.startswith(prefix))

    return PassTimes(total("F:"), total("B:"), total("W:"), terms)


def with_mtp(k: PassTimes, shape: ModelShape, seq: int, mbs: int, tp: int, gpu: GpuSpec,
             tm: TimeModel) -> PassTimes:
    """A decoder layer inside an MTP module: plus its 2h -> h projection (column-parallel)
    and its two norms (§11.6)."""
    tokens, h, g = seq * mbs, shape.hidden, tm.gemm_scale
    terms = dict(k.terms)
    extra = {"F: MTP projection + norms": gemm_s(tokens, h // tp, 2 * h, gpu, scale=g)
             + 2 * bytes_s(tokens * h * 2 * ELEMENT, gpu, "norm"),
             "B: MTP projection + norms": gemm_s(tokens, 2 * h, h // tp, gpu, scale=g)
             + 2 * bytes_s(tokens * h * 3 * ELEMENT, gpu, "norm"),
             "W: MTP projection": gemm_s(2 * h, h // tp, tokens, gpu, scale=g)}
    terms.update(extra)
    return PassTimes(k.f + extra["F: MTP projection + norms"],
                     k.b + extra["B: MTP projection + norms"], k.w + extra["W: MTP projection"],
                     terms)


@lru_cache(maxsize=512)
def head_times(shape: ModelShape, seq: int, mbs: int, tp: int, gpu: GpuSpec,
               tm: TimeModel) -> PassTimes:
    """The LM head on one TP shard (vocabulary split by tp) and the cross-entropy over it."""
    tokens, h, v = seq * mbs, shape.hidden, shape.vocab // tp
    g = tm.gemm_scale
    ce = tokens * v
    f = gemm_s(tokens, v, h, gpu, scale=g) + bytes_s(ce * CE_FORWARD_BYTES, gpu, "softmax", 4)
    b = gemm_s(tokens, h, v, gpu, scale=g) + bytes_s(ce * CE_BACKWARD_BYTES, gpu, "softmax", 2)
    w = gemm_s(h, v, tokens, gpu, scale=g)
    return PassTimes(f, b, w, {"F: LM head + cross-entropy": f, "B: LM head": b,
                               "W: LM head": w})


# ---- collective groups ---------------------------------------------------------------------

def group_bus(gpu: GpuSpec, node: "NodeSpec", size: int, stride: int,
              comm_scale: float = 1.0) -> tuple[float, float]:
    """(bus bandwidth, latency) of a group of `size` ranks `stride` apart (Megatron's rank
    order: TP fastest). Inside one node: the GPU's measured NCCL bus bandwidth. Across nodes the
    ring crosses the network once per node and NCCL spreads its channels over the NICs of the
    group's members on that node: members x NIC x network efficiency, at most the in-node rate."""
    span = size * stride
    per_node = node.gpus_per_node
    if span <= per_node:
        return gpu.bus_bandwidth * comm_scale, gpu.collective_latency_s
    members = max(1, min(size, per_node // stride))
    nodes = math.ceil(span / per_node)
    bw = min(gpu.bus_bandwidth, members * node.inter_node_bandwidth * node.network_efficiency)
    return bw * comm_scale, gpu.collective_latency_s + 2 * (nodes - 1) * node.inter_node_latency_s
