"""The household view's pure parts: schedule states, tokens, savings, the forecast log, the trade feed.

Golden values computed by hand; the journal is the real one (SQLite), the loan book a table of the
same file as the loans branch writes it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gateway.chain.journal import Journal
from gateway.dashboard.household import (
    AgreementRow,
    ForecastLog,
    read_ledger,
    savings,
    shown_state,
    tokens,
    value,
)
from gateway.negotiation import strategy_from_config
from gateway.trading.observer import (
    MessageSeen,
    SessionClosed,
    TradeFeed,
    message_event,
    opened,
    price_curve,
)
from gridpact.core.concession import ConcessionParams

SELLER, BUYER = "0x" + "11" * 20, "0x" + "22" * 20


@pytest.mark.parametrize(
    ("state", "note", "now", "shown"),
    [
        ("signed", None, 50, "upcoming"),
        ("submitted", None, 100, "delivering"),
        ("submitted", None, 200, "awaiting evidence"),
        ("reported", None, 250, "awaiting evidence"),
        ("reported", "disputed", 250, "disputed"),
        ("closed", "settled", 300, "settled"),
        ("closed", "refunded", 300, "refunded"),
        ("closed", "cancelled", 300, "cancelled"),
        ("closed", None, 300, "closed"),
        ("abandoned", "expired before submission", 300, "abandoned"),
    ],
)
def test_schedule_state(state: str, note: str | None, now: float, shown: str) -> None:
    assert shown_state(state, note, 100, 200, now) == shown


def _terms(qty: int, price: int, start: int) -> dict[str, int | str]:
    return {"seller": SELLER, "buyer": BUYER, "quantityWh": qty, "unitPrice": price,
            "deliveryStart": start, "deliveryEnd": start + 900}  # fmt: skip


def test_ledger_tokens_and_loans_from_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "trading.db"
    j = Journal(path)
    j.put_agreement("0xa1", "buyer", SELLER, _terms(1000, 150, 1000), "0xs", 1900)
    j.set_agreement_state("0xa1", "closed", measured_wh=800, note="settled")
    j.put_agreement("0xa2", "buyer", SELLER, _terms(2000, 120, 5000), "0xs", 5900)
    j.set_agreement_state("0xa2", "submitted")  # on chain: 240 tokens in escrow
    j.put_agreement("0xa3", "seller", BUYER, _terms(500, 200, 3000), "0xs", 3900)
    j.set_agreement_state("0xa3", "closed", measured_wh=500, note="settled")
    j.set("free_balance", "12345")
    j.close()
    db = sqlite3.connect(path)  # the loan book's table, as gateway/trading/loans.py writes it
    db.execute("CREATE TABLE loans (id TEXT PRIMARY KEY, role TEXT, peer TEXT, terms TEXT, state TEXT, "
               "lent_wh INTEGER, returned_wh INTEGER, note TEXT, updated REAL)")  # fmt: skip
    loan = {"lender": SELLER, "borrower": BUYER, "quantityWh": 700, "collateral": 90, "returnBy": 9000}
    db.execute("INSERT INTO loans VALUES ('0xl1', 'borrower', ?, ?, 'open', 700, NULL, NULL, 1.0)",
               (SELLER, json.dumps(loan)))  # fmt: skip
    db.commit()
    db.close()

    ledger = read_ledger(path, now=5500)
    by_id = {r.id: r for r in ledger.rows}
    assert [r.id for r in ledger.rows] == ["0xl1", "0xa2", "0xa3", "0xa1"]  # newest end first
    assert by_id["0xa2"].state == "delivering" and by_id["0xa2"].tokens == 240
    assert by_id["0xl1"].state == "to be returned" and by_id["0xl1"].return_by == 9000
    assert by_id["0xa1"].delivered_wh == 800 and by_id["0xa1"].quantity_wh == 1000
    assert ledger.free_balance == 12345
    assert ledger.states == {"0xa1": "closed", "0xa2": "submitted", "0xa3": "closed", "0xl1": "open"}
    t = tokens(ledger)
    assert (t["free"], t["escrow"], t["collateral"]) == (12345, 240, 90)
    assert {(h["agreement"], h["what"], h["amount"]) for h in t["history"]} == {
        ("0xa1", "paid", -120), ("0xa2", "escrowed", -240), ("0xa3", "received", 100),
    }  # fmt: skip


def test_no_journal_means_an_empty_ledger(tmp_path: Path) -> None:
    ledger = read_ledger(tmp_path / "absent.db", now=0)
    assert ledger.rows == [] and ledger.free_balance is None


def _row(role: str, state: str, delivered: int | None, price: int) -> AgreementRow:
    return AgreementRow("0x", "trade", role, "0xp", state, 0, 900, 1000, delivered, price, value(1000, price))


def test_savings_against_grid_only_and_own_battery_only() -> None:
    rows = [
        _row(
            "buyer", "settled", 1000, 150
        ),  # grid: 1000 (250 - 150)/1000 = 100; battery: (50/0.9 - 150) = -94.4
        _row(
            "seller", "settled", 500, 200
        ),  # grid: 500 (200 - 50)/1000 = 75; battery: 500 (200 - 225)/1000 = -12.5
        _row("buyer", "upcoming", None, 150),  # nothing delivered yet: not counted
        _row("buyer", "refunded", 0, 150),  # refunded: not counted
    ]
    s = savings(rows, (250.0, 50.0), round_trip=0.9)
    assert s["agreements"] == 2 and s["energy_wh"] == 1500
    assert s["vs_grid"] == 175.0
    assert s["vs_battery"] == pytest.approx(-94.4 - 12.5, abs=0.11)
    assert savings(rows, None) == {"tariff": None}


def test_forecast_log_keeps_the_first_forecast_and_scores_it() -> None:
    log = ForecastLog()
    log.record(1000, 100, [10.0, 20.0, None], now=950)
    log.record(1000, 100, [99.0, 99.0, 30.0], now=1050)  # later forecasts do not replace earlier ones
    made, mae = log.against(1000, 100, [12.0, 17.0, None])
    assert made == [10.0, 20.0, 30.0]
    assert mae == 2.5
    log.record(200_000, 100, [1.0], now=200_000 - 1)  # a day later the old entries are gone
    assert 1000 not in log.made


def test_trade_feed_tells_who_we_negotiate_with_and_keeps_recent_sessions() -> None:
    strategy = strategy_from_config({"price": {"ip": 100, "rp": 200, "dl": 10, "cr": 1.0}})
    assert price_curve(strategy) == ConcessionParams(100, 200, 10, 1.0)
    assert price_curve(object()) is None
    feed = TradeFeed(keep=2)
    assert feed.view()["state"] == "waiting"
    feed.trade_event(opened("s1", SELLER, "buyer", 3600, 1000, strategy, 1.0))
    sent = message_event(
        "sent", "propose", {"session": "s1", "round": 0, "price": 100, "quantity_wh": 1000}, 1.1
    )
    got = message_event("received", "accept", {"session": "s1", "round": 0,
                                               "terms": {"unitPrice": 150, "quantityWh": 900}}, 1.2)  # fmt: skip
    assert got == MessageSeen("s1", "received", "accept", 0, 150, 900, 1.2)
    assert message_event("sent", "offer", {"window": 1, "price": 3}, 1.0) is None  # public offers: no session
    for event in (sent, got):
        assert event is not None
        feed.trade_event(event)
    view = feed.view()
    assert view["state"] == "negotiating" and view["with"] == [SELLER]
    feed.trade_event(SessionClosed("s1", "0xagreed", 2.0))
    feed.trade_event(MessageSeen("ghost", "received", "counter", 1, 1, 1, 2.0))  # unknown session: ignored
    view = feed.view()
    assert view["state"] == "waiting"
    (s1,) = view["sessions"]
    assert s1["outcome"] == "agreed" and s1["curve"] == {"ip": 100, "rp": 200, "dl": 10, "cr": 1.0}
    assert [(o["by"], o["price"]) for o in s1["offers"]] == [("me", 100), ("peer", 150)]
    for i in range(3):  # only `keep` finished sessions stay
        feed.trade_event(opened(f"x{i}", BUYER, "seller", 0, 1, strategy, 3.0))
        feed.trade_event(SessionClosed(f"x{i}", None, 3.0))
    ids = [s["id"] for s in feed.view()["sessions"]]
    assert ids == ["x2", "x1"]
    flood = TradeFeed()
    flood.trade_event(opened("f", BUYER, "seller", 0, 1, strategy, 0.0))
    for _ in range(500):  # a chatty peer cannot grow a session without bound
        flood.trade_event(MessageSeen("f", "received", "counter", 1, 1, 1, 0.0))
    assert len(flood.view()["sessions"][0]["offers"]) == TradeFeed.MAX_MESSAGES
