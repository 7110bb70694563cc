"""One configuration, simulated: op lists + recompute marks + host transfers -> timing, memory
timeline per device, peak and binding constraint, iteration time, tokens/s, MFU, HFU
(docs/pipeline.md §5.1, §7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import closed, simulator as sim
from .costs import Terms
from .schedules import B, F, R, W, OpLists

Marks = dict   # (vs, mb) -> layers recomputed (a prefix of the chunk)


@dataclass
class Plan:
    """What is recomputed and offloaded. shared: marked layers of a chunk share one checkpoint
    and are recomputed together (Chronos-Recomp); otherwise each marked layer keeps its own
    checkpoint and is recomputed alone (Megatron's full recompute)."""
    marks: Marks = field(default_factory=dict)
    shared: bool = False
    transfers: tuple[sim.Transfer, ...] = ()
    cap: int | None = None
    host_limited: float = 0.0      # bytes per GPU an offload wanted beyond the host-RAM budget

    def copy(self) -> "Plan":
        return Plan(dict(self.marks), self.shared, tuple(self.transfers), self.cap,
                    self.host_limited)


def uniform_plan(terms: Terms, k: int | None = None) -> Plan:
    """Megatron-style full recompute of the first k layers of every chunk for every
    micro-batch, each layer its own checkpoint (k = all layers by default)."""
    sizes = terms.chunk_sizes
    if k is not None and k <= 0:
        return Plan()
    return Plan({(vs, j): int(sizes[vs]) if k is None else min(int(sizes[vs]), k)
                 for vs in range(terms.nvs) for j in range(terms.vs_micro_batches)}, False)


@dataclass
class Outcome:
    terms: Terms
    ops: OpLists
    plan: Plan
    prog: sim.Program | None        # None when built without timelines (closed.py)
    timing: sim.Timing
    memory: list[sim.DeviceMemory]
    dur: np.ndarray                 # empty when built without timelines (closed.py)
    start: np.ndarray
    end: np.ndarray

    @property
    def timelines(self) -> bool:
        return len(self.start) > 0

    @property
    def program(self) -> sim.Program:
        """The compiled program; only outcomes simulated with their timelines have one."""
        if self.prog is None:
            raise ValueError("this outcome was built without timelines (closed forms)")
        return self.prog

    def peak_label(self, d: int) -> str:
        """The op running at device d's memory peak."""
        mem = self.memory[d]
        if mem.label or mem.peak_op < 0:
            return mem.label or "-"
        return self.program.label(mem.peak_op)

    # ---- memory -------------------------------------------------------------------------
    @cached_property
    def optimizer_offloaded(self) -> tuple[bool, ...]:
        off = [False] * self.terms.p
        for t in self.plan.transfers:
            if t.what == "optimizer":
                off[t.device] = True
        return tuple(off)

    @cached_property
    def weights_offloaded(self) -> tuple[float, ...]:
        out = [0.0] * self.terms.p
        for t in self.plan.transfers:
            if t.what == "weights":
                out[t.device] += t.nbytes
        return tuple(out)

    def states(self, d: int) -> float:
        """Model states resident all iteration on device d."""
        return self.terms.resident_states(d, self.optimizer_offloaded[d]) \
            - self.weights_offloaded[d]

    @cached_property
    def peaks(self) -> tuple[float, ...]:
        """Peak bytes per device: resident states + fragmentation x dynamic peak (no reserve)."""
        frag = self.terms.hw.fragmentation
        return tuple(self.states(d) + frag * self.memory[d].peak for d in range(self.terms.p))

    @property
    def peak(self) -> float:
        return max(self.peaks)

    @property
    def binding_device(self) -> int:
        return int(np.argmax(self.peaks))

    @property
    def fits(self) -> bool:
        return self.peak <= self.terms.hw.usable_bytes * (1 + 1e-12) and self.host_ok

    @cached_property
    def host_bytes_per_gpu(self) -> tuple[float, ...]:
        """Most bytes one GPU of each pipeline device keeps in host RAM at once."""
        if not self.plan.transfers:
            return (0.0,) * self.terms.p
        out = []
        for d in range(self.terms.p):
            ev = []
            for t, (o_op, l_op) in zip(self.plan.transfers, self.program.transfer_ops):
                if t.device != d:
                    continue
                if t.after is None:    # written back after the previous step: in host at 0
                    ev += [(0.0, t.nbytes), (float(self.timing.end[l_op]), -t.nbytes)]
                else:
                    ev += [(float(self.timing.start[o_op]), t.nbytes),
                           (float(self.timing.end[l_op]), -t.nbytes)]
            ev.sort(key=lambda e: (e[0], e[1]))
            level = best = 0.0
            for _, x in ev:
                level += x
                best = max(best, level)
            out.append(best)
        return tuple(out)

    @cached_property
    def host_bytes_per_node(self) -> float:
        """Pinned host RAM the busiest node needs: the GPUs it hosts, by pipeline stage (ranks
        ordered TP fastest, then DP, then PP)."""
        lay, gpn = self.terms.layout, self.terms.hw.gpus_per_node
        per_stage = lay.stage_gpus
        nodes: dict[int, float] = {}
        for rank in range(0, lay.gpus):
            stage = rank // per_stage
            nodes[rank // gpn] = nodes.get(rank // gpn, 0.0) + self.host_bytes_per_gpu[stage]
        return max(nodes.values()) if nodes else 0.0

    @property
    def host_ok(self) -> bool:
        return self.host_bytes_per_node <= self.terms.hw.host_ram_bytes * (1 + 1e-12)

    # ---- time ---------------------------------------------------------------------------
    @property
    def makespan(self) -> float:
        return float(self.timing.makespan)

    @property
    def iteration_s(self) -> float:
        return self.makespan + self.terms.dp_s + self.terms.step_s

    @property
    def tokens_per_s(self) -> float:
        return self.terms.tokens / self.iteration_s

    @property
    def mfu(self) -> float:
        hw = self.terms.hw
        return self.terms.model_flops / (self.iteration_s * hw.gpus * hw.peak_flops)

    @cached_property
    def recompute_flops(self) -> float:
        """Recomputed FLOPs per iteration, whole cluster."""
        t = self.terms
        marked = sum(t.flops_prefix[vs, k] for (vs, _), k in self.plan.marks.items())
        sel = t.chunk_sum("selective_flops").sum() * t.vs_micro_batches
        return (marked + sel) * t.layout.dp

    @property
    def hfu(self) -> float:
        hw = self.terms.hw
        return (self.terms.model_flops + self.recompute_flops) / (
            self.iteration_s * hw.gpus * hw.peak_flops)

    @property
    def recompute_fraction(self) -> float:
        return self.recompute_flops / self.terms.model_flops

    @property
    def bubble(self) -> float:
        """Mean over devices of 1 - busy / makespan."""
        ms = self.makespan
        return float(np.mean([1.0 - float(b) / ms for b in self.timing.busy]))

    @property
    def stall_s(self) -> float:
        """Time compute waited for late reloads, summed over devices, plus optimizer-step
        waits."""
        step = sum(max(0.0, float(r) - float(e)) for r, e in
                   zip(self.timing.step_ready, self.timing.device_end))
        return float(sum(float(s) for s in self.timing.stall)) + step

    # ---- binding constraint ---------------------------------------------------------------
    def category_bytes(self, d: int) -> dict[str, float]:
        """Bytes by category on device d at its peak (fragmentation applied to dynamic ones)."""
        t, frag = self.terms, self.terms.hw.fragmentation
        dyn = self.memory[d].by_category()
        out = {"weights": t.weights(d) - self.weights_offloaded[d], "grads": t.grads(d),
               "optimizer": 0.0 if self.optimizer_offloaded[d] else t.optimizer(d)}
        for i, name in enumerate(sim.CATEGORIES):
            out[name] = frag * float(dyn[i])
        return out

    def binding(self) -> dict:
        """The device with the highest peak, the op running then, the largest category."""
        d = self.binding_device
        cats = self.category_bytes(d)
        states = cats["weights"] + cats["grads"] + cats["optimizer"]
        dynamic = {k: v for k, v in cats.items() if k not in ("weights", "grads", "optimizer")}
        top = max(dynamic, key=lambda k: dynamic[k])
        category = "model states" if states >= dynamic[top] else top
        return {"device": d, "peak_bytes": self.peaks[d], "category": category,
                "op": self.peak_label(d),
                "time_s": self.memory[d].peak_time,
                "usable_bytes": self.terms.hw.usable_bytes}


def _marks_per_op(terms: Terms, prog: sim.Program, plan: Plan) -> np.ndarray:
    """Recomputed layers of every op's (vs, mb) (0 for copies and unmarked chunks)."""
    arr = prog.arrays
    if not plan.marks:
        return np.zeros(prog.n, dtype=int)
    k = np.zeros((terms.nvs, terms.vs_micro_batches), dtype=int)
    for (v, j), x in plan.marks.items():
        k[v, j] = x
    return np.where(arr.mb >= 0, k[arr.vs, np.maximum(arr.mb, 0)], 0)


def _transfer_sizes(prog: sim.Program, plan: Plan) -> np.ndarray:
    sizes = np.zeros(prog.n)
    for t, (o_op, l_op) in zip(plan.transfers, prog.transfer_ops):
        sizes[o_op] = sizes[l_op] = t.nbytes
    return sizes


def op_durations(terms: Terms, prog: sim.Program, plan: Plan, k: np.ndarray) -> np.ndarray:
    """Duration of every op: chunk times by kind and virtual stage, R = k layer forwards,
    copies = bytes / host-link bandwidth."""
    tf, tb, tw = (np.asarray(x) for x in terms.chunk_times)
    arr = prog.arrays
    vs = np.clip(arr.vs, 0, terms.nvs - 1)
    b = tb[vs] if prog.ops.split else tb[vs] + tw[vs]
    dur = np.select([arr.kind == F, arr.kind == B, arr.kind == W, arr.kind == R],
                    [tf[vs], b, tw[vs], terms.recompute_prefix[vs, k]],
                    _transfer_sizes(prog, plan) / terms.hw.link_bandwidth)
    a2a = terms.chunk_all_to_all
    for (vf, _), (vb, jb) in prog.ops.pairs:
        # each half's all-to-alls hide under the other's compute (§5.5)
        comm = a2a[vf] + a2a[vb]
        dur[prog.index[(B, vb, jb)]] -= min(comm, tf[vf] + tb[vb] - comm)
    return dur


def object_bytes(terms: Terms, shared: bool, vs, k):
    """(stored activations after F, recompute transient before B, held from B to W) of
    virtual stage vs's chunk-micro-batch with its first k layers recomputed, without stage
    extras (vs and k may be arrays)."""
    vs, k = np.asarray(vs), np.asarray(k)
    whole, ck = terms.chunk_stored[vs], terms.ckpt
    marked = terms.stored_prefix[vs, k]
    # R re-materialises the marked layers from their checkpoint, which is the first one's
    # input (part of A_layer): the segment minus ckpt when shared, layer by layer otherwise
    if shared:
        stored = np.where(k > 0, whole - marked + ck, whole)
        transient = np.where(k > 0, terms.full_prefix[vs, k] - ck, 0.0)
    else:
        stored = whole - marked + k * ck
        transient = np.where(k > 0, terms.full_max_prefix[vs, k] - ck, 0.0)
    return stored, transient, terms.chunk_held[vs]


def op_bytes(terms: Terms, prog: sim.Program, plan: Plan, k: np.ndarray) -> sim.OpBytes:
    """Allocations at start / frees at end of every op, by category (§5.1 memory rules)."""
    arr = prog.arrays
    n, nc = prog.n, len(sim.CATEGORIES)
    vs = np.clip(arr.vs, 0, terms.nvs - 1)
    stored, transient, held = object_bytes(terms, plan.shared, vs, k)
    extras = np.asarray(terms.extras)[vs]
    work = terms.work_bytes[arr.dev]
    isf, isb, isw = (arr.kind == F), (arr.kind == B), (arr.kind == W)
    isr = (arr.kind == R) & (k > 0)           # an unmarked R is a zero-length placeholder
    compute = isf | isb | isw | isr
    alloc, free = np.zeros((n, nc)), np.zeros((n, nc))
    alloc[:, sim.WORK] = free[:, sim.WORK] = np.where(compute, work, 0.0)
    alloc[:, sim.ACT] = np.where(isf, stored, 0.0)
    alloc[:, sim.EXTRA] = np.where(isf, extras, 0.0)
    alloc[:, sim.RECOMP] = np.where(isr, transient, 0.0)
    free[:, sim.ACT] = np.where(isb, stored, 0.0)
    free[:, sim.EXTRA] = np.where(isb, extras, 0.0)
    free[:, sim.RECOMP] = np.where(isb, transient, 0.0)
    if prog.ops.split:
        free[:, sim.HELD] = np.where(isb, -held, np.where(isw, held, 0.0))
    initial = np.zeros((prog.p, nc))
    for t, (o_op, l_op) in zip(plan.transfers, prog.transfer_ops):
        cat = {"activations": sim.ACT, "held": sim.HELD, "optimizer": sim.OPT_RELOAD,
               "weights": sim.W_RELOAD}[t.what]
        free[o_op, cat] = t.nbytes
        alloc[l_op, cat] = t.nbytes
        if t.after is None:
            initial[t.device, cat] += t.nbytes
    return sim.OpBytes(alloc, free, initial)


def simulate(terms: Terms, ops: OpLists | None = None, plan: Plan | None = None,
             timelines: bool = True) -> Outcome:
    """Run one configuration through the simulator (op lists built when not given); without
    timelines, through the closed forms where they apply (closed.py: the same numbers, no
    start/end times, memory events or compiled program)."""
    plan = plan or Plan()
    uses_r = bool(plan.marks) or any(key is not None and key[0] == R for t in plan.transfers
                                     for key in (t.trigger, t.consumer))
    if not timelines:
        out = closed.outcome(terms, ops, plan, uses_r)
        if out is not None:
            return out
    if ops is None:
        ops = terms.op_lists()
    prog = sim.compile_program(ops, plan.transfers, uses_r)
    k = _marks_per_op(terms, prog, plan)
    dur = op_durations(terms, prog, plan, k)
    timing = sim.run(prog, dur.tolist(), terms.lags)
    start, end = np.asarray(timing.start), np.asarray(timing.end)
    nbytes = op_bytes(terms, prog, plan, k)
    memory = sim.all_device_memory(prog, start, end, nbytes)
    return Outcome(terms, ops, plan, prog, timing, memory, dur, start, end)
