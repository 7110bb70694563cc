"""Bytes and seconds of one configuration (docs/pipeline.md §3, §4, §7): what every virtual
stage stores, what every op costs, model states per device, communication, FLOPs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..comm import all_gather_s, all_reduce_s, p2p_s, reduce_scatter_s
from ..errors import InputError
from ..shapes import ModelShape
from . import memory as mem
from . import schedules
from .config import Hardware, Layout, Policy, check_layout


@dataclass(frozen=True)
class Terms:
    """Everything the simulator needs about one configuration, in SI units."""
    shape: ModelShape
    layout: Layout
    hw: Hardware
    policy: Policy

    def __post_init__(self) -> None:
        if self.shape.is_moe:
            raise InputError(f"{self.shape.name} is an MoE model; the pipeline study models "
                             f"dense layers only")
        check_layout(self.shape, self.layout, self.hw, self.policy.schedule)

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
    def nvs(self) -> int:
        return self.p * self.chunks

    @property
    def layers_per_chunk(self) -> int:
        return self.shape.layers // self.nvs

    @cached_property
    def dev_of(self) -> tuple[int, ...]:
        return schedules.placement(self.policy.schedule, self.p, self.layout.vpp)

    # ---- activations (§4) ------------------------------------------------------------------
    def _act(self, recompute: str) -> float:
        lay = self.layout
        return mem.layer_activation_bytes(self.shape, lay.seq, lay.mbs, lay.tp, lay.sp,
                                          lay.flash, recompute)

    @cached_property
    def a_full(self) -> float:
        """A_layer without any recompute: also the working buffer and a recompute transient."""
        return self._act("none")

    @cached_property
    def a_layer(self) -> float:
        """Stored bytes per layer under the uniform policy (selective drops s^2 tensors)."""
        return self._act("selective" if self.policy.recompute == "selective" else "none")

    @cached_property
    def ckpt(self) -> float:
        lay = self.layout
        return mem.checkpoint_bytes(self.shape, lay.seq, lay.mbs, lay.tp, lay.sp)

    @cached_property
    def omega(self) -> float:
        lay = self.layout
        held = mem.split_backward_bytes(self.shape, lay.seq, lay.mbs, lay.tp, lay.sp)
        return min(1.0, held / self.a_layer)

    @cached_property
    def extras(self) -> tuple[float, ...]:
        """Stage extras per virtual stage and micro-batch (§4.4)."""
        lay = self.layout
        out = [0.0] * self.nvs
        out[0] += mem.first_stage_bytes(self.shape, lay.seq, lay.mbs, lay.tp, lay.sp)
        out[-1] += mem.last_stage_bytes(self.shape, lay.seq, lay.mbs, lay.tp)
        return tuple(out)

    # ---- model states (§3) -----------------------------------------------------------------
    @cached_property
    def state_bytes(self) -> mem.StateBytes:
        pol = self.policy
        return mem.state_bytes(pol.zero, pol.dist_opt, self.layout.dp, pol.fp32_grads)

    @cached_property
    def params(self) -> tuple[float, ...]:
        """P_dev(r): parameters per device (one TP shard)."""
        t, lc = self.layout.tp, self.layers_per_chunk
        same = self.dev_of[0] == self.dev_of[-1]
        out = [0.0] * self.p
        for d in self.dev_of:
            out[d] += lc * self.shape.dense_layer_params / t
        out[self.dev_of[0]] += self.shape.embedding_params / t
        out[self.dev_of[-1]] += mem.head_params(self.shape, same) / t
        return tuple(out)

    def chunk_params(self, vs: int) -> float:
        """Parameters of one virtual stage (one TP shard), embedding/head included."""
        t = self.layout.tp
        x = self.layers_per_chunk * self.shape.dense_layer_params / t
        if vs == 0:
            x += self.shape.embedding_params / t
        if vs == self.nvs - 1:
            x += mem.head_params(self.shape, self.dev_of[0] == self.dev_of[-1]) / t
        return x

    def weights(self, d: int) -> float:
        return self.state_bytes.weights * self.params[d]

    def grads(self, d: int) -> float:
        return self.state_bytes.grads * self.params[d]

    def optimizer(self, d: int) -> float:
        return self.state_bytes.optimizer * self.params[d]

    # ---- times (§7) ------------------------------------------------------------------------
    def _tp_comm_s(self) -> float:
        """Exposed TP communication of one layer in one direction: 2 all-reduces of 2sbh
        bytes (SP: 2 all-gathers + 2 reduce-scatters)."""
        lay = self.layout
        if lay.tp == 1:
            return 0.0
        x = 2.0 * lay.seq * lay.mbs * self.shape.hidden
        bw, lat = self._bw(lay.tp)
        if lay.sp:
            return float(2 * all_gather_s(lay.tp, x, bw, lat)
                         + 2 * reduce_scatter_s(lay.tp, x, bw, lat))
        return float(2 * all_reduce_s(lay.tp, x, bw, lat))

    def _bw(self, span: int) -> tuple[float, float]:
        """Bandwidth and latency of a group spanning `span` consecutive ranks."""
        if span <= self.hw.gpus_per_node:
            return self.hw.gpu.interconnect_bandwidth, self.hw.gpu.interconnect_latency_s
        return self.hw.node.inter_node_bandwidth, self.hw.node.inter_node_latency_s

    @cached_property
    def layer_flops(self) -> float:
        """Forward FLOPs of one layer for one micro-batch (all TP shards)."""
        lay = self.layout
        return self.shape.layer_forward_flops_per_token(lay.seq) * lay.seq * lay.mbs

    @cached_property
    def selective_flops(self) -> float:
        """Selective recompute: the attention core's forward again, 4 b s^2 h_q per layer
        (nothing with flash attention, which never stores it)."""
        lay = self.layout
        if self.policy.recompute != "selective" or lay.flash:
            return 0.0
        return lay.mbs * lay.seq * lay.seq * self.shape.attention_flops_per_token_per_ctx

    @cached_property
    def t_compute_layer(self) -> float:
        return self.layer_flops / (self.layout.tp * self.hw.achieved_flops)

    @cached_property
    def t_f_layer(self) -> float:
        """T_F of one layer: compute at eta plus exposed TP communication."""
        return self.t_compute_layer + self._tp_comm_s()

    @cached_property
    def t_b_layer(self) -> float:
        """T_B (input gradient) of one layer: T_F's compute (x a measured ratio), the same TP
        communication, plus selective recompute."""
        sel = self.selective_flops / (self.layout.tp * self.hw.achieved_flops)
        return self.t_compute_layer * self.layout.tb_ratio + self._tp_comm_s() + sel

    @cached_property
    def t_w_layer(self) -> float:
        """T_W (weight gradient) of one layer: T_F's compute (x a measured ratio)."""
        return self.t_compute_layer * self.layout.tw_ratio

    @cached_property
    def t_head(self) -> float:
        """LM head forward: 2 b s h V FLOPs on one TP shard (as long in B and in W)."""
        lay = self.layout
        return 2.0 * lay.mbs * lay.seq * self.shape.hidden * self.shape.vocab / (
            lay.tp * self.hw.achieved_flops)

    @cached_property
    def chunk_times(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """(T_F, T_B, T_W) per virtual stage; the last one adds the LM head."""
        lc = self.layers_per_chunk
        tf = [lc * self.t_f_layer] * self.nvs
        tb = [lc * self.t_b_layer] * self.nvs
        tw = [lc * self.t_w_layer] * self.nvs
        tf[-1] += self.t_head
        tb[-1] += self.t_head * self.layout.tb_ratio
        tw[-1] += self.t_head * self.layout.tw_ratio
        return tuple(tf), tuple(tb), tuple(tw)

    @cached_property
    def p2p_bytes(self) -> float:
        lay = self.layout
        return 2.0 * lay.seq * lay.mbs * self.shape.hidden / (lay.tp if lay.sp else 1)

    @cached_property
    def lags(self) -> tuple[float, ...]:
        """P2P time per boundary (r, r+1), index p-1 the wrap p-1 -> 0: alpha + 2sbh/beta
        (/t with SP); over the network when the two stages sit on different nodes."""
        lay, gpn = self.layout, self.hw.gpus_per_node
        span = lay.tp * lay.dp
        out = []
        for r in range(self.p):
            hi = (r + 1) % self.p
            cross = (r * span) // gpn != (hi * span) // gpn
            bw, lat = ((self.hw.node.inter_node_bandwidth, self.hw.node.inter_node_latency_s)
                       if cross else (self.hw.gpu.interconnect_bandwidth,
                                      self.hw.gpu.interconnect_latency_s))
            out.append(float(p2p_s(self.p2p_bytes, bw, lat)))
        return tuple(out)

    @cached_property
    def dp_s(self) -> float:
        """Exposed DP gradient reduction of the busiest device: all-reduce of its gradients
        (reduce-scatter + all-gather of bf16 weights with a sharded optimizer) x (1 - overlap)."""
        d = self.layout.dp
        if d == 1:
            return 0.0
        bw, lat = self._bw(self.layout.tp * d)
        grad_bytes = 4.0 if (self.policy.fp32_grads and not self.policy.zero) else 2.0
        worst = max(self.params)
        if self.policy.zero or self.policy.dist_opt:
            t = reduce_scatter_s(d, worst * grad_bytes, bw, lat) + all_gather_s(
                d, worst * 2.0, bw, lat)
        else:
            t = all_reduce_s(d, worst * grad_bytes, bw, lat)
        return float(t) * (1.0 - self.hw.dp_overlap)

    @cached_property
    def step_s(self) -> float:
        """Optimizer step, memory bound: read and write the optimizer states, read gradients,
        write bf16 weights, at the achieved HBM bandwidth."""
        worst = max(range(self.p), key=lambda d: self.params[d])
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
            busy[d] += self.m * (tf[vs] + tb[vs] + tw[vs])
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
        """Timing ratios that steer the greedy generators: (T_F, T_B, T_W) of a middle chunk
        relative to T_F, rounded to 0.1 so that configurations differing slightly share one
        generated order. The generators ignore P2P time and the LM head; the simulator then
        replays the order with every real duration."""
        tf = self.t_f_layer
        return (1.0, round(self.t_b_layer / tf, 1), round(self.t_w_layer / tf, 1))

    def op_lists(self, cap: int | None = None) -> schedules.OpLists:
        sched = self.policy.schedule
        if sched in schedules.SPLIT:
            return schedules.build(sched, self.p, self.m, 1,
                                   cap if cap is not None else self.policy.cap,
                                   self.canonical_times(), 0.0, round(self.omega * 20) / 20)
        return schedules.build(sched, self.p, self.m, self.layout.vpp)
