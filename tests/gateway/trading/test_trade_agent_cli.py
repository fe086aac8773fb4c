"""The agent against a silent peer and a stranger (timeouts, fallback, drops), and the command line."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import aiomqtt
from eth_account import Account
from test_trade_two_gateways import households
from trade_helpers import HOUSEHOLD_KEYS, mine_every_second, setup_community
from trade_node import run_node
from web3 import Web3

from gateway.chain.journal import Journal
from gateway.ops.metrics import Metrics
from gateway.trade_cli import main as trade_cli
from gateway.trading.inbox import Inbox
from gateway.trading.protocol import Envelope, encode, sign_envelope
from gateway.trading.transport import inbox_topic, market_topic
from hil.services import DEV_PRIVATE_KEYS, AnvilNode, MosquittoBroker

ROOT = Path(__file__).resolve().parents[3]


def signed_offer(account, window: int, window_s: int) -> bytes:
    body = {"window": window, "window_s": window_s, "side": "sell", "quantity_wh": 5000, "price": 120}
    env = Envelope(
        "offer", account.address, None, secrets.token_hex(16), int(time.time()), "test-street", body
    )
    return encode(sign_envelope(env, account))


def test_silent_seller_times_out_and_the_buyer_falls_back(
    mosquitto: MosquittoBroker, anvil: AnvilNode, tmp_path: Path
) -> None:
    w3 = Web3(Web3.HTTPProvider(anvil.info.url))
    com = setup_community(w3)
    _, buyer_spec = households(tmp_path, com, mosquitto.port, 0, anvil.info.url)
    buyer_spec["tables"]["agent"] |= {"window_s": 3, "lead_s": 3, "round_timeout_s": 0.5}
    seller = Account.from_key(HOUSEHOLD_KEYS[0])  # registered, but never answers
    stranger = Account.from_key(DEV_PRIVATE_KEYS[7])  # not registered
    buyer = Account.from_key(HOUSEHOLD_KEYS[1])
    metrics = Metrics()
    proposes: list[Envelope] = []

    async def main() -> None:
        node = asyncio.create_task(run_node(buyer_spec, tmp_path / "buyer", metrics))
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.subscribe(inbox_topic("gridpact", "test-street", seller.address), qos=1)
            listener = Inbox(seller.address, "test-street", lambda a: a.lower() == buyer.address.lower())

            async def listen() -> None:
                async for message in client.messages:
                    env = listener.check(bytes(message.payload), time.time())  # type: ignore[arg-type]
                    if env is not None and env.type == "propose":
                        proposes.append(env)

            reader = asyncio.create_task(listen())
            deadline = time.monotonic() + 14
            while time.monotonic() < deadline:
                window = (int(time.time()) // 3 + 1) * 3
                for account in (seller, stranger):
                    await client.publish(
                        market_topic("gridpact", "test-street"), signed_offer(account, window, 3), qos=1
                    )
                await asyncio.sleep(0.5)
                assert not node.done(), node
            reader.cancel()
        node.cancel()
        await asyncio.gather(node, reader, return_exceptions=True)

    asyncio.run(main())
    events = metrics.counter("trade_events_total", "", ("event",))
    dropped = metrics.counter("peer_messages_dropped_total", "", ("reason",))
    assert events.get(event="timeout") >= 2  # each window's session with the silent seller timed out
    assert events.get(event="fallback_import") >= 2  # and the need went to the grid
    assert dropped.get(reason="unknown_sender") >= 5  # the stranger's offers
    assert proposes and proposes[0].body["price"] == 100  # the buyer's engine opens at its ip
    assert com.submitted_events() == []


def test_keystore_commands(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("hunter22\n")
    key = tmp_path / "key.json"
    assert (
        trade_cli(["keystore", "create", "--out", str(key), "--passphrase-file", str(pw), "--kdf", "pbkdf2"])
        == 0
    )
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "gridpact"), "gateway", "keystore", "address", str(key)],
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    info = json.loads(out.stdout)
    assert info["kdf"] == "pbkdf2" and info["c"] == 600_000
    assert info["address"].startswith("0x") and len(info["address"]) == 42
    assert (
        trade_cli(["keystore", "create", "--out", str(key), "--passphrase-file", str(pw)]) == 2
    )  # no overwrite


def test_trade_status_reads_the_journal(tmp_path: Path, capsys) -> None:
    core = (
        (ROOT / "gateway" / "config.example.toml")
        .read_text()
        .replace('# state_dir = "/var/lib/gridpact-gateway"', f'state_dir = "{tmp_path / "state"}"')
    )
    config = tmp_path / "gateway.toml"
    config.write_text(core + "\n" + (ROOT / "gateway" / "trading" / "config.example.toml").read_text())
    assert trade_cli(["trade", "status", "--config", str(config)]) == 0
    assert "no trading journal yet" in capsys.readouterr().out
    journal = Journal(tmp_path / "state" / "trading.db")
    journal.put_agreement("0x" + "01" * 32, "buyer", "0x" + "02" * 20, {"quantityWh": 1}, "0x", 10)
    journal.put_tx("submit:x", 3, b"\x01", "0xabc")
    journal.close()
    assert trade_cli(["trade", "status", "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["agreements"] == {"signing": 1}
    assert report["pending_txs"] == [{"key": "submit:x", "nonce": 3, "hash": "0xabc"}]


def test_provider_fallback_on_chain_is_reported_and_closed(
    mosquitto: MosquittoBroker, mined_anvil: AnvilNode, tmp_path: Path
) -> None:
    from contracts.chain import Sender

    w3 = Web3(Web3.HTTPProvider(mined_anvil.info.url))
    com = setup_community(w3, report_window=3)
    provider = Account.from_key(DEV_PRIVATE_KEYS[8])
    community = Sender(w3, DEV_PRIVATE_KEYS[0])
    community.transact(com.market.functions.register(provider.address, b"\x09" * 32, b"\x00" * 32))
    community.transact(com.market.functions.setProvider(provider.address, 80, 300))
    mine_every_second(w3)
    _, buyer_spec = households(tmp_path, com, mosquitto.port, 0, mined_anvil.info.url)
    buyer_spec["tables"]["agent"] |= {"provider_fallback": "contract", "confirm_wait_s": 0.5}
    metrics = Metrics()

    def closed_in_journal() -> bool:
        db = tmp_path / "buyer" / "trading.db"
        if not db.exists():
            return False
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT COUNT(*) FROM agreements WHERE state='closed'").fetchone()[0] > 0

    def settled() -> list[Any]:
        return list(com.market.events.AgreementSettled().get_logs(from_block=0))

    async def main() -> None:
        node = asyncio.create_task(run_node(buyer_spec, tmp_path / "buyer", metrics))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (settled() and closed_in_journal()):
            await asyncio.sleep(0.5)
            assert not node.done(), node
        node.cancel()
        await asyncio.gather(node, return_exceptions=True)

    asyncio.run(main())
    traded = com.market.events.ProviderTraded().get_logs(from_block=0)
    assert traded, "no provider trade"
    terms = traded[0]["args"]["terms"]
    assert terms["seller"] == provider.address and terms["unitPrice"] == 300 and terms["quantityWh"] == 1000
    reported = com.market.events.DeliveryReported().get_logs(from_block=0)
    assert any(e["args"]["reporter"] == Account.from_key(HOUSEHOLD_KEYS[1]).address for e in reported)
    buyer_wh = next(e["args"]["deliveredWh"] for e in reported if e["args"]["reporter"] != provider.address)
    # the provider never reported: it accepts the buyer's own report (before issue 17: a full refund regardless)
    done = settled()
    assert done and done[0]["args"]["deliveredWh"] == min(buyer_wh, 1000)
    assert done[0]["args"]["paidToSeller"] + done[0]["args"]["refundedToBuyer"] == 300
    journal = Journal(tmp_path / "buyer" / "trading.db")
    closed = [r for r in journal.agreements("closed") if r.note == "settled"]
    journal.close()
    assert closed and closed[0].id == "0x" + bytes(done[0]["args"]["id"]).hex()
