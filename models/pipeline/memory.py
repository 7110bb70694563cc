"""Memory of one pipeline device, docs/pipeline.md §3-§4.

Model states per parameter (mixed-precision Adam, Megatron's fp32 main grads, ZeRO, distributed
optimizer), activations by explicit per-tensor accounting of one transformer layer (GPT with
dropout, LLaMA-style gated/GQA; TP, sequence parallelism, flash attention, selective and full
recompute), the Korthikanti et al. reference formulas they must reproduce, and the stage extras.
All sizes are bytes for one micro-batch on one TP shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import InputError
from ..shapes import FFN_LINEARS, ModelShape
from .kernels import COLUMN_PARALLEL, REPLICATED

RECOMPUTE_UNIFORM = ("none", "selective", "full")
# Megatron-Core's --recompute-modules: what selective recompute drops and reruns (§6.1)
RECOMPUTE_MODULES = {
    "core_attn": "the attention core's s^2 scores (nothing under flash attention)",
    "moe_act": "the routed experts' SwiGLU output (the fc2 input)",
    "layernorm": "the outputs of the norms not fused into a linear: MLA's input norm and an "
                 "MoE layer's pre-FFN norm",
    "mla_up_proj": "MLA's up-projected query, key and value",
    "mlp": "a dense layer's FFN",
    "moe": "an MoE layer's whole FFN block: router, experts, shared experts, all-to-alls",
    "shared_experts": "an MoE layer's shared experts",
}
SELECTIVE_DEFAULT = ("core_attn",)     # Megatron-Core's default


# ---- §3 model states ------------------------------------------------------------------------

@dataclass(frozen=True)
class StateBytes:
    """Bytes per parameter held on a device: bf16 weights, gradients, optimizer (fp32 master +
    two Adam moments)."""
    weights: float
    grads: float
    optimizer: float
    scheme: str

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer


def sharding(zero: int | None = None, dist_opt: bool = False) -> str | None:
    """The optimizer sharding (config.OPTIMIZERS) named by a ZeRO stage and the distributed
    optimizer flag, None when neither is given. The rules of §3, in one place: ZeRO stage 0
    (no sharding), 1, 2 or 3; Megatron's distributed optimizer is its ZeRO-1, so not both."""
    if zero is not None and dist_opt:
        raise InputError("--dist-opt is Megatron's ZeRO-1; do not combine it with --zero")
    if zero is not None:
        if zero not in (0, 1, 2, 3):
            raise InputError(f"--zero must be 0, 1, 2 or 3, got {zero}")
        return "none" if zero == 0 else f"zero{zero}"
    return "dist-opt" if dist_opt else None


def state_bytes(zero: int = 0, dist_opt: bool = False, dp: int = 1,
                fp32_grads: bool = True) -> StateBytes:
    """S_p split by kind (§3 table): Megatron default 2+4+12 = 18 (fp32_grads) or mixed-precision
    Adam 2+2+12 = 16; ZeRO-1/2/3 (16-byte family) 4+12/d, 2+14/d, 16/d; distributed optimizer
    (Megatron) 6+12/d. zero 0 means no ZeRO (the rules: `sharding`)."""
    scheme = sharding(zero or None, dist_opt)
    if dp < 1:
        raise InputError(f"data-parallel degree must be >= 1, got {dp}")
    if scheme == "dist-opt":
        return StateBytes(2.0, 4.0, 12.0 / dp, "distributed optimizer 6 + 12/d")
    if scheme == "zero1":
        return StateBytes(2.0, 2.0, 12.0 / dp, "ZeRO-1 4 + 12/d")
    if scheme == "zero2":
        return StateBytes(2.0, 2.0 / dp, 12.0 / dp, "ZeRO-2 2 + 14/d")
    if scheme == "zero3":
        return StateBytes(2.0 / dp, 2.0 / dp, 12.0 / dp, "ZeRO-3 16/d")
    if fp32_grads:
        return StateBytes(2.0, 4.0, 12.0, "Megatron bf16 + fp32 grads 18")
    return StateBytes(2.0, 2.0, 12.0, "mixed-precision Adam 16")


def head_params(shape: ModelShape, same_device_as_embedding: bool) -> int:
    """P_head + final norm on the last virtual stage. A tied head shares the embedding when
    both sit on one device; on another device it keeps its own copy (Megatron-LM)."""
    norm = shape.norm_params // 2          # one final norm (norm_params counts a layer's two)
    if shape.tied_embeddings and same_device_as_embedding:
        return norm
    return shape.head_params + norm


# ---- §4.1 reference formulas ----------------------------------------------------------------

KORTHIKANTI_VARIANTS = ("none", "tp", "sp", "selective", "sp+selective", "full", "sp+full")


def korthikanti_bytes(s: float, b: float, h: float, a: float, t: float, variant: str) -> float:
    """Activation bytes per GPT layer per micro-batch, Korthikanti et al. 2022 Table 2 (§4.1)."""
    sbh, r = s * b * h, a * s / h
    if variant == "none":
        return sbh * (34 + 5 * r)
    if variant == "tp":
        return sbh * (10 + 24 / t + 5 * r / t)
    if variant == "sp":
        return sbh * (34 / t + 5 * r / t)
    if variant == "selective":
        return sbh * (10 + 24 / t)
    if variant == "sp+selective":
        return sbh * 34 / t
    if variant == "full":
        return 2 * sbh
    if variant == "sp+full":
        return 2 * sbh / t
    raise InputError(f"unknown Korthikanti variant {variant!r}; choose from "
                     f"{', '.join(KORTHIKANTI_VARIANTS)}")


# ---- §4.2 explicit per-tensor accounting ----------------------------------------------------

@dataclass(frozen=True)
class SavedTensor:
    """One tensor a layer saves for backward. bytes_per_token is for the whole layer (before
    any sharding); kind 'act' scales with tokens, 'score' holds s^2 entries (dropped by flash
    attention), 'stats' is flash attention's fp32 softmax statistics; `modules` are the
    RECOMPUTE_MODULES whose selective recompute drops it."""
    name: str
    bytes_per_token: float
    tp_sharded: bool
    kind: str = "act"
    modules: tuple[str, ...] = ()


@lru_cache(maxsize=256)
def layer_tensors(shape: ModelShape, seq: int, gemm_bytes: float = 2.0
                  ) -> tuple[SavedTensor, ...]:
    """Every tensor one dense layer saves for backward, 16-bit activations (§4.2 tables).
    GPT (LayerNorm, GELU, dropout) gives 34sbh + 5as^2b; LLaMA (RMSNorm, SwiGLU, GQA, no
    dropout) gives 8sbh unsharded + the rest sharded. With FP8/FP4 GEMMs (Transformer
    Engine) the four linear inputs are saved quantised, `gemm_bytes` per element (§7.4)."""
    q = gemm_bytes
    h, hq, kv, f, a = shape.hidden, shape.q_dim, shape.kv_dim, shape.intermediate, shape.heads
    # a norm fused into the next linear (TE's LayerNormLinear) has no output to drop
    norm1 = ("layernorm",) if shape.is_mla else ()
    norm2 = ("layernorm",) if shape.is_moe else ()
    t = [SavedTensor("norm1 input", 2 * h, False),
         SavedTensor("QKV input", q * h, False, modules=norm1),
         SavedTensor("norm2 input", 2 * h, False),
         SavedTensor("FFN input", q * h, False, modules=norm2)]
    if shape.dropout:
        t += [SavedTensor("attention dropout mask", h, False),
              SavedTensor("MLP dropout mask", h, False)]
    if shape.is_mla:                 # Megatron-Core's MLA (docs/pipeline.md §11)
        t += _mla_tensors(shape, q)
    else:
        t += [SavedTensor("Q", 2 * hq, True), SavedTensor("K", 2 * kv, True),
              SavedTensor("V", 2 * kv, True),
              SavedTensor("output-projection input", q * hq, True)]
    core = ("core_attn",)
    t.append(SavedTensor("softmax output", 2 * a * seq, True, "score", core))
    if shape.dropout:
        t += [SavedTensor("softmax dropout mask", a * seq, True, "score", core),
              SavedTensor("softmax dropout output", 2 * a * seq, True, "score", core)]
    t.append(SavedTensor("softmax statistics (fp32)", 4 * a, True, "stats"))
    if shape.is_moe:     # the MoE block's own tensors need the layout: moe.moe_ffn_tensors
        return tuple(t)
    mlp = ("mlp",)
    if shape.gated_ffn:
        t += [SavedTensor("gate output", 2 * f, True, modules=mlp),
              SavedTensor("up output", 2 * f, True, modules=mlp),
              SavedTensor("down-projection input", q * f, True, modules=mlp)]
    else:
        t += [SavedTensor("GELU input", 2 * f, True, modules=mlp),
              SavedTensor("FC2 input", q * f, True, modules=mlp)]
    return tuple(t)


def _mla_tensors(shape: ModelShape, q: float) -> list[SavedTensor]:
    """What multi-head latent attention saves besides the layer input and its norm: the
    compressed query and KV (each a norm's input and the up-projection's input, on the SP
    shard like every replicated tensor), then per head the query and key (non-rotary and
    rotary parts), the value and the attention output, the output projection's input."""
    a, dn, dr = shape.heads, shape.head_dim, shape.qk_rope_head_dim
    dv = shape.v_head_dim or shape.head_dim
    up = ("mla_up_proj",)
    t = []
    if shape.q_lora_rank:
        t += [SavedTensor("q norm input", 2 * shape.q_lora_rank, False),
              SavedTensor("q up-projection input", q * shape.q_lora_rank, False)]
    t += [SavedTensor("kv norm input", 2 * shape.kv_lora_rank, False),
          SavedTensor("kv up-projection input", q * shape.kv_lora_rank, False),
          SavedTensor("Q", 2 * a * (dn + dr), True, modules=up),
          SavedTensor("K", 2 * a * (dn + dr), True, modules=up),
          SavedTensor("V", 2 * a * dv, True, modules=up),
          SavedTensor("output-projection input", q * a * dv, True)]
    return t


def check_recompute(recompute: str) -> str:
    if recompute not in RECOMPUTE_UNIFORM:
        raise InputError(f"unknown recompute policy {recompute!r}; choose from "
                         f"{', '.join(RECOMPUTE_UNIFORM)}")
    return recompute


def check_modules(modules: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [m for m in modules if m not in RECOMPUTE_MODULES]
    if unknown:
        raise InputError(f"unknown recompute module {unknown[0]!r}; choose from "
                         f"{', '.join(RECOMPUTE_MODULES)}")
    return modules


def check_modules_apply(shape: ModelShape, modules: tuple[str, ...]) -> None:
    """Raise InputError for a recompute module the model has nothing for (Megatron-Core
    refuses mla_up_proj without MLA; the MoE ones would silently do nothing)."""
    needs = {"mla_up_proj": (shape.is_mla, "multi-latent attention"),
             "moe_act": (shape.is_moe, "routed experts"), "moe": (shape.is_moe, "MoE layers"),
             "shared_experts": (shape.shared_expert_intermediate > 0, "shared experts")}
    for m in modules:
        has, what = needs.get(m, (True, ""))
        if not has:
            raise InputError(f"recompute module {m} needs {what}; {shape.name} has none")


def recomputed(x: SavedTensor, recompute: str, modules: tuple[str, ...]) -> bool:
    """Selective recompute drops the tensors of its modules (Megatron-Core's: normal
    checkpoints for core_attn, mlp, moe and shared_experts keep their input, the
    output-discarding ones for moe_act, layernorm and mla_up_proj their input too)."""
    return recompute == "selective" and any(m in modules for m in x.modules)


@lru_cache(maxsize=256)
def saved_tensors(shape: ModelShape, seq: int, flash: bool, recompute: str = "none",
                  gemm_bytes: float = 2.0, modules: tuple[str, ...] = SELECTIVE_DEFAULT
                  ) -> tuple[SavedTensor, ...]:
    """The tensors actually stored under flash attention / selective recompute of `modules`:
    flash drops the s^2 entries and keeps the softmax statistics; selective recompute drops
    its modules' tensors."""
    check_recompute(recompute)
    out = []
    for x in layer_tensors(shape, seq, gemm_bytes):
        if x.kind == "score" and flash or recomputed(x, recompute, modules):
            continue
        if x.kind == "stats" and not flash:
            continue
        out.append(x)
    return tuple(out)


def layer_activation_bytes(shape: ModelShape, seq: int, mbs: int, tp: int, sp: bool,
                           flash: bool, recompute: str = "none",
                           gemm_bytes: float = 2.0,
                           modules: tuple[str, ...] = SELECTIVE_DEFAULT) -> float:
    """A_layer: stored bytes of one layer for one micro-batch on one TP shard (§4.2). Sequence
    parallelism shards the otherwise replicated tensors by t; full recompute keeps only the
    layer input (checkpoint)."""
    if recompute == "full":
        return checkpoint_bytes(shape, seq, mbs, tp, sp)
    tokens = seq * mbs
    total = 0.0
    for x in saved_tensors(shape, seq, flash, recompute, gemm_bytes, modules):
        total += x.bytes_per_token * tokens / (tp if (x.tp_sharded or sp) else 1)
    return total


def checkpoint_bytes(shape: ModelShape, seq: int, mbs: int, tp: int, sp: bool) -> float:
    """A layer-input checkpoint: 2sbh, divided by t when sequence parallelism shards it."""
    return 2.0 * seq * mbs * shape.hidden / (tp if sp else 1)


def split_backward_bytes(shape: ModelShape, seq: int, mbs: int, tp: int, sp: bool,
                         gemm_bytes: float = 2.0) -> float:
    """Bytes one layer holds between B and W (split backward, §4.2): each linear layer's input
    and output gradient, `gemm_bytes` per element (quantised with FP8 GEMMs). Column-parallel
    linears (QKV, FFN in) keep a replicated input and a sharded output gradient; row-parallel
    ones (output projection, FFN out) the reverse; MLA's replicated down-projections their SP
    shard of both. An MoE layer's FFN block holds its own (moe.moe_split_backward_bytes)."""
    tokens = seq * mbs
    rep = tp if sp else 1                # replicated tensors are sharded only by SP
    held = 0.0
    for name, k, m in shape.linears():
        if shape.is_moe and name in FFN_LINEARS:
            continue
        if name in REPLICATED:
            held += (k + m) / rep
        elif name in COLUMN_PARALLEL:
            held += k / rep + m / tp
        else:
            held += k / tp + m / rep
    return gemm_bytes * tokens * held


def omega(shape: ModelShape, seq: int, mbs: int, tp: int, sp: bool, flash: bool) -> float:
    """omega = (bytes held between B and W) / A_layer, clipped to [0, 1]: B frees (1 - omega) of
    a chunk's activations and W the rest (§5.1). GPT without TP: 32/34."""
    a = layer_activation_bytes(shape, seq, mbs, tp, sp, flash)
    return min(1.0, split_backward_bytes(shape, seq, mbs, tp, sp) / a)


# ---- §4.4 stage extras ----------------------------------------------------------------------

def first_stage_bytes(shape: ModelShape, seq: int, mbs: int, tp: int, sp: bool) -> float:
    """Per in-flight micro-batch on the embedding stage: int64 token ids (8sb) and, with dropout,
    the embedding dropout mask (sbh, /t with SP). The embedding output itself is the first
    layer's input, already counted in A_layer."""
    tokens = seq * mbs
    mask = tokens * shape.hidden / (tp if sp else 1) if shape.dropout else 0.0
    return 8.0 * tokens + mask


def mtp_params(shape: ModelShape) -> int:
    """An MTP module's own weights besides its decoder layer (DeepSeek-V3 §2.2): the 2h -> h
    projection of [norm(embedding); norm(hidden)] and those two norms."""
    return 2 * shape.hidden * shape.hidden + 2 * shape.hidden


def mtp_bytes(shape: ModelShape, seq: int, mbs: int, tp: int, sp: bool,
              gemm_bytes: float = 2.0) -> float:
    """What an MTP module saves besides its decoder layer: the two norms' inputs (2sbh each)
    and the projection's 2h-wide input, replicated over TP unless sequence parallel."""
    return (4.0 + 2.0 * gemm_bytes) * seq * mbs * shape.hidden / (tp if sp else 1)


def last_stage_bytes(shape: ModelShape, seq: int, mbs: int, tp: int) -> float:
    """Per in-flight micro-batch on the last virtual stage: fp32 logits and their gradient,
    4sb(h + V)/t (Megatron-LM)."""
    return 4.0 * seq * mbs * (shape.hidden + shape.vocab) / tp
