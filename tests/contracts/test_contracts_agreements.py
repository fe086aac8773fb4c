"""Agreement lifecycle on anvil and py-evm: submit, report, settle, dispute, reclaim, cancel and every revert."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from web3.logs import DISCARD

from contracts.harness import Community, advance_time
from gridpact.core.eip712 import Domain, sign_report, sign_terms

HOUR = 3600
PRICE = 250_000_000_000_000_000  # 0.25 token per kWh
ACTIVE, DISPUTED, SETTLED, REFUNDED, CANCELLED = 1, 2, 3, 4, 5


def events(c: Community, receipt: Any, name: str) -> list[dict]:
    return [
        dict(e["args"]) for e in getattr(c.market.events, name)().process_receipt(receipt, errors=DISCARD)
    ]


def submit(c: Community, t: Any, seller: Any, buyer: Any) -> Any:
    return c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, seller, buyer)))


def test_contracts_signed_settlement_pays_seller_refunds_buyer(community: Community, reverts) -> None:
    c = community
    a, b, _ = c.households
    m = c.market
    free_a, free_b = c.free(a.address), c.free(b.address)
    t = c.terms(a, b, quantity_wh=2_000, unit_price=PRICE)
    rcpt = submit(c, t, a, b)
    escrow = 2_000 * PRICE // 1000
    assert events(c, rcpt, "AgreementSubmitted")[0]["id"] == c.agreement_id(t)
    assert c.free(b.address) == free_b - escrow
    assert m.functions.agreementOf(t.as_tuple()).call()[0] == ACTIVE
    # too early: the batch skips the item and says why instead of reverting
    rcpt = c.admin.transact(m.functions.settleBatch([c.settle_item(t, a, b, 2000, 2000)]))
    assert [(i, r.name) for i, r in c.rejected(rcpt)] == [(0, "TooEarly")]
    advance_time(c.w3, 2 * HOUR + 1)
    treasury = m.functions.treasury().call()
    free_t = c.free(treasury)
    rcpt = c.admin.transact(m.functions.settleBatch([c.settle_item(t, a, b, 1_990, 1_980)]))
    settled = events(c, rcpt, "AgreementSettled")[0]
    # within tolerance: the seller is paid the smaller report less the penalty on what it leaves undelivered, the
    # buyer charged the larger one and credited the penalty on what that leaves undelivered; the rest to the treasury
    paid, cost = 1_980 * PRICE // 1000, 1_990 * PRICE // 1000
    penalty = (20 * PRICE // 1000) * 1000 // 10_000
    credit = (10 * PRICE // 1000) * 1000 // 10_000
    assert settled["deliveredWh"] == 1_980
    assert settled["paidToSeller"] == paid - penalty
    assert settled["refundedToBuyer"] == escrow - cost + credit
    assert c.free(a.address) == free_a + paid - penalty
    assert c.free(b.address) == free_b - escrow + escrow - cost + credit
    assert c.free(treasury) == free_t + cost - paid + penalty - credit
    assert m.functions.agreementOf(t.as_tuple()).call()[0] == SETTLED
    # no double settlement: skipped by the batch, refused on chain
    assert (
        m.functions.settleBatch([c.settle_item(t, a, b, 1_990, 1_980)]).call({"from": c.admin.address}) == 0
    )
    reverts("WrongStatus", lambda: a.sender.transact(m.functions.report(t.as_tuple(), 1)))
    reverts("WrongStatus", lambda: b.sender.transact(m.functions.reclaim(t.as_tuple())))


def test_contracts_onchain_reports_and_report_reverts(community: Community, reverts) -> None:
    c = community
    a, b, x = c.households
    m = c.market
    t = c.terms(a, b)
    submit(c, t, a, b)
    reverts("TooEarly", lambda: a.sender.transact(m.functions.report(t.as_tuple(), 1000)))
    advance_time(c.w3, 2 * HOUR + 1)
    reverts("NotParty", lambda: x.sender.transact(m.functions.report(t.as_tuple(), 1000)))
    rcpt = a.sender.transact(
        m.functions.report(t.as_tuple(), 1_200)
    )  # over-reporting is capped at the quantity
    assert events(c, rcpt, "DeliveryReported")[0]["deliveredWh"] == 1_200
    reverts("AlreadyReported", lambda: a.sender.transact(m.functions.report(t.as_tuple(), 1000)))
    assert m.functions.agreementOf(t.as_tuple()).call() == [
        ACTIVE,
        t.deliveryEnd + 86_400,
        True,
        False,
        1_200,
        0,
    ]
    # the buyer reports through a signed report inside the batch; the seller's on-chain report is used
    item = c.settle_item(t, None, b, 0, 1_000)
    rcpt = c.admin.transact(m.functions.settleBatch([item]))
    assert events(c, rcpt, "AgreementSettled")[0]["deliveredWh"] == 1_000
    # second agreement settled purely on chain; the buyer's report after the deadline is too late
    t2 = c.terms(a, b)
    submit(c, t2, a, b)
    advance_time(c.w3, 2 * HOUR + 1)
    b.sender.transact(m.functions.report(t2.as_tuple(), 1_000))
    rcpt = a.sender.transact(m.functions.report(t2.as_tuple(), 1_000))
    assert events(c, rcpt, "AgreementSettled")[0]["paidToSeller"] == 1_000 * PRICE // 1000
    t3 = c.terms(a, b)
    submit(c, t3, a, b)
    advance_time(c.w3, 2 * HOUR + 86_400 + 10)
    reverts("TooLate", lambda: a.sender.transact(m.functions.report(t3.as_tuple(), 1000)))
    # nobody reported in time: anyone may close it, and the buyer gets the whole escrow back
    rcpt = x.sender.transact(m.functions.reclaim(t3.as_tuple()))
    assert events(c, rcpt, "EscrowReclaimed")[0]["amount"] == 1_000 * PRICE // 1000


def test_contracts_settle_batch_reverts_and_report_replay(community: Community, reverts) -> None:
    c = community
    a, b, x = c.households
    m = c.market
    t1, t2 = c.terms(a, b), c.terms(a, b)
    submit(c, t1, a, b)
    submit(c, t2, a, b)
    advance_time(c.w3, 2 * HOUR + 1)
    settle = m.functions.settleBatch
    # a missing report, or one signed for another quantity, another agreement, or by the wrong key is refused:
    # each bad item is skipped with its reason, nothing is settled
    item = list(c.settle_item(t1, a, b, 1000, 1000))
    item[1] = 999
    other = c.settle_item(t2, a, b, 1000, 1000)
    wrong = sign_report(c.agreement_id(t1), 1000, c.domain, x.key)
    bad = [
        c.settle_item(t1, a, None, 1000, 1000),
        tuple(item),
        (t1.as_tuple(), 1000, 1000, other[3], other[4]),
        (t1.as_tuple(), 1000, 1000, wrong, other[4]),
    ]
    assert settle(bad).call({"from": c.admin.address}) == 0
    rcpt = c.admin.transact(settle(bad))
    reasons = c.rejected(rcpt)
    assert [(i, r.name) for i, r in reasons] == [
        (0, "MissingReport"), (1, "BadSignature"), (2, "BadSignature"), (3, "BadSignature")
    ]  # fmt: skip
    assert reasons[3][1].args[1:] == (a.address, x.address)  # the expected signer and the one recovered
    assert not events(c, rcpt, "AgreementSettled")
    outsider = c.add_household("0x" + "77" * 32)
    c.admin.transact(m.functions.remove(outsider.address))
    reverts("NotRegistered", lambda: outsider.sender.transact(settle([c.settle_item(t1, a, b, 1000, 1000)])))
    # batch of two settles both; an unknown agreement is skipped with its reason
    ghost = c.terms(a, b)
    items = [
        c.settle_item(t1, a, b, 1000, 1000),
        c.settle_item(t2, a, b, 500, 500),
        c.settle_item(ghost, a, b, 1, 1),
    ]
    assert settle(items).call({"from": c.admin.address}) == 2
    rcpt = c.admin.transact(settle(items))
    assert [e["deliveredWh"] for e in events(c, rcpt, "AgreementSettled")] == [1000, 500]
    assert [(i, r.name) for i, r in c.rejected(rcpt)] == [(2, "WrongStatus")]


def test_contracts_dispute_resolve_and_reclaim(community: Community, reverts) -> None:
    c = community
    a, b, x = c.households
    m = c.market
    t1, t2, t3 = c.terms(a, b), c.terms(a, b), c.terms(a, b)
    for t in (t1, t2, t3):
        submit(c, t, a, b)
    advance_time(c.w3, 2 * HOUR + 1)
    # reports 1000 vs 900 differ by 10 % > 2 % tolerance: dispute instead of payment
    rcpt = c.admin.transact(m.functions.settleBatch([c.settle_item(t1, a, b, 1000, 900)]))
    opened = events(c, rcpt, "DisputeOpened")[0]
    assert (opened["sellerWh"], opened["buyerWh"]) == (1000, 900)
    assert m.functions.agreementOf(t1.as_tuple()).call()[0] == DISPUTED
    reverts(
        "AccessControlUnauthorizedAccount",
        lambda: a.sender.transact(m.functions.resolveDispute(t1.as_tuple(), 1)),
    )
    reverts("WrongStatus", lambda: c.admin.transact(m.functions.resolveDispute(t2.as_tuple(), 1)))
    reverts("TooEarly", lambda: b.sender.transact(m.functions.reclaim(t1.as_tuple())))
    rcpt = c.admin.transact(m.functions.resolveDispute(t1.as_tuple(), 5_000))  # capped at the agreed quantity
    assert events(c, rcpt, "DisputeResolved")[0]["deliveredWh"] == 1000
    assert m.functions.agreementOf(t1.as_tuple()).call()[0] == SETTLED
    # the buyer denies delivery; nobody resolves; after the dispute deadline anyone closes it: the seller gets
    # what the buyer conceded (0), the buyer is charged what the seller claimed, the gap goes to the treasury
    c.admin.transact(m.functions.settleBatch([c.settle_item(t2, a, b, 1000, 0)]))
    assert m.functions.agreementOf(t2.as_tuple()).call()[2:] == [True, True, 1000, 0]
    advance_time(c.w3, 3 * 86_400 + 10)
    reverts("TooLate", lambda: c.admin.transact(m.functions.resolveDispute(t2.as_tuple(), 1)))
    treasury = m.functions.treasury().call()
    before_a, before_b, before_t = c.free(a.address), c.free(b.address), c.free(treasury)
    rcpt = x.sender.transact(m.functions.reclaimBatch([t2.as_tuple(), t3.as_tuple(), t1.as_tuple()]))
    escrow = 1000 * PRICE // 1000
    assert (c.free(a.address), c.free(b.address)) == (before_a, before_b + escrow)  # t3 (no reports) refunded
    assert c.free(treasury) == before_t + escrow
    assert len(events(c, rcpt, "EscrowReclaimed")) == 1
    assert [(i, r.name) for i, r in c.rejected(rcpt)] == [(2, "WrongStatus")]  # t1 was already settled
    assert m.functions.agreementOf(t2.as_tuple()).call()[0] == SETTLED
    assert m.functions.agreementOf(t3.as_tuple()).call()[0] == REFUNDED
    reverts("WrongStatus", lambda: c.admin.transact(m.functions.reclaim(t3.as_tuple())))


def test_contracts_submit_reverts(community: Community, reverts) -> None:
    c = community
    a, b, x = c.households
    m = c.market
    now = c.now()

    def sub(t: Any, ss: Any = None, bs: Any = None) -> Any:
        s1, s2 = c.sign(t, a, b)
        return c.admin.transact(m.functions.submitAgreement(t.as_tuple(), ss or s1, bs or s2))

    t = c.terms(a, b)
    reverts("BadSignature", sub, t, sign_terms(t, c.domain, x.key))
    reverts("BadSignature", sub, t, None, sign_terms(t, c.domain, a.key))
    other_chain = Domain(c.domain.chain_id + 1, c.domain.market)
    reverts("BadSignature", sub, t, sign_terms(t, other_chain, a.key))
    other_market = Domain(c.domain.chain_id, c.token.address)
    reverts("BadSignature", sub, t, None, sign_terms(t, other_market, b.key))
    reverts("TermsExpired", sub, c.terms(a, b, expiry=now - 1))
    same = replace(c.terms(a, b), buyer=a.address)
    assert reverts("InvalidTerms", sub, same, *(sign_terms(same, c.domain, a.key),) * 2)[1] == 1
    reverts("InvalidTerms", sub, c.terms(a, b, quantity_wh=0))
    bad_window = c.terms(a, b)
    reverts("InvalidTerms", sub, replace(bad_window, deliveryStart=bad_window.deliveryEnd))
    assert (
        reverts("InvalidTerms", sub, c.terms(a, b, delivery_end=now + 1800))[1] == 4
    )  # expiry after delivery end
    reverts("InsufficientBalance", sub, c.terms(a, b, quantity_wh=10**9))
    c.admin.transact(m.functions.remove(x.address))
    reverts(
        "NotRegistered",
        lambda: x.sender.transact(m.functions.submitAgreement(t.as_tuple(), *c.sign(t, a, b))),
    )
    sub(t)
    assert reverts("WrongStatus", sub, t)[1] == ACTIVE  # replay of the same signed terms
    assert reverts("SlotBusy", sub, c.terms(a, b, 5, nonce=t.nonce))[1] == t.nonce
    t2 = c.terms(a, b)
    s1, s2 = c.sign(t2, a, b)
    reverts(
        "LengthMismatch", lambda: c.admin.transact(m.functions.submitAgreements([t2.as_tuple()], [s1], []))
    )
    c.admin.transact(m.functions.submitAgreements([t2.as_tuple()], [s1], [s2]))
    assert m.functions.agreementOf(t2.as_tuple()).call()[0] == ACTIVE


def test_contracts_nonce_reuse_cancel_and_no_replay(community: Community, reverts) -> None:
    c = community
    a, b, x = c.households
    m = c.market
    old = c.terms(a, b, nonce=7)
    submit(c, old, a, b)
    advance_time(c.w3, 2 * HOUR + 1)
    c.admin.transact(m.functions.settleBatch([c.settle_item(old, a, b, 1000, 1000)]))
    assert m.functions.slotOf(a.address, 7).call() == [SETTLED, old.deliveryEnd + 86_400, True]
    reverts("TermsExpired", lambda: submit(c, old, a, b))  # closed terms cannot come back
    new = c.terms(a, b, nonce=7)
    submit(c, new, a, b)  # the slot is reused
    assert m.functions.agreementOf(new.as_tuple()).call()[0] == ACTIVE
    assert m.functions.agreementOf(old.as_tuple()).call()[0] == 0
    # cancellation before submission
    t = c.terms(a, b, nonce=8)
    reverts("NotParty", lambda: x.sender.transact(m.functions.cancelTerms(t.as_tuple())))
    rcpt = b.sender.transact(m.functions.cancelTerms(t.as_tuple()))
    assert events(c, rcpt, "TermsCancelled")[0]["by"] == b.address
    reverts("WrongStatus", lambda: submit(c, t, a, b))
    a.sender.transact(m.functions.cancelTerms(t.as_tuple()))  # cancelling twice changes nothing
    assert m.functions.agreementOf(t.as_tuple()).call()[0] == CANCELLED
    # cancellation is by id: the seller's nonce stays free for other terms at once
    assert m.functions.slotOf(a.address, 8).call()[2] is True
    submit(c, c.terms(a, b, 5, nonce=8), a, b)
    # cancelling other terms on a busy slot withdraws those terms only; the active agreement is untouched
    a.sender.transact(m.functions.cancelTerms(c.terms(a, b, 5, nonce=7).as_tuple()))
    assert m.functions.agreementOf(new.as_tuple()).call()[0] == ACTIVE
