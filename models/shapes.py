"""Transformer and MoE shapes: parameter, byte and FLOP counts per layer.

One place for the arithmetic all three studies share (MoESD forward times, ChronosPipe memory,
Hecaton traffic). Counts are per layer unless the name says otherwise; parameters are elements,
bytes are parameters x `bytes_per_param`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from .errors import InputError, shown
from .formats import number_format
from .spec import AT_LEAST_1, NONNEGATIVE, check_fields, spec


LOCAL_ATTENTION = ("", "sliding", "chunked")
ROUTERS = ("softmax", "sigmoid")
FFN_LINEARS = ("gate_up", "fc1", "down")       # the FFN entries of ModelShape.linears()


@dataclass(frozen=True)
class ModelShape:
    name: str = spec("preset name")
    layers: int = spec("decoder layers", range=AT_LEAST_1)
    hidden: int = spec("hidden size h", range=AT_LEAST_1)
    heads: int = spec("query heads a", range=AT_LEAST_1)
    kv_heads: int = spec("key/value heads g (grouped-query attention)", range=AT_LEAST_1)
    head_dim: int = spec("dimension per attention head (MLA: the non-rotary q/k part)",
                         range=AT_LEAST_1)
    intermediate: int = spec("FFN intermediate size of dense layers f", range=AT_LEAST_1)
    vocab: int = spec("vocabulary size V", range=AT_LEAST_1)
    gated_ffn: bool = spec("SwiGLU-style gated FFN (3 matrices) instead of GELU (2)", default=True)
    norm: str = spec("rmsnorm (h weights) or layernorm (h weights + h biases)", default="rmsnorm")
    qkv_bias: bool = spec("biases on the Q, K, V projections (Qwen)", default=False)
    linear_bias: bool = spec("biases on every linear layer (GPT)", default=False)
    tied_embeddings: bool = spec("LM head shares the embedding matrix", default=False)
    dropout: bool = spec("dropout after attention and MLP (GPT training; stores 1-byte masks)",
                         default=False)
    experts: int = spec("routed experts per MoE layer E (0 = dense model)", default=0,
                        range=NONNEGATIVE)
    experts_per_token: int = spec("experts chosen per token K", default=0, range=NONNEGATIVE)
    expert_intermediate: int = spec("intermediate size of one routed expert", default=0,
                                    range=NONNEGATIVE)
    shared_expert_intermediate: int = spec(
        "total intermediate size of the always-on shared expert(s)", default=0, range=NONNEGATIVE)
    shared_expert_gate: bool = spec("sigmoid gate h->1 on the shared expert (Qwen)", default=False)
    router: str = spec(
        "MoE router scores: 'softmax' (top-k logits, then their softmax) or 'sigmoid' "
        "(DeepSeek-V3: sigmoid of all E logits, top-k, renormalised)", default="softmax")
    router_aux_loss: bool = spec(
        "trained with a load-balancing auxiliary loss on the router scores (Hugging Face "
        "router_aux_loss_coef or aux_loss_alpha > 0; Megatron --moe-aux-loss-coeff)",
        default=True)
    dense_layers: int = spec("leading layers with a dense FFN in an MoE model", default=0,
                             range=NONNEGATIVE)
    moe_layer_step: int = spec(
        "MoE on every k-th layer, counting from the first, after the dense_layers (Llama 4 "
        "interleave_moe_layer_step; 1 = every layer)", default=1, range=AT_LEAST_1)
    local_attention: str = spec(
        "'' (every layer attends to the whole context), 'sliding' (a window of the last "
        "attention_window tokens, gpt-oss) or 'chunked' (the token's own chunk, Llama 4)",
        default="")
    attention_window: int = spec("tokens of a local-attention layer's window or chunk",
                                 default=0, range=NONNEGATIVE)
    local_layers: int = spec("layers with local attention; the others attend globally",
                             default=0, range=NONNEGATIVE)
    mtp_layers: int = spec(
        "multi-token-prediction modules after the last layer (DeepSeek-V3: 1): a 2h -> h "
        "projection, two norms and one decoder layer each, sharing embedding and LM head; "
        "outside total_params, as the published sizes count them", default=0, range=NONNEGATIVE)
    kv_lora_rank: int = spec("multi-head latent attention KV rank (0 = standard attention)",
                             default=0, range=NONNEGATIVE)
    q_lora_rank: int = spec("multi-head latent attention query rank (0 = full query)", default=0,
                            range=NONNEGATIVE)
    qk_rope_head_dim: int = spec("MLA rotary part of each q/k head", default=0, range=NONNEGATIVE)
    v_head_dim: int = spec("MLA value head dimension (0 = head_dim)", default=0, range=NONNEGATIVE)
    extra_params: int = spec(
        "parameters outside the decoder layers read every forward (e.g. EAGLE's 2h->h fusion)",
        default=0, range=NONNEGATIVE)
    weight_format: str = spec(
        "format of the decoder's weights as released or served: bf16, fp8, mxfp8, mxfp4, "
        "nvfp4 (embedding and LM head stay bf16)", default="bf16")
    expert_format: str = spec("format of the routed experts' weights ('' = weight_format; "
                              "gpt-oss: mxfp4)", default="")
    kv_format: str = spec("format of the KV cache: bf16 or fp8", default="bf16")
    source: str = spec("where the numbers come from", default="")
    description: str = spec("one line shown in preset lists", default="")

    def __post_init__(self) -> None:
        check_fields(self, f"model {shown(self.name)}")
        if self.heads % self.kv_heads:
            raise InputError(f"model {self.name!r}: heads ({self.heads}) must be a multiple of "
                             f"kv_heads ({self.kv_heads})")
        if self.experts:
            if not 0 < self.experts_per_token <= self.experts:
                raise InputError(f"model {self.name!r}: experts_per_token must be in 1..experts")
            if self.expert_intermediate <= 0:
                raise InputError(f"model {self.name!r}: an MoE needs expert_intermediate > 0")
        for field in ("weight_format", "kv_format") + (("expert_format",)
                                                      if self.expert_format else ()):
            number_format(getattr(self, field), f"model {self.name!r} {field}")
        if self.router not in ROUTERS:
            raise InputError(f"model {self.name!r}: router must be one of {', '.join(ROUTERS)}, "
                             f"got {self.router!r}")
        if self.norm not in ("rmsnorm", "layernorm"):
            raise InputError(f"model {self.name!r}: norm must be rmsnorm or layernorm")
        if not 0 <= self.dense_layers <= self.layers:
            raise InputError(f"model {self.name!r}: dense_layers ({self.dense_layers}) must be "
                             f"in 0..layers ({self.layers})")
        if self.local_attention not in LOCAL_ATTENTION:
            raise InputError(f"model {self.name!r}: local_attention must be one of "
                             f"{', '.join(repr(x) for x in LOCAL_ATTENTION)}, got "
                             f"{self.local_attention!r}")
        local = bool(self.local_attention)
        if local != (self.attention_window > 0) or local != (0 < self.local_layers
                                                             <= self.layers):
            raise InputError(f"model {self.name!r}: local attention needs all of "
                             f"local_attention, attention_window > 0 and local_layers in "
                             f"1..layers ({self.layers}), and none of them without it")

    # ---- structure -------------------------------------------------------------------------
    @cached_property
    def is_moe(self) -> bool:
        return self.experts > 0

    @cached_property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @cached_property
    def sparsity(self) -> float:
        """rho = K/E; 1 for a dense model."""
        return self.experts_per_token / self.experts if self.is_moe else 1.0

    @cached_property
    def moe_layers(self) -> int:
        """Layers l (from 0) with l >= dense_layers and (l + 1) a multiple of moe_layer_step."""
        if not self.is_moe:
            return 0
        return self.layers // self.moe_layer_step - self.dense_layers // self.moe_layer_step

    def is_moe_layer(self, layer: int) -> bool:
        """Layer `layer` (from 0; `layers` is the first MTP module's) has routed experts."""
        return self.is_moe and layer >= self.dense_layers \
            and (layer + 1) % self.moe_layer_step == 0

    def is_local_layer(self, layer: int) -> bool:
        """Layer `layer` (from 0) attends locally: the global ones spread evenly, each last in
        its group (gpt-oss alternates from a sliding first layer, Llama 4 keeps every fourth
        layer global); MTP modules attend globally."""
        if not self.local_attention or layer >= self.layers:
            return False
        g = self.layers - self.local_layers
        return (layer + 1) * g // self.layers == layer * g // self.layers

    @cached_property
    def q_dim(self) -> int:
        """h_q = a * d_head (query width)."""
        return self.heads * self.head_dim

    @cached_property
    def kv_dim(self) -> int:
        """g * d_head (key or value width)."""
        return self.kv_heads * self.head_dim

    def with_layers(self, layers: int) -> "ModelShape":
        """The same layer kinds at another depth: local-attention layers keep their share,
        leading dense layers at most all of them."""
        local = min(layers, max(1, round(self.local_layers * layers / self.layers))) \
            if self.local_attention else 0
        return replace(self, layers=layers, name=f"{self.name}-L{layers}",
                       dense_layers=min(self.dense_layers, layers), local_layers=local)

    # ---- parameters per layer --------------------------------------------------------------
    @cached_property
    def attention_params(self) -> int:
        h = self.hidden
        if self.is_mla:
            rope, nope = self.qk_rope_head_dim, self.head_dim
            v = self.v_head_dim or self.head_dim
            q_out = self.heads * (nope + rope)
            q = (h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * q_out
                 if self.q_lora_rank else h * q_out)
            kv = h * (self.kv_lora_rank + rope) + self.kv_lora_rank \
                + self.kv_lora_rank * self.heads * (nope + v)
            return q + kv + self.heads * v * h
        p = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        if self.qkv_bias or self.linear_bias:
            p += self.q_dim + 2 * self.kv_dim
        if self.linear_bias:
            p += h
        return p

    @cached_property
    def replicated_attention_params(self) -> int:
        """Attention weights every TP rank holds whole: MLA's query and KV down-projections and
        their norms (Megatron-Core duplicates them); 0 for standard attention."""
        if not self.is_mla:
            return 0
        ql, kvl = self.q_lora_rank, self.kv_lora_rank
        q = self.hidden * ql + ql if ql else 0
        return q + self.hidden * (kvl + self.qk_rope_head_dim) + kvl

    @cached_property
    def norm_params(self) -> int:
        """Two norms per layer: 2h weights (+ 2h biases for LayerNorm)."""
        return (2 if self.norm == "rmsnorm" else 4) * self.hidden

    @cached_property
    def ffn_matrices(self) -> int:
        return 3 if self.gated_ffn else 2

    def ffn_params(self, intermediate: int) -> int:
        p = self.ffn_matrices * self.hidden * intermediate
        if self.linear_bias:
            p += (self.ffn_matrices - 1) * intermediate + self.hidden
        return p

    @cached_property
    def dense_ffn_params(self) -> int:
        return self.ffn_params(self.intermediate)

    @cached_property
    def expert_params(self) -> int:
        """One routed expert (SwiGLU)."""
        return 3 * self.hidden * self.expert_intermediate if self.is_moe else 0

    @cached_property
    def shared_expert_params(self) -> int:
        if not self.shared_expert_intermediate:
            return 0
        return 3 * self.hidden * self.shared_expert_intermediate \
            + (self.hidden if self.shared_expert_gate else 0)

    @cached_property
    def router_params(self) -> int:
        return self.hidden * self.experts

    @cached_property
    def dense_layer_params(self) -> int:
        """P_layer of a dense layer: attention + FFN + norms (+ biases)."""
        return self.attention_params + self.dense_ffn_params + self.norm_params

    @cached_property
    def moe_always_on_params(self) -> int:
        """Weights every token of an MoE layer touches: attention, router, shared expert, norms."""
        return self.attention_params + self.router_params + self.shared_expert_params \
            + self.norm_params

    @cached_property
    def attention_linear_params(self) -> int:
        """Weights of the attention linears (no norms, no biases): Q, K, V and the output
        projection; MLA's down- and up-projections and output projection."""
        return sum(k * m for name, k, m in self.linears() if name not in FFN_LINEARS)

    @cached_property
    def linear_params(self) -> int:
        """Parameters in the linear layers of a dense layer (no norms, no biases)."""
        return self.attention_linear_params + self.ffn_matrices * self.hidden * self.intermediate

    @cached_property
    def moe_linear_params(self) -> int:
        """Linear weights one token multiplies through in an MoE layer: attention, router,
        shared experts and K routed experts."""
        return self.attention_linear_params + self.router_params \
            + self.experts_per_token * self.expert_params + 3 * self.hidden \
            * self.shared_expert_intermediate

    def linears(self) -> tuple[tuple[str, int, int], ...]:
        """(name, K, M) of the dense layer's linears Y = X W, with W of size K x M.
        Gate and up are fused. MLA: the query and KV down-projections (replicated over TP),
        their up-projections and the output projection (docs/pipeline.md §11)."""
        h, f = self.hidden, self.intermediate
        ffn_in = ("gate_up", h, 2 * f) if self.gated_ffn else ("fc1", h, f)
        ffn = (ffn_in, ("down", f, h))
        if not self.is_mla:
            return (("qkv", h, self.q_dim + 2 * self.kv_dim), ("o", self.q_dim, h)) + ffn
        a, dn, dr = self.heads, self.head_dim, self.qk_rope_head_dim
        dv = self.v_head_dim or self.head_dim
        ql, kvl = self.q_lora_rank, self.kv_lora_rank
        q = (("q_down", h, ql), ("q_up", ql, a * (dn + dr))) if ql else (("q", h, a * (dn + dr)),)
        return q + (("kv_down", h, kvl + dr), ("kv_up", kvl, a * (dn + dv)),
                    ("o", a * dv, h)) + ffn

    # ---- whole model -----------------------------------------------------------------------
    @cached_property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @cached_property
    def head_params(self) -> int:
        """LM head weights that are read every forward (read even when tied)."""
        return self.vocab * self.hidden

    @cached_property
    def total_params(self) -> int:
        moe = self.moe_layers * (self.moe_always_on_params + self.experts * self.expert_params)
        dense = (self.layers - self.moe_layers) * self.dense_layer_params
        head = 0 if self.tied_embeddings else self.head_params
        return moe + dense + self.embedding_params + head + self.hidden + self.extra_params

    @cached_property
    def active_params_per_token(self) -> int:
        """Parameters one token multiplies through (embedding lookup excluded, head included)."""
        moe = self.moe_layers * (self.moe_always_on_params
                                 + self.experts_per_token * self.expert_params)
        dense = (self.layers - self.moe_layers) * self.dense_layer_params
        return moe + dense + self.head_params + self.extra_params

    @cached_property
    def mtp_params(self) -> int:
        """The MTP modules' own parameters (embedding and LM head are shared): per module a
        2h x h projection, two h norms and one decoder layer of the kind its index gives."""
        h = self.hidden
        layer = (self.moe_always_on_params + self.experts * self.expert_params
                 if self.is_moe_layer(self.layers) else self.dense_layer_params)
        return self.mtp_layers * (2 * h * h + 2 * h + layer)

    # ---- attention cache and FLOPs ---------------------------------------------------------
    # ---- bytes (docs/models.md §5) -----------------------------------------------------------
    @cached_property
    def bytes_per_param(self) -> float:
        """Bytes per decoder weight element in weight_format."""
        return number_format(self.weight_format).bytes

    @cached_property
    def expert_bytes_per_param(self) -> float:
        return number_format(self.expert_format or self.weight_format).bytes

    # embedding and LM head stay in bf16 whatever the decoder's format
    EDGE_BYTES = 2.0

    @cached_property
    def weight_bytes(self) -> float:
        """Bytes of all weights: routed experts in expert_format, the embedding and LM head in
        bf16, the rest of the decoder (and extra parameters) in weight_format."""
        experts = self.moe_layers * self.experts * self.expert_params
        edges = self.embedding_params + (0 if self.tied_embeddings else self.head_params)
        rest = self.total_params - experts - edges
        return experts * self.expert_bytes_per_param + edges * self.EDGE_BYTES \
            + rest * self.bytes_per_param

    @cached_property
    def kv_cache_bytes_per_token(self) -> float:
        """KV-cache bytes one token adds in one layer (MLA caches the latent and rotary key)."""
        elements = self.kv_lora_rank + self.qk_rope_head_dim if self.is_mla else 2 * self.kv_dim
        return elements * number_format(self.kv_format).bytes

    def local_span(self, context):
        """Tokens a local-attention layer attends to (and caches) at position `context`: the
        last `attention_window` (sliding) or those of the current chunk (chunked)."""
        ctx = np.asarray(context, dtype=float)
        w = float(self.attention_window)
        if self.local_attention == "chunked":
            return np.where(ctx > 0, np.mod(ctx - 1, w) + 1, 0.0)
        return np.minimum(ctx, w)

    def attended_tokens(self, context):
        """Cached tokens attended to at position `context`, summed over all layers."""
        ctx = np.asarray(context, dtype=float)
        if not self.local_attention:
            return self.layers * ctx
        return (self.layers - self.local_layers) * ctx + self.local_layers * self.local_span(ctx)

    def kv_cache_bytes(self, context):
        """KV-cache bytes of one sequence at `context` tokens, all layers."""
        return self.attended_tokens(context) * self.kv_cache_bytes_per_token

    def mean_attention_span(self, seq: int) -> float:
        """Keys per query of the average layer in training at sequence length `seq`, counted
        over the full s x s square as Megatron-LM does: seq for global layers, the window or
        chunk (at most seq) for local ones."""
        if not self.local_attention:
            return float(seq)
        local = min(seq, self.attention_window)
        return ((self.layers - self.local_layers) * seq + self.local_layers * local) / self.layers

    @cached_property
    def attention_flops_per_token_per_ctx(self) -> float:
        """FLOPs of QK^T and AV for one query token against one cached token, one layer
        (not reduced by grouped-query attention)."""
        if self.is_mla:
            qk = self.head_dim + self.qk_rope_head_dim
            return 2.0 * self.heads * (qk + (self.v_head_dim or self.head_dim))
        return 4.0 * self.heads * self.head_dim

    @cached_property
    def active_linear_params(self) -> float:
        """Linear weights one token multiplies through in the average layer (biases and norms
        left out): a dense layer's linear_params, an MoE layer's moe_linear_params."""
        dense = self.layers - self.moe_layers
        return (dense * self.linear_params + self.moe_layers * self.moe_linear_params) \
            / self.layers

    def layer_forward_flops_per_token(self, seq: int, moe: bool | None = None,
                                      local: bool | None = None) -> float:
        """Forward FLOPs per token at sequence length `seq` of the average layer (moe and
        local None), or of an MoE (True) or dense (False) one attending locally (True) or
        globally (False): 2 per linear weight a token passes through plus QK^T and AV over
        the keys it attends (the whole sequence, or the window or chunk, at most seq; no causal
        halving, as Megatron-LM's num_floating_point_operations did before 2026)."""
        linear = self.active_linear_params if moe is None else (
            self.moe_linear_params if moe else self.linear_params)
        span = self.mean_attention_span(seq) if local is None else (
            min(seq, self.attention_window) if local else seq)
        return 2.0 * linear + span * self.attention_flops_per_token_per_ctx

    def layer_flops_per_token(self, seq: int, layer: int) -> float:
        """Forward FLOPs per token of layer `layer` (from 0; `layers` onwards the MTP
        modules), by its kind."""
        return self.layer_forward_flops_per_token(seq, self.is_moe_layer(layer),
                                                  self.is_local_layer(layer))

    def tail_flops_per_token(self, seq: int) -> float:
        """Forward FLOPs per token after the last decoder layer: the LM head and the MTP
        modules, each one layer of the kind its index gives plus its own logits."""
        return self.mtp_layers * self.layer_flops_per_token(seq, self.layers) \
            + 2.0 * self.vocab * self.hidden * (1 + self.mtp_layers)

    def training_flops_per_token(self, seq: int) -> float:
        """Forward + backward (3x forward) FLOPs per token: layers, MTP modules and LM head
        (Megatron-LM num_floating_point_operations; Narayanan et al. 2021)."""
        return 3.0 * (self.layers * self.layer_forward_flops_per_token(seq)
                      + self.tail_flops_per_token(seq))

    def check_tensor_parallel(self, tp: int) -> None:
        """Raise InputError when a TP degree does not divide the heads."""
        if tp < 1:
            raise InputError(f"tensor-parallel degree must be >= 1, got {tp}")
        if self.heads % tp:
            raise InputError(f"TP degree {tp} does not divide the {self.heads} attention heads "
                             f"of {self.name}")
