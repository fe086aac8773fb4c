"""Slow, literal implementations kept as test oracles (not imported by the package).

`literal_expected_utility` is Algorithm 3 written out with plain Python loops: amend the
scenarios with the offer (Eq. 5), run the battery recursion of Eq. 1-2 period by period,
evaluate the criteria of Eq. 12 and average Eq. 13 over the scenarios (Eq. 14).
`literal_negotiate` is Algorithm 1 with Algorithms 4 and 5, round by round.
"""

from __future__ import annotations

import numpy as np

from gateway.negotiation.cooperative.battery import BatterySpec
from gateway.negotiation.cooperative.contracts import ContractSpace, Outcome
from gateway.negotiation.cooperative.evaluate import EvalBatch


def literal_battery(x0: float, demand: list[float], b: BatterySpec) -> tuple[float, float, float]:
    """(Σ Pb, Σ |res|, final state) of the greedy battery on one profile, scalar arithmetic."""
    x = x0
    sum_pb = 0.0
    sum_res = 0.0
    for d in demand:
        pb = -d  # greedy: absorb the surplus, cover the deficit
        pb = min(pb, b.charge_kw * b.dt_h) if pb >= 0 else max(pb, -b.discharge_kw * b.dt_h)
        eta = b.eta_charge if pb >= 0 else 1.0 / b.eta_discharge  # Eq. 2
        x_new = x + eta * pb - b.eps  # Eq. 1
        if x_new > b.xmax or x_new < b.xmin:
            x_new = b.xmax if x_new > b.xmax else b.xmin
            y = x_new - x + b.eps
            pb = y / b.eta_charge if y >= 0 else y * b.eta_discharge
        sum_pb += pb
        sum_res += abs(d + pb)
        x = x_new
    return sum_pb, sum_res, x


def literal_theta(x_start: float, x_end: float, b: BatterySpec) -> float:
    gap = x_start - x_end
    return gap / b.eta_charge if gap >= 0 else gap * b.eta_discharge


def literal_expected_utility(
    scenarios: list[list[float]], x0: float, b: BatterySpec, lam1: float, lam2: float, q: float, tau: int
) -> float:
    """Algorithm 3 for one offer (q, τ) seen by this agent."""
    total = 0.0
    for s in scenarios:
        amended = list(s)
        amended[0] += q
        amended[tau] -= q
        sum_pb, sum_res, x_end = literal_battery(x0, amended, b)
        c1 = sum_pb + literal_theta(x0, x_end, b)
        c2 = sum_res
        total += -(lam1 * c1 + lam2 * c2) / len(scenarios)
    return total


def literal_negotiate(a: ContractSpace, b: ContractSpace, deadline: int) -> Outcome:
    """Algorithm 1 round by round; offers are popped from each ordered space (Algorithm 4)."""
    stacks = [list(a.order), list(b.order)]
    spaces = [a, b]
    r = 0
    while r < deadline:
        me = r % 2
        other = 1 - me
        offer = None
        if stacks[me]:
            cand = stacks[me].pop(0)
            if spaces[me].eu[cand] >= spaces[me].threshold:
                offer = cand
            else:
                stacks[me].clear()  # everything after it is worse: nothing more to offer
        if offer is not None and spaces[other].eu[offer] > spaces[other].threshold:
            return Outcome(True, int(offer), r, me)
        r += 1
    return Outcome(False, -1, -1, -1)


def calm_household_batch(w: int = 96) -> EvalBatch:
    """A calm household and a large battery: lanes run free for the whole window (the longest searches)."""
    demand = np.random.default_rng(4).normal(0.0, 0.01, (1, 3, w))
    return EvalBatch(
        demand,
        np.array([5.0]),
        (BatterySpec(capacity_kwh=10.0, degradation=0.0),),
        np.array([0.5]),
        np.array([0.5]),
        np.array([[-0.2, 0.0, 0.2]]),
        np.arange(1, w),
    )
