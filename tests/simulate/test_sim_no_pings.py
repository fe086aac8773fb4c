"""The simulated gateways' MQTT clients ask for no keepalive pings; a Pi's ask for 30 s.

paho times its pings by the host's clock: in a virtual-clock run they fell at simulated moments that
depended on the run's wall time, and at 100 households two runs of one seed parted at the first burst
(docs/simulate.md, "No wall-clock pings"). A real Mosquitto logs what each client asked for in its
CONNECT (`k0`: no keepalive), so the test reads it there, for the ingest client a `SimGateway` runs
and for the trading client its `[community]` table configures, beside a default client that does ping.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from gateway.trading.config import parse_trading_config
from gateway.trading.transport import Transport
from hil.community.agentclock import SteppedAsyncClock
from hil.community.agents import trading_tables
from hil.community.engine import EngineConfig
from hil.community.gateways import GatewayThread, SimGateway
from hil.services import MosquittoBroker
from meter_sim.clock import SimClock

T0 = 1_811_808_000
ME = "0x" + "ab" * 20


def keepalive_asked(broker: MosquittoBroker, client_prefix: str, timeout: float = 20.0) -> int:
    """The keepalive (s) in the CONNECT of the first client whose id starts with `client_prefix`."""
    pattern = re.compile(rf"as {re.escape(client_prefix)}\S* \(p\d, c\d, k(\d+)\)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.search(broker.log())
        if found:
            return int(found.group(1))
        time.sleep(0.05)
    raise AssertionError(f"no client {client_prefix}* connected; broker log: {broker.log()}")


async def connect_once(transport: Transport) -> None:
    async def drop(_: bytes) -> None:
        return None

    task = asyncio.create_task(transport.run(drop))
    try:
        await asyncio.wait_for(transport.connected.wait(), 20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_simulated_gateways_send_no_pings_and_a_pis_default_does(tmp_path: Path) -> None:
    broker = MosquittoBroker(connections_logged=True)
    info = broker.start()
    thread = GatewayThread()
    gw = SimGateway(thread, "h00", "node-h00", bytes(32), tmp_path, info.host, info.port,
                    SteppedAsyncClock(SimClock(start=float(T0))), 1, {})  # fmt: skip
    try:
        gw.wait_subscribed(30)
        assert gw.cfg.meter_broker.keepalive_s == 0
        assert keepalive_asked(broker, "gridpact-gw-h00") == 0

        tables = trading_tables(EngineConfig(households=2, hours=1, seed=1), info.host, info.port,
                                "http://127.0.0.1:8545", "0x" + "11" * 20, tmp_path, (0.5, 0.5, 0.5))  # fmt: skip
        community = parse_trading_config(tables, tmp_path).community
        assert community.keepalive_s == 0
        simulated = Transport(info.host, info.port, community.topic_prefix, community.id, ME,
                              keepalive_s=community.keepalive_s)  # fmt: skip
        asyncio.run(connect_once(simulated))
        assert keepalive_asked(broker, f"gridpact-trade-{ME[2:14]}") == 0

        other = "0x" + "cd" * 20
        asyncio.run(connect_once(Transport(info.host, info.port, "gridpact", "oak-street", other)))
        assert keepalive_asked(broker, f"gridpact-trade-{other[2:14]}") == 30  # a Pi's default
    finally:
        thread.cancel(thread.call(asyncio.all_tasks))
        gw.close()
        thread.stop()
        broker.close()
    assert thread.loop.is_closed()
