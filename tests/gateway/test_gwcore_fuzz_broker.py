"""Bad input through a real broker: hypothesis-made payloads on every topic the gateway reads.

One gateway runs for the whole test; each hypothesis example is a batch of hostile messages
published over the broker. After every batch the service is still running, every message was
counted (accepted or rejected by reason) and a good reading is still accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from gridpact.core.wire import encode_reading
from hil.services import BrokerInfo

KEY = bytes(range(32))

json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=10,
)
member = st.sampled_from(["v", "dev", "seq", "ts", "q", "m", "r", "mac", "zz"])


def _sign(body: bytes, key: bytes) -> bytes:
    return body[:-1] + b',"mac":"' + hmac.new(key, body, hashlib.sha256).hexdigest().encode() + b'"}'


reading_payloads = st.one_of(
    st.binary(max_size=300),  # noise
    st.binary(min_size=5000, max_size=70_000),  # huge
    st.dictionaries(member, json_value, max_size=9).map(lambda d: json.dumps(d).encode()),  # wrong types
    st.dictionaries(member, json_value, min_size=1, max_size=9).map(  # signed with the right key, wrong types
        lambda d: _sign(json.dumps(d, separators=(",", ":")).encode(), KEY)
    ),
    st.tuples(st.integers(0, 2**53), st.binary(min_size=32, max_size=32)).map(  # wrong signatures
        lambda t: encode_reading(t[1], "node-01", t[0], 1_767_225_600, 0, "sdm120", {"p1_W": 1.0})
    ),
    st.text(max_size=200).map(str.encode),
)
topics = st.sampled_from(
    [
        "gridpact/meter/node-01/reading",
        "gridpact/meter/node-01/status",
        "gridpact/meter/node-01/health",
        "gridpact/meter/node-02/reading",
        "gridpact/meter/Node-01/reading",
    ]
)
batches = st.lists(st.tuples(topics, reading_payloads), min_size=1, max_size=12)


def test_fuzz_every_topic_through_a_real_broker(
    broker: BrokerInfo, gw_config: Callable[..., Path], gw_gateway: Callable, gw_topic: Callable[[str], str]
) -> None:
    gw = gw_gateway(gw_config(broker.port, gateway_id=f"fuzz-{broker.kind}-{time.monotonic_ns() % 10**6}"))
    time.sleep(0.5)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fuzzer-{time.monotonic_ns()}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    seqs = itertools.count(1)
    sent = 0

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(batch=batches)
    def hostile(batch: list[tuple[str, bytes]]) -> None:
        nonlocal sent
        good = encode_reading(KEY, "node-01", next(seqs) * 1000, 1_767_225_600, 0, "sdm120", {"p1_W": 2.0})
        infos = [
            client.publish(gw_topic(topic), payload, qos=1)
            for topic, payload in [*batch, ("gridpact/meter/node-01/reading", good)]
        ]
        for info in infos:
            info.wait_for_publish(timeout=20)
        sent += len(infos)
        before = gw.counts().get(("reading",), 0)
        counts = gw.wait_total(sent)
        assert gw.alive, gw.error
        assert sum(counts.values()) == sent, (sent, counts)
        assert counts.get(("reading",), 0) >= before

    try:
        hostile()
    finally:
        client.disconnect()
        client.loop_stop()
    counts = gw.counts()
    assert gw.alive
    assert counts[("reading",)] >= 25  # every batch's good reading got through
    assert sum(v for k, v in counts.items() if len(k) == 2) > 0
