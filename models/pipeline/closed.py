"""Closed forms of GPipe, 1F1B and interleaved 1F1B (docs/pipeline.md §5.4): the event
simulator's iteration time, busy time and memory peaks, at a cost that does not grow with the
micro-batch count m.

They hold when every micro-batch of a stage costs the same (no offload; recompute, if any, the
same k layers of every chunk-micro-batch) and the stage sequence is the published one:

- **Memory.** A device runs its ops in list order, so the sequence of its memory events, and with
  it every level, does not depend on durations: the level at each op start is the live count of
  stored chunk-micro-batches times their bytes, plus the working buffer and the recompute
  transient. The distinct count vectors of each device are found once per op-list structure.
- **Time.** The makespan is the longest path through the dependency graph, whose nodes all weigh
  the same on one stage. GPipe's is a monotone lattice path; 1F1B's passes a warm-up lattice
  (F only), a steady region of F/B pairs, and a cool-down lattice (B only). The two lattices
  have closed forms; the steady region is a max-plus linear recurrence over pairs,
  Y(j+1) = M ⊗ Y(j), whose m-fold product is taken by repeated squaring: O(p³ log m).
  Interleaved 1F1B runs in rounds of one F and one B slot per device, each round a max-plus
  matrix over the slot ends; the full rounds repeat with the chunk order's period, whose
  product is raised to a power the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from . import simulator as sim
from .schedules import B, F, KINDS, R, OpLists, build

NEG = -np.inf
SCHEDULES = ("gpipe", "1f1b", "interleaved")


@dataclass(frozen=True)
class Events:
    """The memory events that can hold a device's peak, all devices concatenated in device
    order: one per distinct live-count vector (over virtual stages) and kind (an F start, or
    an R/B start of a virtual stage with its recompute transient live), labelled by the first
    op that reaches it."""
    counts: np.ndarray             # (n, nvs) stored chunk-micro-batches live
    b_vs: np.ndarray               # (n,) the virtual stage of an R/B start, -1 for an F start
    labels: tuple[str, ...]        # (n,) that op
    starts: np.ndarray             # (p,) first event of every device


def _label(kind: int, vs: int, mb: int) -> str:
    return f"{KINDS[kind]}(vs {vs}, mb {mb})"        # as Program.label writes it


@lru_cache(maxsize=32)
def _events(ops: OpLists, with_r: bool) -> Events:
    """From the op lists: walk each device's order once."""
    counts: list[tuple[int, ...]] = []
    b_vs: list[int] = []
    labels: list[str] = []
    starts: list[int] = []
    for lst in ops.ops:
        starts.append(len(counts))
        live = [0] * ops.nvs
        seen: set[tuple] = set()
        for k, v, j in lst:
            if k == F:
                live[v] += 1
            key = (tuple(live), -1 if k == F else v)
            if key not in seen:
                seen.add(key)
                counts.append(key[0])
                b_vs.append(key[1])
                labels.append(_label(R if k == B and with_r else k, v, j))   # R opens B
            if k == B:
                live[v] -= 1
    return Events(np.array(counts, dtype=float).reshape(-1, ops.nvs), np.array(b_vs),
                  tuple(labels), np.array(starts))


@lru_cache(maxsize=256)
def _linear_events(schedule: str, p: int, m: int, with_r: bool) -> Events:
    """GPipe and 1F1B without op lists: a device holds one stage, its levels grow with the
    live count, so only the largest count at an F start and at an R/B start matter. 1F1B's
    stage d reaches min(p - d, m) at F(d, min(p - d, m) - 1) and opens B(d, 0) with as many
    live; GPipe's reaches m at F(d, m - 1) and opens B(d, 0) with m."""
    counts = np.zeros((2 * p, p))
    labels = []
    for d in range(p):
        live = m if schedule == "gpipe" else min(p - d, m)
        counts[2 * d: 2 * d + 2, d] = live
        labels += [_label(F, d, live - 1), _label(R if with_r else B, d, 0)]
    b_vs = np.stack([np.full(p, -1), np.arange(p)], axis=1).ravel()
    return Events(counts, b_vs, tuple(labels), np.arange(0, 2 * p, 2))


def applies(ops: OpLists, marks: dict, transfers) -> bool:
    """The closed forms cover this configuration: GPipe, 1F1B with m >= p or interleaved 1F1B
    in rounds, no copies, and recompute the same on every micro-batch of a virtual stage.
    `ops` may be the structure alone (no op tuples)."""
    if ops.schedule not in SCHEDULES or transfers or ops.split:
        return False
    if (ops.schedule == "1f1b" and ops.m < ops.p) or (ops.schedule == "interleaved" and (
            ops.m % ops.p or _interleaved(ops.p, ops.chunks, ops.m, False) is None)):
        return False
    return not marks or (len(marks) == ops.nvs * ops.m and all(
        k == marks[(vs, 0)] for (vs, _), k in marks.items()))


def _maxplus(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Max-plus product: (a ⊗ b)[i, j] = max_k a[i, k] + b[k, j] (b may be a vector)."""
    if b.ndim == 1:
        return np.maximum.reduce(a + b, axis=1)
    return np.maximum.reduce(a[:, :, None] + b[None, :, :], axis=1)


def _mm_per_mv(q: int) -> float:
    """What a q x q max-plus matrix product costs in matrix-vector steps (numpy on one core:
    1.7 at q 4, 4.3 at 16, 52 at 64; fixed call costs dominate the small ones)."""
    return 1.0 + q * q / 80.0


def _power_times(m: np.ndarray, n: int, y: np.ndarray) -> np.ndarray:
    """M^n ⊗ y: by repeated squaring unless n matrix-vector steps cost less."""
    if max(n, 1).bit_length() * (_mm_per_mv(len(y)) + 1) >= n:
        for _ in range(n):
            y = _maxplus(m, y)
        return y
    while n:
        if n & 1:
            y = _maxplus(m, y)
        n >>= 1
        if n:
            m = _maxplus(m, m)
    return y


@lru_cache(maxsize=16)
def _grid(p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """Per pipeline depth: the t >= d mask, the warm-up counts w_s = p-1-s, a -inf matrix and
    the subdiagonal's indices."""
    d, t = np.indices((p, p))
    return (t >= d, np.arange(p - 1, -1, -1, dtype=float), np.full((p, p), NEG),
            (np.arange(1, p), np.arange(p - 1)))


def _prefix(x: np.ndarray) -> np.ndarray:
    """[0, x0, x0 + x1, ...]: sums over u < t as prefix[t]."""
    out = np.zeros(len(x) + 1)
    np.cumsum(x, out=out[1:])
    return out


def _lattice_to(entry: np.ndarray, w: np.ndarray, lag: np.ndarray, right: np.ndarray
                ) -> np.ndarray:
    """End of the op in column `last` of row d, for every d, of an up-going lattice (row t ->
    t - 1 adds lag[t - 1] and the next row's weight, a step right on row u adds w[u]) entered
    at row t >= d with `entry[t]` (already including row t's op) and `right[t]` steps right
    left: max_t entry[t] + sum_{d<=u<t} (lag[u] + w[u]) + right[t] * max_{d<=u<=t} w[u]."""
    up, _, neg, _ = _grid(len(w))
    cum = _prefix(lag + w[:-1])
    # durations are >= 0, so 0 off the mask leaves every max_{d<=u<=t} w[u] as it is
    widest = np.maximum.accumulate(np.where(up, w, 0.0), axis=1)
    total = np.where(up, (entry + cum) + right * widest, neg)
    return np.maximum.reduce(total, axis=1) - cum


def makespan_gpipe(f: np.ndarray, b: np.ndarray, lag: np.ndarray, m: int) -> np.ndarray:
    """Per device, the end of its last B. All F first: F(s, m-1) ends at
    sum_{u<=s} f_u + sum_{u<s} lag_u + (m-1) max_{u<=s} f_u; the backward lattice is entered at
    B(s, 0) right after it, and climbs to B(d, m-1)."""
    fwd = np.cumsum(f) + _prefix(lag) + (m - 1) * np.maximum.accumulate(f)
    return _lattice_to(fwd + b, b, lag, np.full(len(f), m - 1.0))


def makespan_1f1b(f: np.ndarray, b: np.ndarray, lag: np.ndarray, m: int) -> np.ndarray:
    """Per device, the end of its last B under Megatron's 1F1B with m >= p.

    Stage s runs w_s = p-1-s warm-up F, then n_s = m - w_s pairs (F(s, j + w_s), B(s, j)),
    then w_s cool-down B. Y(j)[s] = end of pair j's F on stage s:
      Y(0)[s] = sum_{u<=s} f_u + sum_{u<s} lag_u + w_s max_{u<=s} f_u   (warm-up lattice)
      Y(j+1) = M ⊗ Y(j),  M[s, t>=s] = f_s + C(s, t),  M[s, s-1] = f_s + lag_{s-1}
    with C(s, t) = sum_{s<=u<=t} b_u + sum_{s<=u<t} lag_u (B(s, j) = max_{t>=s} Y(j)[t] +
    C(s, t)). Stage t leaves the steady region after pair n_t - 1 = m - p + t; from its last
    B the cool-down lattice climbs to every device's last B (w_t steps right)."""
    p = len(f)
    up, w, neg, sub = _grid(p)
    cb, cl = _prefix(b), _prefix(lag)
    c = np.where(up, (cb[1:] + cl) - (cb[:-1] + cl)[:, None], neg)        # C(s, t)
    mat = f[:, None] + c
    mat[sub] = f[1:] + lag
    y = np.cumsum(f) + cl + w * np.maximum.accumulate(f)
    y = _power_times(mat, m - p, y)                 # to pair n0 - 1 = m - p, all stages in
    # then stage t leaves after pair m - p + t: rows up to t get no further pairs
    masked = np.where(up.T[:, :, None], neg[None], mat[None])    # masked[t]: rows <= t cut
    ys = np.empty((p, p))
    ys[0] = y
    for t in range(p - 1):
        ys[t + 1] = np.maximum.reduce(masked[t] + ys[t], axis=1)
    exits = np.maximum.reduce(np.where(up, ys + c, neg), axis=1)   # last B of each stage
    return _lattice_to(exits, b, lag, w)


@dataclass(frozen=True)
class Rounds:
    """Interleaved 1F1B as rounds. Device d runs w_d warm-up F, pairs (F, B) and w_d cool-down
    B; padding both ends with empty slots makes every device a sequence of (F slot, B slot)
    rounds, and shifting device d's by -d puts every cross-device source of round r in round
    r - 1. A round is then a max-plus matrix over the 2p slot ends (F_d, B_d) of the round
    before, `x(r) = A_r ⊗ x(r-1)`, whose entries add the slot's F and B durations and a
    boundary's lag; every entry names them (-1: none)."""
    p: int
    n: int                          # rounds
    rnd: np.ndarray                 # entry -> round, row, column
    row: np.ndarray
    col: np.ndarray
    f_of: np.ndarray                # entry -> virtual stage whose T_F it adds (-1 none)
    b_of: np.ndarray                # ... whose backward
    lag_of: np.ndarray              # ... boundary whose lag
    steady: tuple[int, int, int]    # (first round, period, periods) repeating exactly; the
    #                                 entries keep its first period only (Rounds.kept)

    def kept(self, r: int) -> int:
        """Where round r's matrix is stored."""
        s0, period, k = self.steady
        if r < s0 + period or k < 2:
            return r
        return s0 + (r - s0) % period if r < s0 + k * period else r - (k - 1) * period


@lru_cache(maxsize=32)
def _rounds(ops: OpLists) -> Rounds | None:
    """The round structure of interleaved op lists, or None when they do not have it."""
    p, nvs = ops.p, ops.nvs
    at: dict[tuple[int, int, int], tuple[int, int]] = {}     # op -> (device, round)
    for d, lst in enumerate(ops.ops):
        kinds = [k for k, _, _ in lst]
        w = kinds.index(B) - 1 if B in kinds else len(kinds)      # F before the first pair
        pairs = (len(kinds) - 2 * w) // 2
        if kinds != [F] * w + [F, B] * pairs + [B] * w:
            return None
        nf = nb = 0
        for op in lst:
            at[op] = (d, (nf - w if op[0] == F else nb) - d)
            nf, nb = nf + (op[0] == F), nb + (op[0] == B)
    first = min(r for _, r in at.values())
    n = max(r for _, r in at.values()) - first + 1
    slot: dict[tuple[int, int, int], tuple[int, int, int]] = {}    # (kind, round, device) -> op
    for op, (d, r) in at.items():
        slot[(op[0], r - first, d)] = op

    def source(op) -> tuple[int, int] | None:
        """(device, boundary) of the op's cross-device source, which must sit a round earlier."""
        k, v, j = op
        src = (F, v - 1, j) if k == F and v > 0 else (B, v + 1, j) if k == B and v < nvs - 1 \
            else None
        if src is None:
            return None
        (d, r), (ds, rs) = at[op], at[src]
        if rs != r - 1:
            raise LookupError
        return ds, sim.boundary(ds, d)

    entries = []                     # (round, row, column, F of vs, B of vs, lag of boundary)
    try:
        for r in range(n):
            for d in range(p):
                f_op, b_op = slot.get((F, r, d)), slot.get((B, r, d))
                # F_d = max(B_d, F_src + lag) + T_F; an empty slot passes B_d on
                frow = [(p + d, -1, -1)]
                if f_op is not None:
                    fs = source(f_op)
                    frow = [(p + d, f_op[1], -1)] + ([(fs[0], f_op[1], fs[1])] if fs else [])
                entries += [(r, d, c, fv, -1, lg) for c, fv, lg in frow]
                # B_d = max(F_d, B_src + lag) + T_B, with F_d's row substituted
                bv = -1 if b_op is None else b_op[1]
                entries += [(r, p + d, c, fv, bv, lg) for c, fv, lg in frow]
                if b_op is not None:
                    if bv == nvs - 1 and at[(F, bv, b_op[2])][1] - first > r:
                        return None          # the last stage's B before its own F
                    bs = source(b_op)
                    if bs:
                        entries.append((r, p + d, p + bs[0], -1, bv, bs[1]))
    except LookupError:
        return None
    if len({e[:3] for e in entries}) != len(entries):
        return None
    e = np.array(entries)
    vs = np.full((2, n, p), -1)
    for (k, r, d), op in slot.items():
        vs[int(k == B), r, d] = op[1]
    full = np.flatnonzero((vs >= 0).all(axis=(0, 2)))
    s0, s1 = (int(full[0]), int(full[-1]) + 1) if len(full) else (0, 0)
    period = nvs
    while s1 - s0 > period and not (vs[:, s0 + period: s1] == vs[:, s0: s1 - period]).all():
        s1 -= 1                      # the longest exactly periodic stretch
    k = max(0, (s1 - s0) // period)
    if k > 1:                        # keep one period of the stretch: the rest repeats it
        e = e[(e[:, 0] < s0 + period) | (e[:, 0] >= s0 + k * period)]
        e[:, 0] -= np.where(e[:, 0] >= s0 + k * period, (k - 1) * period, 0)
    return Rounds(p, n, e[:, 0], e[:, 1], e[:, 2], e[:, 3], e[:, 4], e[:, 5], (s0, period, k))


# An interleaved pipeline of g groups of p micro-batches is one of STRETCH_GROUPS groups with
# its periodic stretch repeated g - STRETCH_GROUPS more times (each group adds one period of
# p v rounds, edges unchanged; the peak-memory events all occur before the cool-down): its
# structure is built from the short one.
STRETCH_GROUPS = 5


@lru_cache(maxsize=64)
def _interleaved(p: int, v: int, m: int, with_r: bool) -> tuple[Rounds, Events] | None:
    """Rounds and memory events of interleaved 1F1B, built on at most STRETCH_GROUPS groups."""
    groups = m // p
    short = build("interleaved", p, p * min(groups, STRETCH_GROUPS), v)
    rounds = _rounds(short)
    if rounds is None:
        return None
    extra = groups - short.m // p
    if extra:
        s0, period, k = rounds.steady
        if k < 2 or period != p * v:
            return None
        rounds = replace(rounds, n=rounds.n + extra * period, steady=(s0, period, k + extra))
    return rounds, _events(short, with_r)


def makespan_rounds(rounds: Rounds, f: np.ndarray, b: np.ndarray, lag: np.ndarray
                    ) -> np.ndarray:
    """Per device, the end of its last op: x(r) = A_r ⊗ x(r-1) from x = 0, the exactly
    periodic stretch as (A_{s0+P-1} ⊗ ... ⊗ A_{s0})^K when that costs fewer steps."""
    zero = np.zeros(1)
    values = np.concatenate([f, zero])[rounds.f_of] + np.concatenate([b, zero])[rounds.b_of] \
        + np.concatenate([lag, zero])[rounds.lag_of]
    q = 2 * rounds.p
    a = np.full((int(rounds.rnd.max()) + 1, q, q), NEG)
    a[rounds.rnd, rounds.row, rounds.col] = values
    x = np.zeros(q)
    s0, period, k = rounds.steady
    ratio = _mm_per_mv(q)
    if k < 2 or (period - 1) * ratio + k.bit_length() * (ratio + 1) >= k * period:
        s0, k = rounds.n, 0          # step through every round
    for r in range(s0):
        x = np.maximum.reduce(a[rounds.kept(r)] + x, axis=1)
    if k:
        block = a[s0]
        for r in range(s0 + 1, s0 + period):
            block = _maxplus(a[r], block)
        x = _power_times(block, k, x)
    for r in range(s0 + k * period, rounds.n):
        x = np.maximum.reduce(a[rounds.kept(r)] + x, axis=1)
    return x[rounds.p:]


def outcome(terms, ops: OpLists | None, plan, with_r: bool):
    """The Outcome of `evaluate.simulate` without its timelines (no start/end times, memory
    events or compiled program; GPipe and 1F1B without op lists either), or None when the
    closed forms do not cover the configuration."""
    from .evaluate import Outcome, object_bytes

    schedule = terms.policy.schedule
    if schedule not in SCHEDULES or terms.a2a_overlap:     # overlapped pairs: simulated
        return None
    if ops is None:                   # the structure only: no op tuples are needed
        ops = OpLists(schedule, terms.p, terms.nvs, terms.m, False, None, terms.dev_of, ())
    if not applies(ops, plan.marks, plan.transfers):
        return None
    vs = np.arange(ops.nvs)
    k = np.array([plan.marks.get((v, 0), 0) for v in vs])     # recomputed layers per stage
    tf, tb, tw = (np.asarray(x, dtype=float) for x in terms.chunk_times)
    f, b = tf, tb + tw + terms.recompute_prefix[vs, k]   # R runs just before B, after its data
    if schedule == "interleaved":
        built = _interleaved(ops.p, ops.chunks, ops.m, with_r)
        assert built is not None                # applies() checked
        rounds, ev = built
        ends = makespan_rounds(rounds, f, b, np.asarray(terms.lags, dtype=float))
    else:
        lag = np.asarray(terms.lags[: ops.p - 1], dtype=float)
        ends = (makespan_gpipe if schedule == "gpipe" else makespan_1f1b)(f, b, lag, ops.m)
        ev = _linear_events(schedule, ops.p, ops.m, with_r)
    busy = (ops.m * np.bincount(ops.dev_of, weights=f + b, minlength=ops.p)).tolist()
    timing = sim.Timing([], [], float(ends.max()), ends.tolist(), busy, [0.0] * ops.p,
                        ends.tolist())

    stored, transient, _ = object_bytes(terms, plan.shared, vs, k)
    act = ev.counts @ stored
    ext = ev.counts @ np.asarray(terms.extras)
    rec = np.where(ev.b_vs >= 0, transient[ev.b_vs], 0.0)
    sizes = np.diff(np.append(ev.starts, len(act)))
    work = np.repeat(terms.work_bytes, sizes)
    levels = act + ext + rec + work
    peaks = np.maximum.reduceat(levels, ev.starts)
    # the first event at the peak, as the simulator's argmax finds it
    at_peak = np.flatnonzero(levels >= np.repeat(peaks, sizes) * (1 - 1e-12))
    first = at_peak[np.searchsorted(at_peak, ev.starts)]
    rows = np.zeros((ops.p, len(sim.CATEGORIES)))
    rows[:, [sim.ACT, sim.EXTRA, sim.RECOMP, sim.WORK]] = np.stack(
        [act[first], ext[first], rec[first], work[first]], axis=1)
    nowhen, initial, none = np.array([np.nan]), np.zeros(len(sim.CATEGORIES)), np.empty(0)
    memory = [sim.DeviceMemory(nowhen, levels[i: i + 1], rows[d: d + 1], initial,
                               np.array([-1]), float(levels[i]), 0, float("nan"), -1,
                               ev.labels[i])
              for d, i in enumerate(first)]
    return Outcome(terms, ops, plan, None, timing, memory, none, none, none)
