"""Stateful fuzzing with an attacker beside honest households (issue 17), on the in-process EVM.

Actors: two honest households that trade with each other and report the truth on time, a registered
cheater (trades with them and lies, shades or stays silent; squats their nonces through `cancelTerms`;
poisons shared batches with bad items) and an unregistered outsider (squats nonces, closes other people's
agreements, tries to submit). After every step: tokens are conserved (wallets + market = supply; the market
holds free balances, the treasury's included, + open escrows); honest households' balances move only by
their honest trades' exact outcome (so no attack on trades among honest households costs them a token);
and in every trade with the cheater, the cheater ends with no more than honesty would have paid it.
Trades with the cheater can still cost the honest side the disputed part (report-based rules, see
docs/contracts.md): that is asserted as "the liar gains nothing", not "the honest party loses nothing".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
import pytest
from eth_account import Account
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from web3.logs import DISCARD

from contracts.chain import Sender
from contracts.errors import decode_revert
from contracts.harness import Community, Household, advance_time, chain_revert, chain_snapshot
from gridpact.core.eip712 import Terms

HOUR, DAY = 3600, 86_400
PRICE = 10**17
ACTIVE, DISPUTED, SETTLED, REFUNDED = 1, 2, 3, 4
OUTSIDER_KEY = "0x" + "5a" * 32
LIES = ("honest", "silent", "zero", "shade", "high")


def value(wh: int) -> int:
    return wh * PRICE // 1000


def honest_payout(q: int, d: int) -> int:
    """What the seller receives when both report d (penalty 10 % of the undelivered value, at most the pay)."""
    pay = value(d)
    return pay - min(pay, value(q - d) * 1000 // 10_000)


@dataclass
class Deal:
    terms: Terms
    seller: Household
    buyer: Household
    delivered: int  # what really flowed
    cheater_lie: str | None = None  # None: both parties honest
    reported: set[str] = field(default_factory=set)
    closed: bool = False


def make_machine(c: Community) -> type[RuleBasedStateMachine]:
    m, tok, w3 = c.market, c.token, c.w3
    abi = m.abi + tok.abi
    honest = list(c.households[:2])
    cheater = c.households[2]
    treasury = m.functions.treasury().call()
    outsider = Sender(w3, OUTSIDER_KEY)
    if w3.eth.get_balance(outsider.address) < 10**17:
        c.admin._send({"to": outsider.address, "value": 10**18, "gas": 21_000})
    assert Account.from_key(OUTSIDER_KEY).address == outsider.address
    assert not m.functions.isParticipant(outsider.address).call()

    class AttackMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.snapshot = chain_snapshot(w3)
            advance_time(w3, 1)
            self.supply = int(tok.functions.totalSupply().call())
            self.deals: list[Deal] = []
            self.next_nonce = {h.address: 5_000 for h in honest}
            self.expected = {h.address: c.free(h.address) for h in honest}
            self.cheater_free = c.free(cheater.address)
            self.cheater_bound = self.cheater_free  # what the cheater would hold had it been honest
            self.steps = 0

        def try_send(self, who: Any, call: Any) -> Any:
            try:
                return who.transact(call)
            except Exception as exc:
                return decode_revert(exc, abi)

        # ---------------------------------------------------------- honest and cheating trades

        def open_deal(
            self, seller: Household, buyer: Household, q: int, d: int, lie: str | None, poison: bool
        ) -> None:
            nonce = self.next_nonce.get(seller.address, 0)
            if seller.address in self.next_nonce:
                self.next_nonce[seller.address] += 1
            t = c.terms(seller, buyer, q, PRICE, nonce=nonce or None)
            terms, sellers, buyers = [t.as_tuple()], *[[s] for s in c.sign(t, seller, buyer)]
            if poison:  # the cheater slips an item with a forged signature into the shared batch
                bad = c.terms(cheater, honest[0], q, PRICE)
                terms.append(bad.as_tuple())
                sellers.append(c.sign(bad, cheater, cheater)[0])
                buyers.append(c.sign(bad, cheater, cheater)[0])
            receipt = c.admin.transact(m.functions.submitAgreements(terms, sellers, buyers))
            opened = m.events.AgreementSubmitted().process_receipt(receipt, errors=DISCARD)
            assert [bytes(e["args"]["id"]) for e in opened] == [c.agreement_id(t)], "an honest item was lost"
            self.deals.append(Deal(t, seller, buyer, d, lie))
            self.move(buyer, -value(q))

        def move(self, who: Household, amount: int) -> None:
            if who.address in self.expected:
                self.expected[who.address] += amount

        @rule(i=st.integers(0, 1), q=st.sampled_from([1, 1_000, 4_000]), poison=st.booleans())
        def honest_trade(self, i: int, q: int, poison: bool) -> None:
            self.open_deal(honest[i], honest[1 - i], q, q, None, poison)

        @rule(i=st.integers(0, 1), cheater_sells=st.booleans(), q=st.sampled_from([1_000, 4_000]),
              delivered=st.sampled_from([0, 50, 100]), lie=st.sampled_from(LIES))  # fmt: skip
        def cheater_trade(self, i: int, cheater_sells: bool, q: int, delivered: int, lie: str) -> None:
            seller, buyer = (cheater, honest[i]) if cheater_sells else (honest[i], cheater)
            self.open_deal(seller, buyer, q, q * delivered // 100, lie, poison=False)
            if not cheater_sells:
                self.cheater_bound -= value(q)

        # ---------------------------------------------------------- attacks that need no trade

        @rule(i=st.integers(0, 1), by_outsider=st.booleans())
        def squat_nonce(self, i: int, by_outsider: bool) -> None:
            """Cancel terms naming an honest seller's next nonce (and oneself as buyer), far-future expiry."""
            seller = honest[i]
            attacker_address = outsider.address if by_outsider else cheater.address
            t = Terms(
                seller.address, attacker_address, 1, 1, 1, 2, self.next_nonce[seller.address], 2**40 - 1
            )
            self.try_send(outsider if by_outsider else cheater.sender, m.functions.cancelTerms(t.as_tuple()))

        @rule(ks=st.lists(st.integers(0, 40), min_size=1, max_size=3))
        def outsider_closes(self, ks: list[int]) -> None:
            """The outsider tries to close agreements early or to its liking; the reports on record decide."""
            if self.deals:
                chosen = [self.deals[k % len(self.deals)].terms.as_tuple() for k in ks]
                self.try_send(outsider, m.functions.reclaimBatch(chosen))

        @rule()
        def outsider_submits(self) -> None:
            t = c.terms(honest[0], honest[1])
            out = self.try_send(
                outsider,
                m.functions.submitAgreements([t.as_tuple()], *[[s] for s in c.sign(t, honest[0], honest[1])]),
            )
            assert getattr(out, "name", None) == "NotRegistered", out

        # ---------------------------------------------------------- time, with honest gateways acting on time

        @rule(seconds=st.sampled_from([600, 2 * HOUR + 5, 9 * HOUR, 2 * DAY]))
        def wait(self, seconds: int) -> None:
            while seconds > 0:  # honest gateways act at least every 2 hours
                step = min(seconds, 2 * HOUR)
                advance_time(w3, step)
                seconds -= step
                self.tick()

        def tick(self) -> None:
            now = c.now()
            for d in self.deals:
                if d.closed or now < d.terms.deliveryEnd:
                    continue
                status, deadline = m.functions.agreementOf(d.terms.as_tuple()).call()[:2]
                if d.cheater_lie is None and status == ACTIVE:
                    q = d.terms.quantityWh
                    c.admin.transact(
                        m.functions.settleBatch([c.settle_item(d.terms, d.seller, d.buyer, q, q)])
                    )
                elif status == ACTIVE and now <= deadline:
                    self.cheater_deal_reports(d)
                elif status in (ACTIVE, DISPUTED) and now > deadline:
                    honest_side = d.buyer if d.seller is cheater else d.seller
                    honest_side.sender.transact(m.functions.reclaim(d.terms.as_tuple()))
                self.observe(d)

        def cheater_deal_reports(self, d: Deal) -> None:
            """The honest side reports what flowed; the cheater then reports its lie, having seen it."""
            honest_side = d.buyer if d.seller is cheater else d.seller
            if "honest" not in d.reported:
                honest_side.sender.transact(m.functions.report(d.terms.as_tuple(), d.delivered))
                d.reported.add("honest")
            lie, q = d.cheater_lie, d.terms.quantityWh
            if lie != "silent" and "cheater" not in d.reported and self.status(d) == ACTIVE:
                claim = {"honest": d.delivered, "zero": 0, "shade": d.delivered * 98 // 100, "high": q}[
                    str(lie)
                ]
                if d.seller is cheater and lie == "shade":
                    claim = min(q, d.delivered * 102 // 100)
                cheater.sender.transact(m.functions.report(d.terms.as_tuple(), claim))
                d.reported.add("cheater")

        def status(self, d: Deal) -> int:
            return int(m.functions.agreementOf(d.terms.as_tuple()).call()[0])

        def observe(self, d: Deal) -> None:
            """When a deal closes, apply its real outcome to the honest model and the cheater's bound."""
            if d.closed or self.status(d) not in (SETTLED, REFUNDED):
                return
            d.closed = True
            aid = c.agreement_id(d.terms)
            q = d.terms.quantityWh
            settled = [
                e["args"]
                for e in m.events.AgreementSettled().get_logs(from_block=0)
                if bytes(e["args"]["id"]) == aid
            ]
            refunded = [
                e["args"]
                for e in m.events.EscrowReclaimed().get_logs(from_block=0)
                if bytes(e["args"]["id"]) == aid
            ]
            to_seller = settled[0]["paidToSeller"] if settled else 0
            to_buyer = settled[0]["refundedToBuyer"] if settled else refunded[0]["amount"]
            if d.cheater_lie is None:  # honest trade, full delivery: exactly the price moves
                assert (to_seller, to_buyer) == (value(q), 0), f"honest trade paid {to_seller}, {to_buyer}"
            fair = honest_payout(q, d.delivered)
            if d.seller is cheater:
                self.cheater_bound += fair
            elif d.buyer is cheater:
                self.cheater_bound += value(q) - fair
            self.move(d.seller, to_seller)
            self.move(d.buyer, to_buyer)

        # ---------------------------------------------------------- invariants

        @invariant()
        def no_honest_loss_and_conservation(self) -> None:
            self.steps += 1
            for d in self.deals:
                self.observe(d)
            for h in honest:
                assert c.free(h.address) == self.expected[h.address], f"honest {h.address} lost tokens"
            assert c.free(cheater.address) <= self.cheater_bound, "the cheater gained by lying"
            holders = [*(h.address for h in c.households), treasury, outsider.address]
            wallets = sum(int(tok.functions.balanceOf(a).call()) for a in holders)
            assert wallets + c.held() == self.supply == int(tok.functions.totalSupply().call())
            escrow = sum(value(d.terms.quantityWh) for d in self.deals if not d.closed)
            free = sum(c.free(a) for a in (*(h.address for h in c.households), treasury))
            assert c.held() == free + escrow, "tokens appeared or vanished in the market"

        def teardown(self) -> None:
            COUNTS["runs"] += 1
            COUNTS["steps"] += self.steps
            chain_revert(w3, self.snapshot)

    return AttackMachine


COUNTS = {"runs": 0, "steps": 0}


@pytest.mark.parametrize("base_community", ["py-evm"], indirect=True)
def test_contracts_attacker_fuzz_no_honest_loss(community: Community) -> None:
    run_state_machine_as_test(
        make_machine(community),
        settings=settings(
            max_examples=6,
            stateful_step_count=12,
            deadline=None,
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    print(f"attacker fuzz: {COUNTS['runs']} runs, {COUNTS['steps']} checked steps, 4 actors, 0 violations")
