"""The one costing engine for every parallel method (docs/chiplet.md §5.3).

A collective is a list of steps of point-to-point transfers (src, dst, elements); concurrent
groups (every row, every tile ...) share a step. Each transfer is routed with XY dimension-order
routing and its elements are added to every directed link on its path. Then

    step time       = max link load / b + max hops x alpha_hop
    collective time = sum over steps
    NoP energy      = sum of bytes x 8 x hops x e_hop

Costs are linear in the transfer sizes, so a schedule is costed once at unit size and cached;
`CollectiveCost` keeps the two sums (load, hops) that turn into seconds for any b, alpha and
chunk. Nodes are numbered i * cols + j for die (row i, column j).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import InputError

EAST, WEST, SOUTH, NORTH = range(4)   # link direction out of a node: j+1, j-1, i+1, i-1
STREAMS = ("row", "col", "mesh")      # link classes: row links, column links, both


@dataclass(frozen=True)
class Mesh:
    rows: int    # N1
    cols: int    # N2

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise InputError(f"grid {self.rows}x{self.cols}: both dimensions must be >= 1")

    @property
    def P(self) -> int:
        return self.rows * self.cols

    @property
    def n_links(self) -> int:
        return 4 * self.P

    @property
    def square(self) -> bool:
        return self.rows == self.cols

    def node(self, i, j):
        return np.asarray(i) * self.cols + np.asarray(j)

    def row_lines(self) -> np.ndarray:
        """(rows, cols) node ids: line i is row i, west to east."""
        return np.arange(self.P).reshape(self.rows, self.cols)

    def col_lines(self) -> np.ndarray:
        """(cols, rows) node ids: line j is column j, north to south."""
        return self.row_lines().T.copy()

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}"


# ---- routing ---------------------------------------------------------------------------------

def route(mesh: Mesh, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """XY routing of every transfer: (transfer index per link use, link id, hops per transfer).
    A link id is node * 4 + direction of the link leaving that node."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    si, sj = np.divmod(src, mesh.cols)
    di, dj = np.divmod(dst, mesh.cols)
    dx, dy = dj - sj, di - si
    nx, ny = np.abs(dx), np.abs(dy)
    idx = np.arange(len(src))

    def walk(n, i0, j0, step_i, step_j, direction):
        t_idx = np.repeat(idx, n)
        t = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)   # 0..n-1 within a transfer
        i = i0[t_idx] + step_i[t_idx] * t
        j = j0[t_idx] + step_j[t_idx] * t
        return t_idx, (i * mesh.cols + j) * 4 + direction[t_idx]

    zero = np.zeros_like(dx)
    tx, lx = walk(nx, si, sj, zero, np.sign(dx), np.where(dx > 0, EAST, WEST))     # X first
    ty, ly = walk(ny, si, dj, np.sign(dy), zero, np.where(dy > 0, SOUTH, NORTH))   # then Y
    return np.concatenate([tx, ty]), np.concatenate([lx, ly]), nx + ny


# ---- schedules -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    """Transfers of one collective by step class: step index, source, destination and
    elements each; `repeat[s]` identical steps of class s run one after another (a ring's
    rounds are one class: costed once, times its count). `latency_hops[s]` > 0 replaces the
    routed max hops of step s (pipelined chains)."""
    name: str
    n_steps: int
    step: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    elems: np.ndarray
    latency_hops: np.ndarray
    repeat: np.ndarray

    def __add__(self, other: "Schedule") -> "Schedule":
        """Run `other` after `self` (its steps follow)."""
        return Schedule(self.name, self.n_steps + other.n_steps,
                        np.concatenate([self.step, other.step + self.n_steps]),
                        np.concatenate([self.src, other.src]),
                        np.concatenate([self.dst, other.dst]),
                        np.concatenate([self.elems, other.elems]),
                        np.concatenate([self.latency_hops, other.latency_hops]),
                        np.concatenate([self.repeat, other.repeat]))

    def stepwise(self) -> "Schedule":
        """The same collective with every repeated step spelled out (the reference the step
        classes are tested against)."""
        steps = [(self.src[self.step == s], self.dst[self.step == s],
                  self.elems[self.step == s]) for s in range(self.n_steps)]
        order = np.repeat(np.arange(self.n_steps), self.repeat.astype(int))
        return _schedule(self.name, [steps[s] for s in order], self.latency_hops[order])


def sequence(name: str, schedules: list[Schedule]) -> Schedule:
    """The schedules run one after another, concatenated at once (chaining `+` would copy the
    growing arrays each time)."""
    if not schedules:
        return _schedule(name, [])
    offsets = np.cumsum([0] + [s.n_steps for s in schedules[:-1]])
    cat = lambda f: np.concatenate([getattr(s, f) for s in schedules])  # noqa: E731
    return Schedule(name, int(sum(s.n_steps for s in schedules)),
                    np.concatenate([s.step + o for s, o in zip(schedules, offsets)]),
                    cat("src"), cat("dst"), cat("elems"), cat("latency_hops"), cat("repeat"))


def _schedule(name: str, steps: list, latency_hops=None, repeat=None) -> Schedule:
    """steps: per step class (sources, destinations, elements per transfer: a number or one
    per transfer); repeat: how many times each class runs (default once)."""
    n = len(steps)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return Schedule(name, 0, z, z, z, np.zeros(0), np.zeros(0), np.zeros(0))
    step = np.concatenate([np.full(len(s), k) for k, (s, _, _) in enumerate(steps)])
    src = np.concatenate([np.asarray(s, dtype=np.int64) for s, _, _ in steps])
    dst = np.concatenate([np.asarray(d, dtype=np.int64) for _, d, _ in steps])
    elems = np.concatenate([np.broadcast_to(np.asarray(e, dtype=float), (len(s),))
                            for s, _, e in steps])
    lat = np.zeros(n) if latency_hops is None else np.asarray(latency_hops, dtype=float)
    rep = np.ones(n) if repeat is None else np.asarray(repeat, dtype=float)
    return Schedule(name, n, step, src, dst, elems, lat, rep)


def ring(groups: np.ndarray, piece: float, rounds: int, bidirectional: bool = False,
         name: str = "ring") -> Schedule:
    """`rounds` steps in which every member of each cyclic order (a row of `groups`) sends
    `piece` to the next member (ring all-gather and reduce-scatter: n-1 rounds). Bidirectional:
    half the piece goes each way."""
    groups = np.atleast_2d(groups)
    nxt = np.roll(groups, -1, axis=1).ravel()
    here = groups.ravel()
    if bidirectional:
        prv = np.roll(groups, 1, axis=1).ravel()
        one = (np.concatenate([here, here]), np.concatenate([nxt, prv]), piece / 2)
    else:
        one = (here, nxt, piece)
    return _schedule(name, [one] if rounds else [], repeat=[rounds] if rounds else None)


def ring_all_reduce(groups: np.ndarray, volume: float, bidirectional: bool = False,
                    name: str = "ring all-reduce") -> Schedule:
    """Reduce-scatter then all-gather of `volume` elements per member: 2(n-1) steps of V/n."""
    n = np.atleast_2d(groups).shape[1]
    return ring(groups, volume / n, 2 * (n - 1), bidirectional, name)


def line_all_gather(lines: np.ndarray, piece: float, name: str = "line all-gather") -> Schedule:
    """Bidirectional pipelined all-gather along each line (a row of `lines`, in path order):
    step s = 1..n-1, member k forwards the piece that started s-1 places behind it, both ways.
    The end links carry (n-1) pieces, one per step."""
    lines = np.atleast_2d(lines)
    n = lines.shape[1]
    steps = []
    for s in range(1, n):
        right = np.arange(s - 1, n - 1)            # k -> k+1, piece from k-s+1 >= 0
        left = np.arange(1, n - s + 1)             # k -> k-1, piece from k+s-1 <= n-1
        steps.append((np.concatenate([lines[:, right].ravel(), lines[:, left].ravel()]),
                      np.concatenate([lines[:, right + 1].ravel(), lines[:, left - 1].ravel()]),
                      piece))
    return _schedule(name, steps)


def line_reduce_scatter(lines: np.ndarray, piece: float,
                        name: str = "line reduce-scatter") -> Schedule:
    """Bidirectional pipelined reduce-scatter along each line: partial sums for member d flow
    towards d from both ends, accumulating; at step s link k->k+1 carries the block of member
    k+n-s (k < s) and link k->k-1 that of member k-n+s (k >= n-s). n-1 steps, one piece per link
    per step."""
    lines = np.atleast_2d(lines)
    n = lines.shape[1]
    steps = []
    for s in range(1, n):
        right = np.arange(0, min(s, n - 1))
        left = np.arange(max(n - s, 1), n)
        steps.append((np.concatenate([lines[:, right].ravel(), lines[:, left].ravel()]),
                      np.concatenate([lines[:, right + 1].ravel(), lines[:, left - 1].ravel()]),
                      piece))
    return _schedule(name, steps)


def line_broadcast(lines: np.ndarray, root: int, piece: float, reduce: bool = False,
                   spacing: int = 1, name: str = "line broadcast") -> Schedule:
    """Pipelined broadcast of `piece` from member `root` of each line to all others (SUMMA):
    every link away from the root carries the piece once, and the step's latency is the
    farthest member's distance (members `spacing` hops apart). reduce=True runs it backwards:
    partial sums flow to the root."""
    lines = np.atleast_2d(lines)
    n = lines.shape[1]
    k_right = np.arange(root, n - 1)       # k -> k+1
    k_left = np.arange(1, root + 1)        # k -> k-1
    a = np.concatenate([lines[:, k_right].ravel(), lines[:, k_left].ravel()])
    b = np.concatenate([lines[:, k_right + 1].ravel(), lines[:, k_left - 1].ravel()])
    src, dst = (b, a) if reduce else (a, b)
    return _schedule(name, [(src, dst, piece)],
                     latency_hops=[spacing * max(root, n - 1 - root)])


# ---- costing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CollectiveCost:
    """A schedule costed at its own transfer sizes (elements; multiply by bytes per element).

    load        sum over steps of the maximum directed-link load (elements)
    hops        sum over steps of the maximum hops (latency steps x alpha_hop)
    elem_hops   sum of elements x hops (NoP energy)
    elems       sum of transfer elements (bytes read from and written to SRAM)
    per_die     elements received, averaged over all dies of the mesh (the §5 per-die volume)
    link_load   total elements per directed link over the whole collective
    """
    load: float
    hops: float
    elem_hops: float
    elems: float
    per_die: float
    link_load: np.ndarray

    def scaled(self, factor: float) -> "CollectiveCost":
        return CollectiveCost(self.load * factor, self.hops, self.elem_hops * factor,
                              self.elems * factor, self.per_die * factor,
                              self.link_load * factor)


def cost(mesh: Mesh, sched: Schedule) -> CollectiveCost:
    """Route every transfer and sum the step times' two terms (§5.3)."""
    if sched.n_steps == 0:
        return CollectiveCost(0.0, 0.0, 0.0, 0.0, 0.0, np.zeros(mesh.n_links))
    t_idx, links, hops = route(mesh, sched.src, sched.dst)
    key = sched.step[t_idx] * mesh.n_links + links
    load = np.bincount(key, weights=sched.elems[t_idx],
                       minlength=sched.n_steps * mesh.n_links).reshape(sched.n_steps, -1)
    max_hops = np.zeros(sched.n_steps)
    np.maximum.at(max_hops, sched.step, hops.astype(float))
    max_hops = np.where(sched.latency_hops > 0, sched.latency_hops, max_hops)
    rep = sched.repeat                          # each step class costed once, times its count
    elems = sched.elems * rep[sched.step]
    return CollectiveCost(float((load.max(axis=1) * rep).sum()), float((max_hops * rep).sum()),
                          float((elems * hops).sum()), float(elems.sum()),
                          float(elems.sum() / mesh.P), rep @ load)


def all_to_all(mesh: Mesh, send, receive, volume: float) -> CollectiveCost:
    """One step in which `volume` elements in all go from every die to every die, die s sending
    in proportion to send[s] and die d receiving in proportion to receive[d] (MoE dispatch and
    combine), XY-routed, in closed form: O(P) instead of routing P^2 transfers.

    The east link (r, c) -> (r, c+1) carries what row r's dies up to column c send to the
    columns beyond c, the south link (r, c) -> (r+1, c) what rows up to r send to column c's
    dies below r; west and north mirror them. `all_to_all_schedule` spells the transfers out
    (the reference the closed form is tested against)."""
    u = np.asarray(send, dtype=float).reshape(mesh.rows, mesh.cols)
    w = np.asarray(receive, dtype=float).reshape(mesh.rows, mesh.cols)
    u, w = volume * u / u.sum(), w / w.sum()       # u: elements sent; w: share received
    n1, n2 = mesh.rows, mesh.cols
    link = np.zeros((n1, n2, 4))
    w_cols, w_rows = w.sum(axis=0), w.sum(axis=1)
    u_west = np.cumsum(u, axis=1)[:, :-1]                       # row r, columns <= c
    u_east = u.sum(axis=1, keepdims=True) - u_west              # row r, columns > c
    to_east = np.cumsum(w_cols[::-1])[::-1][1:]                 # received beyond column c
    to_west = np.cumsum(w_cols)[:-1]                            # received up to column c
    link[:, :-1, EAST] = u_west * to_east
    link[:, 1:, WEST] = u_east * to_west
    u_north = np.cumsum(u.sum(axis=1))[:-1]                     # sent from rows <= r
    u_south = u.sum() - u_north
    below = np.cumsum(w[::-1], axis=0)[::-1][1:]                # column c, rows > r
    above = np.cumsum(w, axis=0)[:-1]                           # column c, rows <= r
    link[:-1, :, SOUTH] = u_north[:, None] * below
    link[1:, :, NORTH] = u_south[:, None] * above
    i, j = np.arange(n1), np.arange(n2)
    u_rows, u_cols = u.sum(axis=1), u.sum(axis=0)
    elem_hops = (u_rows @ np.abs(i[:, None] - i[None, :]) @ w_rows
                 + u_cols @ np.abs(j[:, None] - j[None, :]) @ w_cols)
    return CollectiveCost(float(link.max()), _farthest(u > 0, w > 0), float(elem_hops),
                          float(volume), float(volume / mesh.P), link.ravel())


def _farthest(a: np.ndarray, b: np.ndarray) -> float:
    """Largest L1 distance from a die where `a` holds to one where `b` holds."""
    ia, ja = np.nonzero(a)
    ib, jb = np.nonzero(b)
    return float(max(max(sa * ia + sb * ja) - min(sa * ib + sb * jb)
                     for sa in (1, -1) for sb in (1, -1)))


def all_to_all_schedule(mesh: Mesh, send, receive, volume: float,
                        name: str = "all-to-all") -> Schedule:
    """`all_to_all` as one step of P^2 point-to-point transfers (the test reference)."""
    u = np.asarray(send, dtype=float).ravel()
    w = np.asarray(receive, dtype=float).ravel()
    src, dst = np.divmod(np.arange(mesh.P ** 2), mesh.P)
    elems = volume * (u / u.sum())[src] * (w / w.sum())[dst]
    keep = elems > 0
    return _schedule(name, [(src[keep], dst[keep], elems[keep])])


# ---- layouts ---------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def hamiltonian_order(rows: int, cols: int) -> tuple[tuple[int, ...], int]:
    """A cyclic order of all dies for the 1D ring and the hops of its closing edge.

    The mesh is bipartite, so a one-hop Hamiltonian cycle exists only when P is even (rows and
    cols >= 2): row 0 west to east, a serpentine over columns 1.. in the other rows, back up
    column 0. For odd P a Hamiltonian path from (0,0) to (1,1) closes with one 2-hop edge."""
    if rows < 2 or cols < 2:
        return tuple(range(rows * cols)), rows * cols - 1      # a line: the ring wraps around
    if rows % 2 and cols % 2 == 0:                             # make the row count even
        order, closing = hamiltonian_order(cols, rows)
        return tuple(int((n % rows) * cols + n // rows) for n in order), closing
    path = [(0, j) for j in range(cols)]
    if rows % 2 == 0:
        for i in range(1, rows):
            cs = range(cols - 1, 0, -1) if i % 2 else range(1, cols)
            path += [(i, j) for j in cs]
        path += [(i, 0) for i in range(rows - 1, 0, -1)]
    else:                                                       # both odd: end at (1, 1)
        path = [(0, j) for j in range(cols)] + [(i, cols - 1) for i in range(1, rows)]
        for i in range(rows - 1, 2, -1):                        # rows rows-1..3 serpentine
            cs = range(cols - 2, -1, -1) if (rows - 1 - i) % 2 == 0 else range(0, cols - 1)
            path += [(i, j) for j in cs]
        for j in range(cols - 2, 1, -1):                        # rows 2 and 1, column pairs
            pair = [(2, j), (1, j)] if (cols - 2 - j) % 2 == 0 else [(1, j), (2, j)]
            path += pair
        path += [(2, 1), (2, 0), (1, 0), (1, 1)]
    order = tuple(i * cols + j for i, j in path)
    (i0, j0), (i1, j1) = path[-1], path[0]
    return order, abs(i0 - i1) + abs(j0 - j1)


def io_hops(rows: int, cols: int, sides: int) -> np.ndarray:
    """h(i, j): hops a DRAM byte of die (i, j) travels, including the hop into the I/O die.
    Two sides: I/O dies on the west and east edges (n_io = 2 N1); four: all edges."""
    i, j = np.indices((rows, cols))
    h = np.minimum(j + 1, cols - j)
    if sides == 4:
        h = np.minimum(h, np.minimum(i + 1, rows - i))
    elif sides != 2:
        raise InputError(f"I/O dies sit on 2 or 4 sides, not {sides}")
    return h


def n_io(rows: int, cols: int, sides: int) -> int:
    return 2 * rows if sides == 2 else 2 * (rows + cols)


def dram_link_load(mesh: Mesh, sides: int) -> float:
    """Largest mesh-link load when every die receives one unit of DRAM data from its nearest
    I/O die, routed XY from the boundary die the I/O die is attached to (route_dram). The
    attachment links themselves are the t_io bound."""
    i, j = np.indices((mesh.rows, mesh.cols))
    dist = [j, mesh.cols - 1 - j]                       # west, east
    entry = [(i, 0 * j), (i, 0 * j + mesh.cols - 1)]
    if sides == 4:
        dist += [i, mesh.rows - 1 - i]                  # north, south
        entry += [(0 * i, j), (0 * i + mesh.rows - 1, j)]
    side = np.argmin(np.stack(dist), axis=0)
    entry_i = np.choose(side, [e[0] for e in entry])
    entry_j = np.choose(side, [e[1] for e in entry])
    _, links, _ = route(mesh, mesh.node(entry_i, entry_j).ravel(), mesh.node(i, j).ravel())
    return float(np.bincount(links, minlength=mesh.n_links).max()) if len(links) else 0.0
