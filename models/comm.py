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
