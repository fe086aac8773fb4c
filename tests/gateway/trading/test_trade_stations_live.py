"""A grid-station auction between three live gateways on Mosquitto and anvil with the real Market.

Two sellers with surplus, one buyer short of energy, every gateway on `market = "stations"`: the
buyer calls for bids each window, both sellers bid signed terms, the buyer takes the cheaper and
declines the other. The community has set a network fee and an operator account: each settled
agreement pays the seller its price less the fee, and the fee reaches the operator's balance.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from eth_account import Account
from trade_helpers import (
    HOUSEHOLD_KEYS,
    InProcessNodes,
    journal_states,
    keyed_spec,
    mine_every_second,
    setup_community,
)
from web3 import Web3

from gridpact.core.settlement import value
from hil.services import DEV_PRIVATE_KEYS, AnvilNode, MosquittoBroker

FEE = 10  # token base units per kWh, out of the seller's payout
OPERATOR = Account.from_key(DEV_PRIVATE_KEYS[7]).address
# name, key, ask (ip), reserve (rp), fixed net Wh
CHEAP = ("cheap", HOUSEHOLD_KEYS[0], 120, 100, -1000)
DEAR = ("dear", HOUSEHOLD_KEYS[1], 180, 150, -1000)
BUYER = ("buyer", HOUSEHOLD_KEYS[2], 0, 0, 1000)


def specs_for(tmp_path: Path, market: str, broker_port: int, rpc: str) -> list[dict[str, Any]]:
    t0 = float(int(time.time()))
    out = []
    for name, key, ask, reserve, net in (CHEAP, DEAR, BUYER):
        agent: dict[str, Any] = {"round_timeout_s": 0.5}
        if net < 0:
            agent["seller"] = {"price": {"ip": ask, "rp": reserve, "dl": 10, "cr": 1.0}}
        else:
            agent["buyer"] = {"price": {"ip": 100, "rp": 200, "dl": 10, "cr": 1.0}}  # limit 200
        spec = keyed_spec(tmp_path, name, key, rpc, market, broker_port, net, t0, **agent)
        spec["tables"]["agent"]["market"] = "stations"  # (node_spec's own `market` is the contract's address)
        out.append(spec)
    return out


def test_the_buyer_takes_the_cheaper_bid_and_the_network_fee_reaches_the_operator(
    mosquitto: MosquittoBroker, mined_anvil: AnvilNode, tmp_path: Path
) -> None:
    from contracts.chain import Sender

    rpc = mined_anvil.info.url
    assert rpc is not None
    w3 = Web3(Web3.HTTPProvider(rpc))
    com = setup_community(w3, keys=HOUSEHOLD_KEYS[:3])
    community = Sender(w3, DEV_PRIVATE_KEYS[0])
    community.transact(com.market.functions.setNetworkFee(FEE))
    community.transact(com.market.functions.setOperator(OPERATOR))
    mine_every_second(w3)
    cheap, dear, buyer = (Account.from_key(k).address for k in HOUSEHOLD_KEYS[:3])
    specs = specs_for(tmp_path, com.market.address, mosquitto.port, rpc)
    nodes = InProcessNodes(specs, tmp_path)

    def closed(name: str) -> int:
        return sum(1 for r in journal_states(tmp_path / name / "trading.db") if r[1] == "closed")

    nodes.run_until(lambda: len(com.settled_events()) >= 3 and closed("buyer") >= 3, 90, poll_s=0.5)
    render = {name: m.render() for name, m in nodes.metrics.items()}
    settled = com.settled_events()
    assert len(settled) >= 3, render
    submitted = {e["args"]["id"]: e["args"] for e in com.submitted_events()}
    fees = {
        e["args"]["id"]: e["args"]["fee"]
        for e in com.market.events.NetworkFeeCharged().get_logs(from_block=0)
    }
    for event in settled:
        terms = submitted[event["args"]["id"]]
        assert (terms["seller"], terms["buyer"]) == (cheap, buyer), terms  # the dearer seller never wins
        assert terms["unitPrice"] == 120 + FEE  # its ask passes the fee on, inside the buyer's limit
        assert event["args"]["deliveredWh"] == 1000
        fee = value(1000, FEE)
        assert fees[event["args"]["id"]] == fee
        assert event["args"]["paidToSeller"] == value(1000, terms["unitPrice"]) - fee
    assert all(t["seller"] != dear for t in submitted.values())
    assert com.market.functions.balanceOf(OPERATOR).call() >= len(settled) * value(1000, FEE)
    assert 'event="auction_won"' in render["buyer"] and 'event="bid_outbid"' in render["buyer"], render[
        "buyer"
    ]
    assert 'event="bid_declined"' in render["dear"], render["dear"]
