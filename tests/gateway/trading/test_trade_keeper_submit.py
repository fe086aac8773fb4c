"""The community keeper submits a window's agreements in one `submitAgreements` call (issue 17, item 5).

Real parts: a Market on py-evm, a real Mosquitto, each gateway's Journal, Transport, `publish_agreements`
(the gateway's own publishing task) and Settler, and the keeper's `run_keeper` with its TxSender. Three
households' gateways publish the agreements they confirmed; the keeper opens them in one transaction and
the parties send none; an item whose slot is busy is skipped by the contract without sinking the batch; a
forged and a replayed publication are dropped and counted. A silent keeper leaves the parties' fallback
to submit. End to end, three `run_trading` gateways and a fourth holding `[keeper]` (anvil, Mosquitto):
a window's agreements open in one keeper call and the parties submit none. The planning part
(`SubmitBook`, `submit_after`) is tested pure.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import aiomqtt
import pytest
from eth_account import Account
from trade_helpers import HOUSEHOLD_KEYS, InProcessNodes, SetClock, mine_every_second, setup_community
from trade_node import node_spec
from web3 import Web3

from contracts.harness import Community, Household, household_key
from gateway.chain.journal import Journal
from gateway.chain.keystore import create_keystore
from gateway.chain.market import Market, Status, Terms, market_abi, sign_terms_hex
from gateway.chain.sender import TxSender
from gateway.trading.chainrun import ChainRunner
from gateway.trading.config import CommunityConfig, parse_agent, parse_keeper, parse_trading_config
from gateway.trading.keeper import (
    MAX_HELD_PER_PARTY,
    MAX_SUBMIT_BATCH,
    Keeper,
    KeeperBook,
    SignedAgreement,
    SubmitBook,
    agreement_key,
    agreements_topic,
    encode_agreement,
    parse_agreement,
)
from gateway.trading.service import publish_agreements, run_keeper
from gateway.trading.settlement import Settler, Timing, submit_after
from gateway.trading.transport import Transport
from gridpact.core import statement
from gridpact.core.config import ConfigError
from gridpact.core.eip712 import Domain
from hil.services import DEV_PRIVATE_KEYS, AnvilNode, MosquittoBroker, in_process_web3

HOUR = 3600
GRACE = 60.0  # the gateways' agent.keeper_submit_grace_s
DELAY = 10.0  # the keeper's submit_delay_s


def sig(t: Terms, domain: Domain, hh: Household) -> str:
    return sign_terms_hex(t, domain, Account.from_key(hh.key))


class Deal:
    """One doubly-signed agreement and which party confirmed it (the one that would submit it)."""

    def __init__(
        self, c: Community, t: Terms, seller: Household, buyer: Household, submitter: Household
    ) -> None:
        self.terms, self.seller, self.buyer, self.submitter = t, seller, buyer, submitter
        self.seller_sig, self.buyer_sig = sig(t, c.domain, seller), sig(t, c.domain, buyer)
        self.id = "0x" + c.agreement_id(t).hex()


def journal_of(tmp_path: Path, c: Community, hh: Household, deals: list[Deal]) -> tuple[Journal, Market]:
    """A gateway's journal holding its side of each deal, signed by both, as negotiation leaves it."""
    journal = Journal(tmp_path / f"{hh.address[2:10]}.db")
    market = Market(c.w3, c.market.address, TxSender(c.w3, Account.from_key(hh.key), journal, market_abi()))
    for d in deals:
        if hh not in (d.seller, d.buyer):
            continue
        seller = hh is d.seller
        mine, peer = (d.seller_sig, d.buyer_sig) if seller else (d.buyer_sig, d.seller_sig)
        other = d.buyer if seller else d.seller
        journal.put_agreement(d.id, "seller" if seller else "buyer", other.address, d.terms.as_dict(), mine,
                              d.terms.deliveryEnd)  # fmt: skip
        journal.set_peer_sig(d.id, peer)
        if hh is d.submitter:
            journal.set_agreement_state(d.id, "signed", note="submitter")
    return journal, market


def community(tmp_path: Path, salt: str) -> tuple[Community, list[Household], Household, int]:
    c = Community(in_process_web3(), DEV_PRIVATE_KEYS[0])
    people = [c.add_household(household_key(i, salt), deposit=10**24) for i in range(3)]
    keeper = c.add_household(household_key(3, salt))
    c.admin.transact(c.market.functions.grantRole(c.market.functions.KEEPER_ROLE().call(), keeper.address))
    start = (c.now() // HOUR + 1) * HOUR
    return c, people, keeper, start


def test_keeper_opens_every_agreement_in_one_call_and_the_parties_send_none(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    c, (a, b, d), keeper_hh, start = community(tmp_path, "ksubmit")
    end = start + HOUR
    # a's slot 9 is taken by an open agreement: the keeper's item on it is refused, the others open
    busy = c.terms(a, d, quantity_wh=100, delivery_end=end, nonce=9)
    c.admin.transact(c.market.functions.submitAgreement(busy.as_tuple(), *c.sign(busy, a, d)))
    deals = [
        Deal(c, c.terms(a, b, quantity_wh=700, delivery_end=end, expiry=end - 1), a, b, a),
        Deal(c, c.terms(a, d, quantity_wh=300, delivery_end=end, expiry=end - 1), a, d, d),
        Deal(c, c.terms(d, b, quantity_wh=200, delivery_end=end, expiry=end - 1), d, b, b),
        Deal(c, c.terms(a, b, quantity_wh=50, delivery_end=end, expiry=end - 1, nonce=9), a, b, a),
    ]
    sent_before = {hh.address: c.w3.eth.get_transaction_count(hh.address) for hh in (a, b, d)}
    cc = CommunityConfig(id=f"s{tmp_path.name[-12:]}".replace("_", ""), host=mosquitto.info.host,
                         port=mosquitto.info.port)  # fmt: skip
    clock = SetClock(start - 30)  # negotiation just ended: the window starts in 30 s
    k_market = Market(c.w3, c.market.address,
                      TxSender(c.w3, Account.from_key(keeper_hh.key), Journal(tmp_path / "keeper.db"), market_abi()))  # fmt: skip
    counts: dict[str, int] = {}

    def count(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    keeper = Keeper(k_market, KeeperBook(), count)
    runner = ChainRunner(clock)
    gateways = {hh.address: journal_of(tmp_path, c, hh, deals) for hh in (a, b, d)}
    forged_terms = c.terms(a, b, quantity_wh=5_000, delivery_end=end, expiry=end - 1)  # a never signed this
    forged = encode_agreement(forged_terms, sig(forged_terms, c.domain, b), sig(forged_terms, c.domain, b))

    async def publish(payload: bytes) -> None:
        async with aiomqtt.Client(mosquitto.info.host, mosquitto.info.port) as client:
            await client.publish(agreements_topic(cc.topic_prefix, cc.id, b.address), payload, qos=1)

    async def until(what: str, n: int) -> None:
        for _ in range(1200):  # generous: the machine is shared
            if counts.get(what, 0) >= n:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what} never reached {n}: {counts}")

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            k = tg.create_task(run_keeper(keeper, runner, clock, cc, 0.0, keeper_hh.address, 1, DELAY))
            await asyncio.sleep(0.5)  # subscribed before anything is published
            await publish(forged)
            await until("keeper_rejected_signature", 1)
            tasks = []
            for hh in (a, b, d):
                journal, _ = gateways[hh.address]
                transport = Transport(cc.host, cc.port, cc.topic_prefix, cc.id, hh.address)
                tasks.append(tg.create_task(transport.run(lambda _raw: asyncio.sleep(0))))
                topic = agreements_topic(cc.topic_prefix, cc.id, hh.address)
                tasks.append(tg.create_task(publish_agreements(journal, transport, clock, topic, 0.1, GRACE)))
            await until("keeper_agreement", 4)
            clock.t = start + DELAY  # the keeper's round: every held agreement in one call
            await until("keeper_submitted", 1)
            await publish(
                encode_agreement(deals[0].terms, deals[0].seller_sig, deals[0].buyer_sig)
            )  # a replay
            await until("keeper_rejected_duplicate", 1)
            for task in (k, *tasks):
                task.cancel()

    try:
        asyncio.run(main())
    finally:
        runner.close()
    opened = c.market.events.AgreementSubmitted().get_logs(from_block=0)
    batch = [e for e in opened if e["args"]["id"] != c.agreement_id(busy)]
    assert sorted("0x" + bytes(e["args"]["id"]).hex() for e in batch) == sorted(d.id for d in deals[:3])
    assert len({e["transactionHash"] for e in batch}) == 1  # one call opened all three
    tx = c.w3.eth.get_transaction(batch[0]["transactionHash"])
    assert tx["from"] == keeper_hh.address
    assert c.market.decode_function_input(tx["input"])[0].fn_name == "settleByMeters"  # the keeper's round
    refused = c.rejected(c.w3.eth.get_transaction_receipt(batch[0]["transactionHash"]))
    assert [r.name for _, r in refused] == ["SlotBusy"]  # the busy slot, skipped alone
    assert c.status(deals[3].terms) == Status.NONE and c.status(busy) == Status.ACTIVE
    assert counts.get("keeper_submitted") == 1 and counts.get("keeper_submit_refused_SlotBusy") == 1
    assert keeper.submits.rejected == {"signature": 1, "duplicate": 1}
    # the parties' settlers find their agreements open: counted as submitted, nothing sent
    for hh in (a, b, d):
        journal, market = gateways[hh.address]
        settler = Settler(market, journal, Timing(60.0, 60.0, keeper_submit_grace_s=GRACE), lambda _n: None)
        for rec in journal.agreements("signed"):
            if rec.id != deals[3].id:
                assert settler.advance(rec, start + 3 * GRACE, None) == "submitted"
    assert {hh.address: c.w3.eth.get_transaction_count(hh.address) for hh in (a, b, d)} == sent_before
    assert all(c.status(d.terms) == Status.ACTIVE for d in deals[:3])


def test_a_silent_keeper_leaves_the_parties_fallback_to_submit(tmp_path: Path) -> None:
    """No keeper round comes: the party that confirmed submits once its grace after the start is over; the
    other party waits twice as long, so the two do not race."""
    c, (a, b, _d), _keeper, start = community(tmp_path, "ksilent")
    deal = Deal(
        c, c.terms(a, b, quantity_wh=700, delivery_end=start + HOUR, expiry=start + HOUR - 1), a, b, b
    )
    settlers = {}
    for hh in (a, b):
        journal, market = journal_of(tmp_path, c, hh, [deal])
        events: list[str] = []
        settlers[hh.address] = (Settler(market, journal, Timing(60.0, 60.0, keeper_submit_grace_s=GRACE),
                                        events.append), journal, events)  # fmt: skip
    for now in (start - 30, start + 5, start + GRACE - 1):  # the keeper's turn: neither party submits
        for settler, journal, _ in settlers.values():
            rec = journal.agreement(deal.id)
            assert rec is not None and settler.advance(rec, now, None) == "signed"
    assert c.status(deal.terms) == Status.NONE
    seller, s_journal, s_events = settlers[a.address]
    rec = s_journal.agreement(deal.id)
    assert rec is not None and seller.advance(rec, start + GRACE + 1, None) == "signed"  # not its turn yet
    buyer, b_journal, b_events = settlers[b.address]
    rec = b_journal.agreement(deal.id)
    assert rec is not None and buyer.advance(rec, start + GRACE + 1, None) == "submitted"  # the fallback
    assert b_events == ["submitted"] and c.status(deal.terms) == Status.ACTIVE
    rec = s_journal.agreement(deal.id)
    assert (
        rec is not None and seller.advance(rec, start + 2 * GRACE + 1, None) == "submitted"
    )  # seen, not sent
    assert s_events == []
    opened = c.market.events.AgreementSubmitted().get_logs(from_block=0)
    assert [c.w3.eth.get_transaction(e["transactionHash"])["from"] for e in opened] == [b.address]


def test_submit_after_leaves_the_keeper_its_turn() -> None:
    """Pure: without a keeper the confirming party submits at once and the other at the start."""
    assert submit_after(7200, True, 0.0) == float("-inf")
    assert submit_after(7200, False, 0.0) == 7200.0
    assert submit_after(7200, True, 60.0) == 7260.0
    assert submit_after(7200, False, 60.0) == 7320.0


def _signed(domain: Domain, keys: tuple[str, str], start: int, nonce: int, **kw: int) -> SignedAgreement:
    seller, buyer = (Account.from_key(k) for k in keys)
    fields = {"quantityWh": 500, "expiry": start + HOUR - 1} | kw
    t = Terms(seller.address, buyer.address, fields["quantityWh"], 10**17, start, start + HOUR, nonce,
              fields["expiry"])  # fmt: skip
    return SignedAgreement(t, sign_terms_hex(t, domain, seller), sign_terms_hex(t, domain, buyer))


def test_the_submit_book_holds_only_what_both_parties_signed() -> None:
    """Pure: forged, unrecoverable, expired, invalid, repeated and malformed publications are refused and
    counted; `due` waits for the round, then gives every held agreement of started windows, oldest first."""
    domain = Domain(31337, "0x" + "12" * 20)
    keys = (household_key(0, "book"), household_key(1, "book"))
    h0 = 1_800_000_000 // HOUR * HOUR
    book = SubmitBook()
    good = _signed(domain, keys, h0, 1)
    assert (
        book.add(
            parse_agreement(encode_agreement(good.terms, good.seller_sig, good.buyer_sig)), domain, h0 - 60
        )
        is None
    )
    assert book.add(good, domain, h0 - 59) == "duplicate"  # a repeat or a replay
    other = _signed(domain, keys, h0, 2)
    assert book.add(SignedAgreement(other.terms, other.buyer_sig, other.buyer_sig), domain, h0) == "signature"
    assert (
        book.add(SignedAgreement(other.terms, "0x" + "ab" * 65, other.buyer_sig), domain, h0) == "signature"
    )
    assert book.add(other, Domain(1, domain.market), h0) == "signature"  # signed for another market
    raw = bytes.fromhex(other.seller_sig[2:])  # the same signature, malleated (s -> n - s, v flipped)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high = raw[:32] + (n - int.from_bytes(raw[32:64], "big")).to_bytes(32, "big") + bytes([55 - raw[64]])
    assert (
        book.add(SignedAgreement(other.terms, "0x" + high.hex(), other.buyer_sig), domain, h0) == "signature"
    )
    assert book.add(other, domain, h0 + HOUR) == "expired"
    assert book.add(_signed(domain, keys, h0, 3, expiry=h0 + HOUR), domain, h0) == "terms"
    assert book.add(_signed(domain, keys, h0, 4, quantityWh=0), domain, h0) == "terms"
    later = _signed(domain, keys, h0 + HOUR, 5)
    assert book.add(later, domain, h0) is None and book.add(other, domain, h0) is None
    assert book.due(h0 + 9, 10.0) == []  # the round has not come
    assert book.next_at(10.0) == h0 + 10  # which is when the keeper wakes for it
    due = book.due(h0 + 10, 10.0)
    assert [a.terms.nonce for _, a in due] == [1, 2]  # the next window's agreement waits for its round
    assert [aid for aid, _ in due] == [agreement_key(good.terms, domain), agreement_key(other.terms, domain)]
    book.taken([aid for aid, _ in due])
    assert book.add(good, domain, h0 + 20) == "duplicate"  # taken, still remembered until it expires
    assert book.due(h0 + HOUR + 9, 10.0) == []
    assert [a.terms.nonce for _, a in book.due(h0 + HOUR + 10, 10.0)] == [5]
    assert book.due(h0 + 2 * HOUR, 10.0) == [] and not book.held  # expired: dropped, its parties submitted
    assert book.next_at(10.0) == math.inf
    for bad, reason in ((b"{", "json"), (b'{"v": 2}', "version"), (b"x" * 5000, "size"),
                        (b'{"v": 1, "terms": {}, "seller_sig": "0x", "buyer_sig": "0x"}', "json")):  # fmt: skip
        with pytest.raises(statement.StatementRejected) as exc:
            parse_agreement(bad)
        assert exc.value.reason == reason
    assert book.rejected == {"duplicate": 2, "signature": 4, "expired": 2, "terms": 2}
    many = SubmitBook()
    for n in range(MAX_SUBMIT_BATCH + 5):  # distinct pairs: one pair alone stops at MAX_HELD_PER_PARTY
        pair = (household_key(2 * n, "many"), household_key(2 * n + 1, "many"))
        assert many.add(_signed(domain, pair, h0, 100 + n), domain, h0) is None
    assert len(many.due(h0 + 10, 10.0)) == MAX_SUBMIT_BATCH


def test_a_pair_that_signs_without_end_cannot_make_the_keeper_pay_or_grow() -> None:
    """The keeper pays for what it submits and holds it in memory: one household's held agreements are
    capped, and only windows starting within a day are held. The rest go by the parties' own fallback."""
    domain = Domain(31337, "0x" + "12" * 20)
    keys = (household_key(0, "flood"), household_key(1, "flood"))
    h0 = 1_800_000_000 // HOUR * HOUR
    book = SubmitBook()
    for n in range(MAX_HELD_PER_PARTY):
        assert book.add(_signed(domain, keys, h0, n), domain, h0) is None
    assert book.add(_signed(domain, keys, h0, 99), domain, h0) == "party_limit"
    other = (household_key(2, "flood"), keys[1])  # the same buyer with another seller: still capped
    assert book.add(_signed(domain, other, h0, 1), domain, h0) == "party_limit"
    fresh = (household_key(3, "flood"), household_key(4, "flood"))
    assert book.add(_signed(domain, fresh, h0, 1), domain, h0) is None  # others are not affected
    far = _signed(domain, fresh, h0 + 2 * 24 * HOUR, 2, expiry=h0 + 2 * 24 * HOUR + HOUR - 1)
    assert book.add(far, domain, h0) == "early"
    book.taken([aid for aid, _ in book.due(h0 + 10, 10.0)])  # submitted: the household may be held again
    assert book.add(_signed(domain, keys, h0 + HOUR, 200), domain, h0 + 20) is None
    assert book.rejected == {"party_limit": 2, "early": 1}


def test_keeper_submission_config_is_checked_at_start(tmp_path: Path) -> None:
    assert parse_keeper({}).submit_delay_s == 30.0
    assert parse_keeper({"submit_delay_s": 5}).submit_delay_s == 5.0
    assert parse_agent({"keeper_submit_grace_s": 60}, tmp_path).keeper_submit_grace_s == 60.0
    for bad in ({"keeper_submit_grace_s": -1}, {"keeper_submit_grace_s": 901}):
        with pytest.raises(ConfigError):
            parse_agent(bad, tmp_path)
    with pytest.raises(ConfigError):
        parse_keeper({"submit_delay_s": -1})
    tables = {"community": {"id": "c1"}, "chain": {"rpc_url": "http://127.0.0.1:8545", "market": "0x" + "12" * 20,
                        "passphrase_credential": "gridpact", "keystore": "key.json"},
              "agent": {"keeper_submit_grace_s": 10}, "keeper": {"submit_delay_s": 10}}  # fmt: skip
    with pytest.raises(
        ConfigError, match="submit_delay_s"
    ):  # the keeper's round must come before the fallback
        parse_trading_config(tables, tmp_path)


def test_a_restarted_keeper_sends_no_second_transaction(tmp_path: Path) -> None:
    """The same round again (a restart re-running it: the same journal key) re-broadcasts the journaled
    transaction; a replay to a keeper that forgot it finds the agreement open and sends nothing."""
    c, (a, b, _d), keeper_hh, start = community(tmp_path, "krestart")
    deal = Deal(
        c, c.terms(a, b, quantity_wh=700, delivery_end=start + HOUR, expiry=start + HOUR - 1), a, b, a
    )
    payload = encode_agreement(deal.terms, deal.seller_sig, deal.buyer_sig)
    journal = Journal(tmp_path / "keeper.db")
    market = Market(
        c.w3, c.market.address, TxSender(c.w3, Account.from_key(keeper_hh.key), journal, market_abi())
    )
    counts: list[str] = []
    first = Keeper(market, KeeperBook(), counts.append)
    assert first.accept_agreement(payload, start - 30) is None
    due = first.submits.due(start + 10, DELAY)
    assert first.submit(due) == 1 and c.status(deal.terms) == Status.ACTIVE
    sent = c.w3.eth.get_transaction_count(keeper_hh.address)
    key = journal.txs("keeper-submit:")[0].key
    assert (
        market.settle_windows(key, [], [], [(deal.terms, deal.seller_sig, deal.buyer_sig)]).key == key
    )  # same tx again
    again = Keeper(market, KeeperBook(), counts.append)  # restarted: its book is empty
    assert again.accept_agreement(payload, start + 11) is None
    assert again.submit(again.submits.due(start + 11, DELAY)) == 0
    assert (
        c.w3.eth.get_transaction_count(keeper_hh.address) == sent and len(journal.txs("keeper-submit:")) == 1
    )
    assert counts == ["keeper_submitted", "keeper_submit_already_open"]


def test_live_gateways_agreements_go_through_the_keepers_batch(
    mosquitto: MosquittoBroker, mined_anvil: AnvilNode, tmp_path: Path
) -> None:
    """Three gateways (`run_trading`: two sellers, one buyer of both) and a fourth holding `[keeper]`, on
    anvil and Mosquitto: each window's two agreements open in one call of the keeper's and no
    party submits. 60 s windows: the keeper's round (4 s after the start) comes long before the parties'
    fallback (15 s), so a loaded machine does not turn the test into a race."""
    url = mined_anvil.info.url
    assert url is not None
    com = setup_community(Web3(Web3.HTTPProvider(url)), keys=HOUSEHOLD_KEYS)
    w3 = com.w3  # untyped, as the helpers keep it: blocks and transactions read as plain mappings
    mine_every_second(w3)
    t0 = float(int(time.time()))
    agent = {"window_s": 60, "lead_s": 10, "keeper_submit_grace_s": GRACE / 4}
    specs = []
    roles = (("seller1", -1000, "constant:load_w=0,pv_w=1200000"), ("buyer", 2000, "constant:load_w=2400000,pv_w=0"),
             ("seller2", -1000, "constant:load_w=0,pv_w=1200000"), ("keeper", 0, "constant:load_w=0,pv_w=0"))  # fmt: skip
    for (name, net, profile), key in zip(roles, HOUSEHOLD_KEYS, strict=True):
        (tmp_path / f"{name}.pass").write_text("secret\n")
        create_keystore(tmp_path / f"{name}.json", "secret", private_key=key, kdf="pbkdf2", work=1000)
        spec = node_spec(name, tmp_path / f"{name}.json", tmp_path / f"{name}.pass", url,
                         com.market.address, mosquitto.port, profile, net, t0, **agent)  # fmt: skip
        specs.append(spec)
    specs[-1]["tables"]["keeper"] = {"submit_delay_s": 4}
    keeper = Account.from_key(HOUSEHOLD_KEYS[3]).address

    def batch() -> list[bytes]:
        """The ids a keeper call opened two or more of at once (the first such call)."""
        by_tx: dict[bytes, list[bytes]] = {}
        for e in com.submitted_events():
            by_tx.setdefault(bytes(e["transactionHash"]), []).append(bytes(e["args"]["id"]))
        return next((ids for ids in by_tx.values() if len(ids) >= 2), [])

    def settled() -> bool:  # the batch's agreements closed: both parties went past their fallback time
        ids = batch()
        return bool(ids) and set(ids) <= {bytes(e["args"]["id"]) for e in com.settled_events()}

    nodes = InProcessNodes(specs, tmp_path)
    nodes.run_until(settled, 300, poll_s=0.5)
    assert settled(), nodes.metrics["keeper"].render()
    opened = {bytes(e["args"]["id"]): e for e in com.submitted_events()}
    first = opened[batch()[0]]
    tx = w3.eth.get_transaction(first["transactionHash"])
    assert tx["from"] == keeper
    assert com.market.decode_function_input(tx["input"])[0].fn_name == "settleByMeters"  # the keeper's round
    parties = {Account.from_key(k).address for k in HOUSEHOLD_KEYS[:3]}
    since = range(first["blockNumber"], w3.eth.block_number + 1)
    for sent in (t for n in since for t in w3.eth.get_block(n, full_transactions=True)["transactions"]):
        if sent["from"] in parties and sent["to"] == com.market.address:  # the parties sent no submission
            fn = com.market.decode_function_input(sent["input"])[0].fn_name
            assert fn not in ("submitAgreement", "submitAgreements"), fn
    assert "keeper_submitted" in nodes.metrics["keeper"].render()
