"""Speculative decoding for MoE inference: the MoESD cost model (docs/sd.md §3-§5).

Everything broadcasts: pass B and gamma as arrays of compatible shapes (for example B[:, None]
and gamma[None, :]) and one call evaluates the whole grid.

Equation tags in the breakdowns refer to docs/sd.md sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .comm import all_reduce_s, all_to_all_s
from .errors import InputError
from .formats import number_format
from .hardware import GpuSpec
from .sd_draft import FAMILIES, accepted_length, check_rates, check_tree, verify_width
from .shapes import ModelShape
from .spec import spec

TAU = 0.95  # T_thres activation level used by the paper

# ---------------------------------------------------------------------------------------------
# §3 acceptance


def tokens_per_round(alpha, gamma):
    """sigma*(gamma+1) = (1 - alpha^(gamma+1)) / (1 - alpha): expected tokens per SD round
    (Leviathan et al., 2023), for i.i.d. acceptance with probability alpha in [0, 1)."""
    alpha = np.asarray(alpha, dtype=float)
    gamma = np.asarray(gamma, dtype=float)
    return (1.0 - alpha ** (gamma + 1.0)) / (1.0 - alpha)


def sigma_from_alpha(alpha, gamma):
    """sigma = tokens per round / (gamma + 1)."""
    return tokens_per_round(alpha, gamma) / (np.asarray(gamma, dtype=float) + 1.0)


def alpha_from_sigma(sigma, gamma, tol: float = 1e-13):
    """Invert sigma(alpha) on [0, 1) by vectorised bisection (sigma is increasing in alpha)."""
    sigma = np.asarray(sigma, dtype=float)
    gamma = np.asarray(gamma, dtype=float)
    lo_sigma = 1.0 / (gamma + 1.0)
    if np.any(gamma < 1):
        raise InputError("gamma must be >= 1")
    if np.any((sigma < lo_sigma - 1e-12) | (sigma >= 1.0)):
        raise InputError("sigma must lie in [1/(gamma+1), 1) for the i.i.d. acceptance model")
    lo = np.zeros(np.broadcast(sigma, gamma).shape)
    hi = np.ones_like(lo)
    while np.max(hi - lo) > tol:
        mid = 0.5 * (lo + hi)
        below = sigma_from_alpha(mid, gamma) < sigma
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def check_alpha(alpha: float) -> float:
    if not 0.0 <= alpha < 1.0:
        raise InputError(f"acceptance rate alpha must be in [0, 1), got {alpha}")
    return float(alpha)


# ---------------------------------------------------------------------------------------------
# §4 expert activation


def experts_activated(n, experts: int, k: int):
    """N(n) = E (1 - (1 - K/E)^n): expected distinct experts a gate touches with n tokens."""
    n = np.asarray(n, dtype=float)
    if not experts:
        return np.zeros_like(n)
    return experts * (1.0 - (1.0 - k / experts) ** n)


def threshold_tokens(experts: int, k: int, tau: float = TAU) -> int:
    """T_thres = ceil(log(1 - tau) / log(1 - K/E)): tokens for ~full expert activation."""
    rho = k / experts
    if rho >= 1:
        return 1
    return int(np.ceil(np.log(1 - tau) / np.log(1 - rho) - 1e-12))


def experts_touched(n, popularity, k: int, ep: int = 1):
    """Distinct experts the busiest of `ep` GPUs touches with n routed tokens, and its share
    of the routed token-expert pairs, for per-expert routing frequencies `popularity`
    (summing to 1; expert i routes K p_i of the tokens, the E/ep experts of GPU j are the
    j-th block): (touched, share). Uniform frequencies give N(n) / ep and 1 / ep (docs/sd.md
    §4.1)."""
    p = np.asarray(popularity, dtype=float)
    q = np.minimum(1.0, k * p)                          # one token picks expert i
    n = np.asarray(n, dtype=float)
    touched = 1.0 - (1.0 - q) ** n[..., None]           # (..., E)
    per_gpu = touched.reshape(*touched.shape[:-1], ep, -1).sum(axis=-1)
    share = p.reshape(ep, -1).sum(axis=-1)
    j = int(np.argmax(share))                           # the busiest GPU by routed tokens
    return per_gpu[..., j], float(share[j])


def popularity(experts: int, skew: str = "uniform", frequencies=None) -> tuple[float, ...]:
    """Per-expert routing frequencies: uniform (the paper's i.i.d. routing), 'zipf:S' (a
    power law, expert i of E has weight (i + 1)^-S, the most popular on the first GPU) or
    measured frequencies (any non-negative weights, normalised)."""
    if frequencies is not None:
        w = np.asarray(frequencies, dtype=float)
        if w.shape != (experts,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise InputError(f"expert frequencies: give {experts} non-negative numbers, one "
                             f"per routed expert, not all zero (got {w.size})")
    elif skew == "uniform":
        w = np.ones(experts)
    elif skew.startswith("zipf:"):
        try:
            s = float(skew[5:])
        except ValueError:
            s = float("nan")
        if not (np.isfinite(s) and s >= 0):
            raise InputError(f"--routing {skew!r}: write zipf:S with S >= 0 (0 = uniform)")
        w = np.arange(1, experts + 1, dtype=float) ** -s
    else:
        raise InputError(f"--routing {skew!r}: choose uniform, zipf:S or a file of "
                         f"per-expert frequencies")
    return tuple((w / w.sum()).tolist())


def tokens_per_expert(n, experts: int, k: int):
    """T_exp(n) = n K / N(n) = rho n / (1 - (1 - rho)^n): tokens per activated expert."""
    n = np.asarray(n, dtype=float)
    return n * k / experts_activated(n, experts, k)


def effective_gate_tokens(batch, tokens_per_seq, correlation: float = 0.0):
    """Tokens that route independently. With correlation c, each sequence's t consecutive tokens
    count as 1 + (t-1)(1-c) independent ones [design: optional routing correlation, default 0 =
    the paper's i.i.d. assumption]."""
    t = np.asarray(tokens_per_seq, dtype=float)
    return np.asarray(batch, dtype=float) * (1.0 + (t - 1.0) * (1.0 - correlation))


# ---------------------------------------------------------------------------------------------
# §5.3 engine profiles: what a serving engine adds on top of the GPU kernels


SCORINGS = ("multi-query", "batch-expansion")


@dataclass(frozen=True)
class EngineProfile:
    """Fixed costs of a serving engine around the kernels' bytes and FLOPs (docs/sd.md §5.3).
    The defaults are the 'cuda-graphs' estimate explore used before engines were presets."""
    name: str = spec("preset name", default="cuda-graphs")
    forward_overhead_s: float = spec(
        "fixed time per forward outside the layers (embedding, sampling, launch)", "s",
        default=100e-6)
    layer_overhead_s: float = spec(
        "fixed time per decoder layer per forward outside attention (kernel launches and "
        "tails)", "s", default=30e-6)
    attention_layer_s: float = spec(
        "fixed time of the decode-attention kernel per layer per forward", "s", default=10e-6)
    attention_kv_efficiency: float = spec(
        "fraction of the GPU's achieved HBM bandwidth the decode-attention kernel reaches "
        "reading the KV cache (the per-KV-token cost is bytes / this)", default=0.9)
    scoring: str = spec(
        "how the verify forward attends: multi-query (each sequence's KV read once for its "
        "t tokens) or batch-expansion (t single-token rows per sequence, KV read t times)",
        default="multi-query")
    moe_layer_overhead_s: float = spec(
        "extra fixed time per MoE layer (routing, token sort, grouped-GEMM set-up)", "s",
        default=25e-6)
    reject_base_s: float = spec("rejection sampling: fixed time per SD round", "s",
                                default=100e-6)
    reject_per_seq_s: float = spec("rejection sampling: time per sequence per round", "s",
                                   default=2e-6)
    round_overhead_s: float = spec("engine bookkeeping per SD round outside the forwards "
                                   "(proposal copies, scoring set-up, output processing)", "s",
                                   default=0.0)
    draft_step_overhead_s: float = spec("engine time per draft step outside the draft forward "
                                        "(input preparation, sampler, TP hand-off)", "s",
                                        default=0.0)
    round_overhead_step: float = spec("engine time per SD round that scales with the target's "
                                      "own decode step, as a fraction of T_T(B,1)", default=0.0)
    draft_step_overhead_step: float = spec("engine time per draft step that scales with the "
                                           "target's decode step, as a fraction of T_T(B,1)",
                                           default=0.0)
    sources: dict = spec("field -> where the value comes from", default={})
    description: str = spec("one line shown in preset lists", default="")

    def __post_init__(self) -> None:
        for f in ("forward_overhead_s", "layer_overhead_s", "moe_layer_overhead_s",
                  "attention_layer_s", "reject_base_s", "reject_per_seq_s",
                  "round_overhead_s", "draft_step_overhead_s", "round_overhead_step",
                  "draft_step_overhead_step"):
            v = getattr(self, f)
            if not (np.isfinite(v) and v >= 0):
                what = "a finite time" if f.endswith("_s") else "a finite fraction"
                raise InputError(f"engine {self.name!r}: {f} must be {what} >= 0, got {v}")
        if not (np.isfinite(self.attention_kv_efficiency)
                and 0 < self.attention_kv_efficiency <= 1):
            raise InputError(f"engine {self.name!r}: attention_kv_efficiency must be in (0, 1], "
                             f"got {self.attention_kv_efficiency}")
        if self.scoring not in SCORINGS:
            raise InputError(f"engine {self.name!r}: scoring must be one of "
                             f"{', '.join(SCORINGS)}, got {self.scoring!r}")

    def kv_reads(self, tokens_per_seq):
        """How many times a forward scoring t tokens per sequence reads each sequence's KV."""
        t = np.asarray(tokens_per_seq, dtype=float)
        return t if self.scoring == "batch-expansion" else np.ones_like(t)


DEFAULT_ENGINE = EngineProfile()


# ---------------------------------------------------------------------------------------------
# §5.1 a-priori forward time


@dataclass(frozen=True)
class Deployment:
    """A model placed on `tp` GPUs of one kind with tensor parallelism; its GEMMs take inputs
    in `activations` (bf16, or fp8/fp4 where the GPU has the tensor cores: docs/models.md §5)."""
    model: ModelShape
    gpu: GpuSpec
    tp: int = 1
    activations: str = "bf16"
    ep: int = 1                  # routed experts spread over the tp GPUs, E/ep whole each
    dp_attention: bool = False   # attention data parallel: B/tp sequences per GPU, its
    #                              weights replicated (SGLang --enable-dp-attention)

    def __post_init__(self) -> None:
        self.model.check_tensor_parallel(self.tp)
        self.gemm_flops              # an input format the GPU lacks fails here  # noqa: B018
        if self.ep != 1 and (self.ep != self.tp or not self.model.is_moe
                             or self.model.experts % self.ep):
            raise InputError(
                f"--ep {self.ep}: " + ("expert parallelism needs an MoE target" if not
                                       self.model.is_moe else
                                       f"it runs over the target's {self.tp} GPU(s), so "
                                       f"--ep is 1 or the TP degree {self.tp} (--tp "
                                       f"{self.ep} --ep {self.ep} spreads the experts over "
                                       f"{self.ep} GPUs)"
                                       if self.ep != self.tp else
                                       f"EP must divide the {self.model.experts} experts"))
        if self.dp_attention and self.ep == 1:
            raise InputError("--dp-attention needs expert parallelism (--ep = TP degree): "
                             "the MoE all-to-all gathers the data-parallel tokens")

    @property
    def gemm_flops(self) -> float:
        """Achieved FLOP/s of the weight GEMMs at the activation format's peak."""
        return self.gpu.achieved_flops_for(number_format(self.activations, "activation format"))

    @property
    def weight_bytes_per_gpu(self) -> float:
        """Every weight split over the tp GPUs, but attention's replicated under attention
        data parallelism (E/ep whole experts per GPU is the same share as E experts / tp)."""
        m = self.model
        if not self.dp_attention:
            return m.weight_bytes / self.tp
        attention = m.layers * m.attention_params * m.bytes_per_param
        return (m.weight_bytes - attention) / self.tp + attention

    @property
    def kv_shards(self) -> int:
        """GPUs that split the KV cache: KV heads are replicated once tp exceeds them; an MLA
        latent is replicated on every rank; attention data parallel splits the sequences."""
        if self.dp_attention:
            return self.tp
        return 1 if self.model.is_mla else min(self.tp, self.model.kv_heads)

    def kv_bytes_per_gpu(self, batch, ctx):
        """KV cache of `batch` sequences at `ctx` tokens (local-attention layers keep only
        their window or chunk)."""
        return np.asarray(batch, dtype=float) * self.model.kv_cache_bytes(ctx) / self.kv_shards


@dataclass(frozen=True)
class Draft:
    """A draft as costed (docs/sd.md §3.1): its family and, but for an n-gram lookup, the
    deployment of its layers (an EAGLE-3 head's LM head over its draft vocabulary)."""
    family: str = "model"
    deployment: Deployment | None = None
    shares_embedding: bool = False     # the embedding is the target's (EAGLE, MTP)
    shares_head: bool = False          # the LM head too (EAGLE-1/2, MTP)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise InputError(f"draft family must be one of {', '.join(FAMILIES)}, got "
                             f"{self.family!r}")
        if (self.family == "ngram") != (self.deployment is None):
            raise InputError("an ngram draft runs no model; every other family needs one")

    @property
    def tp(self) -> int:
        return 1 if self.deployment is None else self.deployment.tp

    @property
    def weight_bytes_per_gpu(self) -> float:
        """Its weights on a GPU, without the embedding and LM head it shares with the target."""
        d = self.deployment
        if d is None:
            return 0.0
        m = d.model
        shared = (m.embedding_params * self.shares_embedding + m.head_params * (
            self.shares_head and not m.tied_embeddings)) * m.EDGE_BYTES
        return (m.weight_bytes - shared) / d.tp

    def kv_bytes_per_gpu(self, batch, ctx):
        return 0.0 if self.deployment is None else self.deployment.kv_bytes_per_gpu(batch, ctx)

    def with_gpu(self, gpu: GpuSpec) -> "Draft":
        return self if self.deployment is None else replace(
            self, deployment=replace(self.deployment, gpu=gpu))


def as_draft(draft: "Deployment | Draft") -> Draft:
    """A draft model's deployment as the standalone draft it runs as (family model)."""
    return draft if isinstance(draft, Draft) else Draft("model", draft)


@dataclass(frozen=True)
class Term:
    """One additive term of a forward time: seconds, and what it moved and computed per GPU."""
    label: str
    seconds: np.ndarray
    bytes: np.ndarray | float = 0.0
    flops: np.ndarray | float = 0.0
    equation: str = ""


@dataclass(frozen=True)
class ForwardTime:
    """T(B, t) of one forward with its additive terms (arrays broadcast over B and t)."""
    terms: tuple[Term, ...]
    memory_bound: dict = field(default_factory=dict)  # term label -> bool array

    @property
    def seconds(self) -> np.ndarray:
        return np.asarray(sum(t.seconds for t in self.terms))


OVERLAPS = ("none", "max")
# activations between kernels and the TP all-reduce stay bf16 whatever the GEMM inputs
ACTIVATION_BYTES = 2.0


def _roofline(nbytes, flops, gpu: GpuSpec, overlap: str, rate: float | None = None):
    """Time of a GEMM group from its bytes and FLOPs at achieved rates, and whether memory binds.

    overlap = "max": memory and compute overlap perfectly, max(t_mem, t_compute) (§5.1 as
    written). overlap = "none" (default) [design]: they add, t_mem + t_compute. On the H200
    layer timings of shared/data/sd the no-overlap form fits Qwen2-57B-A14B's T_T(B,t)/T_T(B,1)
    better (mean error 3.4 % vs 5.7 %): skinny decode GEMMs do not hide their math behind the
    weight stream."""
    t_mem = np.asarray(nbytes, dtype=float) / gpu.achieved_bandwidth
    t_cmp = np.asarray(flops, dtype=float) / (rate or gpu.achieved_flops)
    total = np.maximum(t_mem, t_cmp) if overlap == "max" else t_mem + t_cmp
    return total, t_mem >= t_cmp


def forward_time(dep: Deployment, batch, tokens_per_seq, ctx, correlation: float = 0.0,
                 overlap: str = "none", engine: EngineProfile = DEFAULT_ENGINE,
                 routing: tuple[float, ...] | None = None) -> ForwardTime:
    """A-priori time of one forward: `batch` sequences each scoring `tokens_per_seq` new tokens
    against a KV cache of `ctx` tokens, on dep.tp GPUs, with the engine's fixed costs
    (docs/sd.md §5.1, §5.3); with expert parallelism the busiest GPU's experts and the
    all-to-alls, with `routing` (per-expert frequencies) skewed routing (§4.1). Returns each
    term."""
    if overlap not in OVERLAPS:
        raise InputError(f"overlap must be one of {', '.join(OVERLAPS)}, got {overlap!r}")
    m, gpu, g = dep.model, dep.gpu, dep.tp
    B = np.asarray(batch, dtype=float)
    t = np.asarray(tokens_per_seq, dtype=float)
    n = B * t
    bpp, act = m.bytes_per_param, ACTIVATION_BYTES
    gemm = dep.gemm_flops
    moe_layers = m.moe_layers
    dense_layers = m.layers - moe_layers

    # Always-on weights: attention, norms, router and shared expert of MoE layers; whole dense
    # layers; extra parameters. Every token multiplies through them.
    always_params = moe_layers * m.moe_always_on_params + dense_layers * m.dense_layer_params \
        + m.extra_params
    # attention data parallel: each GPU reads all attention weights for its B/g sequences
    replicated = m.layers * m.attention_params if dep.dp_attention else 0
    always_bytes = (always_params - replicated) * bpp / g + replicated * bpp
    always_t, always_mem = _roofline(always_bytes, 2.0 * n * always_params / g, gpu,
                                      overlap, gemm)

    # Routed experts: N(n) experts per layer, each seeing T_exp(n) tokens on average; with EP
    # the busiest GPU's touched local experts (whole) and its share of the routed tokens.
    n_gate = effective_gate_tokens(B, t, correlation)
    k = m.experts_per_token
    if dep.ep > 1 or routing is not None:
        pop = routing or popularity(m.experts)
        touched, share = experts_touched(n_gate, pop, k, dep.ep)
        shards, flop_share = (1, share) if dep.ep > 1 else (g, 1.0 / g)
    else:
        touched, shards, flop_share = experts_activated(n_gate, m.experts, k), g, 1.0 / g
    expert_bytes = moe_layers * touched * m.expert_params * m.expert_bytes_per_param / shards
    expert_flops = moe_layers * 2.0 * n * k * m.expert_params * flop_share
    experts_t, experts_mem = _roofline(expert_bytes, expert_flops, gpu, overlap, gemm)

    # Decode attention (§5.3): one kernel per layer with a fixed cost, reading the KV cache once
    # per sequence (t times under batch-expansion scoring) at the kernel's share of the
    # bandwidth, scoring n queries against ctx keys.
    kv_bytes = dep.kv_bytes_per_gpu(B, ctx) * engine.kv_reads(t)
    attn_flops = n * m.attended_tokens(ctx) * m.attention_flops_per_token_per_ctx / g
    attn_t, attn_mem = _roofline(kv_bytes / engine.attention_kv_efficiency, attn_flops, gpu,
                                 overlap)
    attn_t = attn_t + m.layers * engine.attention_layer_s

    # Activations streamed between kernels (estimate): each linear reads its input and writes
    # its output once, ~(6h + 3 f_active) elements per token per layer.
    f_moe = m.experts_per_token * m.expert_intermediate + m.shared_expert_intermediate
    f_active = moe_layers * f_moe + dense_layers * m.intermediate       # summed over layers
    act_bytes = n * (6 * m.hidden * m.layers + 3 * f_active) * act / g
    act_t = act_bytes / gpu.achieved_bandwidth

    # LM head: logits for every scored position.
    head_t, head_mem = _roofline(m.head_params * m.EDGE_BYTES / g, 2.0 * n * m.head_params / g,
                                  gpu, overlap, gemm)

    overhead = m.layers * engine.layer_overhead_s + moe_layers * engine.moe_layer_overhead_s \
        + engine.forward_overhead_s
    # Tensor parallelism: two all-reduces of the n x h activations per layer. With EP an MoE
    # layer's FFN all-reduce is a dispatch and a combine all-to-all of each GPU's n/g tokens'
    # K copies instead, and attention data parallel has no attention all-reduce [design].
    one_ar = all_reduce_s(g, n * m.hidden * act, gpu.interconnect_bandwidth,
                          gpu.interconnect_latency_s)
    dispatch = n / g * k * m.hidden * act          # bytes one GPU sends per all-to-all
    if dep.ep == 1:
        ar, a2a = m.layers * 2.0 * one_ar, 0.0
    else:
        ar = (m.layers * (0 if dep.dp_attention else 1) + dense_layers) * one_ar
        a2a = moe_layers * 2.0 * all_to_all_s(g, dispatch, g, gpu.interconnect_bandwidth,
                                              gpu.interconnect_bandwidth,
                                              gpu.interconnect_latency_s)
    shape = np.broadcast(B, t, np.asarray(ctx)).shape
    full = lambda x: np.broadcast_to(np.asarray(x, dtype=float), shape)  # noqa: E731

    terms = (
        Term("always-on weights", full(always_t), full(always_params * bpp / g),
             full(2.0 * n * always_params / g), "§5.1 roofline, n tokens"),
        Term("routed experts", full(experts_t), full(expert_bytes), full(expert_flops),
             "§5.1+§4 N(n) x T_exp(n)"),
        Term("KV cache + attention", full(attn_t), full(kv_bytes), full(attn_flops),
             "§5.1 KV read + QK/AV, §5.3 kernel fixed"),
        Term("activations", full(act_t), full(act_bytes), 0.0,
             "§5.1 (6h+3f)/token/layer"),
        Term("LM head", full(head_t), full(m.head_params * m.EDGE_BYTES / g),
             full(2.0 * n * m.head_params / g), "§5.1 roofline, V*h"),
        Term("fixed overhead", full(overhead), 0.0, 0.0,
             f"§5.3 engine {engine.name}"),
        Term("TP all-reduce", full(ar), 0.0, 0.0,
             "§5.1 2 ring AR/layer"),
    ) + ((Term("EP all-to-all", full(a2a), full(moe_layers * 2.0 * dispatch), 0.0,
               "§4.1 dispatch + combine/MoE layer, alpha-beta"),) if dep.ep > 1 else ())
    return ForwardTime(terms,
                       {"always-on weights": full(always_mem), "routed experts": full(experts_mem),
                        "KV cache + attention": full(attn_mem), "LM head": full(head_mem)})


# ---------------------------------------------------------------------------------------------
# §5.2 the paper's parametric model (Algorithm 1)


def roofline_shape(t, lam_rp, s):
    """G(t) = s^t for t <= lambda*RP, else s^(lambda RP) (1 + ln(s)(t - lambda RP)); C^1 at
    the knee, G(0) = 1 (docs/sd.md §5.2)."""
    t = np.asarray(t, dtype=float)
    lam_rp = np.asarray(lam_rp, dtype=float)
    ln_s = np.log(np.asarray(s, dtype=float))
    below = np.exp(np.minimum(t, lam_rp) * ln_s)
    return np.where(t <= lam_rp, below, below * (1.0 + ln_s * (t - lam_rp)))


PARAM_NAMES = ("bias", "k1", "k2", "k3", "draft_bias", "draft_k", "reject_bias", "reject_k",
               "lam", "s")


@dataclass(frozen=True)
class FittedParams:
    """The ten parameters of Algorithm 1 (seconds, except lam and s)."""
    bias: float = spec("time to load always-on weights", "s")
    k1: float = spec("incremental dense cost scale", "s")
    k2: float = spec("time to load one expert in every layer", "s")
    k3: float = spec("incremental expert cost scale", "s")
    draft_bias: float = spec("draft forward fixed time", "s")
    draft_k: float = spec("draft incremental cost scale", "s")
    reject_bias: float = spec("rejection sampling fixed time", "s")
    reject_k: float = spec("rejection sampling time per sequence", "s")
    lam: float = spec("knee position as a fraction of the ridge point")
    s: float = spec("growth base of the roofline shape G")

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, n) for n in PARAM_NAMES])

    @classmethod
    def from_array(cls, x) -> "FittedParams":
        return cls(**{n: float(v) for n, v in zip(PARAM_NAMES, x)})


def parametric_target_terms(p: FittedParams, batch, tokens_per_seq, experts: int, k: int,
                            ridge_point: float) -> dict[str, np.ndarray]:
    """T_T(B,t) = bias + k1 G(Bt) + k2 N(Bt) + k3 G(Bt K / N(Bt)), term by term."""
    n = np.asarray(batch, dtype=float) * np.asarray(tokens_per_seq, dtype=float)
    lam_rp = p.lam * ridge_point
    shape = np.broadcast(n).shape
    terms = {"bias (always-on weights)": np.full(shape, p.bias),
             "k1*G(Bt) (dense incremental)": p.k1 * roofline_shape(n, lam_rp, p.s)}
    if experts:
        touched = experts_activated(n, experts, k)
        terms["k2*N(Bt) (expert loads)"] = p.k2 * touched
        terms["k3*G(T_exp) (expert incremental)"] = p.k3 * roofline_shape(
            n * k / touched, lam_rp, p.s)
    return terms


def parametric_draft_s(p: FittedParams, batch, ridge_point: float):
    """T_D(B,1) = draft_bias + draft_k G(B)."""
    return p.draft_bias + p.draft_k * roofline_shape(batch, p.lam * ridge_point, p.s)


def parametric_reject_s(p: FittedParams, batch):
    """T_rej = reject_bias + reject_k B."""
    return p.reject_bias + p.reject_k * np.asarray(batch, dtype=float)


# ---------------------------------------------------------------------------------------------
# time providers: a-priori or fitted, one interface for §3


class PhysicalTimes:
    """A-priori (uncalibrated) times from model configs and hardware presets (§5.1)."""
    calibrated = False

    def __init__(self, target: Deployment, draft: "Deployment | Draft", ctx: float,
                 correlation: float = 0.0, overlap: str = "none",
                 engine: EngineProfile = DEFAULT_ENGINE,
                 routing: tuple[float, ...] | None = None):
        if ctx < 0:
            raise InputError(f"context length must be >= 0, got {ctx}")
        if not 0.0 <= correlation < 1.0:
            raise InputError(f"routing correlation must be in [0, 1), got {correlation}")
        self.target, self.draft, self.ctx = target, as_draft(draft), ctx
        self.correlation, self.overlap, self.engine = correlation, overlap, engine
        self.routing = routing          # the target's per-expert frequencies (None: uniform)

    def target_forward(self, batch, t) -> ForwardTime:
        return forward_time(self.target, batch, t, self.ctx, self.correlation, self.overlap,
                            self.engine, self.routing)

    def target_terms(self, batch, t) -> dict[str, np.ndarray]:
        return {x.label: x.seconds for x in self.target_forward(batch, t).terms}

    def target_s(self, batch, t):
        return self.target_forward(batch, t).seconds

    def _per_target_step(self, fraction: float, batch):
        """An engine cost that scales with the target's decode step T_T(B,1)."""
        return fraction * self.target_s(batch, 1) if fraction else 0.0

    def draft_s(self, batch, rows=1):
        """One draft step over `rows` tokens per sequence (a tree's branches): the draft's
        forward and the engine's time around it (§5.3); an n-gram lookup runs no forward and
        costs only the engine's step time."""
        e = self.engine
        d = self.draft.deployment
        forward = 0.0 if d is None else forward_time(
            d, np.asarray(batch, dtype=float) * rows, 1, self.ctx, self.correlation,
            self.overlap, e).seconds
        return forward + e.draft_step_overhead_s \
            + self._per_target_step(e.draft_step_overhead_step, batch)

    def reject_s(self, batch):
        """Per round outside the forwards: rejection sampling and the engine's bookkeeping."""
        e = self.engine
        return e.reject_base_s + e.reject_per_seq_s * np.asarray(batch, dtype=float) \
            + e.round_overhead_s + self._per_target_step(e.round_overhead_step, batch)


class FittedTimes:
    """Times from the paper's fitted model (§5.2) with calibrated parameters."""
    calibrated = True

    def __init__(self, params: FittedParams, experts: int, k: int, ridge_point: float):
        self.params, self.experts, self.k, self.ridge_point = params, experts, k, ridge_point

    def target_terms(self, batch, t) -> dict[str, np.ndarray]:
        return parametric_target_terms(self.params, batch, t, self.experts, self.k,
                                       self.ridge_point)

    def target_s(self, batch, t):
        return sum(self.target_terms(batch, t).values())

    def draft_s(self, batch, rows=1):
        return parametric_draft_s(self.params, np.asarray(batch, dtype=float) * rows,
                                  self.ridge_point)

    def reject_s(self, batch):
        return parametric_reject_s(self.params, batch)


# ---------------------------------------------------------------------------------------------
# §3 speedup and target efficiency over a (B, gamma) grid


@dataclass(frozen=True)
class SdPoint:
    """Speedup, target efficiency and the times behind them (arrays broadcast over B and the
    draft steps gamma; a chain's gamma is its draft length)."""
    batch: np.ndarray
    gamma: np.ndarray
    tokens_per_round: np.ndarray
    t_ar: np.ndarray          # T_T(B, 1)
    t_verify: np.ndarray      # T_T(B, v)
    t_draft_round: np.ndarray  # every draft step of a round (a tree's later ones on B topk rows)
    t_reject: np.ndarray
    verify_tokens: np.ndarray

    @property
    def t_round(self):
        return self.t_draft_round + self.t_verify + self.t_reject

    @property
    def speedup(self):
        return self.tokens_per_round * self.t_ar / self.t_round

    @property
    def target_efficiency(self):
        return self.t_ar / self.t_verify

    @property
    def throughput_ar(self):
        """tokens/s without SD."""
        return self.batch / self.t_ar

    @property
    def throughput_sd(self):
        return self.batch * self.tokens_per_round / self.t_round

    @property
    def latency_ar_s(self):
        """Time per generated token of one sequence without SD."""
        return self.t_ar

    @property
    def latency_sd_s(self):
        return self.t_round / self.tokens_per_round


VERIFY_MODES = ("gamma+1", "gamma")


def verify_tokens(gamma, mode: str = "gamma+1"):
    """Positions the target scores per sequence in verification [design, §3]."""
    if mode not in VERIFY_MODES:
        raise InputError(f"verify tokens must be one of {', '.join(VERIFY_MODES)}, got {mode!r}")
    gamma = np.asarray(gamma, dtype=float)
    return gamma + 1.0 if mode == "gamma+1" else gamma


def round_width(gamma, verify_mode: str = "gamma+1", topk: int = 1, tokens: int | None = None):
    """Positions the target scores per sequence in a round: a chain's v(gamma) (§3), a tree's
    verified tokens (§3.2)."""
    if topk == 1 and tokens is None:
        return verify_tokens(gamma, verify_mode)
    return verify_width(gamma, topk, tokens)


def evaluate(times, acceptance, batch, gamma, verify_mode: str = "gamma+1", topk: int = 1,
             tokens: int | None = None) -> SdPoint:
    """Speedup and TE of SD for every (batch, gamma) broadcast pair (docs/sd.md §3).
    `acceptance`: alpha, or per-position rates (§3.1). A chain of gamma drafts by default; a
    tree of gamma steps with `topk` branches and `tokens` verified positions per sequence
    (§3.2): its first draft step runs B rows, the later ones B topk."""
    rates = check_rates((acceptance,) if np.isscalar(acceptance) else acceptance)
    B = np.asarray(batch, dtype=float)
    gamma = np.asarray(gamma, dtype=float)
    if np.any(B < 1):
        raise InputError("batch size must be >= 1")
    if np.any(gamma < 1):
        raise InputError("draft length gamma must be >= 1")
    check_tree(topk, tokens)
    v = round_width(gamma, verify_mode, topk, tokens)
    tau = accepted_length(rates, gamma.astype(int), topk, tokens)
    shape = np.broadcast(B, gamma).shape
    full = lambda x: np.broadcast_to(np.asarray(x, dtype=float), shape)  # noqa: E731
    first = times.draft_s(B)
    later = first if topk == 1 else times.draft_s(B, topk)
    return SdPoint(full(B), full(gamma), full(tau), full(times.target_s(B, 1)),
                   full(times.target_s(B, v)), full(first + (gamma - 1) * later),
                   full(times.reject_s(B)), full(v))


# ---------------------------------------------------------------------------------------------
# presets of the study


@dataclass(frozen=True)
class Acceptance:
    """An acceptance-rate preset: alpha for one (target, draft, workload)."""
    name: str = spec("preset name")
    alpha: float = spec("per-token acceptance probability alpha in [0, 1)")
    target: str = spec("target model preset", default="")
    draft: str = spec("draft model preset", default="")
    dataset: str = spec("workload the rate was measured on", default="")
    position_rates: list = spec("per-position rates (MTP heads, EAGLE depths), when measured; "
                                "alpha is the first", default=[])
    temperature: float = spec("sampling temperature", default=0.0)
    sigma_by_gamma: dict = spec("published sigma for each gamma measured; its keys are the "
                                "gamma range alpha holds for", default={})
    source: str = spec("where the numbers come from", default="")
    description: str = spec("one line shown in preset lists", default="")

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        if self.position_rates:
            check_rates(self.position_rates)

    @property
    def measured_gammas(self) -> tuple[int, int] | None:
        """(lowest, highest) draft length the rate was measured at; None for an assumption."""
        if not self.sigma_by_gamma:
            return None
        keys = [int(k) for k in self.sigma_by_gamma]
        return min(keys), max(keys)


@dataclass(frozen=True)
class Pairing:
    """A target model's usual draft and acceptance preset."""
    name: str = spec("target model preset this pairing belongs to")
    draft: str = spec("draft model preset")
    acceptance: str = spec("acceptance preset used when none is given")
    draft_tp: int = spec("GPUs the draft runs on (tensor parallel)", default=1)
    source: str = spec("where the pairing comes from", default="")
    description: str = spec("one line shown in preset lists", default="")
