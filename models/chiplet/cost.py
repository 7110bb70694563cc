"""DRAM traffic, scheduling, latency, energy and area of one training iteration
(docs/chiplet.md §6-§7), vectorised over configurations that share the plans of the layer kinds.

Phases are layer x {forward, recompute, backward}. A phase covers the whole batch under the
layer-major schedule and one micro-batch under the micro-batch-major one; its time is taken on
the bottleneck die:

    t_comp = FLOPs_die / (C eta)          t_NoP = engine time of its collectives
    t_mem  = max(DRAM bytes / BW_D, DRAM bytes / (n_io b_io))
    overlap none: t_comp + t_NoP + t_mem;  max: max(...) + (sum) / n_chunks
    t_iter = sum over layer kinds (dense, MoE) of layers x phases + LM heads + optimizer step
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..shapes import ModelShape
from . import mesh as nop
from . import methods
from .hardware import DieSpec
from .methods import Plan

ACC_BYTES = 4.0      # fp32 accumulators of the PE array (beta_acc, §7)
ADAM_BYTES = 12.0    # fp32 master weight, m and v per parameter (§6)
# activations per token per layer without recomputation, x H bytes (Korthikanti et al.,
# arXiv 2205.05198, with flash attention)
STASH_BYTES_PER_H = 34.0
MLP_STASH_BYTES_PER_H = 19.0   # of which the MLP's (an MoE layer stashes its experts' instead)
# T_c: the smallest chunk §6 allows. Smaller chunks shorten the pipeline fill of overlap=max;
# at 256 tokens the hop latency adds about 1-2 % to a chunk's transfer time (standard package)
DEFAULT_CHUNK = 256
BINDING = ("compute", "NoP link", "DRAM bandwidth", "I/O link", "SRAM capacity",
           "DRAM capacity", "layout", "shoreline")


RESOURCES = ("compute", "nop", "dram", "io")               # what `binding` may name (0-3)
RESOURCE_TERMS = ("t_comp", "t_nop", "t_dram", "t_io")
SENSITIVITY = 1.10                   # "made 10 % faster": the binding resource's test


def _phase_s(t_comp, t_nop, t_dram, t_io, overlap_max, n_chunks):
    """One phase (§7): overlap none adds compute, NoP and the slower of DRAM and I/O links;
    max runs them concurrently, the longest one plus the chunk pipeline's fill."""
    total = t_comp + t_nop + np.maximum(t_dram, t_io)
    return np.where(overlap_max, np.maximum.reduce([t_comp, t_nop, t_dram, t_io])
                    + total / n_chunks, total)


@dataclass(frozen=True)
class Workload:
    """What is trained and how (fixed for a study)."""
    model: ModelShape
    seq: int = 4096               # S, tokens per sequence
    batch: int = 128              # B, sequences per iteration
    grad_bytes: float = 4.0       # beta_g, gradient-accumulator bytes per element
    causal: float = 0.5           # c: attention work kept by a causal kernel
    prefetch: bool = True         # delta_pf = 1: double-buffer the next weight shard
    tiling: bool = False          # PE-array tiling efficiency (§7)
    route_dram: bool = True       # DRAM flows also load the mesh links of the phase
    regather: bool = True         # Hecaton-2D re-gathers X in backward (else keeps it)
    chunk: int | None = None      # T_c in tokens; None = DEFAULT_CHUNK

    def __post_init__(self) -> None:
        m = self.model
        if m.local_attention:
            raise InputError(f"the chiplet study models global attention (§4); {m.name} has "
                             f"{m.local_attention} local attention on {m.local_layers} layers")
        if self.seq < 1 or self.batch < 1:
            raise InputError(f"sequence length and batch must be >= 1, got {self.seq}, "
                             f"{self.batch}")
        if self.grad_bytes not in (2.0, 4.0):
            raise InputError(f"gradient-accumulator bytes must be 2 (bf16) or 4 (fp32), got "
                             f"{self.grad_bytes:g}")
        if not 0 < self.causal <= 1:
            raise InputError(f"attention fraction c must be in (0, 1], got {self.causal}")
        if self.chunk is not None and self.chunk < 1:
            raise InputError(f"chunk must be >= 1 token, got {self.chunk}")

    @property
    def beta(self) -> float:
        return self.model.bytes_per_param

    @property
    def tokens(self) -> int:
        return self.batch * self.seq


@dataclass
class Points:
    """Per-configuration inputs of `evaluate` (numpy arrays of equal length, SI units)."""
    sram: np.ndarray              # M_s, bytes
    layer_major: np.ndarray       # bool: layer-major schedule (else micro-batch-major)
    micro_batch: np.ndarray       # B_m, sequences
    recompute: np.ndarray         # bool: full recomputation
    overlap_max: np.ndarray       # bool: overlap = max (else none)
    b: np.ndarray                 # D2D bandwidth per port per direction, bytes/s
    alpha: np.ndarray             # latency per hop, s
    e_hop: np.ndarray             # J/bit per hop
    port_area_mm2: np.ndarray     # area of one port, mm²
    shoreline: np.ndarray         # bytes/s per mm of die edge
    io_sides: np.ndarray          # 2 or 4
    bw_site: np.ndarray           # peak DRAM bytes/s per attachment point (stacks x bw_stack)
    io_b: np.ndarray              # bytes/s of an I/O die's port into the mesh (inf: beside)
    dram_hop: np.ndarray          # 1: DRAM bytes cross the I/O die's port; 0: stacks beside
    eta_d: np.ndarray             # achieved fraction of DRAM bandwidth
    e_dram: np.ndarray            # J/bit
    dram_capacity: np.ndarray     # bytes per attachment point
    io_static: np.ndarray         # W per attachment point
    io_area_mm2: np.ndarray       # mm² per attachment point


def vector_bytes_per_token(m: ModelShape, seq: int, causal: float, moe: bool = False) -> float:
    """SRAM bytes of the vector ops of one layer's forward per token [design]: two RMSNorms and
    two residual adds (read/write), RoPE on q and k, softmax scores, SwiGLU (read 2F, write F;
    an MoE layer: the K routed experts' and the shared expert's widths)."""
    ffn = (m.experts_per_token * m.expert_intermediate + m.shared_expert_intermediate if moe
           else m.intermediate)
    return m.bytes_per_param * (4 * m.hidden + 6 * m.hidden + 2 * (m.q_dim + m.kv_dim)
                                + 2 * m.heads * seq * causal + 3 * ffn)


def stash_bytes_per_token(m: ModelShape, moe: bool) -> float:
    """Activations one layer keeps per token for its backward without recomputation (bytes):
    34 H for a dense layer (Korthikanti et al., with flash attention); an MoE layer swaps the
    dense MLP's 19 H for each routed copy's input and SwiGLU tensors, K (2 H + 6 F_e), the
    shared expert's 2 H + 6 F_s and the router's 2 E probabilities [design]."""
    h = m.hidden
    if not moe:
        return STASH_BYTES_PER_H * h
    fs = m.shared_expert_intermediate
    return ((STASH_BYTES_PER_H - MLP_STASH_BYTES_PER_H) * h
            + m.experts_per_token * (2 * h + 6 * m.expert_intermediate)
            + (2 * h + 6 * fs if fs else 0) + 2 * m.experts)


def model_flops(w: Workload, recompute) -> np.ndarray:
    """FLOPs of one iteration: per token and layer 2 x its linear weights (an MoE layer's
    router, shared and K routed experts) plus attention S c x 4 n_h d_head, x3 (x4 with full
    recomputation), plus the LM heads 6 B S H V each (§4)."""
    m = w.model
    attention = m.attention_flops_per_token_per_ctx * w.seq * w.causal
    fwd = sum(n * (2.0 * (m.moe_linear_params if moe else m.linear_params) + attention)
              for n, moe in methods.layer_kinds(m)) * w.tokens
    return fwd * np.where(recompute, 4.0, 3.0) + 6.0 * w.tokens * m.hidden * m.vocab * heads(m)


def heads(m: ModelShape) -> int:
    """LM heads: the model's and one per MTP module."""
    return 1 + m.mtp_layers


def evaluate(w: Workload, die: DieSpec, layers: Sequence[tuple[int, Plan]], p: Points
             ) -> dict[str, np.ndarray]:
    """Every term of §6-§7 for the configurations `p` that share the plans of the model's
    layer kinds, (layers of the kind, plan), in SI units."""
    m, mesh = w.model, layers[0][1].mesh
    beta, beta_g = w.beta, w.grad_bytes
    P, H = mesh.P, m.hidden
    L = sum(k for k, _ in layers)
    n = len(p.sram)
    out: dict[str, np.ndarray] = {}
    if any(plan.reason for _, plan in layers):   # infeasible layout: nothing to cost
        nan = np.full(n, np.nan)
        for k in ("latency_s", "energy_j", "area_mm2"):
            out[k] = nan
        out["violation_layout"] = np.ones(n)
        return out

    # ---- micro-batches, phase groups and chunk (§6) ----
    bm = p.micro_batch.astype(float)
    t_mb = bm * w.seq                                   # T, tokens per micro-batch
    n_mb = w.batch / bm
    groups = np.where(p.layer_major, 1.0, n_mb)         # phases per layer and pass
    t_group = w.tokens / groups                         # tokens per phase
    mb_group = n_mb / groups                            # micro-batches per phase
    chunk = np.minimum(w.chunk or DEFAULT_CHUNK, t_mb)
    n_chunks = t_group / chunk
    n_io = 2.0 * mesh.rows * (p.io_sides == 2) + 2.0 * (mesh.rows + mesh.cols) * (p.io_sides == 4)
    bw_dram = n_io * p.bw_site * p.eta_d
    bw_io_links = n_io * p.io_b                              # inf when the stacks sit beside
    hbar = np.where(p.io_sides == 2, nop.io_hops(mesh.rows, mesh.cols, 2).mean(),
                    nop.io_hops(mesh.rows, mesh.cols, 4).mean()) - 1 + p.dram_hop
    dram_unit_load = np.where(p.io_sides == 2, nop.dram_link_load(mesh, 2),
                              nop.dram_link_load(mesh, 4))
    act = t_group * H * beta                                 # one activation tensor
    rc, lm = p.recompute, p.layer_major

    # ---- per layer kind: SRAM residency, DRAM traffic and the phases (§6-§7) ----
    kinds = []
    for count, plan in layers:
        moe = plan.expert_elems > 0
        w_d = plan.weight_elems * beta
        fixed_stream = ((1 + w.prefetch) * w_d + plan.weight_buffer_elems * beta
                        + plan.kv_elems * beta)
        fixed_full = fixed_stream + beta_g / beta * w_d
        buf = plan.buf_tok * beta
        resident = lm & (fixed_full + chunk * buf <= p.sram)
        w_layer = plan.weight_elems * P * beta               # every die's shard, replicas too
        reads = np.where(resident, 1.0, n_mb)                # weight reads per pass
        g_layer = plan.gradient_elems * beta_g               # one copy of the gradients
        grads = np.where(resident, g_layer, 2.0 * n_mb * g_layer)
        stash = stash_bytes_per_token(m, moe) * t_group
        dram = {
            "fwd": {"weights": w_layer * reads / groups,
                    "activations": np.where(lm, 2 * act, 0.0)
                    + np.where(rc, np.where(lm, 0, act), stash)},
            "rec": {"weights": np.where(rc, w_layer * reads / groups, 0.0),
                    "activations": np.where(rc, act, 0.0)},
            "bwd": {"weights": np.where(rc, 0.0, w_layer * reads / groups),
                    "gradients": grads / groups,
                    "activations": np.where(lm, 2 * act, 0.0) + np.where(rc, 0.0, stash)}}
        kinds.append({"count": count, "plan": plan, "moe": moe, "resident": resident,
                      "stash": stash, "sram_need": np.where(resident, fixed_full, fixed_stream)
                      + chunk * buf, "violation_sram": (fixed_stream + chunk * buf) / p.sram - 1,
                      "phases": _phases(w, die, plan, p, dram, chunk, n_chunks, mb_group, groups,
                                        dram_unit_load, bw_dram, bw_io_links)})

    def total(key, phases=("fwd", "rec", "bwd")):
        """Sum over the iteration's layers and phase groups of a per-phase term."""
        return groups * sum(k["count"] * sum(k["phases"][ph][key] for ph in phases)
                            for k in kinds)
    t_head = 6.0 * w.tokens * H * m.vocab * heads(m) / (P * die.peak_flops * die.eta)
    opt_bytes = m.total_params * ((ADAM_BYTES + beta_g) + (ADAM_BYTES + beta))
    t_opt = np.maximum(opt_bytes / bw_dram, opt_bytes / bw_io_links)
    t_iter = total("t_phase") + t_head + t_opt

    def faster(r: int) -> np.ndarray:
        """t_iter with resource r (compute, NoP, DRAM, I/O links) 10 % faster."""
        f = [1.0] * 4
        f[r] = 1.0 / SENSITIVITY
        layers_s = groups * sum(k["count"] * sum(
            _phase_s(ph["t_comp"] * f[0], ph["t_nop"] * f[1], ph["t_dram"] * f[2],
                     ph["t_io"] * f[3], p.overlap_max, n_chunks)
            for ph in k["phases"].values()) for k in kinds)
        return layers_s + t_head * f[0] + np.maximum(opt_bytes / bw_dram * f[2],
                                                     opt_bytes / bw_io_links * f[3])
    gain = np.stack([t_iter - faster(r) for r in range(4)])   # seconds saved

    # ---- energy (§7) ----
    dram_total = total("dram_bytes") + opt_bytes
    nop_bytes, nop_byte_hops = total("nop_bytes"), total("nop_byte_hops")
    flops = model_flops(w, rc)
    vec = w.tokens * np.where(rc, 4.0, 3.0) * sum(
        k["count"] * vector_bytes_per_token(m, w.seq, w.causal, k["moe"]) for k in kinds)
    gemm_sram = P * total("sram_gemm")
    e_mac = flops / 2 * die.mac_energy
    e_sram = 8 * die.sram_energy * (gemm_sram + vec + nop_bytes + dram_total)
    e_nop = 8 * p.e_hop * (nop_byte_hops + dram_total * hbar)
    e_dram = 8 * p.e_dram * dram_total
    a_die = die.area_mm2(p.sram, p.port_area_mm2)
    static_w = P * die.static_power(p.sram) + n_io * p.io_static
    e_static = static_w * t_iter
    energy = e_mac + e_sram + e_nop + e_dram + e_static

    # ---- constraints and the binding resource ----
    capacity_need = m.total_params * (beta + beta_g + ADAM_BYTES) + sum(
        k["count"] * np.where(rc, t_group * H * beta, k["stash"]) for k in kinds)
    out["violation_sram"] = np.max([k["violation_sram"] for k in kinds], axis=0)
    out["violation_dram_capacity"] = capacity_need / (n_io * p.dram_capacity) - 1.0
    edge_mm = np.sqrt(a_die)
    out["violation_shoreline"] = 2 * np.maximum(p.b, np.where(p.dram_hop > 0, p.io_b, 0.0)) \
        / (p.shoreline * edge_mm) - 1.0
    out["violation_layout"] = np.full(n, -1.0)
    sums = np.stack([total(t) for t in RESOURCE_TERMS])
    # the resource that, made 10 % faster, shortens the iteration most (a constraint that is
    # violated names itself instead)
    binding = np.argmax(gain, axis=0).astype(float)
    for code, key in ((7, "violation_shoreline"), (5, "violation_dram_capacity"),
                      (4, "violation_sram")):
        binding = np.where(out[key] > 0, float(code), binding)

    out.update({
        "latency_s": t_iter, "energy_j": energy, "area_mm2": P * a_die + n_io * p.io_area_mm2,
        "edp": energy * t_iter, "tokens_per_s": w.tokens / t_iter,
        "j_per_token": energy / w.tokens,
        "t_comp_s": sums[0], "t_nop_s": sums[1], "t_dram_s": sums[2], "t_io_s": sums[3],
        "t_head_s": np.broadcast_to(t_head, (n,)).astype(float), "t_opt_s": t_opt,
        "e_mac_j": e_mac, "e_sram_j": e_sram, "e_nop_j": e_nop, "e_dram_j": e_dram,
        "e_static_j": e_static, "dram_bytes": dram_total, "nop_bytes": nop_bytes,
        "sram_need_bytes": np.max([k["sram_need"] for k in kinds], axis=0), "chunk": chunk,
        "resident": np.min([k["resident"] for k in kinds], axis=0).astype(float),
        "binding": binding, "die_area_mm2": a_die, "n_io": n_io, "hbar": hbar,
        "flops": flops, "static_w": static_w, "opt_bytes": np.full(n, opt_bytes),
        "gemm_sram_bytes": gemm_sram, "vector_sram_bytes": vec, "nop_byte_hops": nop_byte_hops,
        "capacity_need_bytes": capacity_need, "phase_reps": L * groups,
        **{f"gain_{name}_s": gain[r] for r, name in enumerate(RESOURCES)},
    })
    # per-phase terms: the mean layer (the one kind of a dense model)
    for ph in ("fwd", "rec", "bwd"):
        for key in kinds[0]["phases"][ph]:
            out[f"{ph}.{key}"] = sum(k["count"] * k["phases"][ph][key] for k in kinds) / L
    return out


def _phases(w: Workload, die: DieSpec, plan: Plan, p: Points, dram: dict, chunk, n_chunks,
            mb_group, groups, dram_unit_load, bw_dram, bw_io_links) -> dict[str, dict]:
    """Compute, NoP and memory terms of one layer's forward, recompute and backward phases
    (§7); the recompute pass repeats the forward."""
    rc = p.recompute
    work = {pass_: (_compute(w, die, plan, pass_, chunk, n_chunks),
                    _nop(plan, pass_, p, chunk, n_chunks, mb_group, groups, w.beta))
            for pass_ in ("fwd", "bwd")}
    phases = {}
    for ph in ("fwd", "rec", "bwd"):
        on = rc if ph == "rec" else True
        (t_comp, flops_die, gemm_bytes), (t_stream, elem_hops, elems) = work[
            "bwd" if ph == "bwd" else "fwd"]
        t_comp, flops_die, elem_hops, elems, gemm_bytes = (
            np.where(on, x, 0.0) for x in (t_comp, flops_die, elem_hops, elems, gemm_bytes))
        t_stream = {k: np.where(on, v, 0.0) for k, v in t_stream.items()}
        dram_bytes = sum(dram[ph].values())
        if w.route_dram:
            t_stream["mesh"] = t_stream["mesh"] + dram_bytes / plan.mesh.P * dram_unit_load / p.b
        t_nop = t_stream["mesh"] + np.where(p.overlap_max,
                                            np.maximum(t_stream["row"], t_stream["col"]),
                                            t_stream["row"] + t_stream["col"])
        t_dram = dram_bytes / bw_dram
        t_io = dram_bytes / bw_io_links
        t_phase = _phase_s(t_comp, t_nop, t_dram, t_io, p.overlap_max, n_chunks)
        phases[ph] = {"t_comp": t_comp, "t_nop": t_nop, "t_row": t_stream["row"],
                      "t_col": t_stream["col"], "t_mesh": t_stream["mesh"], "t_dram": t_dram,
                      "t_io": t_io, "t_phase": t_phase, "dram_bytes": dram_bytes,
                      "nop_bytes": elems * w.beta, "nop_byte_hops": elem_hops * w.beta,
                      "flops_die": flops_die, "sram_gemm": gemm_bytes,
                      **{f"dram_{k}": v for k, v in dram[ph].items()}}
    return phases


def _compute(w: Workload, die: DieSpec, plan: Plan, pass_: str, chunk, n_chunks):
    """(t_comp, FLOPs, GEMM operand SRAM bytes) of one pass on one die: every GEMM of the plan
    per chunk x n_chunks, at C eta (times the tiling efficiency when asked, §7)."""
    beta, R, C = w.beta, die.array_rows, die.array_cols
    peak = die.peak_flops * die.eta
    t_comp = flops = sram = 0.0
    for g in plan.gemms:
        if g.pass_ != pass_:
            continue
        m = g.m_tok * chunk + g.m_fix
        k = g.k_tok * chunk + g.k_fix
        f = 2.0 * g.count * m * k * g.n * n_chunks
        eff = m * g.n / (R * np.ceil(m / R) * C * np.ceil(g.n / C)) if w.tiling else 1.0
        t_comp = t_comp + f / (peak * eff)
        flops = flops + f
        sram = sram + g.count * n_chunks * (beta * m * k * np.ceil(g.n / C)
                                            + beta * k * g.n * np.ceil(m / R)
                                            + ACC_BYTES * m * g.n)
    return t_comp, flops, sram


def _nop(plan: Plan, pass_: str, p: Points, chunk, n_chunks, mb_group, groups, beta):
    """Seconds per link stream, element-hops and elements of one pass: chunk-frequency
    collectives scale with T_c, weight traffic comes once per micro-batch, the 2.5D gradient
    all-reduce once per iteration (§5.3: load / b + hops x alpha)."""
    tot = {f: plan.totals(pass_, f) for f in ("chunk", "mb", "iter")}

    def scaled(key):
        return (tot["chunk"][key] * chunk * n_chunks + tot["mb"][key] * mb_group
                + tot["iter"][key] / groups)
    streams = {s: scaled(f"load_{s}") * beta / p.b
               + (tot["chunk"][f"hops_{s}"] * n_chunks + tot["mb"][f"hops_{s}"] * mb_group
                  + tot["iter"][f"hops_{s}"] / groups) * p.alpha for s in nop.STREAMS}
    return streams, scaled("elem_hops"), scaled("elems")
