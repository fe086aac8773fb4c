"""Chain node down: negotiated agreements are settled once anvil is back (state kept across the stop).

The outage lasts GRIDPACT_TRADE_OUTAGE_S seconds (default 6, so the suite stays fast); the full
two-minute run of the issue is `GRIDPACT_TRADE_OUTAGE_S=120 .venv/bin/pytest
tests/gateway/trading/test_trade_chain_outage.py -s`. The report window is set longer than the
outage, so the agreements are settled by both reports rather than refunded.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from test_trade_two_gateways import households, journal_states
from trade_helpers import mine_every_second, setup_community
from trade_node import run_node
from web3 import Web3

from gateway.ops.metrics import Metrics
from hil.services import AnvilNode, MosquittoBroker

OUTAGE_S = float(os.environ.get("GRIDPACT_TRADE_OUTAGE_S", "6"))


def test_settlements_complete_after_the_chain_node_returns(
    mosquitto: MosquittoBroker, mined_anvil: AnvilNode, tmp_path: Path
) -> None:
    w3 = Web3(Web3.HTTPProvider(mined_anvil.info.url))
    com = setup_community(w3, report_window=int(OUTAGE_S) + 20)
    mine_every_second(w3)
    specs = households(tmp_path, com, mosquitto.port, 1_200_000, mined_anvil.info.url)
    metrics = {s["name"]: Metrics() for s in specs}
    before: set[bytes] = set()

    async def main() -> None:
        tasks = [asyncio.create_task(run_node(s, tmp_path / s["name"], metrics[s["name"]])) for s in specs]
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not before:
                await asyncio.sleep(0.25)
                before.update(e["args"]["id"] for e in com.submitted_events())
            assert before, "no agreement before the outage"
            await asyncio.to_thread(mined_anvil.stop)
            down_at = time.monotonic()
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(mined_anvil.start)
            mine_every_second(w3)  # a restarted anvil automines again
            print(f"chain down for {time.monotonic() - down_at:.1f} s")
            deadline = time.monotonic() + 40 + OUTAGE_S
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                settled = {e["args"]["id"] for e in com.settled_events()}
                closed = [{r[0] for r in journal_states(tmp_path / s["name"] / "trading.db") if r[1] == "closed"}
                          for s in specs]  # fmt: skip
                ids = {"0x" + i.hex() for i in before}
                if before <= settled and all(ids <= c for c in closed):
                    break
            for t in tasks:
                if t.done():
                    t.result()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    settled = [e["args"]["id"] for e in com.settled_events()]
    assert before <= set(settled), "an agreement made before the outage was not settled"
    assert len(settled) == len(set(settled))
    retries = sum(
        m.counter("trade_events_total", "", ("event",)).get(event="chain_retry") for m in metrics.values()
    )
    assert retries > 0  # the gateways did see the node down and waited it out
    for spec in specs:
        states = {r[0]: r[1] for r in journal_states(tmp_path / spec["name"] / "trading.db")}
        assert all(states["0x" + i.hex()] == "closed" for i in before)
    print(
        f"agreements before outage={len(before)} settled in total={len(settled)} chain retries={retries:.0f}"
    )
