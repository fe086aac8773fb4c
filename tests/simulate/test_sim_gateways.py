"""The simulator's household gateway on the wall clock: the Pi's assembly on a loop thread of its own.

A real amqtt broker, a stand-in meter node publishing signed readings under the household's topic
prefix, and one `SimGateway` on a `GatewayThread`: its counters are the ones
`gateway.service.build_runtime` and the Pi's `run_ingest` keep, and every read the driver makes goes
through the gateway's own interface.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import paho.mqtt.publish as publish

from gridpact.core.wire import encode_reading
from hil.community.agentclock import SteppedAsyncClock
from hil.community.gateways import GatewayThread, SimGateway, meter_prefix
from hil.community.households import make_community
from hil.community.nodes import StandInNode
from hil.services import EmbeddedBroker
from meter_sim.clock import SimClock
from meter_sim.farm import MeterFarm
from meter_sim.profiles import parse_profile

T0 = 1_811_808_000
KEY = bytes(range(32))


def test_sim_gateway_on_its_loop_thread_is_built_and_counts_as_the_pis(tmp_path: Path) -> None:
    broker = EmbeddedBroker()
    info = broker.start()
    clock = SimClock(start=float(T0))
    thread = GatewayThread()
    nodes: list[StandInNode] = []
    gw = SimGateway(
        thread, "h00", "node-h00", KEY, tmp_path, info.host, info.port, SteppedAsyncClock(clock), 1, {}
    )
    try:
        gw.wait_subscribed(30)
        assert gw.built_by_service  # gateway_info{gateway="h00"}: set by gateway.service.build_runtime only
        assert gw.cfg.meter.topic_prefix == meter_prefix("h00") and gw.task.get_name() == "ingest-h00"
        meter = MeterFarm(clock, seed=1).add_meter(
            "sdm120", 1, parse_profile(make_community(2, 1)[0].profile_spec), name="h00", tick_s=10.0
        )
        node = StandInNode(meter, "node-h00", KEY, info.host, info.port, meter_prefix("h00"))
        nodes.append(node)
        node.wait_connected(30)
        node.poll(clock.now())
        for _ in range(4):
            clock.advance(60)
            node.poll(clock.now())
        assert gw.wait_seq(5, 60), gw.outcomes
        ts = int(clock.now()) + 60
        forged = encode_reading(bytes(32), "node-h00", 6, ts, 0, node.model, {})  # not the meter's key
        stray = encode_reading(KEY, "node-h00", 6, ts, 0, node.model, {})  # under another household's prefix
        for topic, payload in ((f"{meter_prefix('h00')}/meter/node-h00/reading", forged),
                               ("gridpact/meter/node-h00/reading", stray)):  # fmt: skip
            publish.single(topic, payload, qos=1, hostname=info.host, port=info.port, client_id="tap-h00")
        deadline = time.monotonic() + 60
        while sum(gw.outcomes.values()) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        clock.advance(60)
        node.poll(clock.now())  # seq 6 is new to the gateway: the stray one never reached it
        assert gw.wait_seq(6, 60), gw.outcomes
        gw.span = (T0 - 3600, T0 + 3600)
        assert gw.seqs == [1, 2, 3, 4, 5, 6]
        assert gw.outcomes == {"accepted": 6, "forged": 1}
        assert gw.samples("ingest_accepted_total") == {("reading",): 6.0}
        imp, exp, complete = gw.energy(T0, T0 + 240)
        assert complete and imp >= 0 and exp >= 0
        newest = gw.newest()
        assert len(gw.hour_batch(T0)) == 6 and newest is not None and newest.seq == 6
    finally:
        for n in nodes:
            n.close()
        thread.cancel(thread.call(asyncio.all_tasks))
        gw.close()
        thread.stop()
        broker.close()
    assert thread.loop.is_closed()
