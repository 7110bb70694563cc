"""Bytes and seconds of one configuration (docs/pipeline.md §3, §4, §7): what every virtual
stage stores, what every op costs, model states per device, communication, FLOPs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from ..comm import RING, all_to_all_s, bus_s, p2p_s
from ..errors import InputError
from ..formats import NumberFormat, number_format
from ..shapes import FFN_LINEARS, ModelShape
from . import kernels
from . import memory as mem
from . import moe, schedules
from .config import Hardware, Layout, Policy, check_layout, chunk_layers


# the forward kernels (kernels.layer_times "F: ..." terms) each recompute module reruns; an
# MoE layer's "activation" is its shared experts', a dense layer's its FFN's
RECOMPUTE_TERMS = {
    "core_attn": ("attention GEMMs", "softmax + dropout"),
    "moe_act": ("expert activation",),
    "layernorm": (),                            # costed from the norm's bytes
    "mla_up_proj": ("q_up GEMM", "kv_up GEMM"),
    "mlp": ("gate_up GEMM", "fc1 GEMM", "down GEMM", "activation"),
    "shared_experts": ("shared gate_up GEMM", "shared down GEMM", "activation"),
    "moe": ("router GEMM", "shared gate_up GEMM", "shared down GEMM", "activation",
            "expert GEMMs", "expert activation", "permute + unpermute"),
}


@dataclass(frozen=True, eq=False)
class LayerCosts:
    """Bytes and seconds of one decoder layer of one kind (dense, MoE, or an MTP module
    around either) on one GPU for one micro-batch of a configuration (§4, §7, §11)."""
    terms: "Terms"
    moe: bool                     # routed experts (§11)
    mtp: bool = False             # a multi-token-prediction module around the layer (§11.6)
    local: bool = False           # sliding-window or chunked attention (§11.8)

    @cached_property
    def shape(self) -> ModelShape:
        """The model as this layer's functions read it: an MoE model's dense layers as the
        dense model of the same attention and dense FFN."""
        s = self.terms.shape
        return s if self.moe or not s.is_moe else dense_view(s)

    # ---- activations (§4, §11) --------------------------------------------------------------
    def _act(self, recompute: str) -> float:
        t, lay = self.terms, self.terms.layout
        modules = t.policy.recompute_modules
        a = mem.layer_activation_bytes(self.shape, lay.local_seq, lay.mbs, lay.tp, lay.sp,
                                       lay.flash, recompute, t.gemm_bytes, modules)
        if recompute == "full":
            return a
        if self.moe:
            a += moe.moe_ffn_bytes(self.shape, lay.local_seq, lay.mbs, lay.moe,
                                   lay.moe_imbalance, recompute, modules, t.gemm_bytes)
        if self.mtp:
            a += mem.mtp_bytes(self.shape, lay.local_seq, lay.mbs, lay.tp, lay.sp, t.gemm_bytes)
        return a

    @cached_property
    def a_full(self) -> float:
        """A_layer without any recompute: also a recompute transient."""
        return self._act("none")

    @cached_property
    def working(self) -> float:
        """The working buffer while one of this layer's ops runs (§4.4): A_full, or an MoE
        block's forward transient where that is larger (§11.3)."""
        if not self.moe:
            return self.a_full
        lay = self.terms.layout
        return max(self.a_full, moe.moe_forward_transient(self.shape, lay.local_seq, lay.mbs,
                                                          lay.moe, lay.moe_imbalance))

    @cached_property
    def a_layer(self) -> float:
        """Stored bytes under the uniform policy (selective drops its modules' tensors)."""
        return self._act("selective" if self.terms.policy.recompute == "selective" else "none")

    @cached_property
    def held(self) -> float:
        """Bytes held from B to W with split backward: each linear's input and output gradient
        (§4.2), at most the layer's activations."""
        lay, q = self.terms.layout, self.terms.gemm_bytes
        x = mem.split_backward_bytes(self.shape, lay.local_seq, lay.mbs, lay.tp, lay.sp, q)
        if self.moe:
            x += moe.moe_split_backward_bytes(self.shape, lay.local_seq, lay.mbs, lay.moe, q,
                                              lay.moe_imbalance)
        return min(self.a_layer, x)

    # ---- parameters (§3, §11) ---------------------------------------------------------------
    @cached_property
    def params(self) -> float:
        """Parameters on one GPU, routed experts apart: a dense layer over TP; of an MoE layer
        attention, norms and shared experts over TP and the replicated router; MLA's
        down-projections on every rank; an MTP module's 2h x h projection and norms over TP."""
        s, t = self.shape, self.terms.layout.tp
        whole = s.replicated_attention_params
        x = (s.attention_params - whole + s.shared_expert_params + s.norm_params) / t \
            + whole + s.router_params if self.moe else (s.dense_layer_params - whole) / t + whole
        return x + (mem.mtp_params(s) / t if self.mtp else 0.0)

    @cached_property
    def expert_params(self) -> float:
        """Routed-expert parameters on one GPU: E / EP experts, each over ETP."""
        s, lay = self.shape, self.terms.layout.moe
        return s.experts // lay.ep * s.expert_params / lay.expert_tp if self.moe else 0.0

    @cached_property
    def linear_params(self) -> float:
        """Linear weights on one GPU (what FP8/FP4 GEMMs cache quantised, §7.4)."""
        s, t = self.shape, self.terms.layout.tp
        if not self.moe:
            return s.linear_params / t
        return (s.attention_linear_params + 3 * s.hidden * s.shared_expert_intermediate) / t \
            + self.expert_params

    # ---- times (§7) ---------------------------------------------------------------------------
    @cached_property
    def kernel_times(self) -> kernels.PassTimes:
        """F, B, W from the layer's kernels (§7.2), TP communication excluded."""
        lay, hw = self.terms.layout, self.terms.hw
        span = min(lay.seq, self.shape.attention_window) if self.local else None
        k = kernels.layer_times(self.shape, lay.seq, lay.mbs, lay.tp, lay.sp, lay.flash, hw.gpu,
                                hw.time, lay.moe if self.moe else None, lay.moe_imbalance,
                                lay.cp, span)
        if self.mtp:
            k = kernels.with_mtp(k, self.shape, lay.local_seq, lay.mbs, lay.tp, hw.gpu, hw.time)
        return k

    @cached_property
    def all_to_all_s(self) -> float:
        """The dispatch and combine all-to-alls in one pass (§11), exposed: the forward runs
        both, the backward their gradients."""
        if not self.moe:
            return 0.0
        lay, hw = self.terms.layout, self.terms.hw
        return 2 * moe.all_to_all_time(self.shape, lay.local_seq, lay.mbs, lay.moe, hw.gpu,
                                       hw.node,
                                       imbalance=lay.moe_imbalance)

    @cached_property
    def flops(self) -> float:
        """Forward FLOPs for one micro-batch (all TP shards)."""
        lay = self.terms.layout
        x = self.shape.layer_forward_flops_per_token(lay.seq, self.moe, self.local)
        if self.mtp:
            x += 2.0 * 2 * self.shape.hidden ** 2
        return x * lay.seq * lay.mbs

    @cached_property
    def _tensors(self) -> tuple[mem.SavedTensor, ...]:
        """What the layer saves without recompute (the MoE block's too)."""
        lay, t = self.terms.layout, self.terms
        x = mem.saved_tensors(self.shape, lay.local_seq, lay.flash, "none", t.gemm_bytes)
        return x + moe.moe_ffn_tensors(self.shape, lay.moe_imbalance, t.gemm_bytes) \
            if self.moe else x

    @cached_property
    def recomputed_modules(self) -> tuple[str, ...]:
        """The selective-recompute modules that drop something in this layer (§6.1)."""
        if self.terms.policy.recompute != "selective":
            return ()
        owned = {m for x in self._tensors for m in x.modules}
        return tuple(m for m in self.terms.policy.recompute_modules if m in owned)

    @cached_property
    def selective_flops(self) -> float:
        """Selective recompute's forward FLOPs again (all TP shards, §6.1): the attention
        core's 4 b s^2 h_q (nothing under flash attention, which never stores it), the GEMMs of
        MLA's up-projections, the dense FFN, the shared experts or the whole MoE block (router,
        shared and k routed experts); activations and norms are memory-bound."""
        mods, s, lay = self.recomputed_modules, self.shape, self.terms.layout
        per_token = 0.0
        weights = {name: k * m for name, k, m in s.linears()}
        if "mla_up_proj" in mods:
            per_token += 2.0 * (weights.get("q_up", 0) + weights["kv_up"])
        if "mlp" in mods:
            per_token += 2.0 * sum(weights[n] for n in FFN_LINEARS if n in weights)
        shared = 2.0 * 3 * s.hidden * s.shared_expert_intermediate
        if "moe" in mods:
            per_token += shared + 2.0 * (s.router_params
                                         + s.experts_per_token * s.expert_params)
        elif "shared_experts" in mods:
            per_token += shared
        x = per_token * lay.seq * lay.mbs
        if "core_attn" in mods:
            x += lay.mbs * lay.seq * lay.seq * s.attention_flops_per_token_per_ctx
        return x

    @cached_property
    def t_compute(self) -> float:
        """Flat model: the forward FLOPs at eff x peak, over TP x CP GPUs."""
        lay = self.terms.layout
        return self.flops / (lay.tp * lay.cp * self.terms.hw.achieved_flops)

    @cached_property
    def cp_comm_s(self) -> tuple[float, float]:
        """(forward, backward) exposed context-parallel communication (§12). Ring (p2p): the
        KV blocks circulate CP - 1 steps, an all-gather's volume of the sequence's K and V
        (the backward their gradients too: twice), hidden under the pass's attention kernel;
        all-to-all (Ulysses): Q, K, V and the output exchanged among the CP ranks in each
        pass, exposed."""
        t, lay = self.terms, self.terms.layout
        if lay.cp == 1:
            return 0.0, 0.0
        s, tokens = self.shape, lay.seq * lay.mbs
        if s.is_mla:
            k_w, v_w = s.heads * (s.head_dim + s.qk_rope_head_dim), \
                s.heads * (s.v_head_dim or s.head_dim)
            q_w, o_w = k_w, v_w
        else:
            k_w = v_w = s.kv_dim
            q_w = o_w = s.q_dim
        if lay.cp_comm == "a2a":
            per_gpu = 2.0 * tokens / lay.cp * (q_w + k_w + v_w + o_w) / lay.tp
            x = t.cp_all_to_all_s(per_gpu)
            return x, x
        kv = 2.0 * tokens * (k_w + v_w) / lay.tp           # the sequence's K and V, bf16
        ring = t.collective_s("all-gather", lay.cp, lay.tp, kv)
        k = self.kernel_times.terms
        return (max(0.0, ring - k.get("F: flash attention", 0.0)),
                max(0.0, 2 * ring - k.get("B: flash attention", 0.0)))

    @cached_property
    def t_f(self) -> float:
        """T_F: compute plus exposed TP communication and all-to-alls."""
        t = self.terms
        if t.flat:
            return self.t_compute + t.tp_comm_s
        return self.kernel_times.f + t.exposed_tp(self.kernel_times.gemms("F")) \
            + self.all_to_all_s + self.cp_comm_s[0]

    @cached_property
    def selective_s(self) -> float:
        """Selective recompute in the backward (§6.1): the recomputed modules' forward kernels
        again (kernels.layer_times terms), the norms at their memory-bound time, the whole
        MoE block with its dispatch and combine."""
        mods = self.recomputed_modules
        if not mods:
            return 0.0
        t = self.terms
        if t.flat:
            return self.selective_flops / (t.layout.tp * t.hw.achieved_flops)
        k = self.kernel_times.terms
        x = sum(k.get(f"F: {name}", 0.0) for name in
                dict.fromkeys(n for m in mods for n in RECOMPUTE_TERMS[m]))
        if "layernorm" in mods:
            lay = t.layout
            rows = lay.local_seq * lay.mbs // (lay.tp if lay.sp else 1)
            norms = sum("layernorm" in x.modules for x in self._tensors)
            x += norms * kernels.bytes_s(rows * self.shape.hidden * 2 * kernels.ELEMENT,
                                         t.hw.gpu, "norm")
        if "moe" in mods:
            x += self.all_to_all_s
        return x

    @cached_property
    def t_b(self) -> float:
        """T_B (input gradient): flat, T_F's compute x a measured ratio; kernel model, the
        input-gradient GEMMs and element-wise backward (§7.2); the same TP communication as
        the forward, plus selective recompute."""
        t = self.terms
        if t.flat:
            return self.t_compute * t.layout.tb_ratio + t.tp_comm_s + self.selective_s
        k = self.kernel_times
        return k.b + t.exposed_tp(k.gemms("B")) + self.selective_s + self.all_to_all_s \
            + self.cp_comm_s[1]

    @cached_property
    def t_w(self) -> float:
        """T_W (weight gradient): flat, T_F's compute x a measured ratio; kernel model, the
        weight-gradient GEMMs and the separate gradient accumulation."""
        t = self.terms
        if t.flat:
            return self.t_compute * t.layout.tw_ratio
        return self.kernel_times.w + self.accumulate_s

    @cached_property
    def accumulate_s(self) -> float:
        """A separate gradient-accumulation kernel per micro-batch after the first: read the new
        2-byte gradient, read and write the accumulator (§7.2)."""
        t = self.terms
        m = t.vs_micro_batches
        if t.hw.time.grad_accumulation == "fused" or m <= 1:
            return 0.0
        acc = 4.0 if t.policy.fp32_grads else 2.0
        nbytes = (self.params + self.expert_params) * (2.0 + 2.0 * acc)
        return kernels.bytes_s(nbytes, t.hw.gpu) * (m - 1) / m


def dense_view(shape: ModelShape) -> ModelShape:
    """An MoE model's dense layers as a dense model: same attention, the dense FFN."""
    return replace(shape, experts=0, experts_per_token=0, expert_intermediate=0,
                   shared_expert_intermediate=0, shared_expert_gate=False, dense_layers=0,
                   moe_layer_step=1)


@dataclass(frozen=True)
class Terms:
    """Everything the simulator needs about one configuration, in SI units."""
    shape: ModelShape
    layout: Layout
    hw: Hardware
    policy: Policy

    def __post_init__(self) -> None:
        moe.check_supported(self.shape, self.hw)
        why = self.hw.time.overlap_moe_a2a and moe.a2a_overlap_refusal(
            self.layout.ep, self.layout.pp, self.policy.schedule, self.policy.recompute,
            self.policy.recompute_modules)
        if why:
            raise InputError(why)
        check_layout(self.shape, self.layout, self.hw.gpus, self.policy.schedule)
        mem.check_modules_apply(self.shape, self.policy.recompute_modules)
        if "chronos" in (self.policy.recompute, self.policy.offload) and not self.uniform:
            raise InputError("Chronos-Recomp/Offload need every chunk alike: equal layer "
                             "counts of one kind (no uneven stages, mixed layers or MTP)")

    # ---- structure ------------------------------------------------------------------------
    @property
    def p(self) -> int:
        return self.layout.pp

    @property
    def m(self) -> int:
        return self.layout.m

    @property
    def chunks(self) -> int:
        return schedules.chunks_per_device(self.policy.schedule, self.layout.vpp)

    @property
    def copies(self) -> int:
        """Model copies (DualPipe: two, each carrying half the micro-batches, §5.5)."""
        return schedules.copies(self.policy.schedule)

    @property
    def vs_micro_batches(self) -> int:
        """Micro-batches through each virtual stage."""
        return self.m // self.copies

    @property
    def stages(self) -> int:
        """Virtual stages of one model copy: vs c stages + i is copy c's stage i."""
        return self.nvs // self.copies

    def is_first(self, vs: int) -> bool:
        """Whether vs is a copy's first stage (the embedding's)."""
        return vs % self.stages == 0

    def is_last(self, vs: int) -> bool:
        """Whether vs is a copy's last stage (LM head, loss, MTP modules)."""
        return (vs + 1) % self.stages == 0

    @property
    def nvs(self) -> int:
        return self.p * self.chunks

    @cached_property
    def dev_of(self) -> tuple[int, ...]:
        return schedules.placement(self.policy.schedule, self.p, self.layout.vpp)

    @cached_property
    def chunk_counts(self) -> tuple[int, ...]:
        """Decoder layers per virtual stage (Megatron's rules; a V's ends, §11.5)."""
        lay = self.layout
        return chunk_layers(self.shape, lay.seq, lay.pp, self.policy.schedule, lay.vpp,
                            lay.first_layers, lay.last_layers, lay.pipeline_layout)

    @property
    def stage_layers(self) -> tuple[int, ...]:
        """Decoder layers per pipeline rank."""
        out = [0] * self.p
        for d, n in zip(self.dev_of, self.chunk_counts):
            out[d] += n
        return tuple(out)

    @cached_property
    def kinds(self) -> tuple[LayerCosts, ...]:
        """The kinds of layer, in the order chunk_kinds indexes them (4 local + 2 moe + mtp);
        only the ones the model has are ever costed."""
        return tuple(LayerCosts(self, m, t, w) for w in (False, True) for m in (False, True)
                     for t in (False, True))

    @cached_property
    def chunk_kinds(self) -> np.ndarray:
        """(nvs, layers_per_chunk): the kind of every layer of every virtual stage in order
        (contiguous blocks of decoder layers in virtual-stage order, the MTP modules after the
        last layer, §11.5), -1 past a chunk's end."""
        rows, first = [], 0
        for vs, n in enumerate(self.chunk_counts):
            first = 0 if self.is_first(vs) else first
            rows.append([self.kind_of(i) for i in range(first, first + n)])
            first += n
            if self.is_last(vs):
                rows[-1] += [self.kind_of(self.shape.layers + i) + 1
                             for i in range(self.shape.mtp_layers)]
        out = np.full((len(rows), max(len(r) for r in rows)), -1)
        for vs, r in enumerate(rows):
            out[vs, :len(r)] = r
        return out

    def kind_of(self, layer: int) -> int:
        """The index in `kinds` of decoder layer `layer` (an MTP module's: this + 1)."""
        s = self.shape
        return 4 * s.is_local_layer(layer) + 2 * s.is_moe_layer(layer)

    @cached_property
    def chunk_layers(self) -> tuple[tuple[LayerCosts, ...], ...]:
        """The layers of every virtual stage in order, as LayerCosts of their kind."""
        return tuple(tuple(self.kinds[k] for k in row if k >= 0) for row in self.chunk_kinds)

    @cached_property
    def kind_counts(self) -> np.ndarray:
        """(nvs, kinds): layers of each kind per virtual stage."""
        k = self.chunk_kinds
        return np.stack([(k == i).sum(axis=1) for i in range(len(self.kinds))], axis=1)

    def _per_kind(self, attr: str) -> np.ndarray:
        """A per-layer quantity of every kind the model has (0 for the others, never costed)."""
        present = [bool(n) for n in self.kind_counts.sum(axis=0)]
        return np.array([getattr(x, attr) if used else 0.0
                         for x, used in zip(self.kinds, present)], dtype=float)

    def chunk_sum(self, attr: str) -> np.ndarray:
        """A per-layer quantity summed over each virtual stage's layers."""
        return self.kind_counts @ self._per_kind(attr)

    def device_sum(self, per_chunk: np.ndarray) -> np.ndarray:
        """A per-virtual-stage quantity summed over each device's chunks."""
        return np.bincount(self.dev_of, weights=per_chunk, minlength=self.p)

    @property
    def layer(self) -> LayerCosts:
        """The last decoder layer's kind: every layer's, when all layers are alike."""
        return self.kinds[self.kind_of(self.shape.layers - 1)]

    @property
    def omega(self) -> float:
        """The share of the last layer kind's activations held from B to W (steers the greedy
        split-backward generators)."""
        return self.layer.held / self.layer.a_layer

    @cached_property
    def uniform(self) -> bool:
        """Every chunk holds the same number of layers of one kind."""
        k = self.chunk_kinds
        return bool((k == k[0, 0]).all())

    @property
    def layers_per_chunk(self) -> int:
        """The most layers a virtual stage holds (MTP modules included)."""
        return self.chunk_kinds.shape[1]

    @cached_property
    def chunk_sizes(self) -> np.ndarray:
        """Layers per virtual stage."""
        return (self.chunk_kinds >= 0).sum(axis=1)

    def _prefix(self, attr: str, accumulate=np.cumsum) -> np.ndarray:
        """(nvs, layers_per_chunk + 1): a per-layer quantity (>= 0) accumulated (summed) over
        the first k layers of each chunk; the 0 padding past a chunk's end repeats the last."""
        per_layer = np.append(self._per_kind(attr), 0.0)[self.chunk_kinds]
        return np.concatenate([np.zeros((self.nvs, 1)), accumulate(per_layer, axis=1)], axis=1)

    # ---- activations (§4) ------------------------------------------------------------------
    @cached_property
    def gemm_format(self) -> "NumberFormat | None":
        """The linear layers' FP8/FP4 GEMM input format, None for bf16 (§7.4)."""
        name = self.hw.time.gemm_format        # Hardware checked the GPU has the tensor cores
        return None if name == "bf16" else number_format(name)

    @property
    def gemm_bytes(self) -> float:
        """Bytes per element of a saved linear input (quantised with FP8/FP4 GEMMs)."""
        return 2.0 if self.gemm_format is None else self.gemm_format.bytes

    @cached_property
    def stored_prefix(self) -> np.ndarray:
        """Stored activations of the first k layers of each chunk (nvs, k)."""
        return self._prefix("a_layer")

    @cached_property
    def full_prefix(self) -> np.ndarray:
        """A_full of the first k layers of each chunk: a shared segment's recompute transient."""
        return self._prefix("a_full")

    @cached_property
    def full_max_prefix(self) -> np.ndarray:
        """The largest A_full among the first k layers: layer-by-layer recompute's transient."""
        return self._prefix("a_full", np.maximum.accumulate)

    @cached_property
    def recompute_prefix(self) -> np.ndarray:
        """Seconds of recomputing the first k layers of each chunk: their forwards (nvs, k)."""
        return self._prefix("t_f")

    @cached_property
    def flops_prefix(self) -> np.ndarray:
        """Forward FLOPs (all TP shards) of the first k layers of each chunk (nvs, k)."""
        return self._prefix("flops")

    @cached_property
    def chunk_stored(self) -> np.ndarray:
        """Stored activations of each whole chunk per micro-batch, stage extras apart."""
        return self.stored_prefix[np.arange(self.nvs), self.chunk_sizes]

    @cached_property
    def chunk_held(self) -> np.ndarray:
        """Bytes each chunk holds from B to W per micro-batch (split backward)."""
        return self.chunk_sum("held")

    @cached_property
    def work_bytes(self) -> np.ndarray:
        """The working buffer of each device: its largest layer's (LayerCosts.working; one
        working layer while an op runs, §4.4)."""
        out = np.zeros(self.p)
        np.maximum.at(out, np.asarray(self.dev_of),
                      self._prefix("working", np.maximum.accumulate)[:, -1])
        return out

    @cached_property
    def ckpt(self) -> float:
        lay = self.layout
        return mem.checkpoint_bytes(self.shape, lay.local_seq, lay.mbs, lay.tp, lay.sp)

    @cached_property
    def extras(self) -> tuple[float, ...]:
        """Stage extras per virtual stage and micro-batch (§4.4): token ids on the first, the
        logits (again for every MTP module) on the last."""
        lay = self.layout
        first = mem.first_stage_bytes(self.shape, lay.local_seq, lay.mbs, lay.tp, lay.sp)
        last = (1 + self.shape.mtp_layers) * mem.last_stage_bytes(
            self.shape, lay.local_seq, lay.mbs, lay.tp)
        return tuple(first * self.is_first(vs) + last * self.is_last(vs)
                     for vs in range(self.nvs))

    # ---- model states (§3) -----------------------------------------------------------------
    @cached_property
    def state_bytes(self) -> mem.StateBytes:
        pol = self.policy
        return mem.state_bytes(pol.zero, pol.dist_opt, self.dense_replicas, pol.fp32_grads)

    @property
    def dense_replicas(self) -> int:
        """Ranks holding each dense parameter, its gradient reduction and optimizer sharding
        group: DP x CP (TP-CP-DP rank order), times DualPipe's two copies."""
        return self.layout.dp * self.layout.cp * self.copies

    @property
    def expert_replicas(self) -> int:
        """Ranks holding each routed-expert parameter: EDP, times DualPipe's two copies."""
        return self.layout.moe.edp * self.copies

    @cached_property
    def expert_params(self) -> tuple[float, ...]:
        """Routed-expert parameters per device (one GPU)."""
        return tuple(self.device_sum(self.chunk_sum("expert_params")).tolist())

    @cached_property
    def expert_state_bytes(self) -> mem.StateBytes:
        """Bytes per routed-expert parameter: optimizer sharded over expert data parallelism."""
        pol = self.policy
        return mem.state_bytes(pol.zero, pol.dist_opt, self.expert_replicas, pol.fp32_grads)

    def _end_params(self, vs: int) -> float:
        """Embedding (first virtual stage) and LM head with the final norm (last) of one TP
        shard; MTP modules keep an embedding copy on the last stage (Megatron-Core)."""
        s, t, x = self.shape, self.layout.tp, 0.0
        same = self.dev_of[0] == self.dev_of[self.stages - 1]
        if self.is_first(vs):
            x += s.embedding_params / t
        if self.is_last(vs):
            x += mem.head_params(s, same) / t
            if s.mtp_layers and not same:
                x += s.embedding_params / t
        return x

    @cached_property
    def params(self) -> tuple[float, ...]:
        """P_dev(r): parameters per device (one TP shard), routed experts apart."""
        ends = np.array([self._end_params(vs) for vs in range(self.nvs)])
        return tuple(self.device_sum(self.chunk_sum("params") + ends).tolist())

    def chunk_params(self, vs: int) -> float:
        """Parameters of one virtual stage (one TP shard), embedding/head included."""
        return float(self.chunk_sum("params")[vs] + self.chunk_sum("expert_params")[vs]) \
            + self._end_params(vs)

    def weights(self, d: int) -> float:
        """Resident weights, with FP8/FP4 GEMMs the quantised copies Transformer Engine caches
        across micro-batches too: rowwise and columnwise (for dgrad), of every decoder linear
        weight (§7.4)."""
        cache = 0.0
        if self.gemm_format is not None:
            cache = 2 * self.gemm_format.bytes \
                * self.device_sum(self.chunk_sum("linear_params"))[d]
        return self.state_bytes.weights * self.params[d] + cache \
            + self.expert_state_bytes.weights * self.expert_params[d]

    def grads(self, d: int) -> float:
        return self.state_bytes.grads * self.params[d] \
            + self.expert_state_bytes.grads * self.expert_params[d]

    def optimizer(self, d: int) -> float:
        return self.state_bytes.optimizer * self.params[d] \
            + self.expert_state_bytes.optimizer * self.expert_params[d]

    # ---- times (§7) ------------------------------------------------------------------------
    @property
    def flat(self) -> bool:
        """The flat time model (the §8 fixture's): every FLOP at eff x peak, T_B and T_W as
        ratios of T_F, collectives at the nominal link bandwidth."""
        return self.hw.time.kind == "flat"

    def cp_all_to_all_s(self, nbytes: float) -> float:
        """One all-to-all of `nbytes` per GPU among the CP ranks, TP apart (§12)."""
        lay, hw = self.layout, self.hw
        members = max(1, min(lay.cp, hw.gpus_per_node // lay.tp))
        return all_to_all_s(lay.cp, nbytes, members, hw.gpu.bus_bandwidth * hw.time.comm_scale,
                            hw.node.inter_node_bandwidth * hw.node.network_efficiency,
                            hw.gpu.collective_latency_s)

    def collective_s(self, kind: str, size: int, stride: int, nbytes: float) -> float:
        """One collective over `size` ranks `stride` apart. Kernel model: an NCCL ring at the
        group's measured bus bandwidth (§7.2); flat model: the α-β ring at the nominal link
        bandwidth of the span (§7.1)."""
        hw = self.hw
        if self.flat:
            span = size * stride
            bw, lat = ((hw.gpu.interconnect_bandwidth, hw.gpu.interconnect_latency_s)
                       if span <= hw.gpus_per_node
                       else (hw.node.inter_node_bandwidth, hw.node.inter_node_latency_s))
            return float(RING[kind](size, nbytes, bw, lat))
        bw, lat = kernels.group_bus(hw.gpu, hw.node, size, stride, hw.time.comm_scale)
        return bus_s(kind, size, nbytes, bw, lat)

    @cached_property
    def tp_comm_s(self) -> float:
        """TP communication of one layer in one direction: 2 all-reduces of the 2sbh-byte
        activations (SP: 2 all-gathers + 2 reduce-scatters)."""
        lay = self.layout
        x = 2.0 * lay.local_seq * lay.mbs * self.shape.hidden
        if lay.sp:
            return 2 * self.collective_s("all-gather", lay.tp, 1, x) \
                + 2 * self.collective_s("reduce-scatter", lay.tp, 1, x)
        return 2 * self.collective_s("all-reduce", lay.tp, 1, x)

    def exposed_tp(self, gemms: float) -> float:
        """--tp-comm-overlap (with SP) hides the TP collectives under the pass's GEMMs."""
        t = self.tp_comm_s
        if self.hw.time.tp_comm_overlap and self.layout.sp:
            return max(0.0, t - gemms)
        return t

    @cached_property
    def head_times(self) -> tuple[float, float, float]:
        """(F, B, W) of the LM head: flat, 2 b s h V FLOPs on one TP shard in each pass (x the
        ratios); kernel model, its GEMMs and the cross-entropy (§7.2)."""
        lay = self.layout
        if self.flat:
            t = 2.0 * lay.mbs * lay.local_seq * self.shape.hidden * self.shape.vocab / (
                lay.tp * self.hw.achieved_flops)
            return t, t * lay.tb_ratio, t * lay.tw_ratio
        k = kernels.head_times(self.shape, lay.local_seq, lay.mbs, lay.tp, self.hw.gpu,
                               self.hw.time)
        return k.f, k.b, k.w

    @cached_property
    def chunk_times(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """(T_F, T_B, T_W) per virtual stage: its layers; the last one adds the LM head, once
        more for every MTP module."""
        tf, tb, tw = (self.chunk_sum(a).tolist() for a in ("t_f", "t_b", "t_w"))
        heads = 1 + self.shape.mtp_layers
        hf, hb, hw_ = self.head_times
        dev = self.dev_of
        for vs in range(self.nvs):
            if self.is_last(vs):
                tf[vs] += heads * hf
                tb[vs] += heads * hb
                tw[vs] += heads * hw_
            elif self.blocking_p2p:
                # Megatron-LM's send/recv block the compute stream: F ends with sending its
                # activations on, B with sending its gradient back
                tf[vs] += self._transfer_s(dev[vs], dev[vs + 1])
                tb[vs + 1] += self._transfer_s(dev[vs + 1], dev[vs])
        return tuple(tf), tuple(tb), tuple(tw)

    @cached_property
    def chunk_all_to_all(self) -> tuple[float, ...]:
        """Exposed all-to-all seconds of each virtual stage in one pass (F or B)."""
        return tuple(self.chunk_sum("all_to_all_s").tolist())

    @property
    def blocking_p2p(self) -> bool:
        """Kernel model without P2P overlap: P2P time sits on the compute stream. Megatron-LM
        overlaps it for the interleaved schedule unless told otherwise, DualPipe always."""
        overlap = self.hw.time.overlap_p2p_comm
        if overlap is None:
            overlap = self.policy.schedule in ("interleaved", *schedules.DUAL)
        return not self.flat and not overlap

    def _transfer_s(self, a: int, b: int) -> float:
        """P2P time between devices a and b (0 on the same device)."""
        if a == b:
            return 0.0
        wrap = {a, b} == {0, self.p - 1} and self.p > 2
        return self.boundary_s[self.p - 1 if wrap else min(a, b)]

    @cached_property
    def p2p_bytes(self) -> float:
        """Bytes one GPU sends per P2P transfer: the 2sbh activation, /t with SP; the kernel
        model also splits it over the TP ranks without SP (Megatron's scatter/gather, SC'21
        §4.1) and all-gathers it on the receiving node."""
        lay = self.layout
        split = lay.sp or not self.flat
        return 2.0 * lay.local_seq * lay.mbs * self.shape.hidden / (lay.tp if split else 1)

    @cached_property
    def boundary_s(self) -> tuple[float, ...]:
        """P2P time per boundary (r, r+1), index p-1 the wrap p-1 -> 0: alpha + bytes/beta,
        over the network when the two stages sit on different nodes. Kernel model: at the
        measured in-node bus bandwidth or the NIC's achieved rate, plus the in-node all-gather
        of the scattered activation."""
        lay, hw = self.layout, self.hw
        gpn, node, gpu = hw.gpus_per_node, hw.node, hw.gpu
        span = lay.stage_gpus
        gather = 0.0 if self.flat or lay.sp else self.collective_s(
            "all-gather", lay.tp, 1, 2.0 * lay.local_seq * lay.mbs * self.shape.hidden)
        out = []
        for r in range(self.p):
            hi = (r + 1) % self.p
            cross = (r * span) // gpn != (hi * span) // gpn
            if self.flat:
                bw, lat = ((node.inter_node_bandwidth, node.inter_node_latency_s) if cross
                           else (gpu.interconnect_bandwidth, gpu.interconnect_latency_s))
            else:
                scale = hw.time.comm_scale
                bw, lat = ((node.inter_node_bandwidth * node.network_efficiency * scale,
                            node.inter_node_latency_s) if cross
                           else (gpu.bus_bandwidth * scale, gpu.collective_latency_s))
            out.append(float(p2p_s(self.p2p_bytes, bw, lat)) + gather)
        return tuple(out)

    @cached_property
    def lags(self) -> tuple[float, ...]:
        """What the simulator waits between dependent ops on two devices: the P2P time, or
        nothing when it already sits in the sending op's duration (blocking P2P)."""
        return (0.0,) * self.p if self.blocking_p2p else self.boundary_s

    @cached_property
    def dp_s(self) -> float:
        """Exposed DP communication of the busiest device: all-reduce of its gradients
        (reduce-scatter of gradients + all-gather of bf16 weights with a sharded optimizer),
        the dense parts over DP and an MoE model's routed experts over EDP (§11).
        --overlap-grad-reduce hides the reduction under the backward of the last micro-batch,
        --overlap-param-gather the all-gather under the forward of the first (§7.2)."""
        worst = self.busiest_states
        moe = self.layout.moe
        r1, g1 = self._grad_sync(self.dense_replicas, self.layout.tp, self.params[worst])
        r2, g2 = self._grad_sync(self.expert_replicas, moe.expert_tp * moe.ep,
                                 self.expert_params[worst])
        reduce, gather = r1 + r2, g1 + g2
        tf, tb, tw = self.chunk_times
        mine = [vs for vs, r in enumerate(self.dev_of) if r == worst]
        t = self.hw.time
        if t.overlap_param_gather:
            gather = max(0.0, gather - sum(tf[vs] for vs in mine))
        if t.overlap_grad_reduce:
            reduce = max(0.0, reduce - sum(tb[vs] + tw[vs] for vs in mine))
        return reduce + gather

    @cached_property
    def busiest_states(self) -> int:
        """The device with the most parameters (routed experts included): the slowest
        gradient sync and optimizer step."""
        return max(range(self.p), key=lambda d: self.params[d] + self.expert_params[d])

    def _grad_sync(self, size: int, stride: int, params: float) -> tuple[float, float]:
        """(reduction, all-gather) seconds of `params` gradients over `size` ranks `stride`
        apart: one all-reduce, or with a sharded optimizer a reduce-scatter and the bf16
        weights' all-gather."""
        if size == 1 or not params:
            return 0.0, 0.0
        grad_bytes = 4.0 if (self.policy.fp32_grads and not self.policy.zero) else 2.0
        if self.policy.zero or self.policy.dist_opt:
            return (self.collective_s("reduce-scatter", size, stride, params * grad_bytes),
                    self.collective_s("all-gather", size, stride, params * 2.0))
        return self.collective_s("all-reduce", size, stride, params * grad_bytes), 0.0

    @cached_property
    def step_s(self) -> float:
        """Optimizer step, memory bound: read and write the optimizer states, read gradients,
        write bf16 weights, at the achieved HBM bandwidth."""
        worst = self.busiest_states
        moved = 2 * self.optimizer(worst) + self.grads(worst) + self.weights(worst)
        return moved / self.hw.gpu.achieved_bandwidth

    # ---- FLOPs -------------------------------------------------------------------------------
    @cached_property
    def iteration_lower_bound(self) -> float:
        """No schedule beats this: the busiest device's compute (every F, B and W of its
        chunks for every micro-batch) + exposed DP + optimizer step. Bubbles, P2P waits,
        recompute and stalls only add to it."""
        tf, tb, tw = self.chunk_times
        busy = [0.0] * self.p
        for vs, d in enumerate(self.dev_of):
            busy[d] += self.vs_micro_batches * (tf[vs] + tb[vs] + tw[vs])
        return max(busy) + self.dp_s + self.step_s

    @cached_property
    def model_flops(self) -> float:
        """FLOPs per iteration (§7): 12 B_g s L h^2 [...] = B_g s x training FLOPs per token."""
        lay = self.layout
        return lay.global_batch * lay.seq * self.shape.training_flops_per_token(lay.seq)

    @property
    def tokens(self) -> int:
        return self.layout.global_batch * self.layout.seq

    def resident_states(self, d: int, optimizer_offloaded: bool = False) -> float:
        opt = 0.0 if optimizer_offloaded else self.optimizer(d)
        return self.weights(d) + self.grads(d) + opt

    def canonical_times(self) -> tuple[float, float, float]:
        """Timing ratios that steer the greedy generators: (T_F, T_B, T_W) of the last layer's
        kind relative to T_F, rounded to 0.1 so that configurations differing slightly share
        one generated order. The generators ignore P2P time and the LM head; the simulator then
        replays the order with every real duration."""
        x = self.layer
        return (1.0, round(x.t_b / x.t_f, 1), round(x.t_w / x.t_f, 1))

    def op_lists(self, cap: int | None = None) -> schedules.OpLists:
        sched = self.policy.schedule
        if sched in schedules.SPLIT:
            return schedules.build(sched, self.p, self.m, 1,
                                   cap if cap is not None else self.policy.cap,
                                   self.canonical_times(), 0.0, round(self.omega * 20) / 20)
        return schedules.build(sched, self.p, self.m, self.layout.vpp,
                               a2a_pairs=self.a2a_overlap)

    @property
    def a2a_overlap(self) -> bool:
        """Megatron-Core's EP all-to-all overlap pairs the steady state's steps (§11.4)."""
        return self.hw.time.overlap_moe_a2a and self.policy.schedule not in schedules.DUAL
