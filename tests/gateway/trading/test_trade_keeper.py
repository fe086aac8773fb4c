"""The community keeper settles a whole window in one `settleByMeters` call (issue 17, item 5).

Real parts: a Market on py-evm, a real Mosquitto, each gateway's Journal, ReadingStore, Transport and
`publish_statements` (the gateway's own publishing task), and the keeper's `run_keeper` with its TxSender.
The two households' gateways publish their meters' signed statements with their agreements; the keeper
settles both agreements in one transaction. A forged statement (not signed by the registered meter) on
the broker is dropped and counted. A keeper that stays silent leaves the gateways' fallback to settle.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import aiomqtt
import coincurve
import pytest
from eth_account import Account
from trade_helpers import SetClock

from contracts.harness import Community, Household, advance_time, household_key
from gateway.chain.journal import Journal
from gateway.chain.market import Market, Status, Terms, market_abi, sign_terms_hex
from gateway.chain.sender import TxSender
from gateway.storage import ReadingStore
from gateway.trading.chainrun import ChainRunner
from gateway.trading.config import CommunityConfig, KeeperConfig, parse_agent, parse_keeper
from gateway.trading.keeper import (
    Keeper,
    KeeperBook,
    encode_agreement,
    encode_publication,
    meters_topic,
    parse_publication,
)
from gateway.trading.service import publish_statements, run_keeper
from gateway.trading.settlement import Settler, Timing, evidence_for
from gateway.trading.transport import Transport
from gridpact.core import statement
from gridpact.core.config import ConfigError
from gridpact.core.eip712 import Terms as T
from hil.services import DEV_PRIVATE_KEYS, MosquittoBroker, in_process_web3

HOUR = 3600
DIGEST = bytes(32)
SELLER_COUNTERS = ((100, 5_000), (100, 5_700))  # the seller's meter exported 700 Wh in the hour
BUYER_COUNTERS = ((9_000, 0), (10_000, 0))  # the buyer's imported 1,000 Wh


def signed(hh: Household, end: int, imp: int, exp: int, secret: bytes | None = None) -> tuple[bytes, bytes]:
    raw = statement.encode(statement.Statement(hh.device, end, imp, exp, 3, DIGEST))
    return raw, statement.sign(raw, secret or hh.meter_secret)


def setup(tmp_path: Path):
    """Seller and buyer with meters, two agreements on one hour, a keeper with KEEPER_ROLE; time after it."""
    c = Community(in_process_web3(), DEV_PRIVATE_KEYS[0])
    seller = c.add_household(household_key(0, "keeper"), deposit=10**24)
    buyer = c.add_household(household_key(1, "keeper"), deposit=10**24)
    keeper = c.add_household(household_key(2, "keeper"))
    c.admin.transact(c.market.functions.grantRole(c.market.functions.KEEPER_ROLE().call(), keeper.address))
    c.set_meter(seller)
    c.set_meter(buyer)
    start = (c.now() // HOUR + 1) * HOUR
    terms = []
    for q in (1_000, 400):
        t = c.terms(seller, buyer, quantity_wh=q, delivery_end=start + HOUR, expiry=c.now() + 60)
        c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, seller, buyer)))
        terms.append(t)
    advance_time(c.w3, start + HOUR - c.now() + 5)
    stores = {}
    for hh, counters in ((seller, SELLER_COUNTERS), (buyer, BUYER_COUNTERS)):
        store = ReadingStore(tmp_path / f"{hh.device}.db", hh.device)
        store.add_statement(hh.device, start, *signed(hh, start, *counters[0]))
        store.add_statement(hh.device, start + HOUR, *signed(hh, start + HOUR, *counters[1]))
        stores[hh.address] = store
    return c, seller, buyer, keeper, terms, stores, start


def gateway_journal(c: Community, hh: Household, role: str, terms: list[Terms], tmp_path: Path):
    journal = Journal(tmp_path / f"{role}.db")
    market = Market(c.w3, c.market.address, TxSender(c.w3, Account.from_key(hh.key), journal, market_abi()))
    for t in terms:
        aid = market.agreement_id(t)
        journal.put_agreement(aid, role, "0x" + "00" * 20, t.as_dict(), "0x" + "11" * 65, t.deliveryEnd)
        journal.set_agreement_state(aid, "submitted")
    return journal, market


async def forge(
    broker: MosquittoBroker, community: CommunityConfig, buyer: Household, t: Terms, end: int
) -> None:
    """Someone on the broker claims the buyer imported nothing, signed with a key that is not its meter's."""
    last = signed(buyer, end, BUYER_COUNTERS[0][0], 0, secret=b"\x07" * 32)
    payload = encode_publication(buyer.address, last, None, [t.as_dict()])
    async with aiomqtt.Client(broker.info.host, broker.info.port) as client:
        await client.publish(
            meters_topic(community.topic_prefix, community.id, buyer.address), payload, qos=1
        )


def test_keeper_settles_both_households_in_one_call_and_drops_a_forgery(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    c, seller, buyer, keeper_hh, terms, stores, start = setup(tmp_path)
    community = CommunityConfig(id=f"k{tmp_path.name[-12:]}".replace("_", ""), host=mosquitto.info.host,
                                port=mosquitto.info.port)  # fmt: skip
    clock = SetClock(start + HOUR + 5)
    k_journal = Journal(tmp_path / "keeper.db")
    k_market = Market(
        c.w3, c.market.address, TxSender(c.w3, Account.from_key(keeper_hh.key), k_journal, market_abi())
    )
    counts: dict[str, int] = {}

    def count(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    keeper = Keeper(k_market, KeeperBook(), count)
    runner = ChainRunner(clock)

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            # the keeper's settle delay (30 s) lets both households' statements arrive; the test's clock only
            # passes it once the keeper holds both, as it would on time (the households publish at once)
            k = tg.create_task(run_keeper(keeper, runner, clock, community, 30.0, keeper_hh.address))
            await asyncio.sleep(0.5)  # subscribed before anything is published
            await forge(mosquitto, community, buyer, terms[0], start + HOUR)
            for _ in range(600):  # the forgery is dropped before the real statements arrive
                if counts.get("keeper_rejected_signer"):
                    break
                await asyncio.sleep(0.05)
            tasks = []
            for hh, role in ((seller, "seller"), (buyer, "buyer")):
                journal, _ = gateway_journal(c, hh, role, terms, tmp_path)
                transport = Transport(community.host, community.port, community.topic_prefix, community.id,
                                      hh.address)  # fmt: skip
                tasks.append(tg.create_task(transport.run(lambda _raw: asyncio.sleep(0))))
                topic = meters_topic(community.topic_prefix, community.id, hh.address)
                tasks.append(tg.create_task(publish_statements(journal, stores[hh.address], transport, clock,
                                                               topic, 0.1, hh.address)))  # fmt: skip
            for _ in range(1200):  # generous: the machine is shared
                if counts.get("keeper_statement", 0) >= 2:
                    break
                await asyncio.sleep(0.05)
            clock.t = start + HOUR + 31  # the delay has passed: the keeper's round
            for _ in range(1200):
                views = [await runner.call(k_market.agreement, t) for t in terms]
                if all(v.status is Status.SETTLED for v in views):
                    break
                await asyncio.sleep(0.05)
            for task in (k, *tasks):
                task.cancel()

    try:
        asyncio.run(main())
    finally:
        runner.close()
        for store in stores.values():
            store.close()
    settled = c.market.events.AgreementSettled().get_logs(from_block=0)
    assert sorted(e["args"]["deliveredWh"] for e in settled) == [200, 500]  # 700 Wh pro rata to 1,000 : 400
    assert len({e["transactionHash"] for e in settled}) == 1  # one call for both households' windows
    tx = c.w3.eth.get_transaction(settled[0]["transactionHash"])
    assert tx["from"] == keeper_hh.address
    assert counts.get("keeper_rejected_signer") == 1 and counts.get("keeper_settled") == 1
    assert keeper.book.rejected == {"signer": 1}


def test_the_keepers_book_refuses_what_the_meter_did_not_sign(tmp_path: Path) -> None:
    """Pure: a publication with another key's signature, a future or unaligned statement, or malformed JSON."""
    c, seller, _buyer, _keeper, _terms, stores, start = setup(tmp_path)
    meter = c.market.functions.meterOf(seller.address).call()[0]
    book = KeeperBook()
    end = start + HOUR
    good = parse_publication(encode_publication(seller.address, signed(seller, end, 100, 5_700), None, []))
    forged = parse_publication(
        encode_publication(seller.address, signed(seller, end, 100, 9_999, secret=b"\x09" * 32), None, [])
    )
    future = parse_publication(encode_publication(seller.address, signed(seller, end + HOUR, 1, 1), None, []))
    assert book.add(forged, meter, end) == "signer"
    assert book.add(future, meter, end) == "time"
    assert book.add(good, "0x" + "00" * 20, end) == "no_meter"
    assert book.add(good, meter, end) is None
    for bad in (b"{", json.dumps({"v": 2}).encode(), b"x" * 70_000):
        try:
            parse_publication(bad)
        except statement.StatementRejected:
            continue
        raise AssertionError(f"accepted {bad[:20]!r}")
    assert book.rejected == {"signer": 1, "time": 1, "no_meter": 1}
    for store in stores.values():
        store.close()


def test_a_silent_keeper_leaves_the_gateways_fallback_to_settle(tmp_path: Path) -> None:
    """With agent.keeper_grace_s set, each gateway waits for the keeper, then sends its own window."""
    c, seller, buyer, _keeper, terms, stores, start = setup(tmp_path)
    end = start + HOUR
    closed = []
    for hh, role in ((seller, "seller"), (buyer, "buyer")):
        journal, market = gateway_journal(c, hh, role, terms[:1], tmp_path)
        events: list[str] = []
        settler = Settler(market, journal, Timing(1.0, 1.0, keeper_grace_s=600.0), events.append)
        rec = journal.agreement(market.agreement_id(terms[0]))
        ev = evidence_for(terms[0].as_dict(), stores[hh.address].statement_at)
        assert rec is not None and settler.advance(rec, end + 60, 999, ev) == "submitted"  # the keeper's turn
        assert events == [] and c.market.functions.meterOf(hh.address).call()[1] == 0  # nothing sent
        closed.append(settler.advance(rec, end + 601, 999, ev))  # grace over: its own window goes
        assert "evidence_sent" in events
    assert closed == ["reported", "closed"]
    settled = c.market.events.AgreementSettled().get_logs(from_block=0)
    assert [e["args"]["deliveredWh"] for e in settled] == [700]
    for store in stores.values():
        store.close()


def test_a_failed_keeper_round_loses_neither_job(tmp_path: Path) -> None:
    """The keeper's hourly call carries two jobs (settle the ended window, open the started one) and fails
    as a whole, here because its account holds the role but is no member (opening is for members), so the
    estimate reverts: both jobs are counted as failed, nothing changed on chain, and the parties' fallbacks
    open the new agreement and settle the old one themselves."""
    c, seller, buyer, _keeper, terms, stores, start = setup(tmp_path)
    end = start + HOUR
    outsider = Account.from_key(household_key(9, "outsider-keeper"))
    c.admin.send({"to": outsider.address, "value": 10**18, "gas": 21_000})
    c.admin.transact(c.market.functions.grantRole(c.market.functions.KEEPER_ROLE().call(), outsider.address))
    counts: list[str] = []
    k_market = Market(
        c.w3, c.market.address, TxSender(c.w3, outsider, Journal(tmp_path / "k.db"), market_abi())
    )
    keeper = Keeper(k_market, KeeperBook(), counts.append)
    for hh in (seller, buyer):  # the ended window: both meters' statements
        ev = evidence_for(terms[0].as_dict(), stores[hh.address].statement_at)
        assert ev is not None
        pub = encode_publication(hh.address, ev.last, ev.first, [t.as_dict() for t in terms])
        assert keeper.accept(pub, end + 5) is None
    nxt = c.terms(seller, buyer, quantity_wh=300, delivery_end=end + HOUR, expiry=end + HOUR - 1)
    sigs = {hh.address: sign_terms_hex(nxt, c.domain, Account.from_key(hh.key)) for hh in (seller, buyer)}
    assert (
        keeper.accept_agreement(encode_agreement(nxt, sigs[seller.address], sigs[buyer.address]), end + 5)
        is None
    )
    due, ends = keeper.submits.due(end + 30, 30.0), keeper.book.due(end + 30, 30.0)
    assert len(due) == 1 and ends == [end]
    assert keeper.round(due, ends) == (0, 0)
    assert counts == ["keeper_failed", "keeper_submit_failed"]
    assert c.status(nxt) == Status.NONE and [c.status(t) for t in terms] == [Status.ACTIVE] * 2
    timing = Timing(1.0, 1.0, keeper_grace_s=600.0, keeper_submit_grace_s=60.0)
    settled = []
    for hh, role in ((seller, "seller"), (buyer, "buyer")):
        journal, market = gateway_journal(c, hh, role, terms[:1], tmp_path)
        nid = market.agreement_id(nxt)
        peer = buyer if hh is seller else seller
        journal.put_agreement(nid, role, peer.address, nxt.as_dict(), sigs[hh.address], nxt.deliveryEnd)
        journal.set_peer_sig(nid, sigs[peer.address])
        journal.set_agreement_state(nid, "signed", note="submitter" if hh is seller else "")
        events: list[str] = []
        settler = Settler(market, journal, timing, events.append)
        rec = journal.agreement(nid)
        assert rec is not None and settler.advance(rec, end + 61, None) == "submitted"  # its own fallback
        rec = journal.agreement(market.agreement_id(terms[0]))
        ev = evidence_for(terms[0].as_dict(), stores[hh.address].statement_at)
        assert rec is not None and settler.advance(rec, end + 601, 999, ev) in ("reported", "closed")
        settled.append(events)
    assert c.status(nxt) == Status.ACTIVE
    assert settled == [
        ["submitted", "evidence_sent"],
        ["evidence_sent", "settled"],
    ]  # the buyer's completes it
    assert [e["args"]["deliveredWh"] for e in c.market.events.AgreementSettled().get_logs(from_block=0)] == [
        700
    ]
    for store in stores.values():
        store.close()


def test_grouped_windows_chain_each_meter_to_one_statement_an_hour() -> None:
    """Pure: two hours in one call; each meter's second window starts from its first (no start statement)."""
    secrets = {a: bytes([i + 1]) * 32 for i, a in enumerate(("0x" + "aa" * 20, "0x" + "bb" * 20))}
    seller, buyer = secrets
    h0 = 1_800_000_000 // HOUR * HOUR
    book = KeeperBook()
    for end in (h0 + HOUR, h0 + 2 * HOUR):
        t = T(seller, buyer, 500, 10**17, end - HOUR, end, end // HOUR % 7, end - HOUR)
        for who, secret in secrets.items():
            raw = statement.encode(
                statement.Statement(f"m{who[2:6]}", end, end // 100, end // 100, 1, DIGEST)
            )
            first = None
            if end == h0 + HOUR:  # the start of the first window: the meters' chains on chain are older
                raw0 = statement.encode(statement.Statement(f"m{who[2:6]}", h0, 1, 1, 1, DIGEST))
                first = (raw0, statement.sign(raw0, secret))
            pub = parse_publication(
                encode_publication(who, (raw, statement.sign(raw, secret)), first, [t.as_dict()])
            )
            key = statement.address_of(coincurve.PrivateKey(secret).public_key.format(False)[1:])
            assert book.add(pub, key, h0 + 3 * HOUR) is None
    assert book.due(h0 + HOUR + 30, 30.0, group=2) == []  # waits for the second hour
    assert (
        book.next_at(30.0, group=1) == h0 + HOUR + 30
    )  # when `due` has something: the keeper sleeps till then
    assert book.next_at(30.0, group=2) == h0 + 2 * HOUR + 30
    assert KeeperBook().next_at(30.0) == math.inf
    assert book.due(h0 + 2 * HOUR + 30, 30.0, group=2) == [h0 + HOUR, h0 + 2 * HOUR]
    assert book.due(h0 + HOUR + 30, 30.0, group=1) == [h0 + HOUR]
    windows, items = book.plan([h0 + HOUR, h0 + 2 * HOUR], lambda _who: 0, "0x" + "00" * 20, lambda _t: True)
    assert [(w[2], w[4] == statement.NO_READING) for w in windows] == [
        (h0, False), (h0, False), (h0 + HOUR, True), (h0 + HOUR, True)
    ]  # fmt: skip
    assert [(s, b) for _, s, b in items] == [(0, 1), (2, 3)]


def test_a_window_the_keeper_carried_is_not_sent_again(tmp_path: Path) -> None:
    """Only the seller published: the keeper records the seller's side; the seller's gateway sees its window
    used with this agreement's figure on chain and marks it reported instead of sending (or reporting)."""
    c, seller, _buyer, keeper_hh, terms, stores, start = setup(tmp_path)
    end = start + HOUR
    k_journal = Journal(tmp_path / "keeper.db")
    k_market = Market(
        c.w3, c.market.address, TxSender(c.w3, Account.from_key(keeper_hh.key), k_journal, market_abi())
    )
    keeper = Keeper(k_market, KeeperBook(), lambda _name: None)
    ev = evidence_for(terms[0].as_dict(), stores[seller.address].statement_at)
    assert ev is not None
    payload = encode_publication(seller.address, ev.last, ev.first, [t.as_dict() for t in terms])
    assert keeper.accept(payload, end + 5) is None
    assert keeper.settle([end]) == 2
    journal, market = gateway_journal(c, seller, "seller", terms[:1], tmp_path)
    events: list[str] = []
    settler = Settler(market, journal, Timing(1.0, 1.0, keeper_grace_s=600.0), events.append)
    rec = journal.agreement(market.agreement_id(terms[0]))
    assert rec is not None and settler.advance(rec, end + 700, 999, ev) == "reported"
    assert events == ["evidence_by_keeper"]
    assert c.market.functions.evidenceOf(c.agreement_id(terms[0])).call() == [True, False, 500, 0]
    for store in stores.values():
        store.close()


def test_keeper_config_is_checked_at_start() -> None:
    assert parse_keeper({}) == KeeperConfig(30.0, 1)
    assert parse_keeper({"settle_delay_s": 5, "group_windows": 2}) == KeeperConfig(5.0, 2)
    assert parse_agent({"keeper_grace_s": 900}).keeper_grace_s == 900.0
    for bad in ({"group_windows": 0}, {"group_windows": 25}, {"settle_delay_s": -1}, {"nope": 1}):
        with pytest.raises(ConfigError):
            parse_keeper(bad)
