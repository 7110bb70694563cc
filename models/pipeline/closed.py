"""Closed forms of GPipe and 1F1B (docs/pipeline.md §5.4): the same iteration time, busy time
and memory peaks as the event simulator, at a cost independent of the micro-batch count m.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import simulator as sim
from .schedules import B, F, R, OpLists

NEG = -np.inf
SCHEDULES = ("gpipe", "1f1b")


@dataclass(frozen=True)
class Events:
    """The memory events that can hold a device's peak, all devices concatenated in device
    order: one per distinct live-count vector (over virtual stages) and kind (an F start, or
    an R/B start with the recompute transient live), with the first op that reaches it."""
    counts: np.ndarray             # (n, nvs) stored chunk-micro-batches live
    backward: np.ndarray           # (n,) an R/B start
    op: np.ndarray                 # (n,) program op of the event
    starts: np.ndarray             # (p,) first event of every device


@lru_cache(maxsize=32)
def _events(ops: OpLists, with_r: bool) -> Events:
    prog = sim.base_program(ops, with_r)
    counts: list[tuple[int, ...]] = []
    backward: list[bool] = []
    first: list[int] = []
    starts: list[int] = []
    for dev_ops in prog.dev_ops:
        starts.append(len(counts))
        live = [0] * ops.nvs
        seen: set[tuple] = set()
        for o in dev_ops:
            k = prog.kind[o]
            if k == F:
                live[prog.vs[o]] += 1
            key = (tuple(live), k != F)
            if k in (F, R if with_r else B) and key not in seen:
                seen.add(key)
                counts.append(key[0])
                backward.append(key[1])
                first.append(o)
            if k == B:
                live[prog.vs[o]] -= 1
    return Events(np.array(counts, dtype=float).reshape(-1, ops.nvs), np.array(backward),
                  np.array(first), np.array(starts))


def applies(ops: OpLists, marks: dict, transfers) -> bool:
    """The closed forms cover this configuration: GPipe or 1F1B (1F1B with m >= p), no copies,
    and recompute the same on every chunk-micro-batch."""
    if ops.schedule not in SCHEDULES or transfers or ops.split:
        return False
    if ops.schedule == "1f1b" and ops.m < ops.p:
        return False
    return not marks or (len(marks) == ops.nvs * ops.m and len(set(marks.values())) == 1)


def _maxplus(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Max-plus product: (a ⊗ b)[i, j] = max_k a[i, k] + b[k, j] (b may be a vector)."""
    if b.ndim == 1:
        return np.maximum.reduce(a + b, axis=1)
    return np.maximum.reduce(a[:, :, None] + b[None, :, :], axis=1)


def _power_times(m: np.ndarray, n: int, y: np.ndarray) -> np.ndarray:
    """M^n ⊗ y: by repeated squaring unless n matrix-vector steps cost less (p³ log n against
    p² n)."""
    p = len(y)
    if p * max(n, 1).bit_length() >= n:
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
    exits = np.empty(p)
    for t in range(p):                              # stage t's last pair is m - p + t
        exits[t] = np.max(y[t:] + c[t, t:])
        if t < p - 1:
            y = _maxplus(mat, y)
            y[: t + 1] = NEG                        # stages up to t have no more pairs
    return _lattice_to(exits, b, lag, w)


def outcome(terms, ops: OpLists, plan, with_r: bool):
    """The Outcome of `evaluate.simulate` without its timelines (start, end and memory events
    are not built), or None when the closed forms do not cover the configuration."""
    from .evaluate import Outcome, object_bytes

    if not applies(ops, plan.marks, plan.transfers):
        return None
    prog = sim.base_program(ops, with_r)
    k = next(iter(plan.marks.values())) if plan.marks else 0
    tf, tb, tw = (np.asarray(x, dtype=float) for x in terms.chunk_times)
    f, b = tf, tb + tw + k * terms.t_f_layer          # R runs just before B, after its data
    lag = np.asarray(terms.lags[: ops.p - 1], dtype=float)
    ends = (makespan_gpipe if ops.schedule == "gpipe" else makespan_1f1b)(f, b, lag, ops.m)
    makespan = float(ends.max())
    busy = [ops.m * float(f[d] + b[d]) for d in range(ops.p)]
    zero = [0.0] * ops.p
    timing = sim.Timing([], [], makespan, ends.tolist(), busy, zero, ends.tolist())

    stored, transient, _ = object_bytes(terms, plan.shared, k)
    extras = np.asarray(terms.extras)
    ev = _events(ops, with_r)
    act = ev.counts.sum(axis=1) * float(stored)
    ext = ev.counts @ extras
    rec = np.where(ev.backward, float(transient), 0.0)
    levels = act + ext + rec + terms.a_full
    peaks = np.maximum.reduceat(levels, ev.starts)
    sizes = np.diff(np.append(ev.starts, len(levels)))
    # the first event at the peak, as the simulator's argmax finds it
    at_peak = np.flatnonzero(levels >= np.repeat(peaks, sizes) * (1 - 1e-12))
    first = at_peak[np.searchsorted(at_peak, ev.starts)]
    rows = np.zeros((ops.p, len(sim.CATEGORIES)))
    rows[:, [sim.ACT, sim.EXTRA, sim.RECOMP, sim.WORK]] = np.stack(
        [act[first], ext[first], rec[first], np.full(ops.p, terms.a_full)], axis=1)
    nowhen, initial = np.array([np.nan]), np.zeros(len(sim.CATEGORIES))
    memory = [sim.DeviceMemory(nowhen, levels[i: i + 1], rows[d: d + 1], initial, ev.op[i: i + 1],
                               float(levels[i]), 0, float("nan"), int(ev.op[i]))
              for d, i in enumerate(first)]
    none = np.empty(0)
    return Outcome(terms, ops, plan, prog, timing, memory, none, none, none)
