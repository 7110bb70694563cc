"""Chronos-Recomp, Chronos-Offload and the planner (docs/pipeline.md §6.2-§6.3, our design).

Both savers work on a device's memory level as a piecewise-constant function of time (the
simulator's events) and only ever change it over an object's idle lifetime, so a greedy step
is a slice update; the plan is then re-simulated exactly (recompute adds R ops on the critical
path, reloads may stall their consumer) and the greedy continues if the exact peak moved.

- Chronos-Recomp: at the peak, among activation objects (device, chunk, layer, micro-batch)
  live then and not yet recomputed, mark the one with the longest remaining lifetime (ties:
  earliest layer, lowest micro-batch). Marked layers of a chunk form a prefix sharing one
  checkpoint; R runs just before the chunk's B.
- Chronos-Offload: optimizer states first (written back after the step, reloaded before the
  next one), then activations of long-lived chunk-micro-batches (F end -> R/B start), then
  bf16 weights of a chunk (write-back after the step -> its first F). An offload is taken only
  if its copies fit the per-direction link queues inside the window and the HBM it frees
  covers the peak instant, and host RAM allows.
- Planner ("chronos" mode): for each cap C from 2p down to 2, apply stall-free offloads, then
  Chronos-Recomp until the peak fits; among plans meeting the throughput floor return the
  fastest (ties: lowest peak).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InfeasibleError
from .costs import Terms
from .evaluate import Outcome, Plan, simulate, uniform_plan
from .schedules import B, F, R, W, OpLists
from .simulator import Transfer

ROUNDS = 6          # simulate -> greedy rounds before giving up on a moving peak


# ---- one device's memory level -------------------------------------------------------------

class Grid:
    """Dynamic bytes of one device after all events at each distinct event time."""

    def __init__(self, times: np.ndarray, levels: np.ndarray):
        last = np.r_[times[1:] != times[:-1], True]
        self.times = times[last]
        self.level = levels[last].copy()

    def peak(self) -> tuple[int, float]:
        i = int(np.argmax(self.level))
        return i, float(self.level[i])

    def at_or_after(self, t: float) -> int:
        return int(np.searchsorted(self.times, t - 1e-12, side="left"))

    def containing(self, t: float) -> int:
        """Index of the interval holding time t (an event exactly at t starts it)."""
        return int(np.searchsorted(self.times, t + 1e-12, side="right")) - 1


class Queue:
    """Busy intervals of one copy direction of one device's host link."""

    def __init__(self) -> None:
        self.busy: list[tuple[float, float]] = []

    def earliest(self, after: float, length: float) -> float:
        s = after
        for a, b in self.busy:
            if s + length <= a + 1e-12:
                break
            s = max(s, b)
        return s

    def latest(self, before: float, length: float, not_before: float) -> float | None:
        e = before
        for a, b in reversed(self.busy):
            if b <= e - length + 1e-12:
                break
            e = min(e, a)
        s = e - length
        return s if s >= not_before - 1e-12 else None

    def add(self, a: float, b: float) -> None:
        self.busy.append((a, b))
        self.busy.sort()


@dataclass
class _Objects:
    """Chunk-micro-batch activation objects of one device with their times."""
    vs: np.ndarray
    mb: np.ndarray
    f_start: np.ndarray
    f_end: np.ndarray
    consumer: np.ndarray          # start of R if any, else of B
    b_start: np.ndarray
    b_end: np.ndarray
    b_dur: np.ndarray
    w_start: np.ndarray           # start of W (split backward), else end of B


def _objects(out: Outcome, d: int) -> _Objects:
    idx, st, en = out.program.index, out.start, out.end
    rows = []
    for vs in out.ops.vs_of(d):
        for j in range(out.terms.vs_micro_batches):
            f, b = idx[(F, vs, j)], idx[(B, vs, j)]
            c = idx.get((R, vs, j), b)
            w = idx.get((W, vs, j))
            rows.append((vs, j, st[f], en[f], st[c], st[b], en[b], en[b] - st[b],
                         en[b] if w is None else st[w]))
    a = np.asarray(rows, dtype=float)
    return _Objects(a[:, 0].astype(int), a[:, 1].astype(int), *(a[:, i] for i in range(2, 9)))


def _trigger(out: Outcome, d: int, when: float):
    """The compute op on device d whose end issues a copy planned at `when` (the last one
    ending by then); None = iteration start."""
    ops = out.program.dev_ops[d]
    ends = out.end[ops]
    k = int(np.searchsorted(ends, when + 1e-12, side="right")) - 1
    if k < 0:
        return None
    o = ops[k]
    return (out.program.kind[o], out.program.vs[o], out.program.mb[o])


# ---- Chronos-Recomp ------------------------------------------------------------------------

def recompute_device(out: Outcome, d: int, plan: Plan, order: list) -> bool:
    """Mark layers on device d until its peak fits (greedy of §6.2). Returns True if it fits."""
    t = out.terms
    grid = Grid(out.memory[d].times, out.memory[d].levels)
    cap = (t.hw.usable_bytes - out.states(d)) / t.hw.fragmentation
    obj = _objects(out, d)
    lc, a, ck = t.layers_per_chunk, t.layer.a_layer, t.ckpt     # chunks alike (Terms)
    k = np.asarray([plan.marks.get((v, j), 0) for v, j in zip(obj.vs, obj.mb)])
    offloaded = {(x.vs, x.mb) for x in plan.transfers if x.what == "activations"
                 and x.device == d}
    free = np.asarray([(v, j) not in offloaded for v, j in zip(obj.vs, obj.mb)])
    fs = np.searchsorted(grid.times, obj.f_start - 1e-12, side="left")
    cs = np.searchsorted(grid.times, obj.consumer - 1e-12, side="left")
    be = np.searchsorted(grid.times, obj.b_end - 1e-12, side="left")
    while True:
        i, level = grid.peak()
        if level <= cap * (1 + 1e-12):
            return True
        cand = np.flatnonzero((fs <= i) & (i < cs) & (k < lc) & free)
        if not len(cand):
            return False
        # backward runs the chunk's layers in reverse: layer k finishes last of the unmarked
        done = obj.b_start[cand] + (lc - k[cand]) / lc * obj.b_dur[cand]
        c = cand[np.lexsort((obj.mb[cand], k[cand], -done))[0]]
        first = k[c] == 0
        grid.level[fs[c]:cs[c]] -= a - (ck if first else 0.0)
        if first:
            grid.level[cs[c]:be[c]] += ck
        k[c] += 1
        key = (int(obj.vs[c]), int(obj.mb[c]))
        plan.marks[key] = int(k[c])
        order.append(key)


# ---- Chronos-Offload -----------------------------------------------------------------------

@dataclass
class _Links:
    d2h: Queue = field(default_factory=Queue)
    h2d: Queue = field(default_factory=Queue)
    host: list = field(default_factory=list)      # (start, end, bytes) in host RAM

    def host_peak_with(self, s: float, e: float, x: float) -> float:
        ev = sorted([(a, n) for a, _, n in self.host] + [(b, -n) for _, b, n in self.host]
                    + [(s, x), (e, -x)], key=lambda z: (z[0], z[1]))
        level = best = 0.0
        for _, n in ev:
            level += n
            best = max(best, level)
        return best


def _links(out: Outcome, d: int) -> _Links:
    links = _Links()
    for tr, (o_op, l_op) in zip(out.plan.transfers, out.program.transfer_ops):
        if tr.device != d:
            continue
        links.d2h.add(out.start[o_op], out.end[o_op])
        links.h2d.add(out.start[l_op], out.end[l_op])
        links.host.append((0.0 if tr.after is None else out.start[o_op], out.end[l_op],
                           tr.nbytes))
    return links


def offload_optimizer(out: Outcome, d: int, budget: float, plan: Plan) -> Transfer | None:
    """Optimizer states of device d: written back after the step (from iteration start),
    reloaded to end by the device's last op. Stall-free when both copies fit the window."""
    t = out.terms
    x = t.optimizer(d)
    if x <= 0 or out.optimizer_offloaded[d]:
        return None
    bw = t.hw.link_bandwidth
    delta = x / bw
    end = float(out.timing.device_end[d])
    if x > budget:
        plan.host_limited = max(plan.host_limited, x)
        return None
    if 2 * delta > end * 0.99:
        return None
    when = end - delta
    return Transfer("optimizer", d, x, None, _trigger(out, d, when), None, (0.0, when))


def offload_device(out: Outcome, d: int, plan: Plan, budget: float) -> bool:
    """Offload activations (then weights) of device d while its peak exceeds the cap.
    Returns True if it now fits."""
    t = out.terms
    grid = Grid(out.memory[d].times, out.memory[d].levels)
    cap = (t.hw.usable_bytes - out.states(d)) / t.hw.fragmentation
    obj = _objects(out, d)
    bw = t.hw.link_bandwidth
    links = _links(out, d)
    done = {(x.vs, x.mb, x.what) for x in plan.transfers if x.device == d}
    x_obj = t.layers_per_chunk * t.layer.a_layer                # chunks alike (Terms)
    x_held = t.layers_per_chunk * t.layer.held
    new: list[Transfer] = []
    while True:
        i, level = grid.peak()
        if level <= cap * (1 + 1e-12):
            break
        now = grid.times[i]
        picked = None
        # activations idle at the peak, longest window first: stored ones (F end -> R/B
        # start) and, with split backward, those held for W (B end -> W start)
        idle = []
        for c in np.flatnonzero((obj.f_end <= now + 1e-12) & (now < obj.consumer)):
            idle.append((obj.consumer[c] - obj.f_end[c], c, "activations"))
        for c in np.flatnonzero((obj.b_end <= now + 1e-12) & (now < obj.w_start)):
            idle.append((obj.w_start[c] - obj.b_end[c], c, "held"))
        idle = [(w_, c, what) for w_, c, what in idle
                if (obj.vs[c], obj.mb[c], what) not in done
                and (what == "held" or (int(obj.vs[c]), int(obj.mb[c])) not in plan.marks)]
        idle.sort(key=lambda z: (-z[0], obj.mb[z[1]]))
        for _, c, what in idle:
            key = (int(obj.vs[c]), int(obj.mb[c]))
            if what == "held":
                x, ready, needed = x_held, obj.b_end[c], obj.w_start[c]
                after, consumer = (B, *key), (W, *key)
            else:
                x, ready, needed = x_obj, obj.f_end[c], obj.consumer[c]
                after = (F, *key)
                consumer = (R, *key) if key in plan.marks else (B, *key)
            picked = _try_copy(links, ready, needed, now, x, bw, budget)
            if picked:
                s1, s2 = picked
                new.append(Transfer(what, d, x, after, _trigger(out, d, s2), consumer,
                                    (s1, s2), key[0], key[1]))
                done.add((*key, what))
                break
        if picked is None:
            picked = _offload_weights(out, d, obj, links, now, bw, budget, done, new)
        if picked is None:
            break
        s1, s2 = picked
        xb = new[-1].nbytes
        a, b = grid.at_or_after(s1 + xb / bw), grid.containing(s2)
        grid.level[a:b] -= xb
    plan.transfers = tuple(plan.transfers) + tuple(new)
    return grid.peak()[1] <= cap * (1 + 1e-12)


def _try_copy(links: _Links, ready: float, needed: float, now: float, x: float, bw: float,
              budget: float):
    """Copy out after `ready`, back before `needed`, HBM free over an interval covering
    `now`; both copies in the link queues; host RAM within budget."""
    delta = x / bw
    s1 = links.d2h.earliest(ready, delta)
    if s1 + delta > now:
        return None
    s2 = links.h2d.latest(needed, delta, max(s1 + delta, now + 1e-9))
    if s2 is None or links.host_peak_with(s1, s2 + delta, x) > budget:
        return None
    links.d2h.add(s1, s1 + delta)
    links.h2d.add(s2, s2 + delta)
    links.host.append((s1, s2 + delta, x))
    return s1, s2


def _offload_weights(out, d, obj, links, now, bw, budget, done, new):
    """bf16 weights of a chunk: idle from the write-back after the step to the chunk's first
    F (warm-up)."""
    t = out.terms
    for vs in out.ops.vs_of(d):
        if (vs, -1, "weights") in done:
            continue
        first = min(obj.f_start[obj.vs == vs])
        x = t.state_bytes.weights * t.chunk_params(vs)
        delta = x / bw
        if delta > now or now >= first:
            continue
        s2 = links.h2d.latest(first, delta, max(delta, now + 1e-9))
        if s2 is None or links.d2h.earliest(0.0, delta) > 0.0 or \
                links.host_peak_with(0.0, s2 + delta, x) > budget:
            continue
        links.d2h.add(0.0, delta)
        links.h2d.add(s2, s2 + delta)
        links.host.append((0.0, s2 + delta, x))
        j0 = int(obj.mb[obj.vs == vs][np.argmin(obj.f_start[obj.vs == vs])])
        new.append(Transfer("weights", d, x, None, _trigger(out, d, s2), (F, vs, j0),
                            (0.0, s2), vs, -1))
        done.add((vs, -1, "weights"))
        return 0.0, s2
    return None


# ---- fitting one schedule -------------------------------------------------------------------

def fit(terms: Terms, ops: OpLists, plan: Plan, offload: str, recompute: str,
        floor_s: float | None = None) -> Outcome:
    """Apply stall-free offloads (`offload`: none, optimizer, chronos) then Chronos-Recomp
    (`recompute` == 'chronos') until every device fits, re-simulating after each round. With
    a throughput floor (max iteration seconds), a plan that breaks it is cut back to the
    longest prefix of recompute marks that keeps the floor (the best effort, not fitting)."""
    budget = terms.hw.host_ram_bytes / terms.hw.gpus_per_node
    out = simulate(terms, ops, plan)
    order: list = []
    if offload != "none":
        new = []
        plan = plan.copy()
        for d in range(terms.p):
            if out.peaks[d] > terms.hw.usable_bytes:
                tr = offload_optimizer(out, d, budget, plan)
                if tr:
                    new.append(tr)
        if new or plan.host_limited:
            plan.transfers = tuple(plan.transfers) + tuple(new)
            out = simulate(terms, ops, plan)
    if offload == "chronos":
        trial = plan.copy()
        for d in range(terms.p):
            if out.peaks[d] > terms.hw.usable_bytes:
                offload_device(out, d, trial, budget)
        try:
            out, plan = simulate(terms, ops, trial), trial
        except InfeasibleError:      # copy orders that cycle: keep the plan without them
            pass
    if recompute == "chronos":
        for _ in range(ROUNDS):
            if out.fits:
                break
            plan = plan.copy()
            progress = False
            for d in range(terms.p):
                if out.peaks[d] > terms.hw.usable_bytes:
                    before = len(order)
                    recompute_device(out, d, plan, order)
                    progress |= len(order) > before
            if not progress:
                break
            out = simulate(terms, ops, plan)
    if floor_s is not None and order and out.iteration_s > floor_s:
        out = _cut_to_floor(terms, ops, plan, order, floor_s)
    return out


def _cut_to_floor(terms: Terms, ops: OpLists, plan: Plan, order: list, floor_s: float):
    """Longest prefix of the recompute marks whose iteration still meets the floor."""
    def with_prefix(n: int) -> Outcome:
        p = plan.copy()
        p.marks = {}
        for key in order[:n]:
            p.marks[key] = p.marks.get(key, 0) + 1
        return simulate(terms, ops, p)
    lo, hi = 0, len(order)
    best = with_prefix(0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        out = with_prefix(mid)
        if out.iteration_s <= floor_s:
            lo, best = mid, out
        else:
            hi = mid - 1
    return best


# ---- the planner ---------------------------------------------------------------------------

@dataclass
class Solution:
    outcome: Outcome | None                      # None: pruned by the incumbent
    tried: list = field(default_factory=list)    # (C, iteration s, peak bytes, fits)

    @property
    def cap(self) -> int | None:
        if self.outcome is None:     # same exception type as the unguarded access raised
            raise AttributeError("a pruned Solution (no outcome) has no cap")
        return self.outcome.ops.cap


# Iteration times this close are a tie: a tie cannot beat an incumbent, and differences in the
# last digits (closed forms against the event loop, one summation order against another) must
# not decide what a search prunes.
TIE_RTOL = 1e-9


def no_faster(seconds: float, incumbent_s: float) -> bool:
    """`seconds` cannot beat the incumbent's iteration time (ties included)."""
    return seconds >= incumbent_s * (1 - TIE_RTOL)


def solve(terms: Terms, floor_s: float | None = None,
          incumbent_s: float | None = None, timelines: bool = True) -> Solution:
    """The configuration as the policy asks: uniform recompute by simulation, greedy savers
    through fit(), and Chronos-Pipe without a fixed cap through the planner. With an
    incumbent (iteration seconds a search already beats), the planner skips every cap whose
    plain schedule is no faster and returns no outcome if none is left. Without timelines,
    plain and uniformly recomputed GPipe, 1F1B and interleaved take the closed forms
    (closed.py)."""
    pol = terms.policy
    if pol.schedule == "chronos" and pol.cap is None:
        return plan_chronos(terms, floor_s, incumbent_s)
    # the closed forms need no op lists: build them only for what is simulated
    ops = terms.op_lists() if timelines else None
    if pol.full:
        out = full_recompute(terms, ops, timelines)
        if pol.offload == "none" or out.fits:
            return Solution(out)
        return Solution(fit(terms, ops or terms.op_lists(), out.plan, pol.offload, "none",
                            floor_s))
    if pol.offload == "none" and pol.recompute != "chronos":
        return Solution(simulate(terms, ops, timelines=timelines))
    return Solution(fit(terms, ops or terms.op_lists(), Plan(), pol.offload, pol.recompute,
                        floor_s))


def full_recompute(terms: Terms, ops: OpLists | None, timelines: bool = True) -> Outcome:
    """Megatron full recompute of k layers per chunk: k from the policy; 'full' every layer,
    'full-fit' the smallest k that fits (peak memory falls as k grows; all layers when none
    fits)."""
    k = terms.policy.recompute_layers
    if k is None and terms.policy.recompute == "full":
        k = terms.layers_per_chunk
    if k is not None:
        return simulate(terms, ops, uniform_plan(terms, k), timelines)
    lo, hi = 0, terms.layers_per_chunk
    best = simulate(terms, ops, uniform_plan(terms, hi), timelines)
    if not best.fits:
        return best
    while lo < hi:
        mid = (lo + hi) // 2
        out = simulate(terms, ops, uniform_plan(terms, mid), timelines)
        if out.fits:
            hi, best = mid, out
        else:
            lo = mid + 1
    return best


def plan_chronos(terms: Terms, floor_s: float | None = None,
                 incumbent_s: float | None = None) -> Solution:
    """§6.3: each C from 2p down to 2; a C whose plain schedule is already slower than the
    best plan, the floor or the incumbent is skipped, since savers only add time. Inside a
    search (an incumbent given) the loop stops at the first such C: smaller caps only add
    bubbles (§5.3), so the rest cannot win either."""
    pol = terms.policy
    best: Outcome | None = None
    effort: Outcome | None = None        # lowest peak meeting the floor
    fallback: Outcome | None = None      # lowest peak at all
    tried = []
    for cap in range(2 * terms.p, 1, -1):
        ops = terms.op_lists(cap)
        base = full_recompute(terms, ops) if pol.full else simulate(terms, ops)
        beaten = (best is not None and base.iteration_s >= best.iteration_s) or \
            (incumbent_s is not None and no_faster(base.iteration_s, incumbent_s))
        if beaten and incumbent_s is not None:
            break
        if beaten:
            continue
        if floor_s is not None and base.iteration_s > floor_s:
            tried.append((cap, base.iteration_s, base.peak, False))
            fallback = _lower_peak(fallback, base)
            continue
        if base.fits or (pol.offload == "none" and pol.recompute != "chronos"):
            out = base
        else:
            out = fit(terms, ops, base.plan, pol.offload, pol.recompute, floor_s)
        ok = out.fits and (floor_s is None or out.iteration_s <= floor_s * (1 + 1e-12))
        tried.append((cap, out.iteration_s, out.peak, ok))
        if ok and (best is None or (out.iteration_s, out.peak) < (best.iteration_s, best.peak)):
            best = out
        elif not ok:
            fallback = _lower_peak(fallback, out)
            if floor_s is None or out.iteration_s <= floor_s * (1 + 1e-12):
                effort = _lower_peak(effort, out)
    return Solution(best or effort or fallback, tried)


def _lower_peak(a: Outcome | None, b: Outcome) -> Outcome:
    return b if a is None or b.peak < a.peak else a
