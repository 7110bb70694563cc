"""MoE layers in the pipeline study (docs/pipeline.md §11): the rules by which Megatron-Core
places experts, what an MoE block saves for backward, its all-to-alls and its expert GEMMs.
Model states per GPU follow from the layer kinds in costs.LayerCosts.

Megatron-Core's two decompositions of the same GPUs: attention and dense layers use
TP x CP x DP x PP, experts ETP x EP x EDP x PP, so EDP = TP CP DP / (ETP EP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..comm import all_to_all_s
from ..errors import InputError
from ..formats import NumberFormat
from ..shapes import ModelShape
from . import kernels, schedules
from .memory import SavedTensor, recomputed


@dataclass(frozen=True)
class MoeLayout:
    """The parallel degrees of an MoE training run on `gpus` GPUs."""
    gpus: int
    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    etp: int | None = None        # None: Megatron's default, ETP = TP

    @property
    def dp(self) -> int:
        return self.gpus // (self.tp * self.pp * self.cp)

    @property
    def expert_tp(self) -> int:
        return self.tp if self.etp is None else self.etp

    @property
    def edp(self) -> int:
        """Expert data parallelism: the GPUs of one stage that hold the same experts."""
        return self.tp * self.cp * self.dp // (self.expert_tp * self.ep)

    def check(self, shape: ModelShape) -> "MoeLayout":
        """Raise InputError naming the rule a layout breaks (Megatron-Core's parallel_state and
        argument checks)."""
        for name, v in (("TP", self.tp), ("PP", self.pp), ("CP", self.cp), ("EP", self.ep),
                        ("ETP", self.expert_tp)):
            if v < 1:
                raise InputError(f"{name} must be >= 1, got {v}")
        if not shape.is_moe:
            if self.ep > 1 or self.etp not in (None, self.tp):
                raise InputError(f"{shape.name} has no experts: EP and ETP apply to MoE models")
            return self
        if self.gpus % (self.tp * self.pp * self.cp):
            raise InputError(f"TP {self.tp} x PP {self.pp} x CP {self.cp} does not divide the "
                             f"{self.gpus} GPUs")
        if (self.tp * self.cp * self.dp) % (self.expert_tp * self.ep):
            raise InputError(f"ETP {self.expert_tp} x EP {self.ep} must divide TP x CP x DP = "
                             f"{self.tp * self.cp * self.dp} (the GPUs of one pipeline stage)")
        if shape.experts % self.ep:
            raise InputError(f"EP {self.ep} must divide the {shape.experts} experts of "
                             f"{shape.name}")
        if shape.expert_intermediate % self.expert_tp:
            raise InputError(f"ETP {self.expert_tp} must divide the expert FFN width "
                             f"{shape.expert_intermediate} of {shape.name}")
        shape.check_tensor_parallel(self.tp)
        return self


def check_imbalance(value: float) -> float:
    """The routing imbalance margin: the busiest GPU's routed tokens over the mean, >= 1."""
    if not value >= 1:
        raise InputError(f"--moe-imbalance must be >= 1 (the busiest GPU over the mean), got "
                         f"{value}")
    return value


def check_supported(shape: ModelShape, hw) -> None:
    """Raise InputError when the study's MoE layers (§11) meet what they do not cover: the
    flat time model, which has no expert GEMMs or all-to-alls."""
    if shape.is_moe and hw.time.kind == "flat":
        raise InputError(f"{shape.name}: MoE layers in the pipeline study need the kernel time "
                         f"model (--time-model kernels; docs/pipeline.md §11)")


def a2a_overlap_refusal(ep: int, pp: int, schedule: str, recompute: str,
                        modules: tuple[str, ...]) -> str | None:
    """Why Megatron-Core refuses --overlap-moe-expert-parallel-comm here (TransformerConfig,
    §11.4), or None: it needs expert parallelism, 1F1B without pipelining or the interleaved
    schedule, no full-layer recompute, no recompute of the whole MoE block. DualPipe's
    schedules overlap their own pairs and take it as given."""
    if schedule in schedules.DUAL:
        return None
    why = ("needs an MoE model with expert parallelism (EP > 1)" if ep == 1
           else "needs 1F1B without pipelining or the interleaved schedule (Megatron-LM: VPP "
           "must be given when PP > 1)" if not schedules.a2a_overlap_runs(schedule, pp)
           else f"does not run with {recompute} recompute (Megatron-LM: no full "
           f"recomputation)" if recompute in ("full", "full-fit", "chronos")
           else "does not run with the 'moe' recompute module"
           if recompute == "selective" and "moe" in modules else None)
    return why and f"--overlap-moe-expert-parallel-comm {why}"


# ---- activations of an MoE layer -------------------------------------------------------------

def moe_ffn_tensors(shape: ModelShape, imbalance: float = 1.0,
                    gemm_bytes: float = 2.0) -> tuple[SavedTensor, ...]:
    """What the MoE block of one layer saves for backward, per token of the layer's input
    (docs/pipeline.md §11.3), in Megatron-Core's default path (alltoall dispatcher, TEGroupedMLP
    with the fused weighted SwiGLU, probabilities applied inside the experts, router scores in
    fp32 as the DeepSeek-V3 recipes set --moe-router-dtype). Routed tensors count k x
    `imbalance` entries per token (dropless; `imbalance` >= 1 is the margin of the most loaded
    GPU over the mean); with FP8/FP4 GEMMs the expert and shared-expert linears' saved inputs
    take `gemm_bytes` per element (Transformer Engine's grouped and plain linears save them
    quantised, §7.4). bytes_per_token is before sharding; tp_sharded marks what TP (experts:
    ETP) divides; `modules` the recompute modules that drop it. The norm before it and its
    output, the FFN input, are the attention part's (memory.layer_tensors).

    - router (shape.router): softmax takes the top k logits and saves the k indices (int64)
      and their softmax (fp32); sigmoid (DeepSeek-V3) saves sigmoid(logits) over all E experts
      (fp32), the k indices, the gathered top-k scores and their sum (fp32). With the
      auxiliary load-balancing loss (shape.router_aux_loss) the scores over all E are computed
      and saved once more (sigmoid: with their sum).
    - permutation: sorting the routed copies by expert keeps an index over all E experts per
      token (the argsort of the E x tokens routing map, int64; fused, TE's int32 row map of
      2E + 1 columns: the same size).
    - routed experts, per routed token: the permuted fc1 input (h, bf16, kept by the grouped
      GEMM for its weight gradient), the fc1 output (2 f_exp gate and up, bf16, kept by the
      weighted SwiGLU), the routing probability (fp32, same kernel), the fc2 input (f_exp,
      bf16; moe_act recomputes it) and the permutation index (int64) unpermute needs.
    - shared experts: as a dense SwiGLU MLP of their width, TP-sharded: gate and up outputs,
      the down-projection input (the input is the FFN input, already counted)."""
    if not imbalance >= 1:
        raise InputError(f"routing imbalance must be >= 1, got {imbalance}")
    h, e, k, f = shape.hidden, shape.experts, shape.experts_per_token, shape.expert_intermediate
    routed = k * imbalance
    moe, act, shared = ("moe",), ("moe_act", "moe"), ("shared_experts", "moe")

    def block(name: str, nbytes: float, sharded: bool = False, kind: str = "act",
              modules: tuple[str, ...] = moe) -> SavedTensor:
        return SavedTensor(name, nbytes, sharded, kind, modules)
    t = [block("router top-k indices (int64)", 8 * k)]
    if shape.router == "softmax":
        t.append(block("router top-k softmax (fp32)", 4 * k))
    else:
        t += [block("router sigmoid scores (fp32)", 4 * e),
              block("router top-k scores and their sum (fp32)", 4 * k + 4)]
    if shape.router_aux_loss:
        t.append(block(f"aux-loss {shape.router} over all experts (fp32)",
                       4 * e + (4 if shape.router == "sigmoid" else 0)))
    t += [block("permutation map over all experts (int64)", 8 * e),
          block("expert fc1 input (permuted tokens)", gemm_bytes * h * routed, kind="routed"),
          block("expert fc1 output (gate, up)", 2 * 2 * f * routed, True, "routed"),
          block("routing probability (fp32)", 4 * routed, kind="routed"),
          block("expert fc2 input", gemm_bytes * f * routed, True, "routed", act),
          block("permutation index (int64)", 8 * routed, kind="routed")]
    fs = shape.shared_expert_intermediate
    if fs:
        t += [block("shared gate output", 2 * fs, True, modules=shared),
              block("shared up output", 2 * fs, True, modules=shared),
              block("shared down-projection input", gemm_bytes * fs, True, modules=shared)]
    return tuple(t)


def moe_ffn_bytes(shape: ModelShape, seq: int, mbs: int, layout: MoeLayout,
                  imbalance: float = 1.0, recompute: str = "none",
                  modules: tuple[str, ...] = (), gemm_bytes: float = 2.0) -> float:
    """Bytes the MoE block of one layer saves per micro-batch on one GPU, without what
    selective recompute of `modules` drops. Megatron-Core runs MoE with TP > 1 under sequence
    parallelism, so the router sees s b / TP tokens; the dispatcher gathers the ETP group's
    tokens, so routed tensors hold k x (s b / TP) x ETP entries per GPU, their f_exp-wide ones
    divided by ETP; shared experts are TP-sharded."""
    tokens = seq * mbs / layout.tp
    total = 0.0
    for x in moe_ffn_tensors(shape, imbalance, gemm_bytes):
        if recomputed(x, recompute, modules):
            continue
        if x.kind == "routed":
            total += x.bytes_per_token * tokens * layout.expert_tp \
                / (layout.expert_tp if x.tp_sharded else 1)
        else:       # router tensors on its s b / TP tokens; shared experts TP-sharded alike
            total += x.bytes_per_token * tokens
    return total


def moe_forward_transient(shape: ModelShape, seq: int, mbs: int, layout: MoeLayout,
                          imbalance: float = 1.0) -> float:
    """Bytes an MoE block's forward holds at once besides what it saves (§11.3): with the
    alltoall dispatcher at the combine, four h-wide copies of the routed tokens (permuted
    before dispatch, received, the experts' output, the combined return; Megatron-Core's
    MoELayer keeps the first two referenced until it returns) and the shared experts'
    output."""
    tokens = seq * mbs / layout.tp
    routed = shape.experts_per_token * tokens * layout.expert_tp * imbalance
    return 2.0 * shape.hidden * (4 * routed + (tokens if shape.shared_expert_intermediate
                                               else 0))


# ---- all-to-all dispatch and combine -----------------------------------------------------------

def dispatch_bytes(shape: ModelShape, seq: int, mbs: int, layout: MoeLayout,
                   element_bytes: float = 2.0) -> float:
    """Bytes one GPU sends into one all-to-all of an MoE layer (dispatch or combine, forward or
    backward): its k (s b / TP) routed token copies of h elements (bf16; DeepSeek-V3 dispatches
    in FP8, element_bytes 1). A layer runs four per micro-batch: dispatch and combine forward,
    their gradients backward."""
    return shape.experts_per_token * seq * mbs / layout.tp * shape.hidden * element_bytes


def all_to_all_time(shape: ModelShape, seq: int, mbs: int, layout: MoeLayout, gpu, node,
                    element_bytes: float = 2.0, imbalance: float = 1.0) -> float:
    """Seconds of one dispatch (or combine) over the EP group. Megatron-Core orders ranks
    TP-CP-EP-DP-PP for experts with ETP in place of TP, so EP ranks sit ETP apart: the group
    spans EP x ETP GPUs; the members on one node move their share over NVLink (the GPU's
    measured bus bandwidth), the rest leaves through each GPU's NIC at the network's
    efficiency. With routing imbalance the busiest GPU receives `imbalance` x the mean, which
    bounds the exchange."""
    n = layout.ep
    members = max(1, min(n, node.gpus_per_node // layout.expert_tp))
    return all_to_all_s(n, imbalance * dispatch_bytes(shape, seq, mbs, layout, element_bytes),
                        members,
                        gpu.bus_bandwidth, node.inter_node_bandwidth * node.network_efficiency,
                        gpu.collective_latency_s)


# ---- routed-expert GEMMs ------------------------------------------------------------------------

def expert_gemm_times(shape: ModelShape, seq: int, mbs: int, layout: MoeLayout, gpu,
                      gemm_scale: float = 1.0, imbalance: float = 1.0,
                      fmt: NumberFormat | None = None) -> tuple[float, float, float]:
    """(forward, input-gradient, weight-gradient) seconds of one layer's routed-expert GEMMs
    on one GPU per micro-batch, on the kernel model's efficiency curve (§7.2) at their real
    sizes: E / EP local experts share k (s b / TP) ETP x imbalance routed tokens, each expert's
    fc1 (h -> 2 f_exp / ETP, SwiGLU) and fc2 (f_exp / ETP -> h) costed at its own token count,
    one grouped kernel launch per GEMM kind; with `fmt` at that format's peak and operand
    bytes (§7.4)."""
    local = shape.experts // layout.ep
    routed = shape.experts_per_token * seq * mbs / layout.tp * layout.expert_tp * imbalance
    m = max(1, math.ceil(routed / local))              # tokens per local expert
    f = shape.expert_intermediate // layout.expert_tp
    h = shape.hidden
    overhead = (2 * local - 2) * gpu.kernel_overhead_s   # grouped: one launch per GEMM kind

    def grouped(dims) -> float:
        return local * sum(kernels.gemm_s(a, b, c, gpu, scale=gemm_scale, fmt=fmt)
                           for a, b, c in dims) \
            - overhead
    fwd = grouped([(m, 2 * f, h), (m, h, f)])               # Y = X W
    dgrad = grouped([(m, h, 2 * f), (m, f, h)])             # dX = dY W^T
    wgrad = grouped([(h, 2 * f, m), (f, h, m)])             # dW = X^T dY
    return fwd, dgrad, wgrad


def moe_split_backward_bytes(shape: ModelShape, seq: int, mbs: int, layout: MoeLayout,
                             gemm_bytes: float = 2.0, imbalance: float = 1.0) -> float:
    """Bytes the MoE block of one layer holds from B to W (split backward, §4.2, §11): each
    linear's input and output gradient. The router (h -> E, replicated) on the s b / TP tokens;
    shared experts as a TP-sharded SwiGLU MLP (column-parallel gate/up, row-parallel down);
    per routed token (k (s b / TP) ETP x imbalance per GPU) fc1's input (h) and output gradient
    (2 f_exp / ETP), fc2's input (f_exp / ETP) and output gradient (h)."""
    tokens, t = seq * mbs / layout.tp, layout.tp
    h, f, fs = shape.hidden, shape.expert_intermediate / layout.expert_tp, \
        shape.shared_expert_intermediate
    routed = shape.experts_per_token * tokens * layout.expert_tp * imbalance
    shared = tokens * t * ((h / t + 2 * fs / t) + (fs / t + h / t)) if fs else 0.0
    return gemm_bytes * (tokens * (h + shape.experts) + shared
                         + routed * (h + 2 * f + f + h))
