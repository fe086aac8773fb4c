"""A community on two Mosquitto brokers joined by a bridge (docs/bridging.md).

Broker B bridges to broker A through a TCP link the test can cut (the WAN link between two
street cabinets). Peer messages of the community cross both ways, nothing else does; the seller
on A and the buyer on B trade end to end with agreements settled on chain; the link cut for a
few seconds costs no agreement.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
from trade_helpers import Community, InProcessNodes, community_on, households

from gateway.trading.transport import community_filter, inbox_topic, market_topic
from hil.services import AnvilNode, Bridge, MosquittoBroker, TcpLink, bridge_conf

ROOT = Path(__file__).resolve().parents[3]
DOCS_CONF = ROOT / "docs" / "bridging" / "mosquitto-bridge.conf"

# the community of docs/bridging.md, as its broker B would be configured
DOCS_BRIDGE = Bridge(
    name="oak-street-b",
    address="broker-a.oak-street.example:8883",
    topics=(community_filter("gridpact", "oak-street"),),
    cafile=Path("/etc/mosquitto/ca/community-ca.pem"),
    certfile=Path("/etc/mosquitto/certs/bridge-b.pem"),
    keyfile=Path("/etc/mosquitto/certs/bridge-b.key"),
    remote_username="bridge-b",
)


def test_docs_bridge_conf_is_the_one_tested() -> None:
    """The shipped configuration is `bridge_conf` of the documented community, line for line."""
    shipped = [ln for ln in DOCS_CONF.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert shipped[: len(shipped) - 1] == bridge_conf(DOCS_BRIDGE).splitlines()
    assert shipped[-1].startswith("remote_password ")  # the one line written by hand


def bridged(community: str, link_port: int) -> Bridge:
    """Broker B's bridge to A (through the link), with the documented settings and no TLS."""
    return Bridge(name=f"{community}-b", address=f"127.0.0.1:{link_port}",
                  topics=(community_filter("gridpact", community),))  # fmt: skip


class Pair:
    """Brokers A and B, B bridged to A through a link that can be cut; all stopped on exit."""

    def __init__(self, community: str) -> None:
        self.a = MosquittoBroker()
        self.link = TcpLink(self.a.port)
        self.b = MosquittoBroker(bridges=(bridged(community, self.link.port),))

    def __enter__(self) -> Pair:
        self.a.start()
        self.link.start()
        self.b.start()
        return self

    def __exit__(self, *exc: object) -> None:
        pids = [p for p in (self.a.pid, self.b.pid) if p is not None]
        self.b.close()
        self.link.close()
        self.a.close()
        assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []  # stopped and reaped

    def logs(self) -> str:
        return f"A: {self.a.log()}\nB: {self.b.log()}"


async def collect(port: int, got: list[str], ready: asyncio.Event) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe("#", qos=1)
        ready.set()
        async for message in client.messages:
            got.append(str(message.topic))


async def until(cond: Callable[[], bool], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not cond() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def test_peer_messages_cross_the_bridge_and_readings_stay_local() -> None:
    gw = "0x" + "ab" * 20
    local = ["gridpact/meter/node-7/reading", "gridpact/meter/node-7/status", "gridpact/gateway/gw-1/trading"]
    peer = [market_topic("gridpact", "oak-street"), inbox_topic("gridpact", "oak-street", gw)]
    other = [market_topic("gridpact", "elm-street")]  # another community on the same brokers

    async def main(pair: Pair) -> tuple[list[str], list[str]]:
        on_a: list[str] = []
        on_b: list[str] = []
        ready_a, ready_b = asyncio.Event(), asyncio.Event()
        tasks = [asyncio.create_task(collect(pair.a.port, on_a, ready_a)),
                 asyncio.create_task(collect(pair.b.port, on_b, ready_b))]  # fmt: skip
        await ready_a.wait()
        await ready_b.wait()
        await until(lambda: pair.link.connections >= 1, 10)
        await asyncio.sleep(0.5)  # the bridge's subscriptions in place on both sides
        async with (
            aiomqtt.Client("127.0.0.1", pair.b.port) as pub_b,
            aiomqtt.Client("127.0.0.1", pair.a.port) as pub_a,
        ):
            for topic in local + peer + other:
                await pub_b.publish(topic, b"from b", qos=1)
                await pub_a.publish(topic, b"from a", qos=1)
        await until(lambda: len(on_a) >= 8 and len(on_b) >= 8, 10)
        await asyncio.sleep(0.5)  # anything that should not cross has had time to
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return on_a, on_b

    with Pair("oak-street") as pair:
        on_a, on_b = asyncio.run(main(pair))
        logs = pair.logs()
    for seen in (on_a, on_b):
        for topic in local + other:
            assert seen.count(topic) == 1, (topic, seen, logs)  # its own broker's only: stays local
        for topic in peer:
            assert seen.count(topic) == 2, (topic, seen, logs)  # its own and the other's: crossed once


# ---------------------------------------------------------------- trading across the bridge


def agreements(db_path: Path) -> dict[str, tuple[str, str, int]]:
    """id -> (state, note, window_end) of a household's journal."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT id, state, COALESCE(note, ''), window_end FROM agreements")
        return {aid: (state, note, int(end)) for aid, state, note, end in rows}


WINDOW_S = 16
# a compressed hour: 16 s windows, negotiation opens one window ahead, a round may take 6 s
TIMING = {"window_s": WINDOW_S, "lead_s": WINDOW_S, "round_timeout_s": 6.0}


def test_households_on_two_bridged_brokers_trade_and_a_link_loss_costs_no_agreement(
    mined_anvil: AnvilNode, tmp_path: Path
) -> None:
    """Seller on A, buyer on B; the link is cut for 3 s just as a window's negotiation opens.

    Every window from the first agreement on has its agreement, the cut one included (the bridge
    queues QoS 1 messages both ways and is back within a round), and every one settles on chain.
    """
    com: Community = community_on(mined_anvil)
    with Pair("test-street") as pair:
        specs = households(tmp_path, com, pair.a.port, 1_200_000, mined_anvil.info.url,
                           agents={"seller": TIMING, "buyer": TIMING})  # fmt: skip
        specs[1]["tables"]["community"]["port"] = pair.b.port  # the seller on A, the buyer on B
        cut: dict[str, float] = {}

        async def main() -> None:
            async with InProcessNodes(specs, tmp_path) as nodes:
                await nodes.wait_until(lambda: len(com.settled_events()) >= 2, 90, 0.25)
                assert len(com.settled_events()) >= 2, pair.logs()
                # cut half a second before a window opens its successor's negotiation
                opens = (int(time.time()) // WINDOW_S + 1) * WINDOW_S
                await asyncio.sleep(max(0.0, opens - 0.5 - time.time()))
                before = pair.link.connections
                cut["at"] = time.time()
                pair.link.cut()  # the bridge is down for 3 s: both brokers and gateways stay up
                await asyncio.sleep(3.0)
                pair.link.restore()
                cut["back"] = time.time()
                # the window negotiated from `opens` starts a window later; journals key it by its end
                cut["window"] = opens + 2 * WINDOW_S
                await nodes.wait_until(lambda: pair.link.connections > before, 10, 0.1)
                assert pair.link.connections > before, "the bridge did not reconnect: " + pair.logs()
                last = cut["window"] + 2 * WINDOW_S
                await nodes.wait_until(lambda: all_closed(tmp_path, last), 120, 0.5)

        asyncio.run(main())
        logs = pair.logs()
    seller_rows = agreements(tmp_path / "seller" / "trading.db")
    buyer_rows = agreements(tmp_path / "buyer" / "trading.db")
    last = int(cut["window"]) + 2 * WINDOW_S
    made = {k: v for k, v in seller_rows.items() if v[2] <= last}
    windows = sorted({end for _, _, end in made.values()})
    assert windows, logs
    expected = list(range(windows[0], last + 1, WINDOW_S))
    # no window lost: the one negotiated across the cut and those after it have their agreement
    assert windows == expected, (windows, expected, cut, logs)
    assert int(cut["window"]) in windows
    for aid, (state, note, end) in made.items():
        assert (state, note) == ("closed", "settled"), (aid, state, note, end, cut)
        assert buyer_rows.get(aid, ("", "", 0))[:2] == ("closed", "settled"), (aid, buyer_rows.get(aid))
    assert len(com.settled_events()) >= len(made)
    assert not com.reclaimed_events(), "an agreement was refunded instead of settled"


def all_closed(tmp_path: Path, last: int) -> bool:
    """Both journals have closed every agreement of the windows up to `last`, and that window's too."""
    rows = [agreements(tmp_path / name / "trading.db") for name in ("seller", "buyer")]
    mine = [v for v in rows[0].values() if v[2] <= last]
    return any(v[2] == last for v in mine) and all(
        r.get(k, ("", "", 0))[0] == "closed" for r in rows for k, v in rows[0].items() if v[2] <= last
    )
