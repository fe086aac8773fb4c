"""Ingest through real brokers (Mosquitto and amqtt): verification, counting, storage, restarts."""

from __future__ import annotations

import http.client
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ops.status import parse_samples
from gridpact.core.wire import encode_health, encode_reading, encode_status
from hil.services import BrokerInfo, MosquittoBroker

KEY = bytes(range(32))
T0 = int(time.time()) // 3600 * 3600 - 86400  # yesterday: inside the retention period
TOPIC = "gridpact/meter/node-01/reading"
_ids = itertools.count()


def unique_id() -> str:
    return f"gw-{time.monotonic_ns() % 10**9}-{next(_ids)}"


def signed(seq: int, imp_wh: int = 1000, dev: str = "node-01", key: bytes = KEY) -> bytes:
    values = {"p1_W": 500.0, "e_imp_kWh": imp_wh / 1000, "e_exp_kWh": 0.25}
    return encode_reading(key, dev, seq, T0 + 10 * seq, 0, "sdm120", values)


def publish(
    host: str, port: int, messages: list[tuple[str, bytes]], to: Callable[[str], str], retain: bool = False
) -> None:
    """Publish with QoS 1 from a plain paho client (each topic mapped by `to`) and wait for every PUBACK."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{unique_id()}")
    client.connect(host, port)
    client.loop_start()
    try:
        infos = [client.publish(to(topic), payload, qos=1, retain=retain) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=20)
    finally:
        client.disconnect()
        client.loop_stop()


def metrics_text(port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return parse_samples(text)


def test_ingest_verifies_counts_and_stores(
    broker: BrokerInfo, gw_config: Callable[..., Path], gw_gateway: Callable, gw_topic: Callable[[str], str]
) -> None:
    config = gw_config(broker.port, gateway_id=unique_id())
    gw = gw_gateway(config)
    time.sleep(0.5)  # let the subscription settle
    forged = signed(30).replace(b'"p1_W":500.0', b'"p1_W":900.0')
    messages = [(TOPIC, signed(seq, 1000 + seq)) for seq in range(1, 21)]
    messages += [
        (TOPIC, forged),
        (TOPIC, signed(5)),  # replayed
        (TOPIC, signed(20, 1020)),  # duplicate (a QoS 1 resend)
        ("gridpact/meter/node-99/reading", signed(1, dev="node-99")),  # unknown device
        (TOPIC, signed(40, key=bytes(32))),  # wrong key
        (TOPIC, b'{"v":1}'),
        (TOPIC, b"\x00" * 100_000),  # huge
        ("gridpact/meter/NODE_1/reading", signed(41)),  # not a device id
        ("gridpact/meter/node-01/status", encode_status(KEY, "node-01", 3, 0, "online")),
        ("gridpact/meter/node-01/status", b"offline"),  # unsigned: anyone could have sent it
        (
            "gridpact/meter/node-01/health",
            encode_health(KEY, "node-01", 3, 1, "power", 99, 0, 0, 0, 41000, "1.0"),
        ),
        ("gridpact/meter/node-01/health", encode_health(KEY, "node-01", 3, 0, "power", 9, 0, 0, 0, 1, "1.0")),
        (TOPIC, signed(21, 1021)),
    ]
    publish(broker.host, broker.port, messages, gw_topic)
    counts = gw.wait_total(len(messages))
    assert counts[("reading",)] == 21
    assert counts[("reading", "forged")] == 2
    assert counts[("reading", "replayed")] == 1
    assert counts[("reading", "duplicate")] == 1
    assert counts[("reading", "unknown_device")] == 1
    assert counts[("reading", "malformed")] == 2
    assert counts[("unknown", "wrong_topic")] == 1
    assert counts[("status",)] == 1 and counts[("status", "unsigned")] == 1
    assert counts[("health",)] == 1 and counts[("health", "replayed")] == 1
    assert gw.alive

    store = gw.runtime.store
    summary = gw.call(store.summary)
    assert summary["readings"] == 21 and summary["last_seq"] == 21 and summary["node_status"] == "online"
    delta = gw.call(lambda: store.energy_between(T0 + 10, T0 + 210))
    assert (delta.import_wh, delta.complete) == (20, True)
    batch = gw.call(lambda: store.hour_batch(T0))
    assert batch == [signed(seq, 1000 + seq) for seq in range(1, 22)]

    samples = metrics_text(gw.runtime.cfg.metrics.port)
    assert samples['gridpact_ingest_rejected_total{kind="reading",reason="forged"}'] == 2
    assert samples['gridpact_meter_online{dev="node-01"}'] == 1
    assert samples['gridpact_meter_node_free_memory_bytes{dev="node-01"}'] == 41000
    assert samples['gridpact_meter_node_boots_total{dev="node-01"}'] == 3
    assert samples['gridpact_meter_node_uptime_seconds{dev="node-01"}'] == 99
    assert samples["gridpact_meter_broker_connected"] == 1


def test_last_seq_persists_across_gateway_restart(
    broker: BrokerInfo, gw_config: Callable[..., Path], gw_gateway: Callable, gw_topic: Callable[[str], str]
) -> None:
    config = gw_config(broker.port, gateway_id=unique_id())
    first = gw_gateway(config)
    time.sleep(0.5)
    publish(broker.host, broker.port, [(TOPIC, signed(s)) for s in range(1, 6)], gw_topic)
    assert first.wait_total(5)[("reading",)] == 5
    first.stop()

    second = gw_gateway(config)
    time.sleep(0.5)
    publish(broker.host, broker.port, [(TOPIC, signed(5)), (TOPIC, signed(3)), (TOPIC, signed(6))], gw_topic)
    counts = second.wait_total(3)
    assert counts[("reading", "duplicate")] == 1
    assert counts[("reading", "replayed")] == 1
    assert counts[("reading",)] == 1
    assert second.call(second.runtime.store.summary)["readings"] == 6


def test_reconnects_after_broker_outage(
    tmp_path: Path, gw_config: Callable[..., Path], gw_gateway: Callable, gw_topic: Callable[[str], str]
) -> None:
    own = MosquittoBroker()
    own.start()
    try:
        gw = gw_gateway(gw_config(own.port, gateway_id=unique_id()))
        time.sleep(0.5)
        publish("127.0.0.1", own.port, [(TOPIC, signed(1))], gw_topic)
        assert gw.wait_total(1)[("reading",)] == 1
        own.restart(down_for=1.5)
        deadline = time.monotonic() + 30
        connected = gw.runtime.metrics.gauge("meter_broker_connected", "")
        while time.monotonic() < deadline and gw.call(lambda: connected.get()) != 1:
            time.sleep(0.1)
        publish("127.0.0.1", own.port, [(TOPIC, signed(2)), (TOPIC, signed(3))], gw_topic)
        counts = gw.wait_total(3)
        assert counts[("reading",)] == 3
        reconnects = gw.runtime.metrics.counter("meter_broker_reconnects_total", "")
        assert gw.call(lambda: reconnects.get()) >= 1
    finally:
        own.close()


def test_ingest_only_gateway_serves_status(
    broker: BrokerInfo, gw_config: Callable[..., Path], gw_gateway: Callable, gw_topic: Callable[[str], str]
) -> None:
    """`gridpact gateway status` reads the store and the running service's metrics."""
    import subprocess

    config = gw_config(broker.port, gateway_id=unique_id())
    gw = gw_gateway(config)
    time.sleep(0.5)
    publish(broker.host, broker.port, [(TOPIC, signed(1)), (TOPIC, b"junk")], gw_topic)
    gw.wait_total(2)
    gridpact = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "gridpact"
    proc = subprocess.run(
        [gridpact, "gateway", "status", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert "service=running" in proc.stdout, proc.stdout + proc.stderr
    assert "last_seq=1" in proc.stdout
    assert 'gridpact_ingest_rejected_total{kind="reading",reason="malformed"}=1' in proc.stdout
    assert proc.returncode in (0, 3)  # 3: the meter is stale (readings are from 2026-01-01)
