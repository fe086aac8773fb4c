"""gridpact.core.settlement against the Market contract: the same payout for every vector, on anvil and py-evm."""

from __future__ import annotations

from typing import Any

from web3.logs import DISCARD

from contracts.harness import Community, advance_time
from gridpact.core.settlement import DEFAULT_PENALTY_BPS, agree, penalty, settle_reports, split, value

HOUR = 3600
DISPUTED = 2
PRICE = 250_000_000_000_000_000  # 0.25 token per kWh
ODD = 123_456_789_123_457  # a price whose values round down at every step

# (quantity Wh, unit price, seller's report, buyer's report)
VECTORS = [
    (2_000, PRICE, 2_000, 2_000),  # in full
    (2_000, PRICE, 1_990, 1_980),  # within tolerance: seller paid the lower, buyer charged the higher
    (2_000, PRICE, 1_980, 1_990),
    (2_000, PRICE, 5_000, 2_000),  # reports capped at the quantity
    (1_000, ODD, 987, 981),
    (1_000, ODD, 0, 0),  # nothing delivered: the penalty is capped at the (zero) pay
    (3, 999, 2, 2),  # values round to zero
    (7, 333_333, 6, 7),
    (2_000, PRICE, 1_500, 2_000),  # beyond tolerance: dispute
]


def _settled(c: Community, receipt: Any) -> list[dict]:
    return [
        dict(e["args"]) for e in c.market.events.AgreementSettled().process_receipt(receipt, errors=DISCARD)
    ]


def test_value_matches_the_contract(community: Community) -> None:
    m = community.market
    for q, p in [(0, PRICE), (1, 999), (1, 1000), (999, 1), (2_000, ODD), (2**64 - 1, 2**128 - 1)]:
        assert m.functions.value(q, p).call() == value(q, p), (q, p)


def test_golden_vectors() -> None:
    s = split(2_000, PRICE, 1_980, 1_990)
    assert (s.seller, s.buyer, s.treasury) == (
        494_500_000_000_000_000,
        2_750_000_000_000_000,
        2_750_000_000_000_000,
    )
    assert s.escrow == value(2_000, PRICE)
    assert penalty(20, PRICE) == 500_000_000_000_000 and penalty(20, PRICE, 0) == 0
    assert split(1_000, PRICE, 0) == split(1_000, PRICE, -5, -5) and split(1_000, PRICE, 0).seller == 0
    assert (
        agree(1_000, 990, 1_010)
        and not agree(1_000, 979, 1_000)
        and settle_reports(1_000, PRICE, 979, 1_000) is None
    )


def test_settlement_matches_the_contract(community: Community) -> None:
    c = community
    a, b, _ = c.households
    m = c.market
    report_window, dispute_window, tolerance_bps, penalty_bps = m.functions.params().call()
    assert penalty_bps == DEFAULT_PENALTY_BPS
    treasury = m.functions.treasury().call()
    for bps in (penalty_bps, 0, 2_500, 10_000):
        c.admin.transact(m.functions.setParams(report_window, dispute_window, tolerance_bps, bps))
        terms = [c.terms(a, b, quantity_wh=q, unit_price=p) for q, p, _, _ in VECTORS]
        for t in terms:
            c.admin.transact(m.functions.submitAgreement(t.as_tuple(), *c.sign(t, a, b)))
        advance_time(c.w3, 2 * HOUR + 1)
        free = c.free(a.address), c.free(b.address), c.free(treasury)
        items = [c.settle_item(t, a, b, s, r) for t, (_, _, s, r) in zip(terms, VECTORS, strict=True)]
        got = {bytes(e["id"]): e for e in _settled(c, c.admin.transact(m.functions.settleBatch(items)))}
        want_seller = want_buyer = want_treasury = 0
        for t, (q, p, s, r) in zip(terms, VECTORS, strict=True):
            expect = settle_reports(q, p, s, r, tolerance_bps, bps)
            aid = c.agreement_id(t)
            if expect is None:
                assert aid not in got and m.functions.agreementOf(t.as_tuple()).call()[0] == DISPUTED, (
                    bps,
                    q,
                    p,
                    s,
                    r,
                )
                continue
            e = got[aid]
            assert (e["deliveredWh"], e["paidToSeller"], e["refundedToBuyer"]) == (
                min(s, r, q),
                expect.seller,
                expect.buyer,
            ), (bps, q, p, s, r)
            assert expect.escrow == value(q, p)
            want_seller, want_buyer = want_seller + expect.seller, want_buyer + expect.buyer
            want_treasury += expect.treasury
        assert (c.free(a.address), c.free(b.address), c.free(treasury)) == (
            free[0] + want_seller,
            free[1] + want_buyer,
            free[2] + want_treasury,
        )
