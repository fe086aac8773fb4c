"""Ingest of a backlog and a live stream through real brokers, and the faster canonical parser.

A backlog of hundreds of readings must be verified, counted, stored in order and
acknowledged exactly once; the parser's shortcut must keep the general parser's verdicts.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gridpact.core.wire import (
    MAC_MARKER,
    Rejected,
    TagChecker,
    compute_tag,
    encode_reading,
    parse_body,
    parse_canonical,
    verify,
)
from hil.services import BrokerInfo, MosquittoBroker

KEY = bytes(range(32))
T0 = int(time.time()) // 3600 * 3600 - 7200  # inside the retention period
TOPIC = "gridpact/meter/node-01/reading"
_ids = itertools.count()
MANY = 64  # readings: several socket reads and flush batches


def signed(seq: int) -> bytes:
    values = {"u1_V": 230.1, "p1_W": 500.0, "e_imp_kWh": seq / 1000, "e_exp_kWh": 0.0}
    return encode_reading(KEY, "node-01", seq, T0 + seq, 0, "sdm120", values)


def publish(port: int, topic: str, payloads: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"speed-pub-{time.monotonic_ns()}")
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def test_backlog_of_many_bursts_is_stored_in_order_and_acknowledged_once(
    mosquitto: MosquittoBroker,
    gw_config: Callable[..., Path],
    gw_gateway: Callable,
    gw_topic: Callable[[str], str],
) -> None:
    """On Mosquitto (the bench's broker): amqtt 0.12 did not hand a persistent session the messages
    queued while it was away, so the backlog case cannot be built on it."""
    broker = mosquitto.info
    config = gw_config(broker.port, gateway_id=f"speed-{next(_ids)}-{time.monotonic_ns() % 10**6}")
    first = gw_gateway(config)  # subscribes in a persistent session, then goes away
    connected = first.runtime.metrics.gauge("meter_broker_connected", "")
    deadline = time.monotonic() + 20
    while first.call(connected.get) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.stop()
    n = 4 * MANY + 7
    good = [signed(seq) for seq in range(1, n + 1)]
    forged = signed(n + 50).replace(b'"p1_W":500.0', b'"p1_W":900.0')
    backlog = [*good[: n // 2], forged, good[3], *good[n // 2 :]]  # a forgery and a replay inside
    publish(broker.port, gw_topic(TOPIC), backlog)

    gw = gw_gateway(config)
    counts = gw.wait_total(len(backlog))
    assert counts[("reading",)] == n
    assert counts[("reading", "forged")] == 1 and counts[("reading", "replayed")] == 1
    store = gw.runtime.store
    assert gw.call(store.summary)["readings"] == n
    batches = gw.call(lambda: store.hour_batch(T0) + store.hour_batch(T0 + 3600))
    assert batches == good
    gw.stop()

    again = gw_gateway(config)  # every message was acknowledged: nothing comes back
    publish(broker.port, gw_topic(TOPIC), [signed(n + 1)])
    counts = again.wait_total(1)
    time.sleep(0.3)
    assert again.counts() == {**{k: 0.0 for k in counts if k != ("reading",)}, ("reading",): 1.0}


def test_live_stream_longer_than_a_burst_on_both_brokers(
    broker: BrokerInfo, gw_config: Callable[..., Path], gw_gateway: Callable, gw_topic: Callable[[str], str]
) -> None:
    gw = gw_gateway(gw_config(broker.port, gateway_id=f"live-{next(_ids)}-{time.monotonic_ns() % 10**6}"))
    connected = gw.runtime.metrics.gauge("meter_broker_connected", "")
    deadline = time.monotonic() + 20
    while gw.call(connected.get) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    n = 3 * MANY
    publish(
        broker.port, gw_topic(TOPIC), [signed(seq) for seq in range(1, n + 1)] + [signed(n)]
    )  # and one duplicate
    counts = gw.wait_total(n + 1)
    assert counts[("reading",)] == n and counts[("reading", "duplicate")] == 1
    assert gw.call(gw.runtime.store.summary)["last_seq"] == n


FIRMWARE_LIKE = (
    b'{"v":1,"dev":"node-01","seq":42,"ts":1767225600,"q":256,"m":"sdm630",'
    b'"r":{"u1_V":231.4,"p1_W":-1200,"e_imp_kWh":12.345,"e_exp_kWh":0.5e1}}'
)


def test_canonical_parser_golden_vector() -> None:
    reading = parse_canonical(FIRMWARE_LIKE, b"raw")
    assert reading is not None
    assert (reading.dev, reading.seq, reading.ts, reading.q, reading.model) == (
        "node-01",
        42,
        1_767_225_600,
        256,
        "sdm630",
    )
    assert reading.values == {"u1_V": 231.4, "p1_W": -1200.0, "e_imp_kWh": 12.345, "e_exp_kWh": 5.0}
    assert all(type(v) is float for v in reading.values.values())
    assert (reading.import_wh, reading.export_wh) == (12345, 5000)


@pytest.mark.parametrize("number", [b"1e999", b"-1e999"])
def test_non_finite_values_leave_the_fast_path_and_are_rejected(number: bytes) -> None:
    body = b'{"v":1,"dev":"node-01","seq":1,"ts":1,"q":0,"m":"sdm120","r":{"p1_W":' + number + b"}}"
    assert parse_canonical(body, body) is None
    with pytest.raises(Rejected) as exc:
        parse_body(body)
    assert exc.value.reason == "malformed"
    signed_payload = body[:-1] + MAC_MARKER + compute_tag(KEY, body).hex().encode() + b'"}'
    assert TagChecker(KEY).check(signed_payload) == body  # authentic, so only the parser refuses it
    with pytest.raises(Rejected) as exc:
        verify(KEY, signed_payload)
    assert exc.value.reason == "malformed"


def test_negative_counter_leaves_the_fast_path() -> None:
    body = b'{"v":1,"dev":"node-01","seq":1,"ts":1,"q":0,"m":"sdm120","r":{"e_imp_kWh":-1.0}}'
    assert parse_canonical(body, body) is None


def test_repeated_value_name_keeps_the_last_value_on_both_paths() -> None:
    body = b'{"v":1,"dev":"node-01","seq":1,"ts":1,"q":0,"m":"sdm120","r":{"p1_W":1E400,"p1_W":2}}'
    payload = body[:-1] + MAC_MARKER + compute_tag(KEY, body).hex().encode() + b'"}'
    fast = parse_canonical(body, payload)
    assert fast is not None and fast.values == {"p1_W": 2.0}
    assert fast == parse_body(payload) == verify(KEY, payload)


def test_background_commit_is_visible_to_reads_and_its_failure_surfaces(tmp_path: Path) -> None:
    import sqlite3

    from gateway.storage import ReadingStore

    path = tmp_path / "r.sqlite3"
    store = ReadingStore(path, "node-01")
    for seq in (1, 2, 3):
        store.add(verify(KEY, signed(seq)))
    store.commit_soon()
    assert store.summary()["readings"] == 3 and store.last_seqs() == {"node-01": 3}
    other = sqlite3.connect(path)
    other.execute("DROP TABLE readings")
    other.commit()
    other.close()
    store.add(verify(KEY, signed(4)))
    store.commit_soon()  # fails in the writer thread ...
    with pytest.raises(sqlite3.OperationalError):
        store.commit()  # ... and the error reaches the next caller
    store.close()
