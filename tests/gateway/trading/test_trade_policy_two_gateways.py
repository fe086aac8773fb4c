"""Two gateways over Mosquitto and the real Market on anvil, one of them on the learned strategy.

The learned side reads its tariffs from the Market's posted provider tariffs (buyer case) or from
its config (seller case), decides with the shipped policy, and the agreement submitted on chain
must lie inside both sides' reservation prices; the learned side also remembers the peer's
concession rate in its journal.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from trade_helpers import (
    HOUSEHOLD_KEYS,
    Community,
    InProcessNodes,
    households,
    mine_every_second,
    setup_community,
)
from web3 import Web3

from contracts.chain import Sender
from gateway.chain.journal import Journal
from hil.services import DEV_PRIVATE_KEYS, AnvilNode, MosquittoBroker

SELLER, BUYER = (Account.from_key(k).address for k in HOUSEHOLD_KEYS[:2])
FIXED_SELLER = {"price": {"ip": 200, "rp": 100, "dl": 10, "cr": 1.0}}  # trade_node's defaults
FIXED_BUYER = {"price": {"ip": 100, "rp": 200, "dl": 10, "cr": 1.0}}


def specs(tmp_path: Path, com: Community, port: int, rpc: str, learned: str) -> list[dict[str, Any]]:
    """The two households of `households`, the `learned` one on the learned strategy."""
    if learned == "buyer":
        agent: dict[str, Any] = {"strategy": "learned"}  # tariffs: the Market's posted ones
    else:
        agent = {"strategy": "learned", "import_tariff": 250, "export_tariff": 50}
    return households(tmp_path, com, port, 1_200_000, rpc, agents={learned: agent})


def negotiate_decisions(records: list[logging.LogRecord], peer: str) -> list[dict[str, Any]]:
    """The learned side's negotiate decisions against `peer`, from its `policy_decision` log lines."""
    out = []
    for r in records:
        msg = r.getMessage()
        if msg.startswith("event=policy_decision") and f"peer={peer} " in msg:
            decision = ast.literal_eval(msg.split("decision=", 1)[1])
            if decision["action"] == "negotiate":
                out.append(decision["params"])
    return out


@pytest.mark.parametrize("learned", ["buyer", "seller"])
def test_learned_agent_reaches_an_agreement_inside_both_reservations(
    mosquitto: MosquittoBroker,
    mined_anvil: AnvilNode,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    learned: str,
) -> None:
    caplog.set_level(logging.INFO, logger="gridpact.gateway.trading")
    w3 = Web3(Web3.HTTPProvider(mined_anvil.info.url))
    com = setup_community(w3)
    provider = Account.from_key(DEV_PRIVATE_KEYS[8])
    community = Sender(w3, DEV_PRIVATE_KEYS[0])
    community.transact(com.market.functions.register(provider.address, b"\x09" * 32, b"\x00" * 32))
    community.transact(
        com.market.functions.setProvider(provider.address, 50, 250)
    )  # buys at 50, sells at 250
    mine_every_second(w3)
    rpc = mined_anvil.info.url
    assert rpc is not None
    nodes = specs(tmp_path, com, mosquitto.port, rpc, learned)
    running = InProcessNodes(nodes, tmp_path)
    running.run_until(lambda: bool(com.submitted_events()), 25, poll_s=0.3)
    metrics = running.metrics
    submitted = com.submitted_events()
    assert submitted, metrics["buyer"].render() + metrics["seller"].render()
    rendered = metrics[learned].render()
    assert 'event="policy_negotiate"' in rendered, rendered
    peer = BUYER if learned == "seller" else SELLER
    decisions = negotiate_decisions(caplog.records, peer)
    assert decisions, "the learned side never negotiated by its policy"
    for event in submitted:
        terms = event["args"]
        assert terms["seller"] == SELLER and terms["buyer"] == BUYER and terms["quantityWh"] == 1000
        price = terms["unitPrice"]
        if learned == "buyer":  # learned rp (from the Market's tariffs) >= price >= the fixed seller's rp
            assert FIXED_SELLER["price"]["rp"] <= price <= max(d["rp"] for d in decisions) < 250
        else:
            assert 50 < min(d["rp"] for d in decisions) <= price <= FIXED_BUYER["price"]["rp"]
    journal = Journal(tmp_path / learned / "trading.db")
    try:
        remembered = journal.get("peer_cr:" + peer.lower())
    finally:
        journal.close()
    print(f"learned={learned} prices={[e['args']['unitPrice'] for e in submitted]} "
          f"learned_rp={sorted({d['rp'] for d in decisions})} peer_cr={remembered}")  # fmt: skip
    assert remembered is not None  # the peer's concession, estimated from its offers, persisted
    assert 0.5 < float(remembered) < 2.0  # both fixed peers concede linearly (cr = 1)
