"""Parallel methods on the mesh (docs/chiplet.md §5): 1D Megatron, 2D SUMMA, 2.5D Tesseract,
3D and Hecaton-2D, each turned into the same `Plan`: the per-die GEMMs of one layer, its
collectives as engine schedules, its SRAM buffers and its layout feasibility (§5.2).

Sizes in a plan are elements. Token-proportional quantities are given per token of the on-chip
chunk (the chunk T_c is a property of the configuration, chosen later), so one plan serves every
chunk, SRAM size, package and DRAM. Uneven widths are padded: the bottleneck die sets the time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import InputError
from ..shapes import FFN_LINEARS, ModelShape
from . import mesh as nop

KINDS = ("1d", "2d", "2.5d", "3d", "hecaton2d")
PASSES = ("fwd", "bwd")            # the recompute pass repeats fwd
FREQS = ("chunk", "mb", "iter")    # per chunk (x T_c), per micro-batch, per iteration
# linears that read the layer's input side: Megatron 1D column-parallel, Hecaton-2D pattern A
# (gather along rows, reduce-scatter along columns); the others (o, down) are row-parallel / B
COLUMN_PARALLEL = ("qkv", "q", "q_down", "q_up", "kv_down", "kv_up", "gate_up", "fc1", "router",
                   "shared gate_up")
MLA_LATENTS = ("q_down", "kv_down")   # 1D: their split outputs are all-gathered for the up-proj.


@dataclass(frozen=True)
class Method:
    kind: str
    q: int = 0                     # 2.5D: side of the SUMMA tile (d = P / q^2)
    bidirectional: bool = False    # 1D: ring direction

    @property
    def label(self) -> str:
        if self.kind == "1d":
            return "1d-bi" if self.bidirectional else "1d"
        if self.kind == "2.5d":
            return f"2.5d-q{self.q}"
        return self.kind


METHOD_HELP = ("1d (Megatron TP, unidirectional ring), 1d-bi (bidirectional ring), 2d (SUMMA), "
               "2.5d-qQ (Tesseract, QxQ tiles, e.g. 2.5d-q4), 3d, hecaton2d")


def parse_method(text: str) -> Method:
    t = text.strip().lower().replace("_", "-")
    aliases = {"megatron": "1d", "1d-uni": "1d", "hecaton": "hecaton2d", "hecaton-2d": "hecaton2d",
               "summa": "2d", "optimus": "2d"}
    t = aliases.get(t, t)
    if t in ("1d", "2d", "3d", "hecaton2d"):
        return Method(t)
    if t == "1d-bi":
        return Method("1d", bidirectional=True)
    m = re.fullmatch(r"(?:2\.5d|tesseract)-?q(\d+)", t)
    if m:
        return Method("2.5d", q=int(m.group(1)))
    raise InputError(f"unknown method {text!r}; choose from {METHOD_HELP}")


def methods_for(mesh: nop.Mesh) -> list[Method]:
    """Every method variant whose layout fits this grid (2.5D: each tile size q)."""
    out = [Method("1d"), Method("1d", bidirectional=True), Method("2d")]
    out += [Method("2.5d", q=q) for q in range(2, mesh.rows) if mesh.square
            and mesh.rows % q == 0]
    out += [Method("3d"), Method("hecaton2d")]
    return [m for m in out if not layout_reason(m, mesh)]


ALL_METHODS = ("1d", "1d-bi", "2d", "2.5d-q2", "2.5d-q4", "2.5d-q8", "3d", "hecaton2d")


def layout_reason(method: Method, mesh: nop.Mesh) -> str:
    """Why the method cannot be laid out on the grid (§5.2), or ''."""
    n = mesh.rows
    if method.kind in ("2d", "2.5d", "3d") and not mesh.square:
        return f"layout: {method.label} needs a square grid, not {mesh}"
    if method.kind == "2.5d":
        q = method.q
        if q < 2 or n % q or q >= n:
            return (f"layout: 2.5D tiles of {q}x{q} need 2 <= q < N and q | N (N = {n}: "
                    f"q in {[x for x in range(2, n) if n % x == 0] or 'none'})")
    if method.kind == "3d" and not cube_side(mesh):
        return (f"layout: 3D needs P = q^3 dies folded onto a square N x N grid, N = s^3 and "
                f"q = s^2 (8x8 with q = 4); {mesh} does not fold")
    return ""


def cube_side(mesh: nop.Mesh) -> int:
    """q of the 3D cube on this mesh (N = s^3, q = s^2), or 0."""
    s = round(mesh.rows ** (1 / 3))
    return s * s if mesh.square and s >= 2 and s ** 3 == mesh.rows else 0


def tile_side(method: Method, mesh: nop.Mesh) -> tuple[int, int]:
    """(q, d): SUMMA tile side and number of tiles (2D: q = N, d = 1; 2.5D: d = (N/q)^2)."""
    if method.kind == "2d":
        return mesh.rows, 1
    if method.kind == "2.5d":
        return method.q, (mesh.rows // method.q) ** 2
    raise ValueError(method.kind)


def token_split(method: Method, mesh: nop.Mesh) -> int:
    """Into how many token blocks attention's input is cut: whole sequences per block need
    B_m to be a multiple of it (Hecaton-2D: N1)."""
    if method.kind == "hecaton2d":
        return mesh.rows
    if method.kind in ("2d", "2.5d"):
        q, d = tile_side(method, mesh)
        return q * d
    if method.kind == "3d":
        return cube_side(mesh) ** 2
    return 1


# ---- the plan --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gemm:
    """count x (m x k times k x n) on one die per chunk; m = m_tok * T_c + m_fix, k likewise."""
    name: str
    pass_: str
    count: float
    m_tok: float
    m_fix: float
    k_tok: float
    k_fix: float
    n: float


@dataclass(frozen=True)
class Comm:
    """A collective of one layer: pass, frequency, link stream, and its cost at T_c = 1 token
    (chunk frequency) or at its real size (per micro-batch / per iteration)."""
    name: str
    pass_: str
    freq: str
    stream: str
    part: str                 # "linear", "norm", "attention", "gradient"
    cost: nop.CollectiveCost


@dataclass(frozen=True)
class Plan:
    method: Method
    mesh: nop.Mesh
    gemms: tuple[Gemm, ...]
    comms: tuple[Comm, ...]
    weight_elems: float        # resident weight shard W_d of one layer on one die
    # weights received over the NoP once per micro-batch and kept while its chunks stream
    # through the layer (SUMMA's broadcast blocks, 3D's gathered W): zero for 1D, Hecaton-2D
    weight_buffer_elems: float
    buf_tok: float             # SRAM elements per token of the chunk (§5 per-token buffer)
    kv_elems: float            # K and V of one sequence for this die's KV heads
    replicas: int              # copies of each weight (2.5D: d)
    notes: tuple[str, ...]
    reason: str                # '' or why the layout is infeasible
    expert_elems: float = 0.0  # of weight_elems, the routed experts' (never replicated)

    @property
    def gradient_elems(self) -> float:
        """One copy of the layer's weight gradients over the whole mesh."""
        return ((self.weight_elems - self.expert_elems) / self.replicas
                + self.expert_elems) * self.mesh.P

    def totals(self, pass_: str, freq: str, part: str | None = None) -> dict[str, float]:
        """Summed load/hops per stream, and element sums, of one pass and frequency."""
        out = {f"load_{s}": 0.0 for s in nop.STREAMS} | {f"hops_{s}": 0.0 for s in nop.STREAMS}
        out |= {"elem_hops": 0.0, "elems": 0.0, "per_die": 0.0}
        for c in self.comms:
            if c.pass_ == pass_ and c.freq == freq and (part is None or c.part == part):
                out[f"load_{c.stream}"] += c.cost.load
                out[f"hops_{c.stream}"] += c.cost.hops
                out["elem_hops"] += c.cost.elem_hops
                out["elems"] += c.cost.elems
                out["per_die"] += c.cost.per_die
        return out


def head_split(shape: ModelShape, parts: int) -> tuple[int, int]:
    """(query heads, KV heads) on the busiest die when heads are cut into `parts` contiguous
    blocks of ceil(n_h/parts); KV heads are replicated where a block needs one (P > n_kv)."""
    hpd = -(-shape.heads // parts)
    group = shape.heads // shape.kv_heads
    kv = max(len({h // group for h in range(j * hpd, min((j + 1) * hpd, shape.heads))})
             for j in range(min(parts, -(-shape.heads // hpd))))
    return hpd, kv


def head_dims(shape: ModelShape) -> tuple[int, int]:
    """(query/key, value) width of one attention head: MLA adds the rotary part to q and k."""
    if shape.is_mla:
        return shape.head_dim + shape.qk_rope_head_dim, shape.v_head_dim or shape.head_dim
    return shape.head_dim, shape.head_dim


def layer_linears(shape: ModelShape, moe: bool = False) -> tuple[tuple[str, int, int], ...]:
    """(name, K, M) of the linears the method shards in a dense layer, or in an MoE layer: its
    attention, the router h -> E and the shared expert (the routed experts are placed apart,
    `_with_experts`)."""
    if not moe:
        return shape.linears()
    h, fs = shape.hidden, shape.shared_expert_intermediate
    attention = tuple(x for x in shape.linears() if x[0] not in FFN_LINEARS)
    shared = (("shared gate_up", h, 2 * fs), ("shared down", fs, h)) if fs else ()
    return attention + (("router", h, shape.experts),) + shared


def linear_blocks(shape: ModelShape, k_parts: int, m_parts: int,
                  linears: tuple[tuple[str, int, int], ...] | None = None
                  ) -> list[tuple[str, int, int]]:
    """(name, K block, M block) of each linear (default: the dense layer's) on the busiest die
    when K is cut into k_parts and M into m_parts (padded); attention widths are cut by whole
    heads, gate and up interleaved."""
    hd = shape.head_dim
    dqk, dv = head_dims(shape)
    per_head_out = {"q": dqk, "q_up": dqk, "kv_up": shape.head_dim + dv}   # MLA up-projections
    out = []
    for name, k, m in (shape.linears() if linears is None else linears):
        kd, nd = -(-k // k_parts), -(-m // m_parts)
        if name == "qkv":
            hpd, kv = head_split(shape, m_parts)
            nd = (hpd + 2 * kv) * hd if m_parts > 1 else m
        elif name in per_head_out and m_parts > 1:
            nd = head_split(shape, m_parts)[0] * per_head_out[name]
        elif name == "o" and k_parts > 1:
            kd = head_split(shape, k_parts)[0] * dv
        elif name.endswith("gate_up") and shape.gated_ffn:
            nd = 2 * -(-(m // 2) // m_parts)
        out.append((name, kd, nd))
    return out


def _linear_gemms(name, m_tok, k, n, count=1.0) -> list[Gemm]:
    """Forward Y = X W and backward dX = dY W^T, dW = X^T dY, per die per chunk."""
    return [Gemm(name, "fwd", count, m_tok, 0, 0, k, n),
            Gemm(f"{name} dX", "bwd", count, m_tok, 0, 0, n, k),
            Gemm(f"{name} dW", "bwd", count, 0, k, m_tok, 0, n)]


def _attention_gemms(shape: ModelShape, seq: int, causal: float, tok: float,
                     heads: int) -> list[Gemm]:
    """QK^T and AV per head for `tok` x T_c query tokens on the die against S c keys; the
    backward does twice the work (§4)."""
    sc = seq * causal
    dqk, dv = head_dims(shape)
    out = []
    for p, c in (("fwd", heads), ("bwd", 2 * heads)):
        out += [Gemm("attention QK^T", p, c, tok, 0, 0, dqk, sc),
                Gemm("attention AV", p, c, tok, 0, 0, sc, dv)]
    return out


def kv_cache_elems(shape: ModelShape, seq: int, kv_heads: int) -> float:
    """K and V of one sequence for a die's KV heads (MLA: the up-projected heads)."""
    return float(seq * kv_heads * sum(head_dims(shape)))


def _comm(mesh, sched, pass_, freq, stream, part, name=None) -> Comm:
    return Comm(name or sched.name, pass_, freq, stream, part, nop.cost(mesh, sched))


@lru_cache(maxsize=512)
def plan(method: Method, mesh: nop.Mesh, shape: ModelShape, seq: int, causal: float = 0.5,
         whole_sequences: bool = True, regather: bool = True, moe: bool = False) -> Plan:
    """A dense layer of `shape`, or an MoE layer (moe=True), under `method` on `mesh` (cached:
    the engine routes each schedule once per method, grid and layout option)."""
    reason = layout_reason(method, mesh)
    if reason:
        return Plan(method, mesh, (), (), 0, 0, 0, 0, 1, (), reason)
    build = {"1d": _plan_1d, "2d": _plan_summa, "2.5d": _plan_summa, "3d": _plan_3d,
             "hecaton2d": _plan_hecaton}[method.kind]
    dense = build(method, mesh, shape, layer_linears(shape, moe), seq, causal, whole_sequences,
                  regather)
    return _with_experts(dense, shape) if moe else dense


def layer_kinds(shape: ModelShape) -> tuple[tuple[int, bool], ...]:
    """(layers, is MoE) of each kind of layer the model has, MTP modules counted as one more
    layer of the kind their index gives (docs/chiplet.md §4)."""
    moe = shape.moe_layers + (shape.mtp_layers if shape.is_moe_layer(shape.layers) else 0)
    dense = shape.layers + shape.mtp_layers - moe
    return tuple((n, kind) for n, kind in ((dense, False), (moe, True)) if n)


def _heads_note(shape: ModelShape, parts: int, where: str) -> list[str]:
    hpd, kv = head_split(shape, parts)
    notes = []
    if shape.heads % parts:
        notes.append(f"{shape.heads} heads over {parts} {where}: padded to {hpd} per die "
                     f"(bottleneck die sets the time)")
    if kv * parts > shape.kv_heads:
        notes.append(f"{shape.kv_heads} KV heads over {parts} {where}: {kv} per die, replicated")
    return notes


def _plan_1d(method, mesh, shape, lin, seq, causal, whole, regather) -> Plan:
    """Megatron: QKV, gate+up column-parallel, O, down row-parallel; two all-reduces of T x H in
    forward and two in backward, over a ring on a Hamiltonian cycle (§5)."""
    P, h = mesh.P, shape.hidden
    order, closing = nop.hamiltonian_order(mesh.rows, mesh.cols)
    col, row = linear_blocks(shape, 1, P, lin), linear_blocks(shape, P, 1, lin)
    blocks = [c if c[0] in COLUMN_PARALLEL else r for c, r in zip(col, row)]
    gemms = [g for name, k, n in blocks for g in _linear_gemms(name, 1.0, k, n)]
    heads, kv = head_split(shape, P)
    gemms += _attention_gemms(shape, seq, causal, 1.0, heads)
    ar = nop.ring_all_reduce(np.array([order]), float(h), method.bidirectional,
                             "ring all-reduce T x H")
    comms = [_comm(mesh, ar, p, "chunk", "mesh", "linear", f"{p}: 2 x {ar.name}")
             for p in PASSES]
    comms = [Comm(c.name, c.pass_, c.freq, c.stream, c.part, _double(c.cost)) for c in comms]
    latent = sum(m for name, _, m in lin if name in MLA_LATENTS)
    if latent:   # [design] Megatron duplicates the down-projections instead
        g = nop.ring(np.array([order]), latent / P, P - 1, method.bidirectional,
                     "ring all-gather of the MLA latents")
        comms += [_comm(mesh, g, "fwd", "chunk", "mesh", "attention"),
                  _comm(mesh, g, "bwd", "chunk", "mesh", "attention",
                        "ring reduce-scatter of the MLA latents' gradients")]
    notes = _heads_note(shape, P, "dies")
    if closing > 1:
        notes.append(f"{mesh} has {P} dies (odd): no one-hop Hamiltonian cycle, one ring edge "
                     f"takes {closing} hops")
    return Plan(method, mesh, tuple(gemms), tuple(comms),
                weight_elems=float(sum(k * n for _, k, n in blocks)), weight_buffer_elems=0.0,
                buf_tok=float(h + max(k + n for _, k, n in blocks)),
                kv_elems=kv_cache_elems(shape, seq, kv), replicas=1, notes=tuple(notes),
                reason="")


def expert_placement(shape: ModelShape, mesh: nop.Mesh) -> tuple[int, int]:
    """(experts per die, dies per expert) on the busiest die (§4.1): E >= P puts ceil(E/P) whole
    experts on a die; E < P shards each expert's FFN width over floor(P/E) neighbouring dies
    (the rest idle)."""
    E, P = shape.experts, mesh.P
    return (-(-E // P), 1) if E >= P else (1, P // E)


def _with_experts(dense: Plan, shape: ModelShape) -> Plan:
    """An MoE layer: the dense plan of its attention, router and shared expert, plus the routed
    experts placed across the dies (§4.1). Every method but 1D dispatches each token's input
    to the dies holding a shard of each of its K experts and combines their partial outputs at
    the token's dies: two all-to-alls of K x shards x H per token in forward (dispatch,
    combine), two in backward (dY, dX), XY-routed over the whole mesh. 1D holds every token on
    every die: each die runs its own experts' tokens and the FFN all-reduce sums the
    partial outputs, so there is no all-to-all."""
    mesh, method = dense.mesh, dense.method
    E, K, h = shape.experts, shape.experts_per_token, shape.hidden
    per_die, shards = expert_placement(shape, mesh)
    f = -(-shape.expert_intermediate // shards)
    gemms = (_linear_gemms("experts gate_up", K / E, h, 2 * f, count=per_die)
             + _linear_gemms("experts down", K / E, f, h, count=per_die))
    comms = []
    if method.kind != "1d":
        holders = min(mesh.P, E * shards)          # dies that hold an expert shard
        load = np.zeros(mesh.P)
        load[:holders] = np.bincount(np.arange(E * shards) % holders, minlength=holders)
        every = np.full(mesh.P, 1.0)
        volume = float(K * shards * h)
        a2a = {"dispatch": nop.all_to_all(mesh, every, load, volume),
               "combine": nop.all_to_all(mesh, load, every, volume)}
        comms = [Comm(f"MoE {what} all-to-all ({K} x {shards} x H per token)", pass_, "chunk",
                      "mesh", "moe", a2a[kind])
                 for pass_, what, kind in (("fwd", "dispatch", "dispatch"),
                                           ("fwd", "combine", "combine"),
                                           ("bwd", "dY dispatch", "dispatch"),
                                           ("bwd", "dX combine", "combine"))]
    notes = [f"{E} experts on {mesh.P} dies: "
             + (f"{per_die} per die" if shards == 1 else f"each over {shards} dies (FFN width "
                f"{f} per die){'' if E * shards == mesh.P else f', {mesh.P - E * shards} idle'}")]
    if E >= mesh.P and E % mesh.P:
        notes.append(f"{E} experts over {mesh.P} dies: {per_die} on the busiest die (it sets "
                     f"the time)")
    expert_buf = per_die * K / E * (h + 3 * f) + 2 * K * shards * h / mesh.P
    return Plan(method, mesh, dense.gemms + tuple(gemms), dense.comms + tuple(comms),
                weight_elems=dense.weight_elems + per_die * 3.0 * h * f,
                weight_buffer_elems=dense.weight_buffer_elems,
                buf_tok=max(dense.buf_tok, expert_buf), kv_elems=dense.kv_elems,
                replicas=dense.replicas, notes=dense.notes + tuple(notes), reason=dense.reason,
                expert_elems=per_die * 3.0 * h * f)


def _double(c: nop.CollectiveCost) -> nop.CollectiveCost:
    """Two identical collectives run one after the other."""
    return nop.CollectiveCost(2 * c.load, 2 * c.hops, 2 * c.elem_hops, 2 * c.elems,
                              2 * c.per_die, 2 * c.link_load)


def _plan_hecaton(method, mesh, shape, lin, seq, causal, whole, regather) -> Plan:
    """Hecaton-2D (§5.1): die (i, j) owns one weight block; pattern A gathers X along its row
    and reduce-scatters the partial product along its column, pattern B the other way round."""
    n1, n2 = mesh.rows, mesh.cols
    rows, cols = mesh.row_lines(), mesh.col_lines()
    a_blocks = linear_blocks(shape, n1, n2, lin)     # pattern A: K over N1, M over N2
    b_blocks = linear_blocks(shape, n2, n1, lin)     # pattern B: K over N2, M over N1
    gemms, comms, blocks = [], [], []
    line = {"row": (rows, n2), "col": (cols, n1)}   # lines of a stream, members per line
    # each line collective routed once for a unit piece: its cost scales with the piece
    unit = {(verb, axis): nop.cost(mesh, prim(line[axis][0], 1.0))
            for verb, prim in (("all-gather", nop.line_all_gather),
                               ("reduce-scatter", nop.line_reduce_scatter)) for axis in line}

    def lc(verb, axis, piece, pass_, part, what) -> Comm:
        return Comm(f"{what} along {'rows' if axis == 'row' else 'columns'}", pass_, "chunk",
                    axis, part,
                    unit[(verb, axis)].scaled(piece))
    for idx, (name, _, _) in enumerate(lin):
        a = name in COLUMN_PARALLEL
        _, kd, nd = (a_blocks if a else b_blocks)[idx]
        blocks.append((name, kd, nd))
        gemms += _linear_gemms(name, 1.0, kd, nd)
        g_axis, r_axis = ("row", "col") if a else ("col", "row")
        x_piece, y_piece = kd / line[g_axis][1], nd / line[r_axis][1]  # X[T/g_n, K], Y[T/r_n, M]
        comms += [lc("all-gather", g_axis, x_piece, "fwd", "linear", f"{name}: all-gather X"),
                  lc("reduce-scatter", r_axis, y_piece, "fwd", "linear",
                     f"{name}: reduce-scatter Y"),
                  lc("all-gather", r_axis, y_piece, "bwd", "linear", f"{name}: all-gather dY"),
                  lc("reduce-scatter", g_axis, x_piece, "bwd", "linear",
                     f"{name}: reduce-scatter dX")]
        if regather:
            comms.append(lc("all-gather", g_axis, x_piece, "bwd", "linear",
                            f"{name}: re-gather X"))
    # RMSNorm: partial sums of squares of the column's tokens, all-gathered along the column
    norm = unit[("all-gather", "col")].scaled(1.0 / n2)
    for p in PASSES:
        comms.append(Comm(f"{p}: 2 x RMSNorm all-reduce", p, "chunk", "col", "norm",
                          _double(norm)))
    heads, kv = head_split(shape, n2)
    gemms += _attention_gemms(shape, seq, causal, 1.0 / n1, heads)
    notes = _heads_note(shape, n2, "columns")
    if not whole:   # sequences cut across token blocks: gather K, V along the column
        kv_piece = kv_cache_elems(shape, 1, kv) / n1
        comms += [lc("all-gather", "col", kv_piece, "fwd", "attention",
                     "attention: all-gather K, V"),
                  lc("all-gather", "col", kv_piece, "bwd", "attention",
                     "attention: all-gather K, V"),
                  lc("reduce-scatter", "col", kv_piece, "bwd", "attention",
                     "attention: reduce-scatter dK, dV")]
        notes.append(f"micro-batch not a multiple of N1 = {n1}: sequences span token blocks, "
                     f"K and V are gathered along columns")
    buf = max(kd + nd for _, kd, nd in blocks)
    if not regather:   # keep the gathered inputs of the chunk for the backward
        buf += sum(kd for _, kd, _ in blocks)
    return Plan(method, mesh, tuple(gemms), tuple(comms),
                weight_elems=float(sum(kd * nd for _, kd, nd in blocks)),
                weight_buffer_elems=0.0, buf_tok=float(buf),
                kv_elems=kv_cache_elems(shape, seq, kv), replicas=1, notes=tuple(notes),
                reason="")


def _tile_lines(n: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column lines inside every contiguous q x q tile of an n x n mesh."""
    ids = np.arange(n * n).reshape(n, n)
    tiles = ids.reshape(n // q, q, n // q, q).transpose(0, 2, 1, 3).reshape(-1, q, q)
    return tiles.reshape(-1, q), tiles.transpose(0, 2, 1).reshape(-1, q)


def _plan_summa(method, mesh, shape, lin, seq, causal, whole, regather) -> Plan:
    """2D SUMMA (d = 1) and 2.5D Tesseract: d contiguous q x q tiles, tokens split d ways,
    weights replicated d times; in each of q steps X blocks are broadcast along tile rows and
    W blocks along tile columns (§5). 2.5D all-reduces weight gradients over the d tiles."""
    q, d = tile_side(method, mesh)
    rows, cols = _tile_lines(mesh.rows, q)
    blocks = linear_blocks(shape, q, q, lin)
    tok = 1.0 / (q * d)                 # tokens of the chunk per die
    gemms, comms = [], []
    # the q broadcasts (or reductions) from each member in turn along the tile rows or
    # columns, routed once per shape for one element: a collective's cost scales with its
    # piece (hops do not)
    lines = {"row": rows, "col": cols}
    unit = {(axis, reduce): nop.cost(mesh, nop.sequence("line broadcasts", [
        nop.line_broadcast(lines[axis], k, 1.0, reduce) for k in range(q)]))
        for axis in lines for reduce in (False, True)}

    def bcast(pass_, freq, axis, piece, reduce, what) -> Comm:
        return Comm(what, pass_, freq, axis, "linear", unit[(axis, reduce)].scaled(piece))
    for name, kd, nd in blocks:
        gemms += _linear_gemms(name, tok, kd, nd, count=q)
        x, y, w = tok * kd, tok * nd, float(kd * nd)
        comms += [
            bcast("fwd", "chunk", "row", x, False, f"{name}: broadcast X along tile rows"),
            bcast("fwd", "mb", "col", w, False, f"{name}: broadcast W along tile columns"),
            bcast("bwd", "chunk", "row", x, False, f"{name}: broadcast X along tile rows"),
            bcast("bwd", "chunk", "row", x, True, f"{name}: reduce dX along tile rows"),
            bcast("bwd", "chunk", "row", y, False, f"{name}: broadcast dY along tile rows"),
            bcast("bwd", "mb", "col", w, False, f"{name}: broadcast W along tile columns"),
            bcast("bwd", "mb", "col", w, True, f"{name}: reduce dW along tile columns")]
    shard = float(sum(kd * nd for _, kd, nd in blocks))
    notes = _heads_note(shape, q, "tile columns")
    if d > 1:
        # dies at the same place in every tile, tiles in serpentine order (adjacent tiles are q
        # hops apart)
        t = mesh.rows // q
        snake = [(r, c if r % 2 == 0 else t - 1 - c) for r in range(t) for c in range(t)]
        ids = np.arange(mesh.P).reshape(mesh.rows, mesh.cols)
        groups = np.array([[ids[r * q + a, c * q + b] for r, c in snake]
                           for a in range(q) for b in range(q)])
        comms.append(_comm(mesh, nop.ring_all_reduce(groups, shard), "bwd", "iter", "mesh",
                           "gradient", f"weight-gradient all-reduce over the {d} tiles"))
    heads, kv = head_split(shape, q)
    gemms += _attention_gemms(shape, seq, causal, tok, heads)
    reason = "" if whole else (
        f"layout: {method.label} cuts each micro-batch into {q * d} token blocks; attention "
        f"needs whole sequences per block (micro-batch a multiple of {q * d})")
    return Plan(method, mesh, tuple(gemms), tuple(comms), weight_elems=shard,
                weight_buffer_elems=float((q - 1) * shard),
                buf_tok=float(max(2 * kd + nd for _, kd, nd in blocks) * tok),
                kv_elems=kv_cache_elems(shape, seq, kv), replicas=d, notes=tuple(notes),
                reason=reason)


def cube_axes(mesh: nop.Mesh) -> dict[str, np.ndarray]:
    """Lines of the three logical axes of the q x q x q cube folded onto the N x N mesh:
    die (a, b, c) sits at row a s + c // s, column b s + c % s (q = s^2), so axes a and b are
    strided by s hops and axis c walks an s x s block in serpentine order."""
    q = cube_side(mesh)
    s = math.isqrt(q)
    snake = [r * s + (c if r % 2 == 0 else s - 1 - c) for r in range(s) for c in range(s)]

    def node(a, b, c):
        return (a * s + c // s) * mesh.cols + b * s + c % s
    rng = range(q)
    return {"a": np.array([[node(a, b, c) for a in rng] for b in rng for c in rng]),
            "b": np.array([[node(a, b, c) for b in rng] for a in rng for c in rng]),
            "c": np.array([[node(a, b, c) for c in snake] for a in rng for b in rng])}


def _plan_3d(method, mesh, shape, lin, seq, causal, whole, regather) -> Plan:
    """3D (Bian et al.): per die a (T/q) x (K/q) x (M/q) GEMM; X all-gathered along axis a,
    W along axis b, the output reduce-scattered along axis c (§5)."""
    q = cube_side(mesh)
    axes = cube_axes(mesh)
    stream = {"a": "col", "b": "row", "c": "mesh"}   # axis a varies the row: column links
    blocks = linear_blocks(shape, q, q, lin)
    gemms, comms = [], []
    # each axis collective routed once for a unit piece: its cost scales with the piece
    unit = {(op, axis): nop.cost(mesh, prim(axes[axis], 1.0)) for axis in axes
            for op, prim in (("gather", nop.line_all_gather),
                             ("scatter", nop.line_reduce_scatter))}
    for name, kd, nd in blocks:
        gemms += _linear_gemms(name, 1.0 / q, kd, nd)
        x, y, w = kd / q**2, nd / q**2, kd * nd / q
        spec = [("fwd", "a", "gather", x, "chunk", "X"), ("fwd", "b", "gather", w, "mb", "W"),
                ("fwd", "c", "scatter", y, "chunk", "Y"),
                ("bwd", "a", "gather", x, "chunk", "X"), ("bwd", "c", "gather", y, "chunk", "dY"),
                ("bwd", "b", "gather", w, "mb", "W"), ("bwd", "a", "scatter", x, "chunk", "dX"),
                ("bwd", "b", "scatter", w, "mb", "dW")]
        for p, axis, op, piece, freq, what in spec:
            verb = "all-gather" if op == "gather" else "reduce-scatter"
            comms.append(Comm(f"{name}: {verb} {what} along axis {axis}", p, freq,
                              stream[axis], "linear", unit[(op, axis)].scaled(piece)))
    heads, kv = head_split(shape, q)
    gemms += _attention_gemms(shape, seq, causal, 1.0 / q**2, heads)
    reason = "" if whole else (
        f"layout: 3d cuts each micro-batch into {q * q} token blocks; attention needs whole "
        f"sequences per block (micro-batch a multiple of {q * q})")
    return Plan(method, mesh, tuple(gemms), tuple(comms),
                weight_elems=float(sum(kd * nd for _, kd, nd in blocks)) / q,
                weight_buffer_elems=float(sum(kd * nd for _, kd, nd in blocks)) * (q - 1) / q,
                buf_tok=float(max(kd + nd for _, kd, nd in blocks)) / q,
                kv_elems=kv_cache_elems(shape, seq, kv), replicas=1,
                notes=tuple(_heads_note(shape, q, "cube columns")), reason=reason)
