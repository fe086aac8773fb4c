"""Token accounting: the contract's settlement rule, exact conservation, reverts as errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.community.ledger import Ledger, LedgerError
from hil.community.market import Trade


def test_partial_delivery_refund_with_penalty() -> None:
    led = Ledger(2)
    led.mint(1, 1_000_000)
    aid = led.agree(Trade(0, 1, 1000, 200_000, 0))
    assert led.balance[1] == 800_000 and led.escrowed() == 200_000
    # delivered 600 of 1000 Wh: pay 120000, penalty min(120000, 80000 * 10 %) = 8000
    assert led.settle(aid, 600) == (112_000, 88_000)
    assert led.balance == [112_000, 888_000]
    assert led.refunded[1] == 88_000 and led.paid[1] == 112_000 and led.earned[0] == 112_000
    assert led.refunds == 1 and led.conserved()


def test_full_delivery_no_refund() -> None:
    led = Ledger(2)
    led.mint(1, 500_000)
    aid = led.agree(Trade(0, 1, 700, 250_000, 3))
    assert led.settle(aid, 900) == (175_000, 0)  # over-delivery is capped at the contracted quantity
    assert led.refunds == 0 and led.conserved()


def test_reverts_are_errors_not_silent() -> None:
    led = Ledger(2)
    led.mint(1, 100)
    with pytest.raises(LedgerError, match="cannot cover"):
        led.agree(Trade(0, 1, 1000, 200_000, 0))
    aid = led.agree(Trade(0, 1, 1, 100_000, 0))
    led.settle(aid, 1)
    with pytest.raises(LedgerError, match="settled twice"):
        led.settle(aid, 1)
    with pytest.raises(LedgerError):
        led.mint(0, -1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 5000), st.integers(0, 6000))))
def test_conservation_over_any_sequence(ops: list[tuple[int, int, int, int]]) -> None:
    led = Ledger(4)
    for i in range(4):
        led.mint(i, 2_000_000)
    for seller, buyer, wh, delivered in ops:
        if seller == buyer:
            continue
        trade = Trade(seller, buyer, wh, 300_000, 0)
        if trade.payment > led.balance[buyer]:
            continue
        aid = led.agree(trade)
        assert led.conserved()
        led.settle(aid, delivered)
        assert led.conserved()
    assert led.escrowed() == 0 and sum(led.balance) == led.minted
