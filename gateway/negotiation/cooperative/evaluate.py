"""Expected utility of every contract of the grid Q x T (Algorithm 3, Eq. 12-14), in batch.

`EvalBatch` holds what Algorithm 3 needs for several agents at one period; `reference()` is
the plain vectorised lock-step simulation of every (contract, scenario) lane, kept as the
reference path that the fast path (`fast.py`) and the torch path (`torch_backend.py`) must
reproduce.

Utilities are the weighted criteria negated (higher is better):
    U(ω, s) = -(λ1·(Σ Pb + Θ) + λ2·Σ|res|),  EU(ω) = mean over scenarios (Pr(s) = 1/|S|).
A contract ω = (q, τ) changes the agent's demand by +q at the window's first period and -q at
period τ of the window (Eq. 5); q > 0 means the agent lends q now and gets it back at τ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.negotiation.cooperative.battery import BatteryArrays, BatterySpec, step, theta


@dataclass(frozen=True)
class EvalBatch:
    """Inputs of Algorithm 3 for A agents at one period.

    demand: (A, S, w) net-demand scenarios over the planning window, pool exchanges included;
    x0: (A,) state of charge at the window start; q: (A, nq) volumes seen by each agent
    (the responder sees the initiator's grid negated); tau: (nt,) return offsets, 1 <= τ < w;
    risk: risk aversion κ (see `summarise`).
    """

    demand: np.ndarray
    x0: np.ndarray
    batteries: tuple[BatterySpec, ...]
    lam1: np.ndarray
    lam2: np.ndarray
    q: np.ndarray
    tau: np.ndarray
    risk: float = 0.0

    def __post_init__(self) -> None:
        a, _, w = self.demand.shape
        if not (
            self.x0.shape == (a,)
            and len(self.batteries) == a
            and self.lam1.shape == (a,)
            and self.lam2.shape == (a,)
            and self.q.ndim == 2
            and self.q.shape[0] == a
            and self.tau.ndim == 1
        ):
            raise ValueError("EvalBatch: inconsistent shapes")
        if self.tau.size and (int(self.tau.min()) < 1 or int(self.tau.max()) >= w):
            raise ValueError(f"EvalBatch: return offsets must lie in [1, {w - 1}]")
        if not np.all(np.isfinite(self.demand)):
            raise ValueError("EvalBatch: demand must be finite")
        if not (self.risk >= 0 and np.isfinite(self.risk)):
            raise ValueError("EvalBatch: risk aversion must be finite and >= 0")

    def zero_column(self) -> int:
        """Index of q = 0 (no exchange) in the volume grid, or -1 when the grid has none."""
        hits = np.flatnonzero(self.q[0] == 0.0)
        return int(hits[0]) if hits.size else -1

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """(agents, scenarios, window, |Q|, |T|)."""
        a, s, w = self.demand.shape
        return a, s, w, self.q.shape[1], self.tau.size

    def battery_steps(self) -> int:
        """Battery steps a plain simulation of every lane would take (the work measure of the bench)."""
        a, s, w, nq, nt = self.shape
        return a * s * w * nq * nt


def reference(batch: EvalBatch) -> np.ndarray:
    """EU of shape (A, nq, nt) by simulating every (agent, scenario, q, τ) lane step by step."""
    a, s, w, nq, nt = batch.shape
    p = BatteryArrays.stack(list(batch.batteries), shape_tail=3)
    lam1 = batch.lam1.reshape(a, 1, 1, 1)
    lam2 = batch.lam2.reshape(a, 1, 1, 1)
    q = batch.q.reshape(a, 1, nq, 1)
    x0 = np.broadcast_to(batch.x0.reshape(a, 1, 1, 1), (a, s, nq, nt)).astype(np.float64)
    x = x0.copy()
    cost = np.zeros((a, s, nq, nt))
    tau = batch.tau.reshape(1, 1, 1, nt)
    for k in range(w):
        d = batch.demand[:, :, k].reshape(a, s, 1, 1) - q * (tau == k)
        if k == 0:
            d = d + q
        x, e, r = step(x, d, p)
        cost = cost + lam1 * e + lam2 * r
    u = -(cost + lam1 * theta(x0, x, p))
    return summarise(u, batch)


def summarise(u: np.ndarray, batch: EvalBatch) -> np.ndarray:
    """Per-scenario utilities (A, S, nq, nt) -> what the agent ranks contracts by, (A, nq, nt).

    Eq. 14: the mean over equiprobable scenarios. With risk aversion κ > 0 the agent ranks by
    mean - κ·std of its gain over no exchange across scenarios: a loan whose benefit depends
    on how demand turns out is discounted (κ = 0 is the paper's expected utility).
    """
    eu = u.mean(axis=1)
    z = batch.zero_column()
    if batch.risk == 0.0 or z < 0:
        return eu
    gain = u - u[:, :, z : z + 1, :]
    return eu - batch.risk * gain.std(axis=1)
