"""Two gateways, Mosquitto and anvil with the real Market: negotiate, sign, deliver, report, settle.

Trading window after window, the seller reuses the slot nonce of a settled agreement (its ring).

Each household is `run_trading` with a real ReadingStore fed by signed readings of a meter_sim
profile; the seller's surplus and the buyer's need are fixed per window so the outcome is known.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from eth_account import Account
from trade_helpers import HOUSEHOLD_KEYS, Community, InProcessNodes, community_on, households, journal_states

from gateway.ops.metrics import Metrics
from hil.services import AnvilNode, MosquittoBroker

DEPOSIT = 10**9  # setup_community's default


def run_until(
    com: Community, specs: list[dict[str, Any]], tmp_path: Path, settled: int, limit_s: float
) -> dict[str, Metrics]:
    """Run the households until `settled` agreements are settled on chain and closed in both journals."""
    nodes = InProcessNodes(specs, tmp_path)
    nodes.run_until(lambda: done(com, specs, tmp_path, settled), limit_s, poll_s=0.5)
    return nodes.metrics


def done(com: Community, specs: list[dict[str, Any]], tmp_path: Path, settled: int) -> bool:
    if len(com.settled_events()) < settled:
        return False
    closed = [
        sum(1 for r in journal_states(tmp_path / s["name"] / "trading.db") if r[1] == "closed") for s in specs
    ]
    return min(closed) >= settled


def test_two_gateways_negotiate_sign_and_settle(
    mosquitto: MosquittoBroker, mined_anvil: AnvilNode, tmp_path: Path
) -> None:
    com = community_on(mined_anvil)
    specs = households(tmp_path, com, mosquitto.port, 1_200_000, mined_anvil.info.url)
    metrics = run_until(com, specs, tmp_path, settled=4, limit_s=60)
    settled = com.settled_events()
    assert len(settled) >= 4, metrics["buyer"].render() + metrics["seller"].render()
    ids = [e["args"]["id"] for e in settled]
    assert len(ids) == len(set(ids))  # each agreement settled once
    submitted = {e["args"]["id"]: e["args"] for e in com.submitted_events()}
    seller, buyer = (Account.from_key(k).address for k in HOUSEHOLD_KEYS[:2])
    for event in settled:
        terms = submitted[event["args"]["id"]]
        assert terms["seller"] == seller and terms["buyer"] == buyer
        assert terms["quantityWh"] == 1000
        assert 100 <= terms["unitPrice"] <= 200  # inside both reservation prices
        escrow = 1000 * terms["unitPrice"] // 1000
        assert event["args"]["deliveredWh"] == 1000
        assert event["args"]["paidToSeller"] == escrow
        assert event["args"]["refundedToBuyer"] == 0
    assert metrics["seller"].render().count("gridpact_peer_messages_accepted_total") >= 1
    closed = [row for row in journal_states(tmp_path / "seller" / "trading.db") if row[1] == "closed"]
    assert len(closed) >= 4 and all(note == "settled" for _, _, note in closed)
    assert_slot_nonces_reused(tmp_path)


def assert_slot_nonces_reused(tmp_path: Path) -> None:
    """Window after window, the seller's ring hands a settled agreement's nonce out again."""
    from gateway.trading.nonces import RING_BASE

    with sqlite3.connect(tmp_path / "seller" / "trading.db") as db:
        rows = [(aid, state, json.loads(terms)) for aid, state, terms in
                db.execute("SELECT id, state, terms FROM agreements ORDER BY window_end")]  # fmt: skip
    closed = [terms["nonce"] for _, state, terms in rows if state == "closed"]
    assert all(RING_BASE <= n < RING_BASE + 256 for n in closed), closed  # ring nonces only
    assert any(closed.count(n) >= 2 for n in closed), closed  # a settled slot was written again
    with sqlite3.connect(tmp_path / "buyer" / "trading.db") as db:
        buyer = {
            aid: json.loads(terms)["nonce"] for aid, terms in db.execute("SELECT id, terms FROM agreements")
        }
    assert all(buyer[aid] == terms["nonce"] for aid, _, terms in rows if aid in buyer)  # both signed the same


def test_under_delivering_seller_gets_partial_refund(
    mosquitto: MosquittoBroker, mined_anvil: AnvilNode, tmp_path: Path
) -> None:
    com = community_on(mined_anvil)
    # 540 kW for a 4 s window is 600 Wh: the seller delivers 600 of the 1000 Wh it sold
    specs = households(tmp_path, com, mosquitto.port, 540_000, mined_anvil.info.url)
    run_until(com, specs, tmp_path, settled=1, limit_s=45)
    settled = com.settled_events()
    assert settled, "nothing settled"
    event = settled[0]["args"]
    terms = {e["args"]["id"]: e["args"] for e in com.submitted_events()}[event["id"]]
    price = terms["unitPrice"]
    escrow = 1000 * price // 1000
    pay = 600 * price // 1000
    penalty = min(pay, (400 * price // 1000) * 1000 // 10_000)
    assert event["deliveredWh"] == 600
    assert event["paidToSeller"] == pay - penalty
    assert event["refundedToBuyer"] == escrow - pay + penalty
    # and the balances on chain moved by exactly that (all agreements of the run together)
    seller, buyer = com.households
    paid = sum(e["args"]["paidToSeller"] for e in settled)
    escrowed = sum(
        t["quantityWh"] * t["unitPrice"] // 1000 for t in (e["args"] for e in com.submitted_events())
    )
    refunded = sum(e["args"]["refundedToBuyer"] for e in settled)
    open_escrow = escrowed - paid - refunded
    assert com.market.functions.balanceOf(seller).call() == DEPOSIT + paid
    assert com.market.functions.balanceOf(buyer).call() == DEPOSIT - escrowed + refunded
    assert (
        com.token.functions.balanceOf(com.market.address).call() == 2 * DEPOSIT
    )  # tokens stay in the market
    assert open_escrow >= 0
