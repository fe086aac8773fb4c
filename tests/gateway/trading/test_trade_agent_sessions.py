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

from eth_account import Account

from contracts.eip712 import Domain
from gateway.chain.journal import Journal
from gateway.clock import SystemClock
from gateway.trading.agent import Agent
from gateway.trading.config import parse_trading_config
from gateway.trading.inbox import Inbox
from gateway.trading.protocol import Envelope, decode, encode, sign_envelope
from hil.services import DEV_PRIVATE_KEYS

SELLER = Account.from_key(DEV_PRIVATE_KEYS[1])
BUYER = Account.from_key(DEV_PRIVATE_KEYS[2])
OTHER = Account.from_key(DEV_PRIVATE_KEYS[3])


def make_agent(tmp_path: Path, sent: list[tuple[str | None, Envelope]], events: list[str]) -> Agent:
    tables = {
        "community": {"id": "oak-street", "peers": [BUYER.address, OTHER.address]},
        "agent": {"window_s": 60, "lead_s": 60, "round_timeout_s": 0.3, "fixed_net_wh": -1000},
        "chain": {"rpc_url": "http://127.0.0.1:1", "market": "0x" + "11" * 20, "keystore": "k.json",
                  "passphrase_file": "pw"},
    }  # fmt: skip
    cfg = parse_trading_config(tables, tmp_path)

    async def publish(to: str | None, payload: bytes) -> bool:
        sent.append((to, decode(payload)))
        return True

    async def balance() -> int | None:
        return 10**9

    peers = {BUYER.address.lower(), OTHER.address.lower()}
    return Agent(cfg, SELLER, Journal(tmp_path / "trading.db"), publish,
                 Inbox(SELLER.address, "oak-street", lambda a: a.lower() in peers), SystemClock(),
                 lambda: Domain(31337, "0x" + "11" * 20), lambda s, n: -1000.0, events.append, balance,
                 lambda: None)  # fmt: skip


def propose(sender, window: int, price: int = 100) -> bytes:
    body = {"session": "0x" + secrets.token_hex(32), "window": window, "window_s": 60, "round": 0,
            "quantity_wh": 800, "price": price}  # fmt: skip
    env = Envelope(
        "propose", sender.address, SELLER.address, secrets.token_hex(16), int(time.time()), "oak-street", body
    )
    return encode(sign_envelope(env, sender))


def test_one_session_per_peer_and_only_for_windows_on_sale(tmp_path: Path) -> None:
    sent: list[tuple[str | None, Envelope]] = []
    events: list[str] = []
    agent = make_agent(tmp_path, sent, events)
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
