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
rest. The only search left is the first-exit time k*; exits come soon in practice (median 2
periods), so it is found window by window (`H` periods at a time) with running extremes.
Work per agent: O(S·|Q|·w) for the forward runs plus O(S·|Q|·|T|) lanes of a few operations,
instead of O(S·|Q|·|T|·w) battery steps.
"""

from __future__ import annotations

import numpy as np

from gateway.negotiation.cooperative.battery import (
    BatteryArrays,
    cell_to_grid,
    free_increment,
    step,
    theta,
)
from gateway.negotiation.cooperative.evaluate import EvalBatch, summarise

H = 8  # periods looked ahead per window of the exit search (one uint64 of flags)


def _count(flags: np.ndarray) -> np.ndarray:
    """Number of true flags along the last axis (of length H = 8), by one popcount per lane."""
    packed = np.ascontiguousarray(flags).view(np.uint64)[..., 0]
    return np.bitwise_count(packed).astype(np.int64)


class _Rows:
    """Per-scenario-row tables shared by every query on that row (R = agents x scenarios)."""

    def __init__(self, d: np.ndarray, p: BatteryArrays, lam1: np.ndarray, lam2: np.ndarray) -> None:
        self.d, self.p, self.lam1, self.lam2 = d, p, lam1, lam2
        r, w = d.shape
        self.r, self.w = r, w
        delta = free_increment(d, p)
        ef = cell_to_grid(delta + p.eps, p)
        wf = lam1 * ef + lam2 * np.abs(d + ef)
        self.P = np.zeros((r, w + 1))
        np.cumsum(delta, axis=1, out=self.P[:, 1:])
        self.F = np.zeros((r, w + 1))
        np.cumsum(wf, axis=1, out=self.F[:, 1:])
        # Running extremes of P[k+1] over windows [j, j+H): padded so that k >= w never exits.
        pad_hi = np.concatenate([self.P[:, 1:], np.full((r, H + 1), -np.inf)], axis=1)
        pad_lo = np.concatenate([self.P[:, 1:], np.full((r, H + 1), np.inf)], axis=1)
        view_hi = np.lib.stride_tricks.sliding_window_view(pad_hi, H, axis=1)[:, : w + 1]
        view_lo = np.lib.stride_tricks.sliding_window_view(pad_lo, H, axis=1)[:, : w + 1]
        run_max = np.maximum.accumulate(view_hi, axis=2)
        run_min = np.minimum.accumulate(view_lo, axis=2)
        self.up = (p.xmax[:, :, None] - run_max).reshape(-1, H)
        self.lo = (p.xmin[:, :, None] - run_min).reshape(-1, H)
        # Coarse bands: inside for H*(m+1) periods from j, m = 0..H-1 (blocks of H periods).
        up1 = np.concatenate([p.xmax - run_max[:, :, -1], np.full((r, H * H), np.inf)], axis=1)
        lo1 = np.concatenate([p.xmin - run_min[:, :, -1], np.full((r, H * H), -np.inf)], axis=1)
        up2 = np.empty((r, w + 1, H))
        lo2 = np.empty((r, w + 1, H))
        cur_up = np.full((r, w + 1), np.inf)
        cur_lo = np.full((r, w + 1), -np.inf)
        for m in range(H):
            sh = slice(H * m, H * m + w + 1)
            np.minimum(cur_up, up1[:, sh], out=cur_up)
            np.maximum(cur_lo, lo1[:, sh], out=cur_lo)
            up2[:, :, m] = cur_up
            lo2[:, :, m] = cur_lo
        self.band = np.concatenate([self.up, self.lo], axis=1)  # (R*(w+1), 2H): up then lo
        self.band2 = np.concatenate([up2.reshape(-1, H), lo2.reshape(-1, H)], axis=1)
        self.G = np.stack([self.P[:, :w], self.F[:, :w], d, self.P[:, 1:]], axis=-1).reshape(-1, 4)
        self.xmax_r, self.xmin_r, self.eps_r = p.xmax[:, 0], p.xmin[:, 0], p.eps[:, 0]
        self.etac_r, self.etad_r = p.etac[:, 0], p.etad[:, 0]
        self.lam1_r, self.lam2_r = lam1[:, 0], lam2[:, 0]
        self.JX = np.zeros((r * (w + 1) * 2, 2))
        self._bounds()

    def first_exit(self, x: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First period k >= j at which the free trajectory from state x at j leaves the band.

        x has shape (R, M, C) (row first), j shape (C,): the start period of each column.
        Returns (k, u) shaped like x: k == w when it never leaves; u = x - P[j].
        In the coordinate u = x - P[j] (constant along a free run) a lane started at j is still
        inside after i+1 periods iff lo[j, i] <= u <= up[j, i]; the bands shrink with i, so
        the periods spent inside are a count of true bytes, H = 8 at a time by one popcount;
        a coarse table of H blocks of H periods takes lanes that stay longer.
        """
        w, r = self.w, self.r
        u = x - self.P[:, j][:, None, :]
        up = self.up.reshape(r, w + 1, H)[:, j, :][:, None]
        lo = self.lo.reshape(r, w + 1, H)[:, j, :][:, None]
        count = np.minimum(_count(u[..., None] <= up), _count(u[..., None] >= lo))
        jj = np.broadcast_to(j, x.shape)
        k = jj + count
        # Lanes still inside after the first window: the coarse table finds their block.
        idx = np.flatnonzero((count >= H) & (jj + H < w))
        if idx.size:
            rows = np.repeat(np.arange(r), x[0].size)[idx]
            k.reshape(-1)[idx] = self._far(rows, jj.reshape(-1)[idx], u.reshape(-1)[idx])
        return np.minimum(k, w), u

    def _far(self, rows: np.ndarray, j: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Exit period for flat lanes known to stay inside periods j .. j+H-1."""
        w = self.w
        k = np.full(u.shape, w, dtype=np.int64)
        idx = np.arange(u.size)
        while idx.size:
            band = np.take(self.band2, rows * (w + 1) + j, axis=0)
            ui = u[:, None]
            blocks = np.minimum(_count(ui <= band[:, :H]), _count(ui >= band[:, H:]))
            j2 = j + H * blocks
            inside = j2 < w
            last = blocks >= H
            f = np.flatnonzero(inside & ~last)
            if f.size:
                uf = u[f, None]
                jf = j2[f]
                fine = np.take(self.band, rows[f] * (w + 1) + jf, axis=0)
                k[idx[f]] = jf + np.minimum(_count(uf <= fine[:, :H]), _count(uf >= fine[:, H:]))
            more = inside & last
            u = u[more]
            idx, rows, j = idx[more], rows[more], j2[more]
        return k

    def _close(self, k: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, ...]:
        """Pieces of the closed form at the exit period k of lanes with coordinate u.

        k and u have shape (R, M, C), row first. Returns (free_end, top, clip cost, F[k],
        JB and XB after the clip), with one gather per table.
        """
        w, r = self.w, self.r
        free_end = k >= w
        kc = np.minimum(k, w - 1)
        row = np.arange(r).reshape(r, 1, 1)
        g = np.take(self.G, row * w + kc, axis=0)  # P[k], F[k], d[k], P[k+1]
        xmax, xmin = self.xmax_r[:, None, None], self.xmin_r[:, None, None]
        top = (u + g[..., 3] > xmax) & ~free_end
        y = np.where(top, xmax, xmin) - (u + g[..., 0]) + self.eps_r[:, None, None]
        e = np.where(y >= 0.0, y / self.etac_r[:, None, None], y * self.etad_r[:, None, None])
        clip = self.lam1_r[:, None, None] * e + self.lam2_r[:, None, None] * np.abs(g[..., 2] + e)
        jx = np.take(self.JX, (row * (w + 1) + kc + 1) * 2 + top, axis=0)
        return free_end, top, clip, g[..., 1], jx[..., 0], jx[..., 1]

    def rest(self, x: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(weighted cost from period j to the end, final state) from state x at j; shapes as first_exit."""
        w = self.w
        k, u = self.first_exit(x, j)
        free_end, _, clip, fk, jb, xb = self._close(k, u)
        fj = self.F[:, j][:, None, :]
        cost = np.where(free_end, self.F[:, w, None, None] - fj, fk - fj + clip + jb)
        end = np.where(free_end, u + self.P[:, w, None, None], xb)
        return cost, end

    def _bounds(self) -> None:
        """Cost-to-go and final state from each bound at each period, by a backward pass."""
        r, w, p = self.r, self.w, self.p
        jx = np.zeros((r, w + 1, 2, 2))  # [row, period, bound (0 min, 1 max), (JB, XB)]
        jx[:, w, 0, 1] = p.xmin[:, 0]
        jx[:, w, 1, 1] = p.xmax[:, 0]
        x = np.empty((r, 2, w))
        x[:, 0, :] = p.xmin
        x[:, 1, :] = p.xmax
        k, u = self.first_exit(x, np.arange(w))
        free_end, top, clip, fk, _, _ = self._close(k, u)
        kc = np.minimum(k, w - 1)
        nxt = (kc + 1) * 2 + top  # flat (period, bound) index of the state after the clip
        base = clip + fk  # + JB after the clip - F[j], filled backwards below
        flat = jx.reshape(r, -1, 2)
        ar = np.arange(r)[:, None]
        fw = self.F[:, w : w + 1]
        for jj in range(w - 1, -1, -1):
            after = flat[ar, nxt[:, :, jj]]
            fe = free_end[:, :, jj]
            fjj = self.F[:, jj : jj + 1]
            flat[:, 2 * jj : 2 * jj + 2, 0] = np.where(fe, fw - fjj, base[:, :, jj] - fjj + after[..., 0])
            flat[:, 2 * jj : 2 * jj + 2, 1] = np.where(fe, u[:, :, jj] + self.P[:, w : w + 1], after[..., 1])
        self.JX = jx.reshape(-1, 2)


def evaluate(batch: EvalBatch) -> np.ndarray:
    """EU of shape (A, nq, nt), equal to `evaluate.reference(batch)` up to float rounding."""
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
    # Forward runs per (row, q): the contract's first leg is in place, its return not yet.
    tau = batch.tau.astype(np.int64)
    last = int(tau.max()) if nt else 0
    xs = np.empty((r, nq, last + 1))
    cs = np.zeros((r, nq, last + 1))
    x = np.repeat(batch.x0[agent][:, None], nq, axis=1)
    xs[:, :, 0] = x
    for k in range(last):
        dk = d[:, k : k + 1] + (q if k == 0 else 0.0)
        x, e, res = step(x, dk, p)
        xs[:, :, k + 1] = x
        cs[:, :, k + 1] = cs[:, :, k] + lam1 * e + lam2 * res
    # Period τ: the loan comes back; then the closed form for the rest of the window.
    p3 = BatteryArrays(*(np.asarray(getattr(p, f))[:, :, None] for f in p.__dataclass_fields__))
    xb = np.take(xs, tau, axis=2)
    x1, e1, r1 = step(xb, d[:, None, tau] - q[:, :, None], p3)
    head = np.take(cs, tau, axis=2) + lam1[:, :, None] * e1 + lam2[:, :, None] * r1
    tail, end = rows.rest(x1, tau + 1)
    x0 = batch.x0[agent][:, None, None]
    u = -(head + tail + lam1[:, :, None] * theta(x0, end, p3))
    return summarise(u.reshape(a, s, nq, nt), batch)
