"""The micro-grid operator's account and the network fee (docs/contracts.md, "Operator account and network
fee"), on anvil and py-evm: only the community sets them; penalties, report gaps and unresolved loan
remainders go to the operator once named; a settlement charges the seller value(delivered, fee) out of its
payout after the penalty (capped at that payout) and credits it to the operator, the buyer's figures
unchanged, from the parties' reports and from the meters' statements alike; trades with the grid provider
pay none; tokens are conserved; and the operator, a plain unregistered address, withdraws what it earned.
"""

from __future__ import annotations

from typing import Any

from web3.logs import DISCARD

from contracts.chain import Sender
from contracts.harness import Community, advance_time
from gridpact.core.eip712 import Terms
from gridpact.core.settlement import split, value
from gridpact.core.statement import settlement_batch

HOUR, DAY = 3600, 86_400
PRICE = 250_000_000_000_000_000  # 0.25 token per kWh
FEE = 20_000_000_000_000_000  # 0.02 token per kWh delivered
PENALTY_BPS = 1_000  # the default
COLLATERAL = 10**18
OPERATOR_KEY = "0x" + "0e" * 32  # never registered
ZERO = "0x" + "00" * 20


def events(c: Community, receipt: Any, name: str) -> list[dict]:
    return [
        dict(e["args"]) for e in getattr(c.market.events, name)().process_receipt(receipt, errors=DISCARD)
    ]


def submit(c: Community, t: Terms, seller: Any, buyer: Any) -> Any:
    return c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, seller, buyer)))


def operator_account(c: Community) -> Sender:
    """A fresh address with gas money, not a participant of the market."""
    op = Sender(c.w3, OPERATOR_KEY)
    if c.w3.eth.get_balance(op.address) < 10**17:
        c.admin.send({"to": op.address, "value": 10**18, "gas": 21_000})
    assert not c.market.functions.isParticipant(op.address).call()
    return op


def named_operator(c: Community) -> Sender:
    """`operator_account`, named the market's operator by the community."""
    op = operator_account(c)
    c.admin.transact(c.market.functions.setOperator(op.address))
    return op


def assert_conserved(c: Community, escrow: int, *extra: str) -> None:
    """The market's tokens are exactly the internal balances (households, community, loans contract,
    operator) plus the open escrows."""
    accounts = {*(h.address for h in c.households), c.admin.address, c.loans.address, *extra}
    assert c.held() == sum(c.free(a) for a in accounts) + escrow


def test_operator_and_fee_are_the_communitys_to_set(community: Community, reverts) -> None:
    c = community
    m = c.market
    x = c.households[2]
    assert m.functions.operator().call() == m.functions.treasury().call() == c.admin.address
    assert m.functions.networkFee().call() == 0
    op = operator_account(c)
    for attacker in (x.sender, op):
        reverts(
            "AccessControlUnauthorizedAccount",
            lambda a=attacker: a.transact(m.functions.setOperator(a.address)),
        )
        reverts(
            "AccessControlUnauthorizedAccount", lambda a=attacker: a.transact(m.functions.setNetworkFee(1))
        )
    reverts("ZeroAddress", lambda: c.admin.transact(m.functions.setOperator(ZERO)))
    rcpt = c.admin.transact(m.functions.setOperator(op.address))
    assert events(c, rcpt, "OperatorSet") == [{"account": op.address}]
    rcpt = c.admin.transact(m.functions.setNetworkFee(FEE))
    assert events(c, rcpt, "NetworkFeeSet") == [{"feePerKWh": FEE}]
    assert m.functions.operator().call() == m.functions.treasury().call() == op.address
    assert m.functions.networkFee().call() == FEE
    # one slot, two fields: setting either leaves the other as it was
    c.admin.transact(m.functions.setNetworkFee(2**96 - 1))
    assert (m.functions.operator().call(), m.functions.networkFee().call()) == (op.address, 2**96 - 1)
    c.admin.transact(m.functions.setOperator(c.admin.address))
    assert (m.functions.operator().call(), m.functions.networkFee().call()) == (c.admin.address, 2**96 - 1)


def test_penalties_gaps_and_loan_remainders_go_to_the_operator(community: Community) -> None:
    c = community
    a, b, _ = c.households
    m = c.market
    op = named_operator(c)
    shaded, denied = c.terms(a, b, quantity_wh=2_000, unit_price=PRICE), c.terms(a, b, unit_price=PRICE)
    for t in (shaded, denied):
        submit(c, t, a, b)
    loan = c.loan(b, a, 1_000, COLLATERAL, HOUR)
    c.admin.transact(c.loans.functions.submitLoan(loan.as_tuple(), *c.sign_loan(loan, b, a)))
    advance_time(c.w3, 2 * HOUR + 1)
    community_before = c.free(c.admin.address)
    # reports within tolerance: the penalty not credited back and the gap between the reports
    c.admin.transact(
        m.functions.settleBatch(
            [c.settle_item(shaded, a, b, 1_990, 1_980), c.settle_item(denied, a, b, 1_000, 0)]
        )
    )
    gap = split(2_000, PRICE, 1_980, 1_990).treasury
    assert gap > 0 and c.free(op.address) == gap
    # an unresolved agreement dispute and an unresolved loan dispute: the disputed rest to the operator
    b.sender.transact(c.loans.functions.reportReturn(loan.as_tuple(), 1_000, 0))
    a.sender.transact(c.loans.functions.reportReturn(loan.as_tuple(), 1_000, 1_000))
    advance_time(c.w3, 3 * DAY + 10)
    c.admin.transact(m.functions.reclaim(denied.as_tuple()))
    rcpt = c.admin.transact(c.loans.functions.expireLoan(loan.as_tuple()))
    closed = c.loans.events.LoanClosed().process_receipt(rcpt, errors=DISCARD)[0]["args"]
    assert closed["toTreasury"] == COLLATERAL
    earned = gap + value(1_000, PRICE) + COLLATERAL
    assert c.free(op.address) == earned
    assert c.free(c.admin.address) == community_before  # the community no longer receives them
    assert_conserved(c, 0, op.address)
    # the operator, not a participant, withdraws what it was credited
    before = int(c.token.functions.balanceOf(op.address).call())
    rcpt = op.transact(m.functions.withdraw(earned))
    assert events(c, rcpt, "Withdrawn") == [{"account": op.address, "amount": earned}]
    assert int(c.token.functions.balanceOf(op.address).call()) == before + earned
    assert c.free(op.address) == 0
    assert_conserved(c, 0, op.address)


def test_network_fee_from_the_parties_reports(community: Community) -> None:
    """settleBatch (signed reports) and two on-chain reports; the fee in force at settlement applies."""
    c = community
    a, b, _ = c.households
    m = c.market
    op = named_operator(c)
    batch, onchain = c.terms(a, b, quantity_wh=2_000, unit_price=PRICE), c.terms(b, a, unit_price=PRICE)
    submit(c, batch, a, b)
    submit(c, onchain, b, a)
    escrow = value(2_000, PRICE) + value(1_000, PRICE)
    assert_conserved(c, escrow, op.address)
    c.admin.transact(m.functions.setNetworkFee(FEE))  # set after submission: charged all the same
    advance_time(c.w3, 2 * HOUR + 1)
    free = {h: c.free(h) for h in (a.address, b.address, op.address, c.admin.address)}
    rcpt = c.admin.transact(m.functions.settleBatch([c.settle_item(batch, a, b, 1_990, 1_980)]))
    a.sender.transact(m.functions.report(onchain.as_tuple(), 1_000))
    rcpt2 = b.sender.transact(m.functions.report(onchain.as_tuple(), 1_000))
    with_fee = split(2_000, PRICE, 1_980, 1_990, PENALTY_BPS, FEE)
    without = split(2_000, PRICE, 1_980, 1_990, PENALTY_BPS)
    full = split(1_000, PRICE, 1_000, 1_000, PENALTY_BPS, FEE)
    fee1, fee2 = value(1_980, FEE), value(1_000, FEE)
    assert with_fee.seller == without.seller - fee1 and with_fee.buyer == without.buyer
    assert with_fee.treasury == without.treasury + fee1
    for receipt, t, s, wh, fee in ((rcpt, batch, with_fee, 1_980, fee1), (rcpt2, onchain, full, 1_000, fee2)):
        settled = events(c, receipt, "AgreementSettled")
        assert settled == [
            {"id": c.agreement_id(t), "deliveredWh": wh, "paidToSeller": s.seller, "refundedToBuyer": s.buyer}
        ]
        assert events(c, receipt, "NetworkFeeCharged") == [{"id": c.agreement_id(t), "fee": fee}]
    assert c.free(a.address) == free[a.address] + with_fee.seller + full.buyer
    assert c.free(b.address) == free[b.address] + with_fee.buyer + full.seller
    assert c.free(op.address) == free[op.address] + with_fee.treasury + full.treasury
    assert full.seller == value(1_000, PRICE) - fee2 and full.treasury == fee2
    assert c.free(c.admin.address) == free[c.admin.address]
    assert_conserved(c, 0, op.address)


def test_network_fee_from_the_meters(community: Community) -> None:
    """settleByMeters: delivered = min(the seller's export share, the buyer's import share), fee on it."""
    c = community
    seller, buyer, _ = c.households
    m = c.market
    c.set_meter(seller)
    c.set_meter(buyer)
    start = (c.now() // HOUR + 1) * HOUR
    end = start + HOUR
    t = c.terms(seller, buyer, quantity_wh=1_000, unit_price=PRICE, delivery_end=end, expiry=c.now() + 60)
    submit(c, t, seller, buyer)
    c.admin.transact(m.functions.setNetworkFee(FEE))  # the operator stays the community
    advance_time(c.w3, end - c.now() + 1)
    operator = m.functions.operator().call()
    assert operator == c.admin.address
    free = {h: c.free(h) for h in (seller.address, buyer.address, operator)}
    windows = [
        c.meter_window(seller, start, end, (5_000, 10_000), (5_000, 10_600)),  # exported 600 Wh
        c.meter_window(buyer, start, end, (20_000, 300), (21_000, 300)),  # imported 1,000 Wh
    ]
    rcpt = c.admin.transact(m.functions.settleByMeters(settlement_batch(windows, [(t.as_tuple(), 0, 1)])))
    s = split(1_000, PRICE, 600, 600, PENALTY_BPS, FEE)
    assert events(c, rcpt, "AgreementSettled") == [
        {"id": c.agreement_id(t), "deliveredWh": 600, "paidToSeller": s.seller, "refundedToBuyer": s.buyer}
    ]
    assert events(c, rcpt, "NetworkFeeCharged") == [{"id": c.agreement_id(t), "fee": value(600, FEE)}]
    assert s.buyer == split(1_000, PRICE, 600, 600).buyer
    assert c.free(seller.address) == free[seller.address] + s.seller
    assert c.free(buyer.address) == free[buyer.address] + s.buyer
    assert c.free(operator) == free[operator] + s.treasury
    assert_conserved(c, 0)


def test_network_fee_is_capped_at_the_sellers_payout(community: Community) -> None:
    """A fee above the price takes the seller's whole payout after the penalty, never more; nothing
    delivered, nothing charged (and no NetworkFeeCharged)."""
    c = community
    a, b, _ = c.households
    m = c.market
    fee = 2 * PRICE
    c.admin.transact(m.functions.setNetworkFee(fee))
    deals = [c.terms(a, b, quantity_wh=1_000, unit_price=PRICE) for _ in range(3)]
    for t in deals:
        submit(c, t, a, b)
    advance_time(c.w3, 2 * HOUR + 1)
    operator = m.functions.operator().call()
    free = {h: c.free(h) for h in (a.address, b.address, operator)}
    delivered = (1_000, 500, 0)
    items = [c.settle_item(t, a, b, d, d) for t, d in zip(deals, delivered, strict=True)]
    rcpt = c.admin.transact(m.functions.settleBatch(items))
    settled = {bytes(e["id"]): e for e in events(c, rcpt, "AgreementSettled")}
    charged = {bytes(e["id"]): e["fee"] for e in events(c, rcpt, "NetworkFeeCharged")}
    for t, d in zip(deals, delivered, strict=True):
        aid = c.agreement_id(t)
        pay = value(d, PRICE) - min(value(d, PRICE), value(1_000 - d, PRICE) * PENALTY_BPS // 10_000)
        assert value(d, fee) >= pay  # the uncapped fee would take all of it, or more
        assert settled[aid]["paidToSeller"] == 0
        assert charged.get(aid, 0) == pay
        assert settled[aid]["refundedToBuyer"] == split(1_000, PRICE, d).buyer
    assert set(charged) == {c.agreement_id(t) for t in deals[:2]}  # not the undelivered one
    assert c.free(a.address) == free[a.address]
    gained_b, gained_op = c.free(b.address) - free[b.address], c.free(operator) - free[operator]
    assert gained_b + gained_op == 3 * value(1_000, PRICE)
    assert gained_op == sum(split(1_000, PRICE, d, None, PENALTY_BPS, fee).treasury for d in delivered)
    assert_conserved(c, 0)


def test_no_network_fee_on_trades_with_the_grid_provider(community: Community) -> None:
    c = community
    a, b, prov = c.households
    m = c.market
    op = operator_account(c)
    c.admin.transact(m.functions.setProvider(prov.address, PRICE, PRICE))
    c.admin.transact(m.functions.setOperator(op.address))
    c.admin.transact(m.functions.setNetworkFee(FEE))
    start, end = c.now() + HOUR, c.now() + 2 * HOUR
    traded = []
    for hh, buys in ((a, True), (b, False)):  # a buys from the provider, b sells to it
        rcpt = hh.sender.transact(m.functions.tradeWithProvider(buys, 2_000, start, end))
        traded.append(Terms(**dict(events(c, rcpt, "ProviderTraded")[0]["terms"])))
    household = c.terms(a, b, unit_price=PRICE)  # between two households: charged
    submit(c, household, a, b)
    advance_time(c.w3, 2 * HOUR + 1)
    free = {h: c.free(h) for h in (a.address, b.address, prov.address, op.address)}
    items = [
        c.settle_item(traded[0], prov, a, 2_000, 2_000),
        c.settle_item(traded[1], b, prov, 2_000, 2_000),
        c.settle_item(household, a, b, 1_000, 1_000),
    ]
    rcpt = c.admin.transact(m.functions.settleBatch(items))
    paid = [e["paidToSeller"] for e in events(c, rcpt, "AgreementSettled")]
    assert paid == [value(2_000, PRICE), value(2_000, PRICE), value(1_000, PRICE) - value(1_000, FEE)]
    assert events(c, rcpt, "NetworkFeeCharged") == [
        {"id": c.agreement_id(household), "fee": value(1_000, FEE)}
    ]
    assert c.free(prov.address) == free[prov.address] + value(
        2_000, PRICE
    )  # sold to a; its purchase escrowed
    assert c.free(b.address) == free[b.address] + value(2_000, PRICE)
    assert c.free(op.address) == free[op.address] + value(1_000, FEE)
    assert_conserved(c, 0, op.address)
