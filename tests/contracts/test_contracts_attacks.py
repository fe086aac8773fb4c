"""The attacks of issue 17 (items 1, 2, 5 and 6), each replayed on anvil and on py-evm.

Each test's docstring says what the attacker tried; the test asserts that the honest party keeps its tokens
(or that the attacker gains nothing, where report-based rules can do no better: see docs/contracts.md).
Settlement still rests on the parties' reports; meter-signed evidence is not built yet.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from web3.logs import DISCARD

from contracts.harness import Community, advance_time

HOUR, DAY = 3600, 86_400
PRICE = 250_000_000_000_000_000  # 0.25 token per kWh
COLLATERAL = 10**18
ACTIVE, DISPUTED, SETTLED, REFUNDED, CANCELLED = 1, 2, 3, 4, 5
L_CLOSED = 3
MAX_UINT40 = 2**40 - 1


def value(wh: int, price: int = PRICE) -> int:
    return wh * price // 1000


def submit(c: Community, t: Any, seller: Any, buyer: Any) -> Any:
    return c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, seller, buyer)))


def names(c: Community, receipt: Any) -> list[tuple[int, str]]:
    return [(i, r.name) for i, r in c.rejected(receipt)]


def loan_closed(c: Community, receipt: Any) -> dict:
    return dict(c.loans.events.LoanClosed().process_receipt(receipt, errors=DISCARD)[0]["args"])


# ------------------------------------------------------------------ item 1: freezing slots by cancelTerms


def test_attack_outsider_cancel_cannot_freeze_a_sellers_slot(community: Community, reverts) -> None:
    """Attack: an outsider writes terms naming itself buyer, the victim seller, the victim's next nonce and an
    expiry of 2^40-1, then cancels them, hoping the slot stays Cancelled forever so the victim's genuine,
    doubly-signed terms on that nonce revert SlotBusy."""
    c = community
    seller, buyer, attacker = c.households
    m = c.market
    fake = replace(c.terms(seller, attacker, nonce=41), expiry=MAX_UINT40)
    attacker.sender.transact(m.functions.cancelTerms(fake.as_tuple()))
    assert m.functions.agreementOf(fake.as_tuple()).call()[0] == CANCELLED
    assert m.functions.slotOf(seller.address, 41).call()[2] is True  # the seller's slot is still free
    genuine = c.terms(seller, buyer, nonce=41)
    free_b = c.free(buyer.address)
    submit(c, genuine, seller, buyer)
    assert m.functions.agreementOf(genuine.as_tuple()).call()[0] == ACTIVE
    advance_time(c.w3, 2 * HOUR + 1)
    c.admin.transact(m.functions.settleBatch([c.settle_item(genuine, seller, buyer, 1000, 1000)]))
    assert c.free(buyer.address) == free_b - value(1000)  # the trade went through as signed
    # an outsider cannot cancel terms it is not named in
    reverts(
        "NotParty",
        lambda: attacker.sender.transact(m.functions.cancelTerms(c.terms(seller, buyer).as_tuple())),
    )


def test_attack_squatting_the_providers_nonce(community: Community) -> None:
    """Attack: a household writes terms naming the grid provider as seller with the provider's next sequential
    nonce and cancels them, to block `tradeWithProvider` for every household."""
    c = community
    a, b, provider = c.households
    m = c.market
    c.admin.transact(m.functions.setProvider(provider.address, 10**17, PRICE))
    nonce = int(m.functions.nonces(provider.address).call())
    squat = replace(c.terms(provider, a, nonce=nonce), expiry=MAX_UINT40)
    a.sender.transact(m.functions.cancelTerms(squat.as_tuple()))
    now = c.now()
    free_b = c.free(b.address)
    b.sender.transact(m.functions.tradeWithProvider(True, 1000, now + HOUR, now + 2 * HOUR))
    assert c.free(b.address) == free_b - value(1000)  # the household's purchase is escrowed and open
    assert m.functions.slotOf(provider.address, nonce).call()[0] == ACTIVE


def test_attack_one_bad_item_cannot_sink_a_batch(community: Community) -> None:
    """Attack: a party slips one item into a shared batch that must fail (terms it cancelled, expired terms,
    a forged signature), so that the whole `submitAgreements` / `settleBatch` / `reclaimBatch` reverts and
    everyone else's agreements with it."""
    c = community
    a, b, x = c.households
    m = c.market
    good1, good2 = c.terms(a, b), c.terms(b, a)
    cancelled = c.terms(a, x)
    x.sender.transact(m.functions.cancelTerms(cancelled.as_tuple()))
    expired = c.terms(a, b, expiry=c.now() - 1)
    forged = c.terms(x, b)
    batch = [good1, cancelled, expired, forged, good2]
    sigs = [
        c.sign(t, s, bb) for t, s, bb in [(good1, a, b), (cancelled, a, x), (expired, a, b), (forged, x, b)]
    ]
    sigs.append(c.sign(good2, b, a))
    sigs[3] = (sigs[3][0], sigs[3][0])  # the buyer's signature forged with the seller's
    rcpt = c.admin.transact(
        m.functions.submitAgreements(
            [t.as_tuple() for t in batch], [s for s, _ in sigs], [s for _, s in sigs]
        )
    )
    assert names(c, rcpt) == [(1, "WrongStatus"), (2, "TermsExpired"), (3, "BadSignature")]
    assert [m.functions.agreementOf(t.as_tuple()).call()[0] for t in (good1, good2)] == [ACTIVE, ACTIVE]
    advance_time(c.w3, 2 * HOUR + 1)
    items = [c.settle_item(good1, a, b, 1000, 1000), c.settle_item(good2, b, a, 1000, 1000)]
    late = c.terms(a, b)  # never submitted
    rcpt = c.admin.transact(m.functions.settleBatch([items[0], c.settle_item(late, a, b, 1, 1), items[1]]))
    assert names(c, rcpt) == [(1, "WrongStatus")]
    assert [m.functions.agreementOf(t.as_tuple()).call()[0] for t in (good1, good2)] == [SETTLED, SETTLED]
    rcpt = x.sender.transact(m.functions.reclaimBatch([good1.as_tuple(), late.as_tuple()]))
    assert [n for _, n in names(c, rcpt)] == ["WrongStatus", "WrongStatus"]  # nothing to reclaim, no revert


# ------------------------------------------------------------------ item 2: locking the provider's deposit


def test_attack_household_cannot_lock_the_providers_deposit(community: Community, reverts) -> None:
    """Attack: a household sells to the provider (escrow from the provider's balance) with a quantity and
    delivery window of its own choosing: unbounded, ending near 2^40, in the past, or overlapping sales, to
    lock the provider's whole deposit for centuries."""
    c = community
    a, _, provider = c.households
    m = c.market
    c.admin.transact(m.functions.setProvider(provider.address, PRICE, 10**17))
    free_p = c.free(provider.address)
    now = c.now()
    sell = m.functions.tradeWithProvider
    reverts(
        "ProviderTradeOutOfBounds", lambda: a.sender.transact(sell(False, 10**12, now + HOUR, now + 2 * HOUR))
    )
    reverts(
        "ProviderTradeOutOfBounds", lambda: a.sender.transact(sell(False, 1000, now + HOUR, MAX_UINT40 - DAY))
    )
    reverts(
        "ProviderTradeOutOfBounds", lambda: a.sender.transact(sell(False, 1000, now - 2 * HOUR, now - HOUR))
    )
    reverts(
        "ProviderTradeOutOfBounds", lambda: a.sender.transact(sell(False, 1000, now + HOUR, now + 3 * DAY))
    )
    reverts("ProviderTradeOutOfBounds", lambda: a.sender.transact(sell(False, 0, now + HOUR, now + 2 * HOUR)))
    rcpt = a.sender.transact(sell(False, 1000, now + HOUR, now + 2 * HOUR))
    args = reverts(
        "ProviderTradeOverlaps", lambda: a.sender.transact(sell(False, 1000, now + HOUR, now + 2 * HOUR))
    )
    assert args == (a.address, now + HOUR, now + 2 * HOUR)
    traded = m.events.ProviderTraded().process_receipt(rcpt, errors=DISCARD)[0]["args"]
    assert c.free(provider.address) == free_p - value(1000)
    # the household delivers nothing and never reports: the provider's escrow comes back within days
    advance_time(c.w3, 2 * HOUR + DAY + 10)
    provider.sender.transact(m.functions.reclaim(traded["terms"]))
    assert c.free(provider.address) == free_p


# ------------------------------------------------------------------ items 3 and 6: silence and shading


def test_attack_buyer_silent_after_receiving(community: Community) -> None:
    """Attack: the buyer received the energy, the seller reported it, and the buyer stays silent so that
    after the report deadline it reclaims 100 % of the escrow."""
    c = community
    seller, buyer, _ = c.households
    m = c.market
    t = c.terms(seller, buyer)
    free_s, free_b = c.free(seller.address), c.free(buyer.address)
    submit(c, t, seller, buyer)
    advance_time(c.w3, 2 * HOUR + 1)
    seller.sender.transact(m.functions.report(t.as_tuple(), 1000))
    advance_time(c.w3, DAY + 10)
    buyer.sender.transact(m.functions.reclaim(t.as_tuple()))  # the buyer's own call now pays the seller
    assert m.functions.agreementOf(t.as_tuple()).call()[0] == SETTLED
    assert c.free(seller.address) == free_s + value(1000)
    assert c.free(buyer.address) == free_b - value(1000)


def test_attack_buyer_denies_and_the_community_is_idle(community: Community) -> None:
    """Attack: the buyer reports 0 for a delivered hour (a dispute), counting on an idle community so that
    after the dispute deadline the whole escrow comes back to it."""
    c = community
    seller, buyer, x = c.households
    m = c.market
    t = c.terms(seller, buyer)
    free_b = c.free(buyer.address)
    submit(c, t, seller, buyer)
    advance_time(c.w3, 2 * HOUR + 1)
    seller.sender.transact(m.functions.report(t.as_tuple(), 1000))
    buyer.sender.transact(m.functions.report(t.as_tuple(), 0))
    assert m.functions.agreementOf(t.as_tuple()).call()[0] == DISPUTED
    advance_time(c.w3, 3 * DAY + 10)
    x.sender.transact(m.functions.reclaim(t.as_tuple()))
    # the liar is charged what the seller claimed: lying gained it nothing (the seller's part goes to the
    # treasury until meter-signed evidence decides such cases)
    assert c.free(buyer.address) == free_b - value(1000)


def test_attack_buyer_shades_inside_the_tolerance(community: Community) -> None:
    """Attack: the buyer waits for the seller's on-chain report (1000 Wh) and reports 2 % less, inside the
    tolerance, to keep ~2 % of the price."""
    c = community
    seller, buyer, _ = c.households
    m = c.market
    costs = []
    for buyer_wh in (1000, 980):  # honest, then shaded
        t = c.terms(seller, buyer)
        free_b = c.free(buyer.address)
        submit(c, t, seller, buyer)
        advance_time(c.w3, 2 * HOUR + 1)
        seller.sender.transact(m.functions.report(t.as_tuple(), 1000))
        buyer.sender.transact(m.functions.report(t.as_tuple(), buyer_wh))
        assert m.functions.agreementOf(t.as_tuple()).call()[0] == SETTLED
        costs.append(free_b - c.free(buyer.address))
    assert costs[1] == costs[0] == value(1000)  # shading saved the buyer nothing


def test_attack_seller_shades_high_to_shrink_its_penalty(community: Community) -> None:
    """Attack: a seller that delivered half reports 1 % of the quantity more than it delivered (inside the
    tolerance), after the buyer's true report, so that the non-delivery penalty is computed on less."""
    c = community
    seller, buyer, _ = c.households
    m = c.market
    got = []
    for seller_wh in (500, 510):  # honest, then shaded high
        t = c.terms(seller, buyer)
        free_s = c.free(seller.address)
        submit(c, t, seller, buyer)
        advance_time(c.w3, 2 * HOUR + 1)
        buyer.sender.transact(m.functions.report(t.as_tuple(), 500))
        seller.sender.transact(m.functions.report(t.as_tuple(), seller_wh))
        assert m.functions.agreementOf(t.as_tuple()).call()[0] == SETTLED
        got.append(c.free(seller.address) - free_s)
    assert (
        got[1] == got[0] == value(500) - value(500) // 10
    )  # the penalty is on what the buyer's figure leaves


# ------------------------------------------------------------------ item 5: loans


def test_attack_borrower_disputes_early_to_keep_the_collateral(community: Community, reverts) -> None:
    """Attack: the borrower opens a loan dispute at once, with a deadline before the return is due, returns
    nothing and counts on an idle community to get the collateral back."""
    c = community
    lender, borrower, _ = c.households
    loan = c.loan(lender, borrower, 1_000, COLLATERAL, HOUR)
    c.admin.transact(c.loans.functions.submitLoan(loan.as_tuple(), *c.sign_loan(loan, lender, borrower)))
    reverts("TooEarly", lambda: borrower.sender.transact(c.loans.functions.openLoanDispute(loan.as_tuple())))
    advance_time(c.w3, HOUR + 10)
    lender.sender.transact(c.loans.functions.reportReturn(loan.as_tuple(), 1_000, 0))
    borrower.sender.transact(c.loans.functions.openLoanDispute(loan.as_tuple()))
    advance_time(c.w3, 3 * DAY + 10)
    free_l = c.free(lender.address)
    ev = loan_closed(c, borrower.sender.transact(c.loans.functions.expireLoan(loan.as_tuple())))
    assert (ev["toLender"], ev["toBorrower"]) == (
        COLLATERAL,
        0,
    )  # the silent borrower accepted the lender's word
    assert c.free(lender.address) == free_l + COLLATERAL


def test_attack_silent_lender_after_a_full_return(community: Community) -> None:
    """Attack: the lender never reports, so the loan stays open and the collateral is forfeited to it even
    though the borrower returned everything and reported so."""
    c = community
    lender, borrower, _ = c.households
    free_b = c.free(borrower.address)
    loan = c.loan(lender, borrower, 1_000, COLLATERAL, HOUR)
    c.admin.transact(c.loans.functions.submitLoan(loan.as_tuple(), *c.sign_loan(loan, lender, borrower)))
    advance_time(c.w3, HOUR + 10)
    borrower.sender.transact(c.loans.functions.reportReturn(loan.as_tuple(), 1_000, 1_000))
    advance_time(c.w3, DAY)
    ev = loan_closed(c, borrower.sender.transact(c.loans.functions.expireLoan(loan.as_tuple())))
    assert (ev["toLender"], ev["toBorrower"]) == (0, COLLATERAL)
    assert c.free(borrower.address) == free_b


def test_attack_lender_that_lends_nothing(community: Community) -> None:
    """Attack: the lender never delivers the loan. Before, only returns were reported, so both reporting 0
    truthfully handed the lender the collateral; a lender claiming it lent is no better off either."""
    c = community
    lender, borrower, _ = c.households
    free_b = c.free(borrower.address)
    truthful, lying = (
        c.loan(lender, borrower, 1_000, COLLATERAL, HOUR),
        c.loan(lender, borrower, 1_000, COLLATERAL, HOUR),
    )
    for loan in (truthful, lying):
        c.admin.transact(c.loans.functions.submitLoan(loan.as_tuple(), *c.sign_loan(loan, lender, borrower)))
    advance_time(c.w3, HOUR + 10)
    lender.sender.transact(c.loans.functions.reportReturn(truthful.as_tuple(), 0, 0))
    ev = loan_closed(c, borrower.sender.transact(c.loans.functions.reportReturn(truthful.as_tuple(), 0, 0)))
    assert (ev["toLender"], ev["toBorrower"]) == (0, COLLATERAL)
    lender.sender.transact(c.loans.functions.reportReturn(lying.as_tuple(), 1_000, 0))  # claims it lent
    borrower.sender.transact(c.loans.functions.reportReturn(lying.as_tuple(), 0, 0))
    advance_time(c.w3, 3 * DAY + DAY)
    ev = loan_closed(c, borrower.sender.transact(c.loans.functions.expireLoan(lying.as_tuple())))
    assert ev["toLender"] == 0  # the unresolved claim earns the lender nothing
    assert c.free(borrower.address) == free_b - COLLATERAL  # only the disputed collateral, to the treasury
    assert ev["toTreasury"] == COLLATERAL


# ------------------------------------------------------------------ item 6: anchors


def test_attack_anchors_for_unaligned_or_future_hours(community: Community, reverts) -> None:
    """Attack: a gateway anchors readings for hour 0, an unaligned time, the current (unfinished) hour or a
    far-future hour, to pre-commit data it has not measured, or to anchor with no time on record."""
    c = community
    a, _, _ = c.households
    m = c.market
    now = c.now()
    current = now // HOUR * HOUR
    digest = b"\x07" * 32
    for hour in (0, current - HOUR + 1, current, current + 100 * DAY):
        reverts(
            "AnchorNotClosedHour", lambda h=hour: a.sender.transact(m.functions.anchorReadings(h, digest, 1))
        )
    a.sender.transact(m.functions.anchorReadings(current - HOUR, digest, 1))
    root, at = m.functions.anchors(a.address, current - HOUR).call()
    assert bytes(root) == digest and at >= now
