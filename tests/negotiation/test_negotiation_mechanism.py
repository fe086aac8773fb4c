"""Properties of the stepped bilateral mechanism, its wire types and the strategy configs."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.negotiation import (
    Accept,
    AcceptanceRule,
    ConcessionParams,
    Counter,
    Negotiator,
    Offer,
    OfferError,
    Reject,
    StrategyConfigError,
    negotiate_issue,
    response_from_dict,
    run_session,
    strategy_from_config,
)

prices = st.floats(0, 200, allow_nan=False)
rates = st.floats(0.1, 10, allow_nan=False)
deadlines = st.integers(1, 40)
rules = st.sampled_from(list(AcceptanceRule))


def price_cfg(ip: float, rp: float, dl: int, cr: float, prefer: str) -> dict[str, Any]:
    return {"price": {"ip": ip, "rp": rp, "dl": dl, "cr": cr, "prefer": prefer}}


@st.composite
def bargains(draw: st.DrawFn) -> tuple[ConcessionParams, ConcessionParams]:
    """A seller conceding down and a buyer conceding up."""
    s_ip, s_rp = sorted((draw(prices), draw(prices)), reverse=True)
    b_ip, b_rp = sorted((draw(prices), draw(prices)))
    return (
        ConcessionParams(s_ip, s_rp, draw(deadlines), draw(rates)),
        ConcessionParams(b_ip, b_rp, draw(deadlines), draw(rates)),
    )


def negotiators(
    seller: ConcessionParams, buyer: ConcessionParams, rule: AcceptanceRule
) -> tuple[Negotiator, Negotiator]:
    s = Negotiator(strategy_from_config(price_cfg(seller.ip, seller.rp, seller.dl, seller.cr, "high")), rule)
    b = Negotiator(strategy_from_config(price_cfg(buyer.ip, buyer.rp, buyer.dl, buyer.cr, "low")), rule)
    return s, b


@settings(max_examples=300, deadline=None)
@given(bargains(), rules, st.booleans())
def test_session_properties(
    pair: tuple[ConcessionParams, ConcessionParams], rule: AcceptanceRule, seller_first: bool
) -> None:
    seller, buyer = pair
    s, b = negotiators(seller, buyer, rule)
    result = run_session(s, b) if seller_first else run_session(b, s)
    first, second = ("seller", "buyer") if seller_first else ("buyer", "seller")
    role = {"initiator": first, "responder": second}
    by_role: dict[str, list[float]] = {"seller": [], "buyer": []}
    for e in result.trace:
        who = role[e.by]
        dl = seller.dl if who == "seller" else buyer.dl
        if e.response != "reject":
            assert e.step <= dl  # nobody offers or accepts after its own deadline
        if e.response == "offer":
            assert e.offer is not None
            by_role[who].append(e.offer.price)
    # Offers monotone in concession and never beyond the reservation price.
    s_off, b_off = by_role["seller"], by_role["buyer"]
    assert all(x >= seller.rp - 1e-9 for x in s_off) and all(x <= buyer.rp + 1e-9 for x in b_off)
    assert all(a >= c - 1e-9 for a, c in itertools.pairwise(s_off))
    assert all(a <= c + 1e-9 for a, c in itertools.pairwise(b_off))
    if result.agreed:
        assert result.offer is not None
        assert seller.rp - 1e-6 <= result.offer.price <= buyer.rp + 1e-6
        assert result.step is not None and result.step <= max(seller.dl, buyer.dl)
    elif rule is AcceptanceRule.NEXT and seller.rp < buyer.rp - 1e-6 and seller.dl == buyer.dl:
        # (CURRENT can miss it: the last counter-offer before the deadline is never answered.)
        pytest.fail("a zone of agreement exists and both reach it by the common deadline, yet no agreement")
    # The float-only fast path is the same protocol.
    init, resp = (seller, buyer) if seller_first else (buyer, seller)
    fast = negotiate_issue(init, resp, seller_first, rule)
    assert (fast.agreed, fast.step, fast.accepted_by) == (result.agreed, result.step, result.by)
    if fast.agreed:
        assert result.offer is not None and fast.value == pytest.approx(result.offer.price)


def test_no_zone_of_agreement_ends_without_deal() -> None:
    seller, buyer = ConcessionParams(80, 60, 10, 1.0), ConcessionParams(20, 50, 10, 1.0)
    s, b = negotiators(seller, buyer, AcceptanceRule.NEXT)
    result = run_session(s, b)
    assert not result.agreed and result.reason == "deadline"
    assert result.trace[-1].response == "offer" and result.trace[-1].step == 10
    assert run_session(*negotiators(seller, buyer, AcceptanceRule.NEXT), max_rounds=5).reason == "max_rounds"


def test_stepped_from_outside_matches_session() -> None:
    """What a gateway does with messages: one respond() per received offer, dict round trips between."""
    s, b = negotiators(
        ConcessionParams(80, 20, 20, 2.0), ConcessionParams(20, 80, 20, 0.5), AcceptanceRule.NEXT
    )
    wire = Counter(s.first_offer(0)).to_dict()
    t, turn = 0, "buyer"
    while True:
        msg = response_from_dict(wire)
        assert isinstance(msg, Counter)
        me = b if turn == "buyer" else s
        reply = me.respond(msg.offer, t)
        if not isinstance(reply, Counter):
            break
        wire = reply.to_dict()
        if turn == "buyer":
            t += 1
        turn = "seller" if turn == "buyer" else "buyer"
    assert isinstance(reply, Accept) and t == 11 and turn == "buyer"
    assert reply.offer.price == pytest.approx(35.5028, abs=1e-4)


def test_negotiator_state_round_trip() -> None:
    cfg = price_cfg(80, 20, 20, 2.0, "high")
    s = Negotiator(strategy_from_config(cfg), "current")
    s.first_offer(0)
    s.respond(Offer.of(price=21.0), 1)
    again = Negotiator.restore(strategy_from_config(cfg), s.state())
    assert again.last_offer == s.last_offer and again.rule is AcceptanceRule.CURRENT
    assert again.respond(Offer.of(price=25.0), 2) == s.respond(Offer.of(price=25.0), 2)


@pytest.mark.parametrize(
    ("offer", "t", "reason"),
    [
        (Offer.of(quantity=3.0), 1, "offer issues"),
        (Offer.of(price=50.0, quantity=3.0), 1, "offer issues"),
        (Offer.of(price=50.0), 21, "deadline"),
    ],
)
def test_bad_offers_are_rejected_not_raised(offer: Offer, t: int, reason: str) -> None:
    neg = Negotiator(strategy_from_config(price_cfg(80, 20, 20, 2.0, "high")))
    reply = neg.respond(offer, t)
    assert isinstance(reply, Reject) and reason in reply.reason
    assert isinstance(neg.respond("price=3", 1), Reject)  # type: ignore[arg-type]


def test_wire_types_round_trip_and_validate() -> None:
    o = Offer.of(price=35.5, quantity=100)
    assert Offer.from_dict(o.to_dict()) == o and hash(o) == hash(
        Offer.from_dict({"quantity": 100, "price": 35.5})
    )
    for r in (Accept(o), Counter(o), Reject("deadline")):
        assert response_from_dict(r.to_dict()) == r
    for bad in ({}, {"price": float("nan")}, {"price": "1"}, {"": 1.0}, {"price": True}):
        with pytest.raises(OfferError):
            Offer.from_dict(bad)
    for bad_r in ({"type": "maybe"}, {"type": "counter", "offer": {}}, {"type": "reject", "reason": 3}, []):
        with pytest.raises(OfferError):
            response_from_dict(bad_r)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({}, "<root>"),
        ({"price": {"ip": 1, "rp": 2, "dl": 0, "cr": 1}}, "price"),
        ({"price": {"ip": 1, "rp": 2, "dl": 1.5, "cr": 1}}, "price.dl"),
        ({"price": {"ip": 1, "rp": 1, "dl": 5, "cr": 1}}, "price.prefer"),
        ({"price": {"ip": 2, "rp": 1, "dl": 5, "cr": 1, "prefer": "low"}}, "price.prefer"),
        ({"type": "auction"}, "type"),
        ({"type": "grid", "issues": {}}, "issues"),
        (
            {
                "type": "grid",
                "issues": {"p": {"low": 0, "high": 1, "step": 0.5, "prefer": "up"}},
                "dl": 3,
                "cr": 1,
            },
            "issues.p.prefer",
        ),
    ],
)
def test_strategy_config_errors_name_the_key(cfg: dict[str, Any], key: str) -> None:
    with pytest.raises(StrategyConfigError) as err:
        strategy_from_config(cfg)
    assert err.value.key == key


def grid_cfg(prefer_price: str, prefer_qty: str, reservation: float, cr: float) -> dict[str, Any]:
    return {
        "type": "grid",
        "issues": {
            "price": {"low": 20, "high": 80, "step": 5, "prefer": prefer_price},
            "quantity": {"low": 50, "high": 150, "step": 25, "prefer": prefer_qty},
        },
        "weights": {"price": 0.7, "quantity": 0.3},
        "dl": 20,
        "cr": cr,
        "reservation": reservation,
    }


@given(st.floats(0.0, 0.9), rates, st.floats(0.0, 0.9), rates)
@settings(max_examples=60, deadline=None)
def test_multi_issue_grid_session(res_s: float, cr_s: float, res_b: float, cr_b: float) -> None:
    seller = strategy_from_config(grid_cfg("high", "high", res_s, cr_s))
    buyer = strategy_from_config(grid_cfg("low", "high", res_b, cr_b))
    utilities = [seller.utility(seller.offer(t)) for t in range(21)]  # type: ignore[union-attr]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(utilities))
    assert all(u >= res_s - 1e-9 for u in utilities)
    result = run_session(Negotiator(seller), Negotiator(buyer))
    for e in result.trace:
        assert e.offer is None or seller.space.contains(e.offer)  # type: ignore[union-attr]
    if result.agreed:
        assert result.offer is not None
        assert seller.utility(result.offer) >= res_s - 1e-9  # type: ignore[union-attr]
        assert buyer.utility(result.offer) >= res_b - 1e-9  # type: ignore[union-attr]
