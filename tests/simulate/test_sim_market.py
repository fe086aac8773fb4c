"""The hourly market: Eq. 1 golden values, a golden clearing, the 4.1 invariant as a property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.community.market import (
    MarketWindow,
    Order,
    Trade,
    check_trades,
    concession,
    hourly_concession_market,
    payment,
)


def test_concession_golden_values() -> None:
    assert concession(100, 50, 0, 10, 1.0) == 100
    assert concession(100, 50, 5, 10, 1.0) == 75
    assert concession(100, 50, 10, 10, 1.0) == 50
    assert concession(100, 50, 12, 10, 1.0) == 50  # past the deadline: the reserve
    assert concession(100, 50, 5, 10, 2.0) == 65  # conceder: 100 - 50 * sqrt(0.5) = 64.64
    assert concession(100, 50, 5, 10, 0.5) == 88  # Boulware: 100 - 50 * 0.25 = 87.5 -> 88
    assert concession(10, 20, 5, 10, 1.0) == 15  # a buyer concedes upwards


def test_payment_rounds_down_like_the_contract() -> None:
    assert payment(1000, 300_000) == 300_000
    assert payment(1, 999) == 0
    assert payment(1234, 250_001) == 1234 * 250_001 // 1000


def test_golden_clearing() -> None:
    window = MarketWindow(
        0, 300_000, 80_000,
        asks=[Order(0, 500, 300_000, 120_000, 1.0), Order(1, 300, 300_000, 100_000, 1.0)],
        bids=[Order(2, 600, 80_000, 250_000, 1.0), Order(3, 400, 80_000, 240_000, 1.0)],
        rounds=10,
    )  # fmt: skip
    trades = hourly_concession_market(window)
    check_trades(window, trades)
    assert trades == [
        # asks 300000-20000t and 300000-18000t; bids 80000+17000t and 80000+16000t (worked by hand)
        Trade(seller=1, buyer=2, wh=300, price=181000, round=6),
        Trade(seller=0, buyer=2, wh=300, price=186500, round=7),
        Trade(seller=0, buyer=3, wh=200, price=183000, round=7),
    ]
    assert sum(t.wh for t in trades) == 800  # every Wh offered is sold


def test_check_trades_rejects_broken_strategies() -> None:
    window = MarketWindow(
        0, 300_000, 80_000, [Order(0, 100, 300_000, 100_000, 1.0)], [Order(1, 100, 1, 2, 1.0)]
    )
    with pytest.raises(ValueError, match="bounds"):
        check_trades(window, [Trade(0, 1, 50, 400_000, 0)])
    with pytest.raises(ValueError, match="sold more"):
        check_trades(window, [Trade(0, 1, 150, 200_000, 0)])
    with pytest.raises(ValueError, match="no order"):
        check_trades(window, [Trade(5, 1, 50, 200_000, 0)])


orders = st.lists(st.tuples(st.integers(1, 5000), st.floats(0.1, 0.4), st.floats(0.3, 3.0)), max_size=8)


@settings(max_examples=80, deadline=None)
@given(asks=orders, bids=orders, rounds=st.integers(1, 30))
def test_no_buyer_left_wanting_while_energy_unsold(asks: list, bids: list, rounds: int) -> None:
    """Mezquita et al., 4.1: by the deadline, either every offered Wh is sold or every wanted Wh is bought."""
    retail, feed = 300_000, 80_000
    spread = retail - feed
    window = MarketWindow(
        0, retail, feed,
        asks=[Order(i, q, retail, feed + int(m * spread), cr) for i, (q, m, cr) in enumerate(asks)],
        bids=[Order(100 + i, q, feed, retail - int(m * spread), cr) for i, (q, m, cr) in enumerate(bids)],
        rounds=rounds,
    )  # fmt: skip
    trades = hourly_concession_market(window)
    check_trades(window, trades)
    volume = sum(t.wh for t in trades)
    assert volume == min(sum(q for q, _, _ in asks), sum(q for q, _, _ in bids))
    for t in trades:
        ask = next(o for o in window.asks if o.household == t.seller)
        bid = next(o for o in window.bids if o.household == t.buyer)
        assert ask.rp <= t.price <= bid.rp  # never beyond either reserve
