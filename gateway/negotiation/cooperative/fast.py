"""Fast exact evaluation of the contract space (numpy): the same numbers as `evaluate.reference`.

Why it is fast. Between two clips the greedy battery moves by a "free increment" Δ(d) that
does not depend on its state, and each unclipped period costs the same whatever the state
(`battery.py`). So from a state x at period j the trajectory is x + P[k] - P[j] (P = prefix
sums of Δ) until the first period k* where it would leave [xmin, xmax]; there it is clipped
to a bound B, and from then on it *is* the trajectory that starts from B at k*+1. Hence

    cost(j, x) = F[k*] - F[j] + clip_cost(k*, x) + JB[k*+1, B],   end(j, x) = XB[k*+1, B]

with F the prefix sums of the free costs and JB/XB the cost-to-go and final state from each
bound at each period, computed once per scenario by a backward pass. A contract (q, τ) only
perturbs the demand at periods 0 and τ, so for each (scenario, q) one forward run gives the
state and cost up to τ, one explicit step handles period τ, and the formula above gives the
rest. A lane whose state is already at a bound after period τ needs no search at all: its
rest is read from the bound tables at τ+1 (about 40 % of the lanes on real data).

The only search left is the first-exit time k*. In the coordinate u = x - P[j] (constant
along a free run) the lane is inside at period k iff lo[k] <= u <= up[k] with
up[k] = xmax - P[k+1], lo[k] = xmin - P[k+1]. The first H = 4 periods are tested against
running extremes, one broadcast comparison per period and side (about half of the lanes
leave within them); the lanes still inside are finished by binary lifting over a sparse table of block
extremes (7 gathers each). Work per agent: O(S·|Q|·w) for the forward runs plus
O(S·|Q|·|T|) lanes of a few operations, instead of O(S·|Q|·|T|·w) battery steps. The lane
part runs one agent at a time so that its temporaries stay in the CPU cache.

Every number is computed by the same float operations in the same order as the plain search
did before these shortcuts, so results are bit for bit those of the earlier fast path
(checked on real Case 2 and 3 batches; the shortcuts against the plain search in
test_coop_speed_fastpath.py), and equal to the reference path to about 1e-13.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numpy as np

from gateway.negotiation.cooperative.battery import (
    BatteryArrays,
    BatterySpec,
    cell_to_grid,
    free_increment,
    step,
)
from gateway.negotiation.cooperative.evaluate import EvalBatch, summarise

H = 4  # periods of the first window of the exit search (3-5 are fastest on real data)


class _Rows:
    """Per-scenario-row tables shared by every query on that row (R = agents x scenarios)."""

    def __init__(self, d: np.ndarray, p: BatteryArrays, lam1: np.ndarray, lam2: np.ndarray) -> None:
        self.d, self.p = d, p
        r, w = d.shape
        self.r, self.w = r, w
        self.delta = free_increment(d, p)
        ef = cell_to_grid(self.delta + p.eps, p)
        wf = lam1 * ef + lam2 * np.abs(d + ef)
        self.P = np.zeros((r, w + 1))
        np.cumsum(self.delta, axis=1, out=self.P[:, 1:])
        self.F = np.zeros((r, w + 1))
        np.cumsum(wf, axis=1, out=self.F[:, 1:])
        # Per-period inside limits in the coordinate u; column w (and beyond) never exits.
        upk = np.full((r, w + H), np.inf)
        lok = np.full((r, w + H), -np.inf)
        np.subtract(p.xmax, self.P[:, 1:], out=upk[:, :w])
        np.subtract(p.xmin, self.P[:, 1:], out=lok[:, :w])
        # First window: running extremes over periods j .. j+i, i < H (min of xmax - P equals
        # xmax - max P exactly, rounding being monotone), stored [row, i, j].
        self.up = np.empty((r, H, w + 1))
        self.lo = np.empty((r, H, w + 1))
        self.up[:, 0] = upk[:, : w + 1]
        self.lo[:, 0] = lok[:, : w + 1]
        for i in range(1, H):
            np.minimum(self.up[:, i - 1], upk[:, i : i + w + 1], out=self.up[:, i])
            np.maximum(self.lo[:, i - 1], lok[:, i : i + w + 1], out=self.lo[:, i])
        # Sparse table for binary lifting: level L holds the extremes of periods k .. k+2^L-1;
        # columns w and beyond (the padding that the lifting can reach) never exit.
        self.levels = max(1, int(w).bit_length())
        self.width = w + 1 + (1 << self.levels)
        self.lift_up = np.full((self.levels, r, self.width), np.inf)
        self.lift_lo = np.full((self.levels, r, self.width), -np.inf)
        self.lift_up[0, :, :w] = upk[:, :w]
        self.lift_lo[0, :, :w] = lok[:, :w]
        for lv in range(1, self.levels):
            half = 1 << (lv - 1)
            for t, op in ((self.lift_up, np.minimum), (self.lift_lo, np.maximum)):
                op(t[lv - 1, :, : w - half], t[lv - 1, :, half:w], out=t[lv, :, : w - half])
                t[lv, :, w - half : w] = t[lv - 1, :, w - half : w]
        self.lift_up = self.lift_up.reshape(self.levels, -1)
        self.lift_lo = self.lift_lo.reshape(self.levels, -1)
        self.G = np.stack([self.P[:, :w], self.F[:, :w], d, self.P[:, 1:]], axis=-1).reshape(-1, 4)
        self.xmax_r, self.xmin_r, self.eps_r = p.xmax[:, 0], p.xmin[:, 0], p.eps[:, 0]
        self.etac_r, self.etad_r = p.etac[:, 0], p.etad[:, 0]
        self.lam1_r, self.lam2_r = lam1[:, 0], lam2[:, 0]
        self.JX = np.zeros((r, w + 1, 2, 2))  # [row, period, bound (0 min, 1 max), (JB, XB)]
        self.JR = np.zeros((r, w + 1, 2))  # JB summed in `rest`'s order, see `_bounds`
        self._bounds()

    def first_exit(
        self, x: np.ndarray, j: np.ndarray, r0: int = 0, known: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """First period k >= j at which the free trajectory from state x at j leaves the band.

        x has shape (n, M, C) for rows r0 .. r0+n-1 (row first), j shape (C,): the start
        period of each column. Returns (k, u) shaped like x: k == w when it never leaves;
        u = x - P[j]. The bands shrink with the period, so "inside after i+1 periods" holds
        for a prefix of i: counting it over the first H periods gives the exit of the lanes
        that leave early; lanes inside for all H go to `_lift`, except those flagged in
        `known` (the caller has their answer; their k is then j + H, or w at the end).
        """
        w, n = self.w, x.shape[0]
        rs = slice(r0, r0 + n)
        u = x - np.take(self.P[rs], j, axis=1)[:, None, :]
        # inside[..., i, :]: still inside after i+1 periods (the H axis before the long C axis)
        inside = u[:, :, None, :] <= np.take(self.up[rs], j, axis=2)[:, None]
        inside &= u[:, :, None, :] >= np.take(self.lo[rs], j, axis=2)[:, None]
        flags = inside.view(np.uint8)
        count = flags[:, :, 0].copy()
        for i in range(1, H):
            count += flags[:, :, i]
        far = (count == H) & (j + H < w)
        if known is not None:
            far &= ~known
        idx = np.flatnonzero(far)
        k = np.add(count, j, dtype=np.int64)
        if idx.size:
            row = idx // x[0].size + r0
            flat = k.reshape(-1)  # a view: k is a fresh C-ordered array
            flat[idx] = self._lift(row, flat[idx], u.reshape(-1)[idx])
        np.minimum(k, w, out=k)
        return k, u

    def _lift(self, row: np.ndarray, pos: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Exit period of flat lanes known to stay inside up to period pos - 1, by binary lifting."""
        base = row * self.width
        at = base + pos  # flat table index of the first period not known to be inside
        for lv in range(self.levels - 1, -1, -1):
            ok = u <= self.lift_up[lv].take(at)
            ok &= u >= self.lift_lo[lv].take(at)
            at += ok * (1 << lv)
        return at - base

    def _params(self, rows: slice | int) -> tuple[np.ndarray | float, ...]:
        """(xmax, xmin, eps, ηc, ηd, λ1, λ2): a row's scalars, or (rows, 1, 1) arrays for a slice."""
        cols = (self.xmax_r, self.xmin_r, self.eps_r, self.etac_r, self.etad_r, self.lam1_r, self.lam2_r)
        if isinstance(rows, int):
            return tuple(float(c[rows]) for c in cols)
        return tuple(c[rows, None, None] for c in cols)

    def _close(
        self, at: np.ndarray, row: np.ndarray, u: np.ndarray, prm: tuple[np.ndarray | float, ...]
    ) -> tuple[np.ndarray, ...]:
        """Pieces of the closed form for lanes that leave the band at period k < w.

        at = row * w + k (flat period index), row: the lanes' rows, u: their coordinate,
        prm: `_params` broadcastable against them. Returns (top, clip cost, F[k], JB and XB
        after the clip), with one gather per table.
        """
        xmax, xmin, eps, etac, etad, lam1, lam2 = prm
        g = np.take(self.G, at, axis=0)  # P[k], F[k], d[k], P[k+1]
        top = u + g[..., 3] > xmax
        y = np.where(top, xmax, xmin) - (u + g[..., 0]) + eps
        e = np.where(y >= 0.0, y / etac, y * etad)
        clip = lam1 * e + lam2 * np.abs(g[..., 2] + e)
        jx = np.take(self.JX.reshape(-1, 2), (at + row + 1) * 2 + top, axis=0)
        return top, clip, g[..., 1], jx[..., 0], jx[..., 1]

    def rest(
        self, x: np.ndarray, j: np.ndarray, r0: int = 0, use_table: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(weighted cost from period j to the end, final state) from state x at j; shapes as first_exit.

        The rows r0 .. r0+n-1 must belong to one agent (one battery, one pair of weights).
        Lanes at a bound (j < w) take JR/XB from the table: `_bounds` computes them with the
        very same operations, so the result is the one the search would give, bit for bit.
        Lanes that run free to the end need no table; the others get the closed form.
        use_table=False searches every lane (the tests check that both agree bit for bit).
        """
        w, n = self.w, x.shape[0]
        rs = slice(r0, r0 + n)
        prm = self._params(r0)
        inner = (j < w) & use_table
        at_top = (x == prm[0]) & inner
        at_bot = (x == prm[1]) & inner
        at_bound = at_top | at_bot
        k, u = self.first_exit(x, j, r0, at_bound)
        jx = np.take(self.JX[rs], j, axis=1)[:, None]  # (n, 1, C, bound, (JB, XB))
        jr = np.take(self.JR[rs], j, axis=1)[:, None]  # (n, 1, C, bound)
        fj = np.take(self.F[rs], j, axis=1)[:, None, :]
        cost = np.where(at_top, jr[..., 1], np.where(at_bot, jr[..., 0], self.F[rs, w, None, None] - fj))
        end = np.where(at_top, jx[..., 1, 1], np.where(at_bot, jx[..., 0, 1], u + self.P[rs, w, None, None]))
        cost, end = np.ascontiguousarray(cost), np.ascontiguousarray(end)  # (no copy: already are)
        idx = np.flatnonzero(~at_bound & (k < w))
        if idx.size:
            row = idx // x[0].size + r0
            at = row * w + k.reshape(-1)[idx]
            _, clip, fk, jb, xb = self._close(at, row, u.reshape(-1)[idx], prm)
            fjl = self.F.reshape(-1).take(row * (w + 1) + j[idx - idx // j.size * j.size])
            cost.reshape(-1)[idx] = fk - fjl + clip + jb
            end.reshape(-1)[idx] = xb
        return cost, end

    def _bounds(self) -> None:
        """Cost-to-go and final state from each bound at each period, by a backward pass.

        Nodes are (period, row, bound), period-major, so that each step of the pass writes one
        slice; a free end points at a zero cost (sentinel) and at its own final state. Besides
        JB (the cost after a clip, as `_close` uses it) the pass yields JR: the same cost
        summed in `rest`'s order, i.e. bit for bit what `rest` computes for a lane that
        starts at the bound, so that such lanes can take it instead of searching.
        """
        r, w, p = self.r, self.w, self.p
        x = np.empty((r, 2, w))
        x[:, 0, :] = p.xmin
        x[:, 1, :] = p.xmax
        k, u = self.first_exit(x, np.arange(w))
        free_end = k >= w
        kc = np.minimum(k, w - 1)
        rows = np.arange(r)[:, None, None]
        top, clip, fk, _, _ = self._close(rows * w + kc, rows, u, self._params(slice(0, r)))
        nodes = (w + 1) * r * 2
        here = (np.arange(w)[None, None, :] * r + rows) * 2 + np.arange(2)[None, :, None]
        nxt = ((kc + 1) * r + rows) * 2 + top
        fj = self.F[:, None, :w]
        free_cost = self.F[:, w, None, None] - fj

        def period_major(a: np.ndarray) -> np.ndarray:  # (r, 2, w) -> (w, r*2)
            return a.transpose(2, 0, 1).reshape(w, -1)

        add = period_major(np.where(free_end, free_cost, clip + fk - fj))
        add_rest = period_major(np.where(free_end, free_cost, fk - fj + clip))
        to_cost = period_major(np.where(free_end, nodes, nxt))
        to_end = period_major(np.where(free_end, nodes + here, nxt))
        jb = np.zeros(nodes + 1)  # + the zero sentinel
        jr = np.zeros(nodes)
        xb = np.empty(2 * nodes)  # + the free ends' own final states
        xb[nodes:] = 0.0
        xb[nodes + here] = u + self.P[:, w, None, None]
        xb[w * r * 2 : nodes] = np.stack([p.xmin[:, 0], p.xmax[:, 0]], axis=1).reshape(-1)
        n2 = 2 * r
        for jj in range(w - 1, -1, -1):
            sl = slice(jj * n2, (jj + 1) * n2)
            jb[sl] = add[jj] + jb.take(to_cost[jj])
            xb[sl] = xb.take(to_end[jj])
        jr[: w * n2] = add_rest.reshape(-1) + jb.take(to_cost.reshape(-1))
        self.JX[..., 0] = jb[:nodes].reshape(w + 1, r, 2).transpose(1, 0, 2)
        self.JX[..., 1] = xb[:nodes].reshape(w + 1, r, 2).transpose(1, 0, 2)
        self.JR = jr.reshape(w + 1, r, 2).transpose(1, 0, 2)  # [row, period, bound]


@functools.cache
def _keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process instead of returning it to the system.

    Why: an evaluation allocates and frees tens of MB of temporaries; by default glibc hands
    them back (heap trimming, mmap) and the next evaluation page-faults them in again, which
    cost about 15 % of the CPU time in the kernel. The process keeps its peak heap instead
    (the same resident size). Elsewhere than glibc (no mallopt) this does nothing.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_trim_threshold, 1 << 30)) and bool(mallopt(m_mmap_threshold, 1 << 25))


def _step(
    x: np.ndarray, d: np.ndarray, b: BatterySpec, prm: tuple[np.ndarray | float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`battery.step` for one battery, in place where it can be: the same operations, in the same order."""
    xmax, xmin, eps, etac, etad, _, _ = prm
    fi = np.negative(d)
    np.maximum(fi, 0.0, out=fi)
    np.minimum(fi, b.uc, out=fi)
    fi *= etac
    v = np.maximum(d, 0.0)
    np.minimum(v, b.ud, out=v)
    v /= etad
    fi -= v
    fi -= eps
    fi += x
    xn = np.clip(fi, xmin, xmax, out=fi)
    y = np.subtract(xn, x, out=v)
    y += eps
    e = np.where(y >= 0.0, y / etac, y * etad)
    res = np.add(d, e, out=y)
    np.abs(res, out=res)
    return xn, e, res


def evaluate(batch: EvalBatch) -> np.ndarray:
    """EU of shape (A, nq, nt), equal to `evaluate.reference(batch)` up to float rounding."""
    _keep_freed_memory()
    a, s, w, nq, nt = batch.shape
    if nt and int(batch.tau.min()) < 1:
        raise ValueError("fast.evaluate: τ must be >= 1")
    r = a * s
    agent = np.repeat(np.arange(a), s)
    p = BatteryArrays.stack(list(batch.batteries), shape_tail=1).index(agent)
    lam1 = batch.lam1[agent][:, None]
    lam2 = batch.lam2[agent][:, None]
    d = batch.demand.reshape(r, w)
    rows = _Rows(d, p, lam1, lam2)
    q = batch.q[agent]  # (R, nq)
    # Forward runs per (row, q), time-major: the contract's first leg is in place, its return
    # not yet. After period 0 the demand is the same for every q (free increment rows.delta),
    # so the loop only clips; energies and costs follow per agent, vectorised over periods.
    tau = batch.tau.astype(np.int64)
    last = int(tau.max()) if nt else 0
    xs = np.empty((last + 1, r, nq))
    xs[0] = batch.x0[agent][:, None]
    x1, e0, r0 = step(xs[0], d[:, :1] + q, p)
    if last:
        xs[1] = x1
    for k in range(1, last):
        np.add(xs[k], rows.delta[:, k : k + 1], out=xs[k + 1])
        np.clip(xs[k + 1], p.xmin, p.xmax, out=xs[k + 1])
    # Cost up to each period: the sequence λ1·e(0), λ2·res(0), λ1·e(1), ... summed in order
    # (vectorised over periods one agent at a time, then one running sum for the batch).
    ca = np.empty((2 * last + 1, r, nq))
    ca[0] = 0.0
    if last:
        np.multiply(lam1, e0, out=ca[1])
        np.multiply(lam2, r0, out=ca[2])
    for i in range(a if last > 1 else 0):
        rs = slice(i * s, (i + 1) * s)
        _, _, eps, etac, etad, l1, l2 = rows._params(i * s)
        y = xs[2:, rs] - xs[1:-1, rs]
        y += eps
        e = np.where(y >= 0.0, y / etac, y * etad)
        np.multiply(l1, e, out=ca[3::2, rs])
        np.add(d[rs, 1:last].T[:, :, None], e, out=y)
        np.abs(y, out=y)
        np.multiply(l2, y, out=ca[4::2, rs])
    for k in range(1, 2 * last + 1):  # faster than np.cumsum along the outer axis
        np.add(ca[k - 1], ca[k], out=ca[k])
    # Period τ: the loan comes back; then the closed form for the rest of the window.
    # One agent (s rows) at a time, so that the lane temporaries stay in cache.
    out = np.empty((a, nq, nt))
    for i in range(a):
        rs = slice(i * s, (i + 1) * s)
        xa_t = xs[:, rs].transpose(1, 2, 0)  # (s, nq, period): gathers along the last axis come out C-ordered
        xb = np.take(xa_t, tau, axis=2)
        dq = np.take(d[rs], tau, axis=1)[:, None, :] - q[rs, :, None]
        x1, e1, r1 = _step(xb, dq, batch.batteries[i], prm := rows._params(i * s))
        head = np.take(ca[:, rs].transpose(1, 2, 0), 2 * tau, axis=2)
        head += prm[5] * e1
        head += prm[6] * r1
        tail, end = rows.rest(x1, tau + 1, i * s)
        u = head + tail
        back = float(batch.x0[i]) - end  # Θ: bring the state back to where it started
        u += prm[5] * np.where(back >= 0.0, back / prm[3], back * prm[4])
        np.negative(u, out=u)
        out[i] = summarise(u.reshape(1, s, nq, nt), batch)[0]
    return out
