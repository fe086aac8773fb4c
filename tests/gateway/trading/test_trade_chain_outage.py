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

from trade_helpers import InProcessNodes, community_on, households, journal_states, mine_every_second

from hil.services import AnvilNode, MosquittoBroker

OUTAGE_S = float(os.environ.get("GRIDPACT_TRADE_OUTAGE_S", "6"))


def test_settlements_complete_after_the_chain_node_returns(
    mosquitto: MosquittoBroker, mined_anvil: AnvilNode, tmp_path: Path
) -> None:
    com = community_on(mined_anvil, report_window=int(OUTAGE_S) + 20)
    specs = households(tmp_path, com, mosquitto.port, 1_200_000, mined_anvil.info.url)
    nodes = InProcessNodes(specs, tmp_path)
    metrics = nodes.metrics
    before: set[bytes] = set()

    def agreed_before_outage() -> bool:
        before.update(e["args"]["id"] for e in com.submitted_events())
        return bool(before)

    def all_settled_and_closed() -> bool:
        settled = {e["args"]["id"] for e in com.settled_events()}
        closed = [{r[0] for r in journal_states(tmp_path / s["name"] / "trading.db") if r[1] == "closed"}
                  for s in specs]  # fmt: skip
        ids = {"0x" + i.hex() for i in before}
        return before <= settled and all(ids <= c for c in closed)

    async def main() -> None:
        async with nodes:
            await nodes.wait_until(agreed_before_outage, 30, poll_s=0.25)
            assert before, "no agreement before the outage"
            await asyncio.to_thread(mined_anvil.stop)
            down_at = time.monotonic()
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(mined_anvil.start)
            mine_every_second(com.w3)  # a restarted anvil automines again
            print(f"chain down for {time.monotonic() - down_at:.1f} s")
            await nodes.wait_until(all_settled_and_closed, 40 + OUTAGE_S, poll_s=0.5)

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
