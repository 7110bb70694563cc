"""Pipeline schedules as per-device op lists (docs/pipeline.md §5).

Every schedule is a generator of ordered op lists, one per device; the simulator
(simulator.py) runs any of them. Ops are (kind, virtual stage, micro-batch) with kinds F
(forward), B (input-gradient backward; the whole backward when unsplit), W (weight gradient),
R (recompute), O (offload) and L (reload). Static schedules (GPipe, 1F1B, interleaved 1F1B)
follow their published orders; the split-backward ones (ZB-H1/H2 and the V placements incl.
Chronos-Pipe) come from one deterministic greedy list scheduler with a memory cap.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TypedDict

from ..errors import InfeasibleError, InputError, did_you_mean

F, B, W, R, O, L = range(6)  # noqa: E741 - the op kinds' own letters (KINDS)
KINDS = "FBWROL"

SCHEDULES = ("gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zb-v", "v-half", "v-min",
             "chronos", "dualpipev", "dualpipe")
ALIASES = {"tpipe": "chronos", "t-pipe": "chronos", "chronos-pipe": "chronos",
           "interleaved-1f1b": "interleaved", "pipedream-flush": "1f1b", "zbv": "zb-v",
           "zbh1": "zb-h1", "zbh2": "zb-h2", "dualpipe-v": "dualpipev", "dual-pipe": "dualpipe"}
# device i holds virtual stages i and 2p-1-i
V_SHAPED = ("zb-v", "v-half", "v-min", "chronos", "dualpipev", "dualpipe")
SPLIT = ("zb-h1", "zb-h2") + V_SHAPED              # backward split into B and W
DUAL = ("dualpipev", "dualpipe")                   # DeepSeek's programs, overlapped pairs


def canonical(name: str) -> str:
    """A schedule name or alias (tpipe = chronos) -> its canonical name."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in SCHEDULES:
        raise InputError(f"unknown schedule {name!r}{did_you_mean(key, (*SCHEDULES, *ALIASES))}; "
                         f"choose from {', '.join(SCHEDULES)} (tpipe = chronos)")
    return key


def a2a_overlap_runs(schedule: str, p: int) -> bool:
    """Whether Megatron-Core's MoE all-to-all overlap runs on this schedule (§11.4): 1F1B
    without pipelining or interleaved 1F1B (Megatron-LM: VPP must be given when PP > 1)."""
    return schedule == "interleaved" or (schedule == "1f1b" and p == 1)


def copies(schedule: str) -> int:
    """Model copies the schedule trains: DualPipe holds two, one per direction (§5.5); its
    virtual stages p + i are the second copy's stage i, entered from device p - 1."""
    return 2 if schedule == "dualpipe" else 1


def chunks_per_device(schedule: str, vpp: int = 1) -> int:
    if schedule in V_SHAPED:
        return 2
    return vpp if schedule == "interleaved" else 1


def default_cap(schedule: str, p: int) -> int | None:
    """The memory cap C (chunk units) that gives a V schedule its published memory level;
    None for chronos, whose cap the planner picks (§6.3)."""
    return {"zb-v": 2 * p, "v-half": p + 2, "v-min": 2 * ((p + 4) // 3)}.get(schedule)


@dataclass(frozen=True)
class OpLists:
    """Per-device ordered op lists of one iteration."""
    schedule: str
    p: int
    nvs: int                                 # virtual stages
    m: int
    split: bool                              # backward split into B and W
    cap: int | None
    dev_of: tuple[int, ...]                  # device of each virtual stage
    ops: tuple[tuple[tuple[int, int, int], ...], ...]   # device -> ((kind, vs, mb), ...)
    copies: int = 1          # model copies: vs c (nvs / copies) + i is copy c's stage i (m each)
    # DualPipe (§5.5): backwards run whole, their W inside them (a B its W follows at once,
    # its gradient handed on after the W), and F/B pairs of two micro-batches overlapped
    unsplit: frozenset[tuple[int, int]] = frozenset()            # (vs, mb) of such a B
    pairs: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = ()   # ((vs, mb) F, B)

    def __hash__(self) -> int:
        # op lists key the program caches: hash their thousands of ops once, not per lookup
        if "_hash" not in self.__dict__:
            object.__setattr__(self, "_hash", hash((self.schedule, self.p, self.m, self.cap,
                                                    self.ops)))
        return self.__dict__["_hash"]

    @property
    def chunks(self) -> int:
        return self.nvs // self.p

    @property
    def stages(self) -> int:
        """Virtual stages one micro-batch passes: each copy's."""
        return self.nvs // self.copies

    def vs_of(self, device: int) -> tuple[int, ...]:
        return tuple(v for v in range(self.nvs) if self.dev_of[v] == device)


def placement(schedule: str, p: int, v: int) -> tuple[int, ...]:
    """Device of each virtual stage: linear, round robin (interleaved) or V."""
    if schedule in V_SHAPED:
        return tuple(range(p)) + tuple(range(p - 1, -1, -1))
    return tuple(vs % p for vs in range(p * v))


# ---- static schedules ------------------------------------------------------------------------

def _gpipe(p: int, m: int):
    return [tuple([(F, r, j) for j in range(m)] + [(B, r, j) for j in range(m)])
            for r in range(p)]


def _one_f_one_b(p: int, m: int):
    out = []
    for r in range(p):
        warm = min(p - r - 1, m)
        ops = [(F, r, j) for j in range(warm)]
        for i in range(m - warm):
            ops += [(F, r, warm + i), (B, r, i)]
        ops += [(B, r, j) for j in range(m - warm, m)]
        out.append(tuple(ops))
    return out


def interleaved_warmup(p: int, v: int, m: int, r: int, extra: int = 0) -> int:
    """Megatron-LM warm-up chunk-forwards of rank r: 2(p - r - 1) + (v - 1)p (+ `extra`: one
    with the MoE all-to-all overlap), capped at m v."""
    return min(2 * (p - r - 1) + (v - 1) * p + extra, m * v)


def _interleaved(p: int, v: int, m: int, extra: int = 0):
    if m % p:
        raise InfeasibleError(f"interleaved 1F1B needs the micro-batch count ({m}) to be a "
                              f"multiple of the pipeline depth ({p})")

    def chunk_mb(k: int, forward: bool) -> tuple[int, int]:
        group = k % (p * v)
        c = group // p
        return (c if forward else v - 1 - c), (k // (p * v)) * p + k % p

    out = []
    for r in range(p):
        total = m * v
        warm = interleaved_warmup(p, v, m, r, extra)
        fwd = [chunk_mb(k, True) for k in range(total)]
        bwd = [chunk_mb(k, False) for k in range(total)]
        ops = [(F, c * p + r, j) for c, j in fwd[:warm]]
        for i in range(total - warm):
            c, j = fwd[warm + i]
            ops.append((F, c * p + r, j))
            c, j = bwd[i]
            ops.append((B, c * p + r, j))
        ops += [(B, c * p + r, j) for c, j in bwd[total - warm:]]
        out.append(tuple(ops))
    return out


# ---- greedy split-backward list scheduler (§5.3) ----------------------------------------------

class _GreedyState(TypedDict):
    """Per-device counters of the greedy scheduler, read by the admissibility checks."""
    live: list[float]       # chunk units of stored activations
    reserved: list[int]     # units reserved by first-leg Fs for their second-leg F (V shapes)
    pending: list[int]      # micro-batches with F done and W not done
    open: list[int]         # micro-batches with F done and B not done


Admissible = Callable[[int, int, _GreedyState], bool]


def _greedy(p: int, m: int, dev_of: tuple[int, ...], admissible: Admissible,
            times: tuple[float, ...], lag: float, omega: float, v_shape: bool):
    """Deterministic greedy list scheduler with split backward. At each decision instant all
    completions are applied, then idle devices are visited in index order; each picks a ready B
    (lowest micro-batch, then highest vs), else an admissible ready F, else a ready W, else
    idles. `admissible(device, vs, state)` implements the memory cap."""
    nvs = len(dev_of)
    tf, tb, tw = times
    f_ready: list[list[int]] = [[] for _ in range(nvs)]  # heaps of ready micro-batches per vs
    b_ready: list[list[int]] = [[] for _ in range(nvs)]
    w_ready: list[list[int]] = [[] for _ in range(nvs)]
    f_ready[0] = list(range(m))
    mine = [tuple(sorted((v for v in range(nvs) if dev_of[v] == d), reverse=True))
            for d in range(p)]                # highest vs first: the tie-break
    state: _GreedyState = {"live": [0.0] * p, "reserved": [0] * p, "pending": [0] * p,
                           "open": [0] * p}
    lists: list[list[tuple[int, int, int]]] = [[] for _ in range(p)]
    idle = [True] * p
    events: list = []
    seq = 0
    now = 0.0
    done, total = 0, 3 * nvs * m

    def pick(queues, d, check=None):
        best = None
        for vs in mine[d]:
            q = queues[vs]
            if q and (best is None or q[0] < best[1]) and (check is None or check(d, vs)):
                best = (vs, q[0])
        return best

    while done < total:
        for d in range(p):
            if not idle[d]:
                continue
            choice = pick(b_ready, d)
            kind = B
            if choice is None:
                choice = pick(f_ready, d, lambda dd, vs: admissible(dd, vs, state))
                kind = F
            if choice is None:
                choice = pick(w_ready, d)
                kind = W
            if choice is None:
                continue
            vs, j = choice
            heapq.heappop({F: f_ready, B: b_ready, W: w_ready}[kind][vs])
            if kind == F:
                state["live"][d] += 1.0
                state["open"][d] += 1
                state["pending"][d] += 1
                if v_shape:     # a first-leg F reserves a unit its second-leg F consumes
                    state["reserved"][d] += 1 if vs < p else -1
            lists[d].append((kind, vs, j))
            idle[d] = False
            seq += 1
            dur = (tf, tb, tw)[0 if kind == F else (1 if kind == B else 2)]
            heapq.heappush(events, (now + dur, seq, kind, vs, j, d))
        if not events:
            raise InfeasibleError("schedule generator deadlocked (cap too small)")
        now = events[0][0]
        while events and events[0][0] <= now + 1e-12:
            _, _, kind, vs, j, d = heapq.heappop(events)
            if kind == F:
                idle[d] = True
                done += 1
                nxt = vs + 1
                if nxt < nvs:
                    if lag and dev_of[nxt] != d:
                        seq += 1
                        heapq.heappush(events, (now + lag, seq, -F - 1, nxt, j, d))
                    else:
                        heapq.heappush(f_ready[nxt], j)
                else:
                    heapq.heappush(b_ready[vs], j)
            elif kind == B:
                idle[d] = True
                done += 1
                state["live"][d] -= 1.0 - omega
                state["open"][d] -= 1
                heapq.heappush(w_ready[vs], j)
                nxt = vs - 1
                if nxt >= 0:
                    if lag and dev_of[nxt] != d:
                        seq += 1
                        heapq.heappush(events, (now + lag, seq, -B - 1, nxt, j, d))
                    else:
                        heapq.heappush(b_ready[nxt], j)
            elif kind == W:
                idle[d] = True
                done += 1
                state["live"][d] -= omega
                state["pending"][d] -= 1
            elif kind == -F - 1:
                heapq.heappush(f_ready[vs], j)
            else:
                heapq.heappush(b_ready[vs], j)
    return [tuple(x) for x in lists]


def _v_admissible(p: int, cap: int) -> Admissible:
    """Chronos-Pipe (§5.3): a second-leg F is always admissible; a first-leg F needs
    live + reserved + 2 <= C and reserves one unit for its own later second-leg F."""
    def ok(d: int, vs: int, state: _GreedyState) -> bool:
        if vs >= p:
            return True
        return state["live"][d] + state["reserved"][d] + 2 <= cap + 1e-9
    return ok


def _linear_admissible(caps_open: tuple[int, ...],
                       caps_inflight: tuple[int, ...]) -> Admissible:
    """ZB-H1/H2: at most caps_open[r] micro-batches with F done and B not done, and at most
    caps_inflight[r] with W not done (W-pending activations still use memory)."""
    def ok(d: int, vs: int, state: _GreedyState) -> bool:
        return state["open"][d] < caps_open[d] and state["pending"][d] < caps_inflight[d]
    return ok


@lru_cache(maxsize=16)     # op lists are O(p m v) too; a search reuses few at a time
def build(schedule: str, p: int, m: int, v: int = 1, cap: int | None = None,
          times: tuple[float, float, float] = (1.0, 1.0, 1.0), lag: float = 0.0,
          omega: float = 32 / 34, a2a_pairs: bool = False) -> OpLists:
    """Op lists of one iteration. `times` (T_F, T_B, T_W per chunk), `lag` (P2P per boundary)
    and `omega` steer only the greedy generators (split schedules); static orders ignore them.
    `a2a_pairs`: Megatron-Core's EP all-to-all overlap on 1F1B (PP 1) or interleaved 1F1B,
    the steady state's forward-backward steps run as overlapped pairs (a2a_overlapped).
    Results are cached: callers pass canonical (rounded) timing ratios."""
    schedule = canonical(schedule)
    if p < 1 or m < 1:
        raise InputError(f"pipeline depth and micro-batch count must be >= 1 (p={p}, m={m})")
    if schedule != "interleaved" and v != 1:
        v = 1
    if v < 1:
        raise InputError(f"--vpp must be >= 1, got {v}")
    dev_of = placement(schedule, p, v)
    split = schedule in SPLIT
    if a2a_pairs:          # one more warm-up forward, then every steady step a pair (§11.4)
        if not a2a_overlap_runs(schedule, p):
            raise InputError(f"the MoE all-to-all overlap runs on 1F1B without pipelining or "
                             f"on interleaved 1F1B (Megatron-LM), not on {schedule} with PP {p}")
        return a2a_overlapped(OpLists(schedule, p, len(dev_of), m, False, None, dev_of,
                                      tuple(_interleaved(p, v, m, extra=1))))
    if schedule in ("gpipe", "1f1b", "interleaved"):
        ops = _gpipe(p, m) if schedule == "gpipe" else _one_f_one_b(p, m) \
            if schedule == "1f1b" else _interleaved(p, v, m)
        return OpLists(schedule, p, len(dev_of), m, False, None, dev_of, tuple(ops))
    if schedule in DUAL:
        ops, unsplit, pairs = (_dualpipev if schedule == "dualpipev" else _dualpipe)(p, m)
        n = copies(schedule)
        return OpLists(schedule, p, len(dev_of), m // n, True, None, dev_of, ops, n, unsplit,
                       pairs)
    if schedule in ("zb-h1", "zb-h2"):
        if schedule == "zb-h1":
            admissible = _linear_admissible(tuple(p - r for r in range(p)), (p,) * p)
        else:
            admissible = _linear_admissible(tuple(2 * (p - r) - 1 for r in range(p)),
                                            (2 * p - 1,) * p)
        ops = _greedy(p, m, dev_of, admissible, times, lag, omega, False)
    else:
        cap = default_cap(schedule, p) if cap is None else cap
        if cap is None:
            raise InputError("chronos needs a cap C (chunk units), or let the planner pick it")
        if cap < 2:
            raise InputError(f"cap C must be >= 2 chunk units, got {cap}")
        ops = _greedy(p, m, dev_of, _v_admissible(p, cap), times, lag, omega, True)
    return OpLists(schedule, p, len(dev_of), m, split, cap if schedule in V_SHAPED else None,
                   dev_of, tuple(ops))


def a2a_overlapped(ops: OpLists) -> OpLists:
    """Megatron-Core's --overlap-moe-expert-parallel-comm (§11.4) on interleaved op lists
    built with one extra warm-up forward (get_pp_rank_microbatches: "to ensure the forward
    and backward computations are independent in all 1f1b steps"): every steady-state step, a
    forward followed by the backward of an earlier micro-batch, runs as one overlapped pair
    (the combined 1F1B step)."""
    pairs = tuple(((v1, j1), (v2, j2)) for lst in ops.ops
                  for (k1, v1, j1), (k2, v2, j2) in zip(lst, lst[1:]) if k1 == F and k2 == B)
    return replace(ops, pairs=pairs)


# ---- DualPipeV (§5.5) ----------------------------------------------------------------------

def _dualpipe_program(n: int, k: int, h: int) -> list[tuple]:
    """DeepSeek's per-rank program on n ranks with k micro-batches per leg, for rank h (0: the
    end where leg 0 enters, n - 1: the turn), as phase tokens: ("F", leg); ("B", leg, split)
    with split backwards' W deferred; ("W",) the oldest deferred W; ("FB", leg_f, leg_b) an
    overlapped pair (its backward unsplit); ("F+B", ...) the turn rank's first steady step,
    the same two chunks back to back. Read from deepseek-ai/DualPipe (dualpipev.py, HEAD
    3da1bbe) and checked against its traced order (tests)."""
    below = n - 1 - h                          # ranks between this one and the turn
    prog: list[tuple] = [("F", 0)] * (2 * below)                       # 1. warm-up, leg 0
    prog += [("F", 0), ("F", 1)] * (h + 1)                             # 2. both legs
    prog += [("B", 1, True), ("W",), ("F", 1)] * below                 # 3. zero bubble
    for i in range(k - 2 * n + h + 1):                                 # 4. steady pairs
        prog += [("F+B" if i == 0 and h == n - 1 else "FB", 0, 1), ("FB", 1, 0)]
    prog += [("B", 1, False), ("FB", 1, 0)] * below                    # 5.
    deferred = 2 * ((h + 1) // 2) + (1 if h % 2 == 0 else 0)           # 6. drain both legs,
    for i in range(h + 1):                                             #    the later half's
        prog += [("B", 1, 2 * i >= deferred), ("B", 0, 2 * i + 1 >= deferred)]   # W later
    prog += [("W",), ("B", 0, True)] * below                           # 7. zero bubble
    return prog + [("W",)] * (h + 1)                                   # 8. the deferred W


def _dualpipev(p: int, m: int):
    """DualPipeV on the V placement (device r holds vs r and 2p-1-r; every micro-batch turns
    on device p-1): (op lists, unsplit backwards, overlapped pairs)."""
    if m < 2 * p:
        raise InfeasibleError(f"dualpipev needs at least 2p = {2 * p} micro-batches per "
                              f"pipeline, got {m}")
    return _dual_ops([(_dualpipe_program(p, m, r), (r, 2 * p - 1 - r)) for r in range(p)])


def _dualpipe(p: int, m: int):
    """DualPipe proper (dualpipe.py at 3da1bbe): p ranks, two model copies, m / 2
    micro-batches entering each end. Rank r runs the program of half-rank min(r, p - 1 - r) on
    n = p / 2, its leg 0 the copy that enters at its end of the pipeline: on the first half
    copy 0's stage r (vs r), on the second half copy 1's stage p - 1 - r (vs 2p - 1 - r)."""
    if p % 2 or m % 2 or m < 2 * p:
        raise InfeasibleError(f"dualpipe needs an even PP and an even number of at least "
                              f"2 x PP = {2 * p} micro-batches per pipeline (PP {p}, {m} "
                              f"micro-batches)")
    n = p // 2
    return _dual_ops([(_dualpipe_program(n, m // 2, min(r, p - 1 - r)),
                       (r, 2 * p - 1 - r) if r < n else (2 * p - 1 - r, r)) for r in range(p)])


def _dual_ops(programs: list[tuple[list[tuple], tuple[int, int]]]):
    """Op lists of DeepSeek's per-rank programs, each with the virtual stages of its legs
    (0, 1): (op lists, unsplit backwards, overlapped pairs)."""
    ops, unsplit, pairs = [], set(), []
    for prog, stage in programs:
        nxt_f, nxt_b = [0, 0], [0, 0]
        waiting: list[tuple[int, int]] = []
        lst: list[tuple[int, int, int]] = []

        def take(counter: list[int], leg: int, stage=stage) -> tuple[int, int]:
            counter[leg] += 1
            return stage[leg], counter[leg] - 1

        for tok in prog:
            if tok[0] == "F":
                lst.append((F, *take(nxt_f, tok[1])))
            elif tok[0] == "W":
                lst.append((W, *waiting.pop(0)))
            elif tok[0] == "B":
                x = take(nxt_b, tok[1])
                lst.append((B, *x))
                if tok[2]:
                    waiting.append(x)
                else:
                    lst.append((W, *x))
                    unsplit.add(x)
            else:                                   # an F and a whole B, overlapped or not
                xf, xb = take(nxt_f, tok[1]), take(nxt_b, tok[2])
                lst += [(F, *xf), (B, *xb), (W, *xb)]
                unsplit.add(xb)
                if tok[0] == "FB":
                    pairs.append((xf, xb))
        ops.append(tuple(lst))
    return tuple(ops), frozenset(unsplit), tuple(pairs)


def dualpipe_bubble(p: int, f: float, b: float, w: float, fb: float | None = None) -> float:
    """The published DualPipeV bubble (DualPipe README / DeepSeek-V3 report Table 2) with PP
    = 2p stages: (PP/2 - 1)(F&B + B - 3W), B a whole backward (b + w), F&B an overlapped pair
    with its W (fb + w, fb = f + b without overlap)."""
    fb = f + b if fb is None else fb
    return (p - 1) * ((fb + w) + (b + w) - 3 * w)


# ---- closed forms (§5.2), the simulator's unit tests ---------------------------------------------

def one_f_one_b_in_flight(p: int, m: int) -> list[int]:
    """Micro-batches stored at the peak of stage r under 1F1B: min(m, p - r)."""
    return [min(m, p - r) for r in range(p)]


def interleaved_peak_chunks(p: int, v: int, m: int, r: int = 0) -> int:
    """Chunk-forwards stored at rank r's peak: warm-up plus the one in flight."""
    return min(interleaved_warmup(p, v, m, r) + 1, m * v)


def interleaved_factor(p: int, v: int) -> float:
    """Rank-0 activations of interleaved 1F1B relative to L A: 1 + (p - 1)/(p v)."""
    return 1.0 + (p - 1) / (p * v)


def bubble_wall(p: int, m: int) -> float:
    """GPipe / 1F1B bubble as a fraction of wall time: (p - 1)/(m + p - 1)."""
    return (p - 1) / (m + p - 1)


def bubble_of_ideal(p: int, m: int, v: int = 1) -> float:
    """1F1B / interleaved bubble relative to the ideal time: (p - 1)/(v m)."""
    return (p - 1) / (v * m)


def one_f_one_b_makespan(p: int, m: int, t_f: float, t_b: float) -> float:
    """(m + p - 1)(T_F + T_B) with uniform stages and zero P2P."""
    return (m + p - 1) * (t_f + t_b)
