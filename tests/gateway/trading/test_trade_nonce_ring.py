"""The seller's ring of slot nonces: lowest free, reservations, fallback, recovery, chain check, sessions.

Pure allocator tests, a real SQLite journal for restart recovery, the real Market on py-evm for
the `slotOf` check, and a real in-process agent (real inbox, signed envelopes) for the protocol.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest
from eth_account import Account
from trade_helpers import BUYER, OTHER, SELLER, THIRD, message, seller_agent

from gateway.chain.journal import Journal
from gateway.errors import ConfigError
from gateway.trading.config import parse_agent
from gateway.trading.nonces import FRESH_LOW, RING_BASE, NonceRing, busy_nonces
from gateway.trading.protocol import Envelope
from hil.services import DEV_PRIVATE_KEYS

B = RING_BASE


def test_lowest_free_nonce_is_reserved_until_released() -> None:
    ring = NonceRing(8)
    assert [ring.allocate(set(), 0.0) for _ in range(3)] == [B, B + 1, B + 2]
    ring.release(B + 1)
    assert ring.allocate(set(), 0.0) == B + 1  # the lowest free again
    assert ring.allocate({B + 3, B + 4}, 0.0) == B + 5  # busy in the journal: skipped
    ring.release(B)
    assert ring.allocate(set(), 0.0) == B


def test_full_ring_falls_back_to_a_fresh_nonce_outside_it() -> None:
    ring = NonceRing(3)
    taken = [ring.allocate(set(), 0.0) for _ in range(3)]
    fresh = [ring.allocate(set(), 0.0) for _ in range(5)]
    assert taken == [B, B + 1, B + 2]
    for n in fresh:
        assert not ring.in_ring(n) and FRESH_LOW <= n < RING_BASE
    assert len(set(fresh)) == 5  # reserved too, so never handed out twice
    ring.release(B + 1)
    assert ring.allocate(set(), 0.0) == B + 1  # back into the ring once a slot frees


def test_a_ring_that_does_not_fit_uint64_is_refused() -> None:
    with pytest.raises(ValueError):
        NonceRing(0)
    with pytest.raises(ValueError):
        NonceRing(2, base=2**64 - 1)
    assert parse_agent({}).nonce_ring == 256
    assert parse_agent({"nonce_ring": 4}).nonce_ring == 4
    with pytest.raises(ConfigError, match=r"agent\.nonce_ring"):
        parse_agent({"nonce_ring": 0})


def _terms(nonce: int, expiry: int, seller: str = SELLER.address) -> dict:
    return {"seller": seller, "buyer": BUYER.address, "quantityWh": 1000, "unitPrice": 150,
            "deliveryStart": expiry - 3599, "deliveryEnd": expiry + 1, "nonce": nonce, "expiry": expiry}  # fmt: skip


def test_restart_recovers_busy_slots_from_the_journal(tmp_path: Path) -> None:
    now = 1_800_000_000
    journal = Journal(tmp_path / "trading.db")
    rows = [  # (id, role, nonce, expiry, state, note)
        ("a0", "seller", B, now + 100, "submitted", None),  # open
        ("a1", "seller", B + 1, now - 10, "closed", "settled"),  # slot free at once
        ("a2", "seller", B + 2, now + 100, "closed", "cancelled"),  # cancelled: busy until expiry
        ("a3", "seller", B + 3, now - 10, "abandoned", None),  # never submitted, expired: free
        ("a4", "seller", B + 4, now + 100, "abandoned", None),  # not submitted yet still claimable
        ("a5", "seller", B + 5, now + 100, "signing", None),  # our signature may be out
        ("a6", "buyer", B + 6, now + 100, "submitted", None),  # the peer's slot, not ours
        ("a7", "seller", B + 7, now - 7200, "closed", "settled"),  # long ago
    ]
    for aid, role, nonce, expiry, state, note in rows:
        seller = SELLER.address if role == "seller" else BUYER.address
        journal.put_agreement(aid, role, OTHER.address, _terms(nonce, expiry, seller), "0x", expiry + 1)
        journal.set_agreement_state(aid, state, note=note)
    journal.close()

    reopened = Journal(tmp_path / "trading.db")  # the restart
    records = reopened.seller_slots(now)
    assert "a7" not in {r.id for r in records}  # history does not grow the query
    in_use = busy_nonces(records, now)
    assert in_use == {B, B + 2, B + 4, B + 5}
    ring = NonceRing(16)
    assert [ring.allocate(in_use, now) for _ in range(4)] == [B + 1, B + 3, B + 6, B + 7]
    later = now + 1000  # the cancelled and unsubmitted terms have expired
    assert busy_nonces(reopened.seller_slots(later), later) == {B, B + 5}
    reopened.close()


def test_a_slot_busy_on_chain_but_unknown_to_the_journal_is_skipped(tmp_path: Path) -> None:
    """A journal restored from an old backup: the chain's slotOf has the last word on reuse."""
    from contracts.harness import Community, household_key
    from gateway.chain.market import Market, market_abi
    from gateway.chain.sender import TxSender
    from hil.services import in_process_web3

    w3 = in_process_web3()
    c = Community(w3, DEV_PRIVATE_KEYS[0])
    seller = c.add_household(household_key(0, "ring"), deposit=10**24)
    buyer = c.add_household(household_key(1, "ring"), deposit=10**24)
    t = c.terms(seller, buyer, nonce=B)  # submitted before the backup the journal came from
    c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, seller, buyer)))
    account = Account.from_key(seller.key)
    market = Market(w3, c.market.address, TxSender(w3, account, Journal(tmp_path / "j.db"), market_abi()))
    checked: list[int] = []

    async def slot_free(nonce: int) -> bool | None:
        checked.append(nonce)
        return market.slot_free(nonce)

    ring = NonceRing(8)
    first = asyncio.run(ring.allocate_checked(set(), 0.0, slot_free))
    assert first == B + 1 and checked == [B, B + 1]
    ring.release(first)
    again = asyncio.run(ring.allocate_checked(set(), 1.0, slot_free))
    assert again == B + 1 and checked == [B, B + 1]  # confirmed once per run; B skipped a while
    assert asyncio.run(ring.allocate_checked(set(), 10_000.0, slot_free)) == B + 2  # rechecked later...
    assert checked == [B, B + 1, B, B + 2]  # ...and still busy on chain
    assert market.slot_free(B + 1) and not market.slot_free(B)


# ------------------------------------------------------------------ the protocol, in-process


def test_concurrent_sessions_get_distinct_nonces_and_a_changed_nonce_is_refused(tmp_path: Path) -> None:
    sent: list[tuple[str | None, Envelope]] = []
    events: list[str] = []
    agent = seller_agent(tmp_path, sent, events, [BUYER, OTHER, THIRD], round_timeout_s=3, nonce_ring=4)
    window = (int(time.time()) // 60 + 2) * 60
    agent.selling[window] = 3000
    sessions = {peer.address: "0x" + secrets.token_hex(32) for peer in (BUYER, OTHER, THIRD)}

    def propose(peer) -> bytes:
        return message(peer, "propose", {"session": sessions[peer.address], "window": window, "window_s": 60,
                                         "round": 0, "quantity_wh": 800, "price": 100})  # fmt: skip

    def counters(peer) -> list[Envelope]:
        return [env for to, env in sent if to == peer.address and env.type == "counter"]

    async def main() -> None:
        await agent.on_raw(propose(BUYER))
        await agent.on_raw(propose(OTHER))  # open at the same time as BUYER's
        await asyncio.sleep(0.3)
        first, second = counters(BUYER)[0], counters(OTHER)[0]
        assert {first.body["nonce"], second.body["nonce"]} == {B, B + 1}
        # BUYER answers with another slot nonce than the seller named: refused, the session ends
        await agent.on_raw(message(BUYER, "counter", {"session": sessions[BUYER.address], "round": 1,
                                                      "quantity_wh": 800, "price": 120,
                                                      "nonce": first.body["nonce"] + 2}))  # fmt: skip
        await asyncio.sleep(0.3)
        await agent.on_raw(propose(THIRD))  # BUYER's slot is free again: reused
        await asyncio.sleep(0.3)
        assert counters(THIRD)[0].body["nonce"] == first.body["nonce"]
        for task in list(agent._tasks):
            task.cancel()
        await asyncio.sleep(0)

    asyncio.run(main())
    rejects = [env.body["reason"] for to, env in sent if to == BUYER.address and env.type == "reject"]
    assert rejects == ["terms_mismatch"] and "nonce_mismatch" in events


def test_a_party_away_while_the_slot_was_reused_still_closes_its_agreement(tmp_path: Path) -> None:
    """agreementOf answers NONE once the seller's slot holds newer terms: the settler reads the events."""
    from contracts.harness import Community, advance_time, household_key
    from gateway.chain.market import Market, market_abi
    from gateway.chain.sender import TxSender
    from gateway.trading.settlement import Settler, Timing
    from hil.services import in_process_web3

    w3 = in_process_web3()
    c = Community(w3, DEV_PRIVATE_KEYS[0])
    seller = c.add_household(household_key(0, "away"), deposit=10**24)
    buyer = c.add_household(household_key(1, "away"), deposit=10**24)
    old = [c.terms(seller, buyer, nonce=n) for n in (B, B + 1)]
    for t in old:
        c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, seller, buyer)))
    advance_time(w3, 2 * 3600 + 60)
    c.admin.transact(
        c.market.functions.settleBatch([c.settle_item(t, seller, buyer, 1000, 1000) for t in old])
    )
    for t in (c.terms(seller, buyer, nonce=n) for n in (B, B + 1)):  # the seller's ring reuses both slots
        c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, seller, buyer)))

    journal = Journal(tmp_path / "buyer.db")  # the buyer's: it was away through all of that
    account = Account.from_key(buyer.key)
    market = Market(w3, c.market.address, TxSender(w3, account, journal, market_abi()))
    events: list[str] = []
    settler = Settler(market, journal, Timing(1.0, 1.0), events.append)
    ids = [market.agreement_id(t) for t in old]
    for aid, t, state in zip(ids, old, ("reported", "signed"), strict=True):
        journal.put_agreement(aid, "buyer", seller.address, t.as_dict(), "0x" + "11" * 65, t.deliveryEnd)
        journal.set_peer_sig(aid, "0x" + "22" * 65)
        journal.set_agreement_state(aid, state)
    assert all(market.agreement(t).status.name == "NONE" for t in old)  # the slots hold the new terms
    now = c.now()
    for aid in ids:
        rec = journal.agreement(aid)
        assert rec is not None
        assert settler.advance(rec, now, None) == "closed"  # not stuck open, not "abandoned"
    assert [(r.state, r.note) for r in map(journal.agreement, ids) if r] == [("closed", "settled")] * 2
    unknown = c.terms(seller, buyer, nonce=B + 5)  # never on chain: no event, so no outcome is assumed
    journal.put_agreement(
        "0x" + "ee" * 32, "buyer", seller.address, unknown.as_dict(), "0x", unknown.deliveryEnd
    )
    journal.set_agreement_state("0x" + "ee" * 32, "submitted")
    rec = journal.agreement("0x" + "ee" * 32)
    assert rec is not None and settler.advance(rec, now, None) == "submitted" and "slot_unknown" in events


def test_fresh_nonces_and_session_ids_come_from_the_agents_entropy() -> None:
    """A gateway draws them from `secrets`; the simulator hands in a seeded source, so a run repeats."""
    import dataclasses

    from gateway.trading.entropy import SYSTEM
    from gateway.trading.service import TradingDeps
    from gateway.trading.sessions import new_session_id
    from hil.community.gateways import SeededEntropy

    def fresh(entropy: SeededEntropy | None) -> list[int]:
        ring = NonceRing(1) if entropy is None else NonceRing(1, entropy=entropy)
        return [ring.allocate(set(), 0.0) for _ in range(4)][1:]

    seeded = fresh(SeededEntropy("1-h0-trading"))
    assert seeded == fresh(SeededEntropy("1-h0-trading"))
    assert seeded != fresh(SeededEntropy("1-h1-trading"))
    assert all(FRESH_LOW <= n < RING_BASE for n in seeded)
    assert fresh(None) != fresh(None)  # the system's: never the same twice
    assert new_session_id(SeededEntropy("s")) == new_session_id(SeededEntropy("s"))
    assert new_session_id() != new_session_id() and len(new_session_id()) == 66
    default = {f.name: f.default for f in dataclasses.fields(TradingDeps)}["entropy"]
    assert default is SYSTEM  # a gateway is never seeded unless someone hands a source in
