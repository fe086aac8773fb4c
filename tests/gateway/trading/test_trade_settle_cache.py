"""The settler's agreement views, read once per head block (gateway.chain.market.AgreementCache).

On a real chain (anvil and py-evm), with every JSON-RPC request counted by a web3 middleware:
the same head answers from the cache, a new block, a reorg (lower number, or another hash at
the same number) or a transaction of our own makes the next answer come from the chain, and a
settler round over open agreements asks `agreementOf` once per agreement per head.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account import Account
from web3.middleware import Web3Middleware

from gateway.chain.journal import Journal
from gateway.chain.market import AgreementCache, Market, Status, market_abi, sign_terms_hex
from gateway.chain.sender import TxSender
from gateway.trading.settlement import Settler, Timing
from hil.services import DEV_PRIVATE_KEYS


def counted(w3: Any) -> Counter[str]:
    """Count every request `w3` makes from now on, by method (outermost middleware: all of them)."""
    seen: Counter[str] = Counter()

    class RequestCount(Web3Middleware):
        def wrap_make_request(self, make_request: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
            def middleware(method: Any, params: Any) -> Any:
                seen[str(method)] += 1
                return make_request(method, params)

            return middleware

    w3.middleware_onion.add(RequestCount, "request-count")
    return seen


def community(w3: Any) -> Any:
    from contracts.harness import Community, household_key

    c = Community(w3, DEV_PRIVATE_KEYS[0])
    seller = c.add_household(household_key(0, "cache"), deposit=10**24)
    buyer = c.add_household(household_key(1, "cache"), deposit=10**24)
    return c, seller, buyer


def gateway_market(w3: Any, c: Any, key: str, tmp_path: Path) -> Market:
    journal = Journal(tmp_path / "gateway.db")
    return Market(w3, c.market.address, TxSender(w3, Account.from_key(key), journal, market_abi()))


def submit(c: Any, t: Any, seller: Any, buyer: Any) -> None:
    c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, seller, buyer)))


def test_same_head_reuses_a_view_and_a_new_block_asks_again(web3: Any, tmp_path: Path) -> None:
    c, seller, buyer = community(web3)
    t = c.terms(seller, buyer)
    cache = AgreementCache(gateway_market(web3, c, buyer.key, tmp_path))
    seen = counted(web3)

    head = cache.new_round()
    assert cache.agreement(t).status is Status.NONE
    assert cache.agreement(t).status is Status.NONE
    assert cache.new_round() == head  # no new block: the view stays
    assert cache.agreement(t).status is Status.NONE
    assert seen["eth_call"] == 1 and seen["eth_getBlockByNumber"] == 2

    submit(c, t, seller, buyer)  # a new block, with the agreement in it
    calls = seen["eth_call"]
    assert cache.new_round().number == head.number + 1
    assert cache.agreement(t).status is Status.ACTIVE
    assert cache.agreement(t).status is Status.ACTIVE
    assert seen["eth_call"] == calls + 1


def test_a_reorg_drops_the_views(web3: Any, tmp_path: Path) -> None:
    """Lower number, then the same number with another hash: the chain is asked again each time."""
    from contracts.harness import advance_time, chain_revert, chain_snapshot

    c, seller, buyer = community(web3)
    t = c.terms(seller, buyer)
    cache = AgreementCache(gateway_market(web3, c, seller.key, tmp_path))
    seen = counted(web3)
    before = cache.new_round()
    snapshot = chain_snapshot(web3)
    submit(c, t, seller, buyer)
    mined = cache.new_round()
    assert cache.agreement(t).status is Status.ACTIVE

    chain_revert(web3, snapshot)  # the block with the agreement is gone: the head goes back
    calls = seen["eth_call"]
    assert cache.new_round() == before
    assert cache.agreement(t).status is Status.NONE
    assert seen["eth_call"] == calls + 1

    snapshot = chain_snapshot(web3)
    submit(c, t, seller, buyer)
    assert cache.new_round().number == mined.number
    assert cache.agreement(t).status is Status.ACTIVE
    chain_revert(web3, snapshot)
    advance_time(web3, 7)  # an empty block at the same height: another hash, no agreement
    calls = seen["eth_call"]
    head = cache.new_round()
    assert head.number == mined.number and head.hash != mined.hash
    assert cache.agreement(t).status is Status.NONE
    assert seen["eth_call"] == calls + 1


def test_our_own_transaction_ends_reuse_until_the_next_round(web3: Any, tmp_path: Path) -> None:
    c, seller, buyer = community(web3)
    t = c.terms(seller, buyer)
    market = gateway_market(web3, c, seller.key, tmp_path)
    cache = AgreementCache(market)
    seen = counted(web3)
    cache.new_round()
    assert cache.agreement(t).status is Status.NONE
    record = market.submit(t, *sign_hex(c, t, seller, buyer))
    assert market.sender.wait(record.key).status == 1
    calls = seen["eth_call"]
    assert cache.agreement(t).status is Status.ACTIVE  # asked again, in the same round
    assert cache.agreement(t).status is Status.ACTIVE  # and again: no head read since the send
    assert seen["eth_call"] == calls + 2
    cache.new_round()
    assert cache.agreement(t).status is Status.ACTIVE
    assert cache.agreement(t).status is Status.ACTIVE
    assert seen["eth_call"] == calls + 3


def sign_hex(c: Any, t: Any, seller: Any, buyer: Any) -> tuple[str, str]:
    """The two 65-byte signatures as the gateway's journal carries them."""
    return (
        sign_terms_hex(t, c.domain, Account.from_key(seller.key)),
        sign_terms_hex(t, c.domain, Account.from_key(buyer.key)),
    )


def test_a_settler_round_asks_once_per_agreement_per_head(web3: Any, tmp_path: Path) -> None:
    """Three open agreements, rounds without a new block: one head read per round, no view asked
    twice; the journal ends the same as without the cache."""
    c, seller, buyer = community(web3)
    terms = [c.terms(seller, buyer) for _ in range(3)]
    for t in terms:
        submit(c, t, seller, buyer)
    market = gateway_market(web3, c, buyer.key, tmp_path)
    journal = market.sender.journal
    for t in terms:
        aid = market.agreement_id(t)
        journal.put_agreement(aid, "buyer", seller.address, t.as_dict(), "0x" + "11" * 65, t.deliveryEnd)
        journal.set_agreement_state(aid, "submitted")
    events: list[str] = []
    settler = Settler(market, journal, Timing(1.0, 1.0), events.append)
    now = float(c.now())  # before deliveryEnd: nothing to send, each stays submitted
    seen = counted(web3)
    for _ in range(3):
        settler.new_round()
        assert [settler.advance(r, now, None) for r in journal.agreements("submitted")] == ["submitted"] * 3
    assert seen["eth_getBlockByNumber"] == 3 and seen["eth_call"] == 3
    assert seen["eth_sendRawTransaction"] == 0 and events == []


def test_terms_only_we_signed_are_looked_up_now_and_then_until_they_expire(web3: Any, tmp_path: Path) -> None:
    """A declined bid (our signature only) stays "signing" until it expires: the settler asks the
    chain about it once per SIGNING_LOOK_S, not every block. The peer opening it in between is
    still seen, at the next look."""
    from gateway.trading.settlement import SIGNING_LOOK_S

    c, seller, buyer = community(web3)
    t = c.terms(seller, buyer)
    market = gateway_market(web3, c, seller.key, tmp_path)
    journal = market.sender.journal
    aid = market.agreement_id(t)
    journal.put_agreement(
        aid, "seller", buyer.address, t.as_dict(), sign_hex(c, t, seller, buyer)[0], t.deliveryEnd
    )
    settler = Settler(market, journal, Timing(1.0, 1.0), lambda _: None)
    now = float(c.now())
    assert now + SIGNING_LOOK_S < t.expiry  # the test's terms expire well after two looks
    seen = counted(web3)

    def step(at: float) -> str:
        settler.new_round()
        return settler.advance(journal.agreements("signing", "submitted")[0], at, None)

    assert step(now) == "signing" and seen["eth_call"] == 1
    submit(c, t, seller, buyer)  # the peer opens it after all: a new block
    assert step(now + 1) == "signing" and seen["eth_call"] == 1  # not asked: the last look was just now
    assert step(now + SIGNING_LOOK_S) == "submitted" and seen["eth_call"] == 2
