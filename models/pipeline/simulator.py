"""The discrete-event simulator of docs/pipeline.md §5.1.

Op lists (schedules.py) plus recompute ops and host transfers are compiled once into a flat
program: every op runs on one resource (a device's compute stream, or its device-to-host or
host-to-device copy queue) in list order, after its dependencies (plus P2P time on
cross-device edges). Each op starts at max(resource free, dependencies met); because order on
every resource is fixed, processing the ops in one topological order is an exact event
simulation, and the same loop runs on Python floats (one configuration) or numpy arrays (many
configurations of one structure at once).

Memory: an op allocates at its start and frees at its end (F stores its activations at start;
B frees (1 - omega) of them, W the rest; R allocates before B; an offload frees when its copy
ends, a reload allocates when its copy starts), plus a working buffer while a compute op runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections import OrderedDict

import numpy as np

from ..errors import InfeasibleError
from .schedules import B, F, KINDS, L, O, R, W, OpLists

# memory categories of the timeline / breakdown
CATEGORIES = ("activations", "stage extras", "recompute", "held for W", "working",
              "optimizer reload", "weights reload")
ACT, EXTRA, RECOMP, HELD, WORK, OPT_RELOAD, W_RELOAD = range(len(CATEGORIES))


@dataclass(frozen=True)
class Transfer:
    """One offloaded object: copied to host after `after` ends (None: at iteration start, the
    write-back after the previous step), reloaded when `trigger` ends (None: at iteration
    start), needed by `consumer` (None: the optimizer step at the end). Keys are
    (kind, vs, mb) of compute ops on `device`."""
    what: str                      # "activations" | "held" (for W) | "optimizer" | "weights"
    device: int
    nbytes: float
    after: tuple | None
    trigger: tuple | None
    consumer: tuple | None
    order: tuple[float, float] = (0.0, 0.0)   # planned copy starts: sort the two queues
    vs: int = -1
    mb: int = -1


@dataclass(frozen=True)
class ProgramArrays:
    kind: np.ndarray
    vs: np.ndarray
    mb: np.ndarray
    dev: np.ndarray


@dataclass
class Program:
    ops: OpLists
    kind: list[int]
    dev: list[int]
    vs: list[int]
    mb: list[int]
    res: list[int]                                   # resource of every op
    deps: list[tuple[tuple[int, int], ...]]          # (op, boundary or -1)
    reload_deps: list[tuple[int, ...]]               # reloads an op waits for (stalls)
    order: list[int]
    dev_ops: list[list[int]]                         # compute ops per device, list order
    index: dict[tuple[int, int, int], int]           # (kind, vs, mb) -> op (compute ops)
    transfers: tuple[Transfer, ...] = ()
    transfer_ops: list[tuple[int, int]] = field(default_factory=list)   # (O op, L op)
    step_reloads: list[list[int]] = field(default_factory=list)         # per device
    _arrays: "ProgramArrays | None" = None
    _steps: list | None = None

    @property
    def n(self) -> int:
        return len(self.kind)

    @property
    def p(self) -> int:
        return self.ops.p

    def label(self, o: int) -> str:
        k = KINDS[self.kind[o]]
        if self.kind[o] in (O, L) and self.mb[o] < 0:
            t = self.transfers[self._transfer_of(o)]
            return f"{k}({t.what}{'' if t.vs < 0 else f', vs {t.vs}'})"
        return f"{k}(vs {self.vs[o]}, mb {self.mb[o]})"

    @property
    def steps(self) -> list[tuple[int, int, int, int]] | None:
        """(op, resource, dependency or -1, boundary or p) in topological order when every op
        has at most one dependency and no reload waits (no copies): the fast loop's input."""
        if self._steps is None:
            simple = not self.transfer_ops and all(len(d) <= 1 for d in self.deps)
            p = self.p
            self._steps = [(o, self.res[o], self.deps[o][0][0] if self.deps[o] else -1,
                            (self.deps[o][0][1] if self.deps[o][0][1] >= 0 else p)
                            if self.deps[o] else p) for o in self.order] if simple else []
        return self._steps or None

    @property
    def arrays(self) -> "ProgramArrays":
        if self._arrays is None:
            self._arrays = ProgramArrays(np.asarray(self.kind), np.asarray(self.vs),
                                         np.asarray(self.mb), np.asarray(self.dev))
        return self._arrays

    def _transfer_of(self, o: int) -> int:
        for i, (a, b) in enumerate(self.transfer_ops):
            if o in (a, b):
                return i
        raise KeyError(o)


def boundary(dev_a: int, dev_b: int) -> int:
    """P2P boundary index of an edge between two devices (-1: same device). Adjacent devices
    r and r+1 share boundary r; the interleaved wrap-around p-1 -> 0 uses boundary p-1."""
    if dev_a == dev_b:
        return -1
    lo, hi = min(dev_a, dev_b), max(dev_a, dev_b)
    return lo if hi == lo + 1 else hi


def _appender(*columns: list):
    """push(kind, device, vs, mb, resource): one op's fields onto the parallel column lists."""
    def push(*values) -> None:
        for column, value in zip(columns, values):
            column.append(value)
    return push


# Compiled programs are kept up to this many ops in all: a program holds every op of an
# iteration (O(p m v), about 0.4 kB each), so a count of programs would not bound a search's
# memory; a search visits the points of one structure (layout, schedule, m) close together.
PROGRAM_CACHE_OPS = 300_000
_programs: OrderedDict[tuple[OpLists, bool], Program] = OrderedDict()


def base_program(ops: OpLists, with_r: bool = True) -> Program:
    """The compiled op lists, cached (least recently used first out, at most
    PROGRAM_CACHE_OPS ops kept)."""
    key = (ops, with_r)
    if key in _programs:
        _programs.move_to_end(key)
        return _programs[key]
    prog = _compile(ops, with_r)
    if prog.n <= PROGRAM_CACHE_OPS:
        _programs[key] = prog
        while sum(x.n for x in _programs.values()) > PROGRAM_CACHE_OPS:
            _programs.popitem(last=False)
    return prog


def _compile(ops: OpLists, with_r: bool) -> Program:
    """The op lists compiled. With with_r an R op sits just before every B (zero duration and
    bytes unless its chunk-micro-batch is marked for recompute), so recompute plans never
    change the program's structure; without, B carries its own dependency."""
    p = ops.p
    # the op columns: kind, device, virtual stage, micro-batch, resource
    kind: list[int] = []
    dev: list[int] = []
    vsl: list[int] = []
    mbl: list[int] = []
    res: list[int] = []
    push = _appender(kind, dev, vsl, mbl, res)
    dev_ops: list[list[int]] = [[] for _ in range(p)]
    index: dict[tuple[int, int, int], int] = {}
    for d in range(p):
        for k, v, j in ops.ops[d]:
            if k == B and with_r:
                index[(R, v, j)] = len(kind)
                dev_ops[d].append(len(kind))
                push(R, d, v, j, d)
            index[(k, v, j)] = len(kind)
            dev_ops[d].append(len(kind))
            push(k, d, v, j, d)
    deps: list[tuple[tuple[int, int], ...]] = []
    per = ops.stages                 # each model copy's virtual stages (DualPipe: two copies)

    def last(v: int) -> bool:
        return (v + 1) % per == 0

    def gradient(v: int, j: int) -> int:
        """The op whose end hands B(v, j)'s input gradient on: B, or the W an unsplit
        backward computes inside it."""
        return index[(W if (v, j) in ops.unsplit else B, v, j)]

    def data(v: int, j: int, d: int) -> tuple[int, int]:
        """B(v, j)'s data dependency: the next stage's gradient, or its own forward last."""
        q = index[(F, v, j)] if last(v) else gradient(v + 1, j)
        return q, boundary(dev[q], d)

    for o in range(len(kind)):
        k, v, j, d = kind[o], vsl[o], mbl[o], dev[o]
        if k == F and v % per:
            q = index[(F, v - 1, j)]
            deps.append(((q, boundary(dev[q], d)),))
        elif k == R or (k == B and not with_r):   # R carries B's data dependency
            deps.append((data(v, j, d),))
        elif k == W:
            deps.append(((index[(B, v, j)], -1),))
        else:
            deps.append(())
    # an overlapped pair starts when both halves can, and its forward's output leaves with
    # the pair's end
    for (vf, jf), (vb, jb) in ops.pairs:
        f, b = index[(F, vf, jf)], index[(B, vb, jb)]
        deps[f] += (data(vb, jb, dev[f]),)
        if not last(vf):
            nxt = index[(F, vf + 1, jf)]
            deps[nxt] += ((b, boundary(dev[b], dev[nxt])),)
    reload_deps: list[tuple[int, ...]] = [()] * len(kind)
    order = _topological(len(kind), dev_ops, deps, reload_deps)
    return Program(ops, kind, dev, vsl, mbl, res, deps, reload_deps, order, dev_ops, index)


def compile_program(ops: OpLists, transfers: tuple[Transfer, ...] = (),
                    with_r: bool = True) -> Program:
    """The base program plus copy ops for `transfers` (each on its device's device-to-host
    and host-to-device queues, in planned order), topologically re-ordered."""
    base = base_program(ops, with_r)
    if not transfers:
        return base
    p = ops.p
    kind, dev, vsl, mbl, res = (list(base.kind), list(base.dev), list(base.vs), list(base.mb),
                                list(base.res))
    push = _appender(kind, dev, vsl, mbl, res)
    deps = list(base.deps)
    reload_deps = [list(x) for x in base.reload_deps]
    index = base.index
    transfer_ops = []
    step_reloads: list[list[int]] = [[] for _ in range(p)]
    queues: dict[int, list[tuple[float, int, int]]] = {}
    pos = {o: i for ops_d in base.dev_ops for i, o in enumerate(ops_d)}

    def rank(key) -> int:            # equal planned times: device order decides
        return -1 if key is None else pos[index[key]]

    for t in transfers:
        d = t.device
        o_op, l_op = len(kind), len(kind) + 1
        push(O, d, t.vs, t.mb, p + 2 * d)
        push(L, d, t.vs, t.mb, p + 2 * d + 1)
        deps.append(() if t.after is None else ((index[t.after], -1),))
        deps.append(((o_op, -1),) + (() if t.trigger is None else ((index[t.trigger], -1),)))
        reload_deps += [[], []]
        if t.consumer is None:
            step_reloads[d].append(l_op)
        else:
            reload_deps[index[t.consumer]].append(l_op)
        queues.setdefault(p + 2 * d, []).append((t.order[0], rank(t.after), o_op))
        queues.setdefault(p + 2 * d + 1, []).append((t.order[1], rank(t.trigger), l_op))
        transfer_ops.append((o_op, l_op))
    res_lists = [list(x) for x in base.dev_ops] + [[] for _ in range(2 * p)]
    for r, q in queues.items():
        res_lists[r] = [o for _, _, o in sorted(q)]
    rdeps = [tuple(x) for x in reload_deps]
    order = _insert_copies(base, res_lists, deps, rdeps, len(kind)) or \
        _topological(len(kind), res_lists, deps, rdeps)
    return Program(ops, kind, dev, vsl, mbl, res, deps, rdeps, order, base.dev_ops, index,
                   tuple(transfers), transfer_ops, step_reloads)


def _insert_copies(base: Program, res_lists, deps, rdeps, n: int) -> list[int] | None:
    """The base order with every copy op slotted in after its dependencies and its queue
    predecessor (offloads first, then reloads); None when a reload would land after its
    consumer (then a full topological sort decides)."""
    pos = {o: i for i, o in enumerate(base.order)}
    nb = base.n
    slot: dict[int, tuple[int, int]] = {}
    seq = 0
    for r in sorted(range(base.p, len(res_lists)), key=lambda r: (r - base.p) % 2):
        prev = (-1, -1)
        for o in res_lists[r]:
            at = prev
            for q, _ in deps[o]:
                at = max(at, slot[q] if q >= nb else (pos[q], -1))
            seq += 1
            slot[o] = prev = (at[0], seq)
    for o in range(nb):
        for q in rdeps[o]:
            if slot[q][0] >= pos[o]:
                return None
    after: dict[int, list[tuple[int, int]]] = {}
    for o, (k, s_) in slot.items():
        after.setdefault(k, []).append((s_, o))
    order = [o for _, o in sorted(after.get(-1, []))]
    for i, o in enumerate(base.order):
        order.append(o)
        order += [c for _, c in sorted(after.get(i, []))]
    return order if len(order) == n else None


def _topological(n: int, res_lists, deps, reload_deps) -> list[int]:
    succ: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for lst in res_lists:
        for a, b in zip(lst, lst[1:]):
            succ[a].append(b)
            indeg[b] += 1
    for o in range(n):
        for q, _ in deps[o]:
            succ[q].append(o)
            indeg[o] += 1
        for q in reload_deps[o]:
            succ[q].append(o)
            indeg[o] += 1
    ready = [o for o in range(n) if indeg[o] == 0]
    order = []
    while ready:
        o = ready.pop()
        order.append(o)
        for s in succ[o]:
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    if len(order) != n:
        raise InfeasibleError("the op lists deadlock (a dependency cycle between devices)")
    return order


# ---- timing ------------------------------------------------------------------------------------

@dataclass
class Timing:
    start: list
    end: list
    makespan: float | np.ndarray     # float or array
    device_end: list                 # per device: end of its last compute op
    busy: list                       # per device: summed compute durations
    stall: list                      # per device: time compute waited for reloads
    step_ready: list                 # per device: when the optimizer step may start


def run(prog: Program, dur, lags, maximum=max) -> Timing:
    """Simulate one iteration. `dur[o]` is every op's duration and `lags[b]` the P2P time of
    boundary b; floats (maximum=max) or numpy arrays over configurations (np.maximum)."""
    n = prog.n
    zero = dur[0] * 0
    start = [zero] * n
    end = [zero] * n
    free = [zero] * (prog.p * 3)
    stall = [zero] * prog.p
    res, deps, rdeps = prog.res, prog.deps, prog.reload_deps
    steps = prog.steps if maximum is max else None
    if steps is not None:           # floats, one dependency per op: the lean loop
        lagv = list(lags) + [0.0]
        for o, r, q, b in steps:
            s = free[r]
            if q >= 0:
                e = end[q] + lagv[b]
                if e > s:
                    s = e
            start[o] = s
            end[o] = e = s + dur[o]
            free[r] = e
    for o in ([] if steps is not None else prog.order):
        s = free[res[o]]
        for q, b in deps[o]:
            s = maximum(s, end[q] + lags[b]) if b >= 0 else maximum(s, end[q])
        if rdeps[o]:
            s0 = s
            for q in rdeps[o]:
                s = maximum(s, end[q])
            stall[prog.dev[o]] = stall[prog.dev[o]] + (s - s0)
        start[o] = s
        end[o] = e = s + dur[o]
        free[res[o]] = e
    device_end = [end[ops[-1]] if ops else zero for ops in prog.dev_ops]
    busy = [sum((dur[o] for o in ops), zero) for ops in prog.dev_ops]
    step_ready = list(device_end)
    for d, loads in enumerate(prog.step_reloads):
        for q in loads:
            step_ready[d] = maximum(step_ready[d], end[q])
    makespan = step_ready[0]
    for x in step_ready[1:]:
        makespan = maximum(makespan, x)
    return Timing(start, end, makespan, device_end, busy, stall, step_ready)


# ---- memory --------------------------------------------------------------------------------

@dataclass
class OpBytes:
    """What every op allocates at its start and frees at its end, by category: alloc and free
    are (n_ops, n_categories) arrays; initial (p, n_categories) is live at time 0. A negative
    free is an allocation at the op's end (B hands its linear inputs over to W)."""
    alloc: np.ndarray
    free: np.ndarray
    initial: np.ndarray


@dataclass
class DeviceMemory:
    """Memory timeline of one device: events in time order, level after each event (dynamic
    bytes, above the resident model states), the peak and the compute op running then."""
    times: np.ndarray
    levels: np.ndarray
    rows: np.ndarray                 # per event: category deltas (n_events, n_categories)
    initial: np.ndarray
    ops: np.ndarray                  # op of each event
    peak: float
    peak_index: int
    peak_time: float
    peak_op: int                     # compute op running at the peak (-1: none)
    label: str = ""                  # that op's label when no program was built (closed.py)

    def by_category(self, index: int | None = None) -> np.ndarray:
        """Live bytes per category just after event `index` (default: the peak)."""
        i = self.peak_index if index is None else index
        return self.initial + self.rows[: i + 1].sum(axis=0)


def all_device_memory(prog: Program, start: np.ndarray, end: np.ndarray,
                      nbytes: OpBytes) -> list[DeviceMemory]:
    """Memory timelines of every device; one vectorised pass when there are no copies."""
    if prog.transfer_ops:
        return [device_memory(prog, start, end, nbytes, d) for d in range(prog.p)]
    ops = np.concatenate([np.asarray(x, dtype=int) for x in prog.dev_ops])
    sizes = [len(x) for x in prog.dev_ops]
    a, f = nbytes.alloc[ops], nbytes.free[ops]
    times = np.empty(2 * len(ops))
    times[0::2], times[1::2] = start[ops], end[ops]
    rows = np.empty((2 * len(ops), a.shape[1]))
    rows[0::2], rows[1::2] = a, -f
    evops = np.repeat(ops, 2)
    cum = np.cumsum(rows.sum(axis=1))
    out, lo = [], 0
    for d, n in enumerate(sizes):
        hi = lo + 2 * n
        initial = nbytes.initial[d]
        levels = cum[lo:hi] - (cum[lo - 1] if lo else 0.0) + initial.sum()
        i = int(np.argmax(levels)) if n else 0
        peak_time = float(times[lo + i]) if n else 0.0
        dops = ops[lo // 2: hi // 2]
        k = int(np.searchsorted(start[dops], peak_time, side="right")) - 1
        running = int(dops[k]) if k >= 0 and end[dops[k]] > peak_time else -1
        out.append(DeviceMemory(times[lo:hi], levels, rows[lo:hi], initial, evops[lo:hi],
                                float(levels[i]) if n else 0.0, i, peak_time, running))
        lo = hi
    return out


def device_memory(prog: Program, start: np.ndarray, end: np.ndarray, nbytes: OpBytes,
                  d: int) -> DeviceMemory:
    """Time-ordered memory events of device d (compute ops and its copy queues). At equal
    times frees come before allocations, so a peak is never an artefact of ordering."""
    ops = np.asarray(prog.dev_ops[d], dtype=int)
    transfers = [o for pair in prog.transfer_ops for o in pair if prog.dev[o] == d]
    a, f = nbytes.alloc[ops], nbytes.free[ops]
    # compute ops alone are already time ordered: start_k <= end_k <= start_k+1
    times = np.empty(2 * len(ops))
    times[0::2], times[1::2] = start[ops], end[ops]
    rows = np.empty((2 * len(ops), a.shape[1]))
    rows[0::2], rows[1::2] = a, -f
    keys = np.tile([1, 0], len(ops))
    evops = np.repeat(ops, 2)
    if transfers:
        tr = np.asarray(transfers, dtype=int)
        times = np.concatenate([times, start[tr], end[tr]])
        rows = np.concatenate([rows, nbytes.alloc[tr], -nbytes.free[tr]])
        keys = np.concatenate([keys, np.ones(len(tr), int), np.zeros(len(tr), int)])
        evops = np.concatenate([evops, tr, tr])
        order = np.lexsort((keys, times))
        times, rows, evops = times[order], rows[order], evops[order]
    initial = nbytes.initial[d]
    levels = initial.sum() + np.cumsum(rows.sum(axis=1))
    i = int(np.argmax(levels)) if len(levels) else 0
    peak_time = float(times[i]) if len(times) else 0.0
    # the compute op running at the peak instant (an allocation at its start counts)
    k = int(np.searchsorted(start[ops], peak_time, side="right")) - 1
    running = int(ops[k]) if k >= 0 and end[ops[k]] > peak_time else -1
    return DeviceMemory(times, levels, rows, initial, evops,
                        float(levels[i]) if len(levels) else 0.0, i, peak_time, running)
