"""The agent's session handling in-process: busy peers, windows it does not sell, engine-driven counters.

The agent's only outward call here is `publish`, collected in a list; messages in are real signed
envelopes through the real inbox, and the journal is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path

from eth_account.signers.local import LocalAccount
from trade_helpers import BUYER, OTHER, SELLER, message, seller_agent

from gateway.trading.protocol import Envelope


def propose(sender: LocalAccount, window: int, price: int = 100) -> bytes:
    body = {"session": "0x" + secrets.token_hex(32), "window": window, "window_s": 60, "round": 0,
            "quantity_wh": 800, "price": price}  # fmt: skip
    return message(sender, "propose", body)


def test_one_session_per_peer_and_only_for_windows_on_sale(tmp_path: Path) -> None:
    sent: list[tuple[str | None, Envelope]] = []
    events: list[str] = []
    agent = seller_agent(tmp_path, sent, events, [BUYER, OTHER], round_timeout_s=0.3)
    window = (int(time.time()) // 60 + 2) * 60
    agent.selling[window] = 1000

    async def main() -> None:
        await agent.on_raw(propose(BUYER, window))
        await agent.on_raw(propose(BUYER, window))  # a second session from the same peer
        await agent.on_raw(propose(OTHER, window + 60))  # a window we do not sell
        await asyncio.sleep(0.8)  # the open session times out (nobody answers our counter)
        for task in list(agent._tasks):
            task.cancel()

    asyncio.run(main())
    kinds = [(to, env.type, env.body.get("reason")) for to, env in sent]
    assert (BUYER.address, "counter", None) in kinds  # the engine countered the buyer's 100
    assert (BUYER.address, "reject", "busy") in kinds
    assert (OTHER.address, "reject", "not_selling") in kinds
    counter = next(env for _, env in sent if env.type == "counter")
    assert 100 < counter.body["price"] <= 300 and counter.body["quantity_wh"] == 800
    assert "busy" in events and "timeout" in events
    assert agent.sessions == {}
    assert json.loads(json.dumps(counter.unsigned()))["from"] == SELLER.address
