"""Anchoring each hour's readings hash on the real Market (anvil and py-evm), and the shipped ABI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from eth_account import Account
from trade_helpers import HOUSEHOLD_KEYS, setup_community
from web3 import Web3

from contracts.build import load_artifact
from gateway.chain.journal import Journal
from gateway.chain.market import SHIPPED_ABI, Market
from gateway.chain.sender import TxSender
from gateway.ingest.anchoring import batch_hash
from gateway.storage import ReadingStore
from gateway.trading.chainrun import ChainRunner
from gateway.trading.service import anchor_loop
from gateway.trading.settlement import Anchorer
from gridpact.core.clock import SystemClock
from gridpact.core.wire import encode_reading, verify

KEY = b"k" * 32
HOUR = 1_767_225_600  # an hour start in the past


def fill_hour(store: ReadingStore, hour: int, n: int = 12) -> None:
    for i in range(n):
        ts = hour + i * 300
        payload = encode_reading(
            KEY, store.device_id, ts // 300, ts, 0, "sdm120", {"e_imp_kWh": 1.0 + i / 10}
        )
        store.add(verify(KEY, payload))
    store.commit()


def test_anchor_hour_once(web3: Web3, tmp_path: Path) -> None:
    com = setup_community(web3, keys=HOUSEHOLD_KEYS[:1])
    account = Account.from_key(HOUSEHOLD_KEYS[0])
    journal = Journal(tmp_path / "trading.db")
    sender = TxSender(web3, account, journal, json.loads(SHIPPED_ABI.read_text()))
    market = Market(web3, com.market.address, sender)
    store = ReadingStore(tmp_path / "readings.db", "node-01")
    fill_hour(store, HOUR)
    fill_hour(store, HOUR + 3600, 3)
    counted: list[str] = []
    anchorer = Anchorer(market, journal, counted.append)

    async def run_loop() -> None:
        journal.set("anchor_next", str(HOUR))
        runner = ChainRunner(SystemClock())
        task = asyncio.create_task(anchor_loop(anchorer, journal, store, runner, SystemClock(), 0.0))
        for _ in range(400):
            await asyncio.sleep(0.05)
            if int(journal.get("anchor_next") or 0) > HOUR + 3600:
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        runner.close()

    asyncio.run(run_loop())
    assert market.anchored(HOUR) == batch_hash(store.hour_batch(HOUR)), counted
    assert market.anchored(HOUR + 3600) == batch_hash(store.hour_batch(HOUR + 3600)), counted
    events = com.market.events.ReadingsAnchored().get_logs(from_block=0)
    assert [(e["args"]["hourStart"], e["args"]["count"]) for e in events] == [(HOUR, 12), (HOUR + 3600, 3)]
    assert counted == ["anchored", "anchored"]
    assert anchorer.anchor_hour(HOUR, b"\x01" * 32, 1)  # already anchored: nothing sent
    assert len(com.market.events.ReadingsAnchored().get_logs(from_block=0)) == 2
    store.close()
    journal.close()


def test_shipped_abi_matches_the_built_contract() -> None:
    assert json.loads(SHIPPED_ABI.read_text()) == load_artifact("Market")["abi"], (
        "gateway/chain/market_abi.json is stale: copy the Market ABI from contracts/artifacts"
    )


def test_shipped_loans_and_demand_abis_match_the_built_contracts() -> None:
    from gateway.chain.abis import SHIPPED_ABIS

    for name in ("MarketLoans", "DemandResponse"):
        path = SHIPPED_ABIS[name]
        assert json.loads(path.read_text()) == load_artifact(name)["abi"], (
            f"gateway/chain/{path.name} is stale: `gridpact gateway trade export-abi` refreshes it"
        )
