"""Helpers of the trading tests: a probe contract compiled by the real solc, a real community on chain,
the two households that trade on it, run in-process, and one seller agent driven message by message."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from trade_node import node_spec, run_node
from web3 import Web3

from gateway.chain.journal import Journal
from gateway.chain.keystore import create_keystore
from gateway.ops.metrics import Metrics
from gateway.trading.agent import Agent
from gateway.trading.config import parse_trading_config
from gateway.trading.inbox import Inbox
from gateway.trading.ports import AgentEvents, HouseholdPort, MarketPort
from gateway.trading.protocol import Envelope, decode, encode, sign_envelope
from gridpact.core.clock import SystemClock
from gridpact.core.eip712 import Domain
from hil.services import DEV_PRIVATE_KEYS, NODE_BIN, AnvilNode

PROBE_SOURCE = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

contract Probe {
    error TooBig(uint256 value, uint256 limit);
    error AlreadyDone(bytes32 key);
    event Did(bytes32 indexed key, uint256 value);
    mapping(bytes32 => uint256) public done;
    uint256 public count;

    function act(bytes32 key, uint256 value) external {
        if (value > 100) revert TooBig(value, 100);
        if (done[key] != 0) revert AlreadyDone(key);
        done[key] = value;
        count += 1;
        emit Did(key, value);
    }

    function fail(string calldata why) external pure {
        require(false, why);
    }
}
"""


def compile_probe() -> dict:
    """Compile the probe with the repo's solcjs (standard JSON in, ABI and bytecode out)."""
    request = {
        "language": "Solidity",
        "sources": {"Probe.sol": {"content": PROBE_SOURCE}},
        "settings": {
            "evmVersion": "cancun",
            "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    proc = subprocess.run(
        [str(NODE_BIN / "solcjs"), "--standard-json"],
        input=json.dumps(request), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    text = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith(">>>"))
    out = json.loads(text)
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError(f"solc failed: {errors}")
    contract = out["contracts"]["Probe.sol"]["Probe"]
    return {"abi": contract["abi"], "bytecode": "0x" + contract["evm"]["bytecode"]["object"]}


def deploy(w3, artifact: dict, key: str = DEV_PRIVATE_KEYS[0]):
    """Deploy an artifact from a dev key; returns the contract object."""
    from eth_account import Account

    acct = Account.from_key(key)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor().build_transaction(
        {
            "from": acct.address,
            "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    signed = acct.sign_transaction(tx)
    h = w3.eth.send_raw_transaction(signed.raw_transaction)
    rcpt = w3.eth.wait_for_transaction_receipt(h, timeout=30)
    return w3.eth.contract(address=rcpt["contractAddress"], abi=artifact["abi"])


# ---------------------------------------------------------------- a community on chain

COMMUNITY_KEY = DEV_PRIVATE_KEYS[0]
HOUSEHOLD_KEYS = (DEV_PRIVATE_KEYS[1], DEV_PRIVATE_KEYS[2], DEV_PRIVATE_KEYS[3], DEV_PRIVATE_KEYS[5])


@dataclass
class Community:
    """Token and Market deployed, households registered and funded: what a gateway trades on."""

    w3: Any
    token: Any
    market: Any
    households: list[str]

    def settled_events(self) -> list[Any]:
        return list(self.market.events.AgreementSettled().get_logs(from_block=0))

    def submitted_events(self) -> list[Any]:
        return list(self.market.events.AgreementSubmitted().get_logs(from_block=0))

    def reclaimed_events(self) -> list[Any]:
        return list(self.market.events.EscrowReclaimed().get_logs(from_block=0))


def setup_community(
    w3: Any,
    keys: tuple[str, ...] = HOUSEHOLD_KEYS[:2],
    report_window: int = 8,
    dispute_window: int = 60,
    tolerance_bps: int = 200,
    penalty_bps: int = 1000,
    deposit: int = 10**9,
) -> Community:
    """Deploy, register each household's gateway key, set short test deadlines, fund and deposit."""
    from contracts.chain import Sender
    from contracts.deploy import contracts_at, deploy_all

    addresses = deploy_all(w3, COMMUNITY_KEY)
    token, market = contracts_at(w3, addresses)
    community = Sender(w3, COMMUNITY_KEY)
    community.transact(market.functions.setParams(report_window, dispute_window, tolerance_bps, penalty_bps))
    households = []
    for n, key in enumerate(keys):
        address = Account.from_key(key).address
        households.append(address)
        community.transact(market.functions.register(address, n.to_bytes(32, "big"), b"\x01" * 32))
        community.transact(token.functions.mint(address, deposit))
        household = Sender(w3, key)
        household.transact(token.functions.approve(market.address, deposit))
        household.transact(market.functions.deposit(deposit))
    return Community(w3, token, market, households)


def mine_every_second(w3: Any) -> None:
    """Switch anvil from automine to a block per second, like a real chain.

    With automine only, block time stands still while nobody transacts, and a report that must
    wait for `deliveryEnd <= block.timestamp` would wait for ever; real chains keep producing blocks.
    """
    w3.provider.make_request("evm_setIntervalMining", [1])


def community_on(anvil: AnvilNode, report_window: int = 8) -> Community:
    """`setup_community` on the test's own anvil (fast, automined), which then mines a block a second."""
    w3 = Web3(Web3.HTTPProvider(anvil.info.url))
    com = setup_community(w3, report_window=report_window)
    mine_every_second(w3)
    return com


# ---------------------------------------------------------------- two households trading on it


def households(
    tmp_path: Path,
    com: Community,
    broker_port: int,
    seller_pv_w: int,
    rpc: str | None,
    agents: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The seller (PV of `seller_pv_w`, sells 1000 Wh a window) and the buyer (needs 1000 Wh): node specs.

    Each gets a keystore and passphrase file in `tmp_path`; `agents` adds agent settings by name.
    """
    assert rpc is not None
    t0 = float(int(time.time()))
    specs = []
    for name, key, profile, net in (
        ("seller", HOUSEHOLD_KEYS[0], f"constant:load_w=0,pv_w={seller_pv_w}", -1000),
        ("buyer", HOUSEHOLD_KEYS[1], "constant:load_w=1200000,pv_w=0", 1000),
    ):
        pass_file = tmp_path / f"{name}.pass"
        pass_file.write_text("secret\n")
        key_file = tmp_path / f"{name}.json"
        create_keystore(key_file, "secret", private_key=key, kdf="pbkdf2", work=1000)
        agent = (agents or {}).get(name, {})
        specs.append(
            node_spec(
                name, key_file, pass_file, rpc, com.market.address, broker_port, profile, net, t0, **agent
            )
        )
    return specs


def keyed_spec(
    tmp_path: Path,
    name: str,
    key: str,
    rpc: str,
    market: str,
    broker_port: int,
    net: int,
    t0: float,
    **agent: Any,
) -> dict[str, Any]:
    """One household's node spec with a keystore of its own: PV running over when `net` < 0, a large
    load otherwise (so its meter always covers what it trades)."""
    (tmp_path / f"{name}.pass").write_text("secret\n")
    create_keystore(tmp_path / f"{name}.json", "secret", private_key=key, kdf="pbkdf2", work=1000)
    profile = "constant:load_w=1200000,pv_w=0" if net > 0 else "constant:load_w=0,pv_w=1200000"
    return node_spec(name, tmp_path / f"{name}.json", tmp_path / f"{name}.pass", rpc, market, broker_port, profile,
                     net, t0, **agent)  # fmt: skip


def journal_states(path: Path) -> list[tuple[str, str, str]]:
    """(id, state, note) of every agreement in a household's trading journal."""
    with sqlite3.connect(path) as db:
        return list(db.execute("SELECT id, state, COALESCE(note, '') FROM agreements ORDER BY id"))


class InProcessNodes:
    """The households run in-process (`run_node`) inside `async with`, cancelled when it ends.

    A node that crashed fails the test with its own error at the next poll of `wait_until`.
    """

    def __init__(self, specs: list[dict[str, Any]], tmp_path: Path) -> None:
        self.specs = specs
        self.tmp_path = tmp_path
        self.metrics = {s["name"]: Metrics() for s in specs}
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> InProcessNodes:
        self._tasks = [
            asyncio.create_task(run_node(s, self.tmp_path / s["name"], self.metrics[s["name"]]))
            for s in self.specs
        ]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_until(self, done: Callable[[], bool], limit_s: float, poll_s: float) -> None:
        """Poll `done` every `poll_s` until it holds or `limit_s` passes; the caller asserts the outcome."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and not done():
            await asyncio.sleep(poll_s)
            for t in self._tasks:
                if t.done():
                    t.result()

    def run_until(self, done: Callable[[], bool], limit_s: float, poll_s: float) -> None:
        """Run the nodes until `done` holds or `limit_s` passes, then stop them."""

        async def main() -> None:
            async with self:
                await self.wait_until(done, limit_s, poll_s)

        asyncio.run(main())


# ---------------------------------------------------------------- one seller agent, in-process

SELLER = Account.from_key(DEV_PRIVATE_KEYS[1])
BUYER = Account.from_key(DEV_PRIVATE_KEYS[2])
OTHER = Account.from_key(DEV_PRIVATE_KEYS[3])
THIRD = Account.from_key(DEV_PRIVATE_KEYS[4])
MARKET = "0x" + "11" * 20  # nothing is sent to it: the agent's chain side is never reached


def seller_agent(
    tmp_path: Path,
    sent: list[tuple[str | None, Envelope]],
    events: list[str],
    peers: Sequence[LocalAccount],
    **agent: Any,
) -> Agent:
    """SELLER's agent selling 1000 Wh a 60 s window to `peers`: what it publishes is collected in `sent`.

    Its journal is a real SQLite file in `tmp_path`; `agent` adds to or overrides the agent table.
    """
    tables = {
        "community": {"id": "oak-street", "peers": [p.address for p in peers]},
        "agent": {"window_s": 60, "lead_s": 60, "fixed_net_wh": -1000} | agent,
        "chain": {
            "rpc_url": "http://127.0.0.1:1",
            "market": MARKET,
            "keystore": "k.json",
            "passphrase_file": "pw",
        },
    }
    cfg = parse_trading_config(tables, tmp_path)

    async def publish(to: str | None, payload: bytes) -> bool:
        sent.append((to, decode(payload)))
        return True

    async def balance() -> int | None:
        return 10**9

    roster = {p.address.lower() for p in peers}

    def domain() -> Domain:
        return Domain(31337, MARKET)

    def net_demand(start: int, length: int) -> float:
        return -1000.0

    return Agent(cfg, SELLER, Journal(tmp_path / "trading.db"),
                 Inbox(SELLER.address, "oak-street", lambda a: a.lower() in roster), SystemClock(),
                 publish, MarketPort(domain, balance), HouseholdPort(net_demand),
                 AgentEvents(events.append, lambda: None))  # fmt: skip


def message(sender: LocalAccount, kind: str, body: dict[str, Any]) -> bytes:
    """A peer's envelope to SELLER, signed by `sender`, as it arrives off the wire."""
    env = Envelope(
        kind, sender.address, SELLER.address, secrets.token_hex(16), int(time.time()), "oak-street", body
    )
    return encode(sign_envelope(env, sender))


class SetClock:
    """A clock the test sets (chain time: py-evm's clock only moves when the test moves it); sleeps are
    short real sleeps, so the tasks under test keep turning."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(min(seconds, 0.05))
