"""The gateway's settler sends its meter's signed statements, not a figure of its own (issue 17, item 2).

A real Market on py-evm, each household's Journal, TxSender and ReadingStore, and statements signed by
each meter's device key and kept by the store as ingest keeps them. The seller's gateway sends its side,
the buyer's gateway its own: the second settles with the smaller of export and import. A buyer that
never sends its meter's statements is charged the seller's metered export after the deadline.
"""

from __future__ import annotations

from pathlib import Path

from eth_account import Account

from contracts.harness import Community, advance_time, household_key
from gateway.chain.journal import Journal
from gateway.chain.market import Market, Status, market_abi
from gateway.chain.sender import TxSender
from gateway.storage import ReadingStore
from gateway.trading.settlement import MeterEvidence, Settler, Timing, evidence_for
from gridpact.core import statement
from hil.services import DEV_PRIVATE_KEYS, in_process_web3

HOUR = 3600
DIGEST = bytes(32)


def signed(hh, end: int, imp: int, exp: int) -> tuple[bytes, bytes]:
    raw = statement.encode(statement.Statement(hh.device, end, imp, exp, 3, DIGEST))
    return raw, statement.sign(raw, hh.meter_secret)


def gateway(c: Community, hh, role: str, t, tmp_path: Path) -> tuple[Settler, Journal, Market, list[str]]:
    journal = Journal(tmp_path / f"{role}.db")
    market = Market(c.w3, c.market.address, TxSender(c.w3, Account.from_key(hh.key), journal, market_abi()))
    events: list[str] = []
    aid = market.agreement_id(t)
    journal.put_agreement(aid, role, "0x" + "00" * 20, t.as_dict(), "0x" + "11" * 65, t.deliveryEnd)
    journal.set_agreement_state(aid, "submitted")
    return Settler(market, journal, Timing(1.0, 1.0), events.append), journal, market, events


def setup(tmp_path: Path, second_wh: int = 0):
    c = Community(in_process_web3(), DEV_PRIVATE_KEYS[0])
    seller = c.add_household(household_key(0, "evidence"), deposit=10**24)
    buyer = c.add_household(household_key(1, "evidence"), deposit=10**24)
    c.set_meter(seller)
    c.set_meter(buyer)
    start = (c.now() // HOUR + 1) * HOUR
    t = c.terms(seller, buyer, quantity_wh=1_000, delivery_end=start + HOUR, expiry=c.now() + 60)
    c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, seller, buyer)))
    if second_wh:  # a second sale of the same hour
        t2 = c.terms(seller, buyer, quantity_wh=second_wh, delivery_end=t.deliveryEnd, expiry=c.now() + 60)
        c.admin.transact(c.market.functions.submitAgreement(t2.as_tuple(), *c.sign(t2, seller, buyer)))
        c.second = t2  # type: ignore[attr-defined]
    advance_time(c.w3, t.deliveryEnd - c.now() + 5)
    stores = {}
    for hh, counters in ((seller, ((100, 5_000), (100, 5_700))), (buyer, ((9_000, 0), (10_000, 0)))):
        store = ReadingStore(tmp_path / f"{hh.device}.db", hh.device)
        store.add_statement(hh.device, start, *signed(hh, start, *counters[0]))
        store.add_statement(hh.device, start + HOUR, *signed(hh, start + HOUR, *counters[1]))
        stores[hh.address] = store
    return c, seller, buyer, t, stores


def test_both_gateways_send_their_meters_and_the_second_settles(tmp_path: Path) -> None:
    c, seller, buyer, t, stores = setup(tmp_path)
    now = c.now()
    s_settler, s_journal, market, s_events = gateway(c, seller, "seller", t, tmp_path)
    b_settler, b_journal, _, b_events = gateway(c, buyer, "buyer", t, tmp_path)
    aid = market.agreement_id(t)
    ev = evidence_for(t.as_dict(), stores[seller.address].statement_at)
    assert isinstance(ev, MeterEvidence) and ev.first is not None
    rec = s_journal.agreement(aid)
    assert rec is not None and s_settler.advance(rec, now, 999, ev) == "reported"  # its side kept
    assert "evidence_sent" in s_events and market.agreement(t).status is Status.ACTIVE
    assert c.market.functions.evidenceOf(bytes.fromhex(aid[2:])).call() == [True, False, 700, 0]
    rec = b_journal.agreement(aid)
    ev = evidence_for(t.as_dict(), stores[buyer.address].statement_at)
    assert rec is not None and b_settler.advance(rec, now, 0, ev) == "closed"  # its "measured" 0 is not sent
    settled = c.market.events.AgreementSettled().get_logs(from_block=0)
    assert [e["args"]["deliveredWh"] for e in settled] == [700]
    assert "reported" not in b_events  # no figure of its own on chain
    for store in stores.values():
        store.close()


def test_a_buyer_that_never_sends_its_meter_pays_the_sellers_metered_export(tmp_path: Path) -> None:
    c, seller, _buyer, t, stores = setup(tmp_path)
    s_settler, s_journal, market, _ = gateway(c, seller, "seller", t, tmp_path)
    aid = market.agreement_id(t)
    rec = s_journal.agreement(aid)
    ev = evidence_for(t.as_dict(), stores[seller.address].statement_at)
    assert rec is not None and s_settler.advance(rec, c.now(), 700, ev) == "reported"
    free = c.free(seller.address)
    advance_time(c.w3, 86_400 + 10)  # the report deadline passes; the seller's gateway closes it
    rec = s_journal.agreement(aid)
    assert rec is not None and s_settler.advance(rec, c.now(), None) == "closed"
    paid = 700 * t.unitPrice // 1000 - (300 * t.unitPrice // 1000) * 1000 // 10_000
    assert c.free(seller.address) - free == paid
    for store in stores.values():
        store.close()


def test_windows_shorter_than_an_hour_have_no_meter_evidence() -> None:
    """The node signs once an hour: a 4-second test window falls back to the report rules."""
    terms = {"deliveryStart": 1_000_004, "deliveryEnd": 1_000_008}
    assert evidence_for(terms, lambda end: (b"", b"")) is None


def test_all_agreements_on_one_meter_window_go_in_one_call(tmp_path: Path) -> None:
    """The window counts once on chain: the seller's gateway sends it with both its sales of the hour."""
    c, seller, buyer, t, stores = setup(tmp_path, second_wh=400)
    t2 = c.second  # type: ignore[attr-defined]
    s_settler, s_journal, market, _ = gateway(c, seller, "seller", t, tmp_path)
    aid2 = market.agreement_id(t2)
    s_journal.put_agreement(aid2, "seller", buyer.address, t2.as_dict(), "0x" + "11" * 65, t2.deliveryEnd)
    s_journal.set_agreement_state(aid2, "submitted")
    rec = s_journal.agreement(market.agreement_id(t))
    ev = evidence_for(t.as_dict(), stores[seller.address].statement_at)
    assert rec is not None and s_settler.advance(rec, c.now(), 700, ev) == "reported"
    assert [r.state for r in map(s_journal.agreement, (rec.id, aid2)) if r] == ["reported", "reported"]
    kept = [c.market.functions.evidenceOf(bytes.fromhex(a[2:])).call() for a in (rec.id, aid2)]
    assert kept == [[True, False, 500, 0], [True, False, 200, 0]]  # 700 Wh pro rata to 1,000 and 400
    for store in stores.values():
        store.close()


def test_a_window_the_market_refuses_is_not_taken_for_sent(tmp_path: Path) -> None:
    """Statements signed by a key other than the registered one: the call is mined but the Market rejects the
    window (MeterWindowRejected). The settler must not mark the agreement reported on the meters' word (its
    side would then be missing at the deadline): it counts the refusal and the report rules apply."""
    from types import SimpleNamespace

    c, seller, _buyer, t, stores = setup(tmp_path)
    start = t.deliveryStart
    stranger = SimpleNamespace(
        device=seller.device, meter_secret=bytes.fromhex(household_key(7, "not-the-meter")[2:])
    )
    bad = ReadingStore(tmp_path / "bad.db", seller.device)
    bad.add_statement(seller.device, start, *signed(stranger, start, 100, 5_000))
    bad.add_statement(seller.device, start + HOUR, *signed(stranger, start + HOUR, 100, 5_700))
    s_settler, s_journal, market, events = gateway(c, seller, "seller", t, tmp_path)
    aid = market.agreement_id(t)
    rec = s_journal.agreement(aid)
    ev = evidence_for(t.as_dict(), bad.statement_at)
    assert rec is not None and ev is not None
    assert s_settler.advance(rec, c.now(), 700, ev) == "reported"  # by its report, not by the refused window
    assert "evidence_window_rejected" in events and "evidence_sent" not in events
    assert c.market.events.MeterWindowRejected().get_logs(from_block=0)
    assert c.market.functions.evidenceOf(bytes.fromhex(aid[2:])).call() == [False, False, 0, 0]
    reported = c.market.events.DeliveryReported().get_logs(from_block=0)
    assert [(e["args"]["reporter"], e["args"]["deliveredWh"]) for e in reported] == [(seller.address, 700)]
    for store in (*stores.values(), bad):
        store.close()
