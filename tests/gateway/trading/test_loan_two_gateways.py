"""Energy loans between two real gateways: Mosquitto, anvil with the real Market, meters with signed readings.

Each household is `run_trading` with `[loans]` (strategy s2): they pick each other, bargain over
the loan protocol, both sign, the borrower's collateral is locked by `submitLoan`, and after the
return period each reports what its own meter saw. The outcome on chain follows MarketLoans' rules.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from loan_helpers import LoanNodes, loan_events, loan_households, square_profile
from trade_helpers import Community, community_on

from hil.services import AnvilNode, MosquittoBroker

DEPOSIT = 10**9


def run(
    com: Community, specs: list[dict[str, Any]], tmp_path: Path, closed: int, limit_s: float
) -> LoanNodes:
    nodes = LoanNodes(specs, tmp_path)
    nodes.run_until(lambda: len(loan_events(com, "LoanClosed")) >= closed, limit_s, poll_s=0.5)
    return nodes


def metrics_text(nodes: LoanNodes) -> str:
    return "\n".join(m.render() for m in nodes.metrics.values())


def opened_by_id(com: Community) -> dict[bytes, dict[str, Any]]:
    return {e["id"]: e for e in loan_events(com, "LoanOpened")}


def test_loan_lent_and_returned_releases_the_collateral(
    mosquitto: MosquittoBroker, mined_anvil: AnvilNode, tmp_path: Path
) -> None:
    com = community_on(mined_anvil, report_window=8)
    a = square_profile(tmp_path / "a.csv", exporting_first=True)
    b = square_profile(tmp_path / "b.csv", exporting_first=False)
    specs = loan_households(tmp_path, com, mosquitto.port, mined_anvil.info.url, (a, b), (a, b))
    nodes = run(com, specs, tmp_path, closed=2, limit_s=90)
    closed = loan_events(com, "LoanClosed")
    assert closed, metrics_text(nodes)
    opened = opened_by_id(com)
    for event in closed:
        print(event, opened[event["id"]])
    returned = [e for e in closed if e["returnedWh"] == e["lentWh"] == opened[e["id"]]["quantityWh"]]
    assert returned, closed
    for e in returned:  # fully returned: the whole collateral back to the borrower
        assert e["toLender"] == 0 and e["toTreasury"] == 0
        assert e["toBorrower"] == opened[e["id"]]["collateral"] > 0
    for name in ("a", "b"):  # both learned something about the other, on disk
        with sqlite3.connect(tmp_path / name / "trading.db") as db:
            assert db.execute("SELECT SUM(count) FROM loan_peers").fetchone()[0] >= 1
