"""Alpha-beta cost of collectives on n ranks (ring algorithms): alpha = latency per step,
beta = bandwidth per rank per direction. Bytes are the full buffer per rank.
Source: Thakur et al., "Optimization of collective communication operations in MPICH" (2005)."""

from __future__ import annotations

import numpy as np


def all_reduce_s(n, nbytes, bandwidth, latency_s):
    """Ring all-reduce: 2(n-1) steps, 2(n-1)/n of the buffer over each link."""
    n = np.asarray(n, dtype=float)
    return np.where(n > 1, 2 * (n - 1) * latency_s + 2 * (n - 1) / n * nbytes / bandwidth, 0.0)


def all_gather_s(n, nbytes, bandwidth, latency_s):
    """Ring all-gather (or reduce-scatter) of an nbytes result: n-1 steps."""
    n = np.asarray(n, dtype=float)
    return np.where(n > 1, (n - 1) * latency_s + (n - 1) / n * nbytes / bandwidth, 0.0)


reduce_scatter_s = all_gather_s


def p2p_s(nbytes, bandwidth, latency_s):
    """One point-to-point transfer."""
    return latency_s + np.asarray(nbytes, dtype=float) / bandwidth


BUS_FACTOR = {"all-reduce": 2.0, "all-gather": 1.0, "reduce-scatter": 1.0, "all-to-all": 1.0}


def bus_s(kind: str, n: int, nbytes: float, bus_bandwidth: float, latency_s: float) -> float:
    """One NCCL ring collective on n ranks as nccl-tests measures it: a fixed latency plus the
    bus traffic at the achieved bus bandwidth; all-reduce moves 2(n-1)/n of the buffer,
    all-gather and reduce-scatter (n-1)/n of the full buffer."""
    if n <= 1:
        return 0.0
    return latency_s + BUS_FACTOR[kind] * (n - 1) / n * nbytes / bus_bandwidth


RING = {"all-reduce": all_reduce_s, "all-gather": all_gather_s,
        "reduce-scatter": reduce_scatter_s}


def all_to_all_s(n: int, nbytes: float, members: int, in_node_bandwidth: float,
                 nic_bandwidth: float, latency_s: float) -> float:
    """NCCL all-to-all among n ranks, each sending nbytes split evenly over all n (its own share
    stays): `members` of the n ranks share this rank's node. The in-node share (members - 1)/n
    moves at the in-node bus bandwidth, the off-node share (n - members)/n through this rank's
    NIC, both at once (nccl-tests: all-to-all bus bandwidth = algbw (n-1)/n)."""
    if n <= 1:
        return 0.0
    inside = (members - 1) / n * nbytes / in_node_bandwidth
    outside = (n - members) / n * nbytes / nic_bandwidth if n > members else 0.0
    return latency_s + np.maximum(inside, outside)      # nbytes may be an array
