"""Contract space (Algorithm 2), alternating offers (Algorithms 1, 4, 5) against the literal loop, Nash (Eq. 15)."""

from __future__ import annotations

import numpy as np
import pytest
from coop_oracle import literal_negotiate

from gateway.negotiation.cooperative.contracts import (
    ContractGrid,
    ContractSpace,
    Outcome,
    distance_to_nash,
    nash,
    negotiate,
)

GRID = ContractGrid.default(96)


def test_coop_default_grid_is_table_2() -> None:
    assert GRID.q.size == 15 and GRID.tau.size == 94
    assert GRID.tau[0] == 2 and GRID.tau[-1] == 95 and 0.0 in GRID.q
    assert GRID.contract(0) == (-0.7, 2)
    assert GRID.contract(GRID.size - 1) == (0.7, 95)


def space(eu: np.ndarray, quantile: float, grid: ContractGrid = GRID) -> ContractSpace:
    return ContractSpace.build(eu, grid, quantile)


def test_coop_space_order_aspiration_reservation() -> None:
    grid = ContractGrid(np.array([-1.0, 0.0, 1.0]), np.array([2, 3]))
    eu = np.array([[-3.0, -1.0], [-2.0, -2.0], [-0.5, -4.0]])
    s = space(eu, 0.5, grid)
    assert s.reservation == -2.0
    assert s.aspiration == pytest.approx(-2.0)
    assert list(s.order) == [4, 1, 0, 5]  # q = 0 contracts are never offered
    assert list(s.offers()) == [
        4,
        1,
    ]  # >= threshold, strictly better than no exchange is not required to offer
    assert list(s.accepts(np.array([4, 1, 2, 0]))) == [True, True, False, False]


def test_coop_bad_quantile_is_rejected() -> None:
    with pytest.raises(ValueError, match="quantile"):
        space(np.zeros((15, 94)), 1.5)


@pytest.mark.parametrize("seed", range(40))
def test_coop_closed_form_negotiation_equals_the_literal_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    grid = ContractGrid(np.linspace(-1, 1, 5), np.arange(2, 8))
    ea = rng.normal(size=(5, 6)).round(1)  # rounding makes ties, which must be broken the same way
    eb = -ea + rng.normal(scale=1.5, size=(5, 6)).round(1)
    qa, qb = rng.uniform(0.3, 0.95, 2)
    deadline = int(rng.choice([1, 2, 3, 7, 5000]))
    a, b = space(ea, qa, grid), space(eb, qb, grid)
    assert negotiate(a, b, deadline) == literal_negotiate(a, b, deadline)


def test_coop_agreement_lies_in_both_aspiration_regions() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        ea = rng.normal(size=(15, 94))
        eb = rng.normal(size=(15, 94))
        a, b = space(ea, 0.8), space(eb, 0.8)
        out = negotiate(a, b)
        if out.agreed:
            c = out.contract
            assert a.eu[c] >= a.threshold and b.eu[c] >= b.threshold
            assert a.eu[c] > a.threshold or b.eu[c] > b.threshold


def test_coop_opposed_agents_fail_at_the_deadline() -> None:
    eu = np.arange(15 * 94, dtype=float).reshape(15, 94)
    out = negotiate(space(eu, 0.5), space(-eu, 0.5))
    assert out == Outcome(False, -1, -1, -1)


def test_coop_nash_maximises_the_gain_product() -> None:
    grid = ContractGrid(np.array([-1.0, 0.0, 1.0]), np.array([2]))
    a = space(np.array([[1.0], [0.0], [3.0]]), 0.0, grid)
    b = space(np.array([[2.0], [0.0], [1.0]]), 0.0, grid)
    assert nash(a, b) == 2  # gains (3, 1) beat (1, 2)
    agreed = Outcome(True, 0, 4, 0)
    assert distance_to_nash(a, b, agreed, 2) == pytest.approx(np.hypot(2.0, 1.0))
    assert distance_to_nash(a, b, Outcome(False, -1, -1, -1), 2) == pytest.approx(np.hypot(3.0, 1.0))
    c = space(np.array([[-1.0], [0.0], [-2.0]]), 0.0, grid)
    assert nash(a, c) == -1  # nothing helps both: no-deal is the fair outcome
