"""The learned strategy in-process: the shipped policy file drives the agent's decisions.

Real parts: the shipped policy JSON, the engine, a real SQLite journal (peer memory survives a
reopen), real signed envelopes through the real inbox. Only `publish` is collected in a list.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from gateway.chain.journal import Journal
from gateway.errors import ConfigError
from gateway.negotiation import Negotiate, Policy, Provider, Wait, concession, default_policy_path
from gateway.trading.agent import Agent
from gateway.trading.config import parse_trading_config
from gateway.trading.inbox import Inbox
from gateway.trading.learned import (
    PeerMemory,
    blend,
    price_strategy,
    steps_to_deadline,
    window_context,
)
from gateway.trading.ports import AgentEvents, HouseholdPort, MarketPort
from gateway.trading.protocol import Envelope, decode, encode, sign_envelope
from gridpact.core.clock import SystemClock
from gridpact.core.eip712 import Domain
from gridpact.core.tariff import Tariff
from hil.services import DEV_PRIVATE_KEYS

ME = Account.from_key(DEV_PRIVATE_KEYS[1])
PEER = Account.from_key(DEV_PRIVATE_KEYS[2])
SHIPPED = json.loads(Path(default_policy_path()).read_text())["table"]


def tables(**agent: Any) -> dict[str, dict]:
    base = {"window_s": 60, "lead_s": 40, "round_timeout_s": 0.3, "strategy": "learned",
            "import_tariff": 250, "export_tariff": 50}  # fmt: skip
    return {
        "community": {"id": "oak-street", "peers": [PEER.address]},
        "agent": base | agent,
        "chain": {"rpc_url": "http://127.0.0.1:1", "market": "0x" + "11" * 20, "keystore": "k.json",
                  "passphrase_file": "pw"},
    }  # fmt: skip


def make_agent(tmp_path: Path, net_wh: float, sent: list[Envelope], events: list[str], **agent: Any) -> Agent:
    cfg = parse_trading_config(tables(**agent), tmp_path)

    async def publish(to: str | None, payload: bytes) -> bool:
        sent.append(decode(payload))
        return True

    async def balance() -> int | None:
        return 10**9

    def domain() -> Domain:
        return Domain(31337, "0x" + "11" * 20)

    def net_demand(start: int, length: int) -> float:
        return net_wh

    return Agent(cfg, ME, Journal(tmp_path / "trading.db"),
                 Inbox(ME.address, "oak-street", lambda a: a.lower() == PEER.address.lower()), SystemClock(),
                 publish, MarketPort(domain, balance), HouseholdPort(net_demand),
                 AgentEvents(events.append, lambda: None))  # fmt: skip


def offers_of(cr: float, n: int = 8) -> list[float]:
    """A peer's asks in rounds 0..n-1 by Eq. 1 (seller from 200 towards 100 over 10 rounds)."""
    return [concession(200.0, 100.0, 10, cr, t) for t in range(n)]


# ------------------------------------------------------------------ config


def test_learned_config_loads_the_shipped_policy_by_default(tmp_path: Path) -> None:
    cfg = parse_trading_config(tables(), tmp_path)
    assert cfg.agent.strategy == "learned"
    assert cfg.agent.policy == Path(default_policy_path())
    assert (cfg.agent.import_tariff, cfg.agent.export_tariff) == (250.0, 50.0)
    assert parse_trading_config(tables(strategy="fixed"), tmp_path).agent.strategy == "fixed"
    del_strategy = tables()
    del del_strategy["agent"]["strategy"]
    assert parse_trading_config(del_strategy, tmp_path).agent.strategy == "fixed"  # the default is unchanged


def test_relative_policy_path_is_resolved_against_the_config_dir(tmp_path: Path) -> None:
    Policy.load(default_policy_path()).save(tmp_path / "mine.json")
    cfg = parse_trading_config(tables(policy="mine.json"), tmp_path)
    assert cfg.agent.policy == tmp_path / "mine.json"


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (None, "no such file"),
        ("{not json", "not a usable policy"),
        ('{"format": "something-else", "version": 1}', "not a gridpact-eip-policy"),
        ("[1, 2]", "not a usable policy"),
        ("\xff\xfe", "not a usable policy"),
    ],
)
def test_bad_policy_file_is_a_config_error_naming_agent_policy(
    tmp_path: Path, content: str | None, detail: str
) -> None:
    path = tmp_path / "policy.json"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        parse_trading_config(tables(policy=str(path)), tmp_path)
    assert err.value.key == "agent.policy" and detail in err.value.message


def test_corrupt_table_entry_is_a_config_error(tmp_path: Path) -> None:
    data = json.loads(Path(default_policy_path()).read_text())
    data["table"]["B4pu0"] = "negotiate(keep=0.9,dl=5,cr=7)"
    (tmp_path / "p.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="unknown action") as err:
        parse_trading_config(tables(policy="p.json"), tmp_path)
    assert err.value.key == "agent.policy"


@pytest.mark.parametrize(
    ("agent", "key"),
    [
        ({"strategy": "clever"}, "agent.strategy"),
        ({"import_tariff": 50, "export_tariff": 250}, "agent.import_tariff"),
        ({"import_tariff": 250, "export_tariff": None}, "agent.export_tariff"),
        ({"export_tariff": -1}, "agent.export_tariff"),
        ({"import_tariff": "high"}, "agent.import_tariff"),
        ({"policy": 3}, "agent.policy"),
    ],
)
def test_bad_strategy_values_name_their_key(tmp_path: Path, agent: dict[str, Any], key: str) -> None:
    t = tables(**{k: v for k, v in agent.items() if v is not None})
    if agent.get("export_tariff", 0) is None:
        del t["agent"]["export_tariff"]
    with pytest.raises(ConfigError) as err:
        parse_trading_config(t, tmp_path)
    assert err.value.key == key


# ------------------------------------------------------------------ pure helpers (golden vectors)


def test_context_and_strategy_golden_vectors() -> None:
    ctx = window_context(1500.0, 0.0, 4, Tariff(feed_in=50.0, retail=250.0), True, None)
    assert (ctx.balance, ctx.storage, ctx.capacity, ctx.steps_to_deadline) == (-1.5, 0.0, 1.5, 4)
    assert (ctx.provider_buy, ctx.provider_sell, ctx.peer_available, ctx.is_seller) == (
        250.0,
        50.0,
        True,
        False,
    )
    seller = window_context(-800.0, 600.0, 1, Tariff(feed_in=50.0, retail=250.0), False, 0.3)
    assert (seller.balance, seller.storage, seller.capacity, seller.is_seller) == (0.8, 0.6, 0.8, True)
    assert [steps_to_deadline(0.0, c, 5.0) for c in (0.0, -1.0, 0.1, 5.0, 5.01, 40.0)] == [0, 0, 1, 1, 2, 8]
    d = Policy.load(default_policy_path()).decide(ctx)
    assert isinstance(d, Negotiate)
    assert price_strategy(d, max_rounds=12) == {"price": {"ip": 50.0, "rp": 130.0, "dl": 12, "cr": 1.0}}
    assert math.isclose(blend(None, 2.0), 2.0) and math.isclose(blend(0.5, 2.0), 1.0)
    assert (
        not Tariff(feed_in=250.0, retail=50.0).usable
        and not Tariff(feed_in=-1.0, retail=250.0).usable
        and Tariff(feed_in=0.0, retail=250.0).usable
    )


def test_peer_memory_learns_a_peer_and_survives_a_restart(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "trading.db")
    memory = PeerMemory(journal)
    assert memory.get(PEER.address) is None
    assert memory.observe(PEER.address, [200.0, 200.0]) is None  # too short to say anything
    est = memory.observe(PEER.address, offers_of(0.3))
    assert est is not None and math.isclose(est, 0.3, rel_tol=1e-6)
    journal.set("peer_cr:0xbad", "not-a-number")
    journal.close()
    again = PeerMemory(Journal(tmp_path / "trading.db"))
    assert again.get(PEER.address.upper().replace("0X", "0x")) == est
    assert again.get("0xbad") is None  # a damaged entry is ignored, never a crash
    blended = again.observe(PEER.address, offers_of(3.0))
    assert blended is not None and math.isclose(blended, math.sqrt(0.3 * 3.0), rel_tol=1e-6)


# ------------------------------------------------------------------ the agent's decisions


def test_agent_decisions_come_from_the_shipped_policy(tmp_path: Path) -> None:
    """Contexts the table maps to different actions give those actions in the agent."""
    events: list[str] = []
    agent = make_agent(tmp_path, 1000.0, [], events)
    window = (int(time.time()) // 60 + 2) * 60
    agent.net[window] = 1000
    agent.learned[window] = Tariff(feed_in=50.0, retail=250.0)
    early = agent.decide(window, None)  # B4nu0: far from the deadline, no seller -> wait
    assert SHIPPED["B4nu0"] == "wait" and isinstance(early, Wait)
    unknown = agent.decide(window, PEER.address)  # B4pu0
    assert SHIPPED["B4pu0"] == "negotiate(keep=0.6,dl=20,cr=1.0)"
    assert isinstance(unknown, Negotiate) and unknown.params.to_dict() == {
        "ip": 50.0,
        "rp": 130.0,
        "dl": 20,
        "cr": 1.0,
    }
    agent.peers.observe(PEER.address, offers_of(3.0))  # the peer turned out a conceder: B4pc0
    conceder = agent.decide(window, PEER.address)
    assert SHIPPED["B4pc0"] == "negotiate(keep=0.2,dl=20,cr=0.5)"
    assert isinstance(conceder, Negotiate) and conceder.params.rp == 210.0 and conceder.params.cr == 0.5
    last = (window - 0.3) + 0.0  # close time; the last decision step is the final lead_s/8 before it

    class At(SystemClock):
        def now(self) -> float:
            return last - 1.0

    agent.clock = At()
    final = agent.decide(window, None)  # B1nu0: last step, no seller -> provider
    assert SHIPPED["B1nu0"] == "provider" and isinstance(final, Provider) and final.quantity == 1.0
    assert events.count("policy_wait") == 1 and events.count("policy_negotiate") == 2
    assert events.count("policy_provider") == 1


def test_learned_buyer_without_sellers_waits_then_goes_to_the_provider_before_close(tmp_path: Path) -> None:
    events: list[str] = []
    agent = make_agent(tmp_path, 1000.0, [], events, window_s=4, lead_s=4, round_timeout_s=0.6)

    async def main() -> float:
        window = (int(time.time()) // 4 + 2) * 4
        await asyncio.sleep(max(0.0, window - 3.8 - time.time()))
        await agent.trade_window(window)
        return agent.close_time(window) - time.time()

    left = asyncio.run(main())
    assert events.count("policy_wait") >= 2 and events.count("policy_provider") == 1
    assert events.count("fallback_import") == 1
    assert 0.0 < left <= 0.5 + 0.05  # the policy went to the provider at its last step, before close


def test_learned_seller_answers_a_known_tough_buyer_with_the_policys_parameters(tmp_path: Path) -> None:
    sent: list[Envelope] = []
    events: list[str] = []
    agent = make_agent(tmp_path, -1000.0, sent, events)
    agent.peers.observe(PEER.address, [concession(50.0, 150.0, 20, 0.3, t) for t in range(10)])  # tough
    window = (int(time.time()) // 60 + 2) * 60
    agent.net[window] = -1000
    agent.learned[window] = Tariff(feed_in=50.0, retail=250.0)
    agent.selling[window] = 1000
    body = {"session": "0x" + secrets.token_hex(32), "window": window, "window_s": 60, "round": 0,
            "quantity_wh": 800, "price": 60}  # fmt: skip
    env = Envelope(
        "propose", PEER.address, ME.address, secrets.token_hex(16), int(time.time()), "oak-street", body
    )

    async def main() -> None:
        await agent.on_raw(encode(sign_envelope(env, PEER)))
        for _ in range(50):
            if sent:
                break
            await asyncio.sleep(0.02)
        for task in list(agent._tasks):
            task.cancel()
        await asyncio.gather(*agent._tasks, return_exceptions=True)

    asyncio.run(main())
    steps = steps_to_deadline(time.time(), agent.close_time(window), 40 / 8)
    key = f"S{'1' if steps <= 1 else ('2' if steps <= 3 else '4')}pt0"
    expected = Policy.load(default_policy_path()).decide(
        window_context(-1000, 0, steps, Tariff(feed_in=50, retail=250), True, 0.3)
    )
    assert SHIPPED[key].startswith("negotiate") and isinstance(expected, Negotiate)
    assert sent and sent[0].type == "counter"
    assert (
        sent[0].body["price"] == round(expected.params.ip) == 250
    )  # every seller preset opens at the tariff
    assert "policy_negotiate" in events
