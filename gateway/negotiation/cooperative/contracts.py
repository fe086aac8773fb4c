"""Energy loans on the grid Q x T, each agent's ordered contract space (Algorithm 2), Nash (Eq. 15).

A contract ω = (q, τ) is written from the initiator's side: the initiator lends q kWh now
(q < 0: borrows) and gets it back τ periods later; the responder sees (-q, τ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ContractGrid:
    """The negotiation domain Ω = Q x T (Table 2: |Q| = 15, T = {2, ..., w-1})."""

    q: np.ndarray
    tau: np.ndarray

    @classmethod
    def default(cls, w: int = 96, q_max: float = 0.7, n_q: int = 15, tau_min: int = 2) -> ContractGrid:
        """15 volumes from -q_max to q_max kWh per period (0 included), return offsets 2..w-1."""
        if n_q < 2 or q_max <= 0 or not 1 <= tau_min < w:
            raise ValueError("contract grid: need n_q >= 2, q_max > 0, 1 <= tau_min < w")
        return cls(np.linspace(-q_max, q_max, n_q), np.arange(tau_min, w, dtype=np.int64))

    @property
    def size(self) -> int:
        return self.q.size * self.tau.size

    def contract(self, flat: int) -> tuple[float, int]:
        """(q, τ) of a flat index (row-major over Q then T)."""
        i, j = divmod(int(flat), self.tau.size)
        return float(self.q[i]), int(self.tau[j])


@dataclass(frozen=True)
class ContractSpace:
    """One agent's contract space at one period: utilities, order, aspiration and reservation.

    eu: flat expected utilities (Eq. 14) over Ω; valid: contracts allowed this period.
    order: valid contracts with q != 0 by decreasing utility (ties: grid order) - the offers.
    threshold: the aspiration value (Algorithms 4 and 5: offers below it are never made,
    offers at or below it are never accepted); with `floor` also at least the reservation
    value (individual rationality: a loan must beat no exchange; not in the paper).
    """

    eu: np.ndarray
    order: np.ndarray
    aspiration: float
    reservation: float
    floor: bool = True

    @property
    def threshold(self) -> float:
        return max(self.aspiration, self.reservation) if self.floor else self.aspiration

    @classmethod
    def build(
        cls,
        eu: np.ndarray,
        grid: ContractGrid,
        quantile: float,
        valid: np.ndarray | None = None,
        floor: bool = True,
    ) -> ContractSpace:
        """Algorithm 2: evaluate (given), order by utility, set the aspiration quantile.

        Utilities are rounded to 1e-9 first, so that contracts whose utilities are equal
        mathematically tie exactly whichever backend computed them, and ties are broken by
        grid order: every float64 backend then yields the same negotiation.
        """
        if not 0.0 <= quantile <= 1.0:
            raise ValueError("aspiration quantile must lie in [0, 1]")
        flat = np.round(np.asarray(eu, dtype=np.float64).reshape(-1), 9)
        if not np.all(np.isfinite(flat)):
            raise ValueError("contract space: utilities must be finite")
        ok = np.ones(flat.size, dtype=bool) if valid is None else np.asarray(valid, dtype=bool).reshape(-1)
        zero = np.repeat(grid.q == 0.0, grid.tau.size)
        reservation = float(flat[zero][0]) if zero.any() else float(np.max(flat[ok]))
        aspiration = float(np.quantile(flat[ok], quantile))
        cand = np.flatnonzero(ok & ~zero)
        order = cand[np.lexsort((cand, -flat[cand]))]
        return cls(flat, order, aspiration, reservation, floor)

    def offers(self) -> np.ndarray:
        """Algorithm 4's sequence: contracts this agent will propose, best first."""
        u = self.eu[self.order]
        return self.order[u >= self.threshold]

    def accepts(self, flat: np.ndarray) -> np.ndarray:
        """Algorithm 5 for each contract of `flat`."""
        return self.eu[flat] > self.threshold


@dataclass(frozen=True)
class Outcome:
    """Result of one bilateral session."""

    agreed: bool
    contract: int  # flat index into Ω, -1 when no agreement
    round: int  # round of the accepted offer, -1 when none
    proposer: int  # 0: initiator's offer accepted, 1: responder's, -1: none


def negotiate(a: ContractSpace, b: ContractSpace, deadline: int = 5000) -> Outcome:
    """Algorithm 1 with Algorithms 4-5, in closed form.

    A offers at even rounds (its k-th best offer at round 2k), B at odd rounds (2k+1); an
    agent whose next offer falls below its threshold stays silent from then on. The session
    ends at the first offer the other side accepts, or fails at the deadline.
    """
    oa, ob = a.offers(), b.offers()
    na = min(oa.size, (deadline + 1) // 2)
    nb = min(ob.size, deadline // 2)
    hit_a = np.flatnonzero(b.accepts(oa[:na]))
    hit_b = np.flatnonzero(a.accepts(ob[:nb]))
    ra = 2 * int(hit_a[0]) if hit_a.size else deadline
    rb = 2 * int(hit_b[0]) + 1 if hit_b.size else deadline
    if ra >= deadline and rb >= deadline:
        return Outcome(False, -1, -1, -1)
    if ra < rb:
        return Outcome(True, int(oa[hit_a[0]]), ra, 0)
    return Outcome(True, int(ob[hit_b[0]]), rb, 1)


def nash(a: ContractSpace, b: ContractSpace, valid: np.ndarray | None = None) -> int:
    """Eq. 15 with the reservation values as disagreement point: argmax of the gains' product.

    The paper's product of raw utilities is meaningless for utilities <= 0, so gains over the
    reservation value are multiplied; contracts that leave either side no better off are out.
    Returns -1 when no contract helps both (the no-deal solution is then the fair outcome).
    """
    ga = a.eu - a.reservation
    gb = b.eu - b.reservation
    ok = (ga > 0) & (gb > 0)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool).reshape(-1)
    if not ok.any():
        return -1
    prod = np.where(ok, ga * gb, -np.inf)
    return int(np.argmax(prod))


def distance_to_nash(a: ContractSpace, b: ContractSpace, outcome: Outcome, nash_flat: int) -> float:
    """Euclidean distance in the outcome (utility) space from the outcome to the Nash solution.

    A failed session sits at the no-deal point (the reservation values).
    """
    here = (
        (a.eu[outcome.contract], b.eu[outcome.contract]) if outcome.agreed else (a.reservation, b.reservation)
    )
    there = (a.eu[nash_flat], b.eu[nash_flat]) if nash_flat >= 0 else (a.reservation, b.reservation)
    return float(np.hypot(here[0] - there[0], here[1] - there[1]))
