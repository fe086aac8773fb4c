"""Energy loans (q now, returned after tau) with the borrower's collateral, on anvil and py-evm."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from web3.logs import DISCARD

from contracts.harness import Community, advance_time
from gridpact.core.eip712 import sign_loan

HOUR = 3600
COLLATERAL = 10**18
OPEN, DISPUTED, CLOSED, CANCELLED = 1, 2, 3, 4


def closed(c: Community, receipt: Any) -> dict:
    return dict(c.loans.events.LoanClosed().process_receipt(receipt, errors=DISCARD)[0]["args"])


def submit(c: Community, loan: Any, lender: Any, borrower: Any) -> Any:
    return c.admin.transact(
        c.loans.functions.submitLoan(loan.as_tuple(), *c.sign_loan(loan, lender, borrower))
    )


def test_contracts_loan_returned_releases_collateral(community: Community, reverts) -> None:
    c = community
    lender, borrower, x = c.households
    free_b = c.free(borrower.address)
    loan = c.loan(lender, borrower, 2_000, COLLATERAL, 6 * HOUR)
    rcpt = submit(c, loan, lender, borrower)
    opened = dict(c.loans.events.LoanOpened().process_receipt(rcpt, errors=DISCARD)[0]["args"])
    assert opened["id"] == c.loan_id(loan) and opened["collateral"] == COLLATERAL
    assert c.free(borrower.address) == free_b - COLLATERAL
    assert c.loans.functions.loans(c.loan_id(loan)).call()[0] == OPEN
    reverts("WrongStatus", submit, c, loan, lender, borrower)  # replay
    reverts(
        "NotParty", lambda: x.sender.transact(c.loans.functions.reportReturn(loan.as_tuple(), 2_000, 2_000))
    )
    borrower.sender.transact(c.loans.functions.reportReturn(loan.as_tuple(), 2_000, 2_500))
    reverts(
        "AlreadyReported",
        lambda: borrower.sender.transact(c.loans.functions.reportReturn(loan.as_tuple(), 1, 1)),
    )
    rcpt = lender.sender.transact(
        c.loans.functions.reportReturn(loan.as_tuple(), 2_000, 1_980)
    )  # within 2 %: pro rata
    ev = closed(c, rcpt)
    assert (ev["lentWh"], ev["returnedWh"], ev["toTreasury"]) == (2_000, 1_980, 0)
    assert ev["toBorrower"] == COLLATERAL * 1_980 // 2_000
    assert ev["toBorrower"] + ev["toLender"] == COLLATERAL
    assert c.loans.functions.loans(c.loan_id(loan)).call()[0] == CLOSED
    reverts(
        "WrongStatus", lambda: lender.sender.transact(c.loans.functions.reportReturn(loan.as_tuple(), 1, 1))
    )
    reverts("WrongStatus", lambda: lender.sender.transact(c.loans.functions.expireLoan(loan.as_tuple())))


def test_contracts_loan_submit_reverts_and_cancel(community: Community, reverts) -> None:
    c = community
    lender, borrower, x = c.households
    m = c.market
    loan = c.loan(lender, borrower, 2_000, COLLATERAL, 6 * HOUR)
    lsig, bsig = c.sign_loan(loan, lender, borrower)

    def sub(terms: Any, s1: Any = None, s2: Any = None) -> Any:
        a1, a2 = c.sign_loan(terms, lender, borrower)
        return c.admin.transact(c.loans.functions.submitLoan(terms.as_tuple(), s1 or a1, s2 or a2))

    reverts("BadSignature", sub, loan, sign_loan(loan, c.domain, x.key))
    reverts("TermsExpired", sub, replace(loan, expiry=c.now() - 1))
    same = replace(loan, borrower=lender.address)
    reverts("InvalidTerms", sub, same, *(sign_loan(same, c.domain, lender.key),) * 2)
    reverts("InvalidTerms", sub, replace(loan, quantityWh=0))
    reverts("InvalidTerms", sub, replace(loan, returnBy=c.now() - 1))
    reverts("InsufficientBalance", sub, replace(loan, collateral=10**30))
    reverts("NotParty", lambda: x.sender.transact(c.loans.functions.cancelLoan(loan.as_tuple())))
    rcpt = borrower.sender.transact(c.loans.functions.cancelLoan(loan.as_tuple()))
    assert (
        c.loans.events.LoanCancelled().process_receipt(rcpt, errors=DISCARD)[0]["args"]["by"]
        == borrower.address
    )
    reverts(
        "WrongStatus", lambda: c.admin.transact(c.loans.functions.submitLoan(loan.as_tuple(), lsig, bsig))
    )
    reverts("WrongStatus", lambda: lender.sender.transact(c.loans.functions.cancelLoan(loan.as_tuple())))
    c.admin.transact(m.functions.remove(borrower.address))
    reverts("NotRegistered", sub, c.loan(lender, borrower, 10, 1, HOUR))


def test_contracts_loan_forfeit_dispute_and_expiry(community: Community, reverts) -> None:
    c = community
    lender, borrower, x = c.households
    forfeited = c.loan(lender, borrower, 1_000, COLLATERAL, HOUR)
    disputed = c.loan(lender, borrower, 1_000, COLLATERAL, HOUR)
    resolved = c.loan(lender, borrower, 1_000, COLLATERAL, HOUR)
    for loan in (forfeited, disputed, resolved):
        submit(c, loan, lender, borrower)
    reverts("TooEarly", lambda: lender.sender.transact(c.loans.functions.expireLoan(forfeited.as_tuple())))
    # diverging reports open a dispute
    lender.sender.transact(c.loans.functions.reportReturn(resolved.as_tuple(), 1_000, 100))
    borrower.sender.transact(c.loans.functions.reportReturn(resolved.as_tuple(), 1_000, 1_000))
    assert c.loans.functions.loans(c.loan_id(resolved)).call()[0] == DISPUTED
    # a party can escalate only once the return is due
    reverts("NotParty", lambda: x.sender.transact(c.loans.functions.openLoanDispute(disputed.as_tuple())))
    reverts(
        "TooEarly", lambda: borrower.sender.transact(c.loans.functions.openLoanDispute(disputed.as_tuple()))
    )
    reverts(
        "AccessControlUnauthorizedAccount",
        lambda: lender.sender.transact(c.loans.functions.resolveLoan(resolved.as_tuple(), 1, 1)),
    )
    reverts(
        "WrongStatus", lambda: c.admin.transact(c.loans.functions.resolveLoan(forfeited.as_tuple(), 1, 1))
    )
    ev = closed(c, c.admin.transact(c.loans.functions.resolveLoan(resolved.as_tuple(), 1_000, 500)))
    assert (ev["returnedWh"], ev["toBorrower"], ev["toLender"]) == (500, COLLATERAL // 2, COLLATERAL // 2)
    advance_time(c.w3, HOUR + 10)
    borrower.sender.transact(c.loans.functions.openLoanDispute(disputed.as_tuple()))
    reverts(
        "WrongStatus",
        lambda: borrower.sender.transact(c.loans.functions.openLoanDispute(disputed.as_tuple())),
    )
    lender.sender.transact(c.loans.functions.reportReturn(disputed.as_tuple(), 1_000, 0))
    borrower.sender.transact(c.loans.functions.reportReturn(disputed.as_tuple(), 1_000, 1_000))
    assert c.loans.functions.loans(c.loan_id(disputed)).call()[0] == DISPUTED
    lender.sender.transact(
        c.loans.functions.reportReturn(forfeited.as_tuple(), 1_000, 0)
    )  # the borrower stays silent
    advance_time(c.w3, 86_400)
    reverts(
        "TooLate", lambda: lender.sender.transact(c.loans.functions.reportReturn(forfeited.as_tuple(), 1, 1))
    )
    reverts("NotParty", lambda: x.sender.transact(c.loans.functions.expireLoan(forfeited.as_tuple())))
    free_l = c.free(lender.address)
    ev = closed(c, lender.sender.transact(c.loans.functions.expireLoan(forfeited.as_tuple())))
    assert (ev["toBorrower"], ev["toLender"]) == (
        0,
        COLLATERAL,
    )  # the silent borrower accepted the lender's figures
    assert c.free(lender.address) == free_l + COLLATERAL
    reverts("TooEarly", lambda: c.admin.transact(c.loans.functions.expireLoan(disputed.as_tuple())))
    advance_time(c.w3, 3 * 86_400)
    reverts("TooLate", lambda: c.admin.transact(c.loans.functions.resolveLoan(disputed.as_tuple(), 1, 1)))
    free_b = c.free(borrower.address)
    ev = closed(c, c.admin.transact(c.loans.functions.expireLoan(disputed.as_tuple())))
    # unresolved dispute: each side gets what the other conceded (nothing here), the disputed rest to the treasury
    assert (ev["toBorrower"], ev["toLender"], ev["toTreasury"]) == (0, 0, COLLATERAL)
    assert c.free(borrower.address) == free_b
