"""The bench's CPU split: threads booked to layers by name, CPU ticks read from /proc stat lines."""

from __future__ import annotations

import threading
import time

from hil.community.layers import LayerCpu, cpu_ticks, layer_of


def test_sim_layers_thread_names_golden() -> None:
    assert layer_of("vboard-node-h00") == "firmware"
    assert layer_of("vboard-wdt-node-h00") == "firmware"
    assert layer_of("amqtt-broker") == "broker"
    assert layer_of("paho-mqtt-client-gw-h03") == "ingest"
    assert layer_of("store-writer_0") == "ingest"
    assert layer_of("gridpact-agents") == "trading"
    assert layer_of("gridpact-gateways") == "trading"  # hil.community.gateways.GatewayThread's default name
    assert layer_of("gridpact-chain_0") == "chain"
    assert layer_of("MainThread") == "other"


def test_sim_layers_stat_line_with_spaces_and_parens_in_the_name() -> None:
    line = "4242 (odd) name) S 1 2 3 4 5 6 7 8 9 10 123 45 0 0 20 0"
    assert cpu_ticks(line) == 168


def test_sim_layers_a_busy_named_thread_is_booked_to_its_layer() -> None:
    spun = threading.Event()
    release = threading.Event()

    def spin() -> None:
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
        spun.set()
        release.wait(10)  # alive until sampled: a loaded machine may not run the sampler while it spins

    with LayerCpu(every_s=0.05) as cpu:
        t = threading.Thread(target=spin, name="gridpact-agents")
        t.start()
        assert spun.wait(30)
        cpu.sample()
        release.set()
        t.join()
    secs = cpu.seconds()
    assert secs["trading"] >= 0.1, secs
    assert secs["firmware"] == 0.0, secs
