"""Ingest's MQTT stream (gateway.ingest.mqtt: aiomqtt's public API, `Delivery`).

A scripted TCP peer (speaking just enough MQTT 3.1.1 to be the gateway's broker) sends packets
split across many writes, many packets in one write, QoS 0/1/2 mixed, a connection that ends
mid-packet and a malformed header; each message must be handled in order and acknowledged once,
and only after it was handled (a storage failure leaves it unacknowledged). A real Mosquitto
carries an oversized payload, and a TLS listener the same stream as plain TCP.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sqlite3
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ingest.mqtt import Delivery
from gridpact.core.wire import encode_reading, encode_status
from hil.services import MosquittoBroker, find_mosquitto, free_port, wait_for_port

KEY = bytes(range(32))
T0 = int(time.time()) // 3600 * 3600 - 7200  # inside the retention period
TOPIC = "gridpact/meter/node-01/reading"
STATUS = "gridpact/meter/node-01/status"
_ids = itertools.count()
MANY = 3 * 64 + 5  # more packets than one read of the socket brings

PUBACK, PUBREC, PUBREL, PUBCOMP = 0x40, 0x50, 0x62, 0x70


def signed(seq: int) -> bytes:
    values = {"u1_V": 230.1, "p1_W": 500.0, "e_imp_kWh": seq / 1000, "e_exp_kWh": 0.0}
    return encode_reading(KEY, "node-01", seq, T0 + seq, 0, "sdm120", values)


def status_payload() -> bytes:
    return encode_status(KEY, "node-01", 1, 0, "online")


def packet(first: int, body: bytes) -> bytes:
    """An MQTT packet: fixed header byte, remaining length (1-4 bytes), body."""
    head = bytearray([first])
    n = len(body)
    while True:
        byte, n = n & 0x7F, n >> 7
        head.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(head) + body


def publish(topic: str, payload: bytes, qos: int = 1, mid: int = 0, dup: bool = False) -> bytes:
    name = topic.encode()
    ident = struct.pack("!H", mid) if qos else b""
    return packet(
        0x30 | (0x08 if dup else 0) | qos << 1, struct.pack("!H", len(name)) + name + ident + payload
    )


class Session:
    """One accepted connection of the scripted broker: CONNECT/CONNACK and SUBSCRIBE/SUBACK done."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.conn.settimeout(20)
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        first, _ = self.read_packet()
        assert first >> 4 == 1, "expected CONNECT"
        self.conn.sendall(b"\x20\x02\x00\x00")
        first, body = self.read_packet()
        assert first == 0x82, "expected SUBSCRIBE"
        filters, pos = 0, 2
        while pos < len(body):
            pos += 2 + struct.unpack_from("!H", body, pos)[0] + 1
            filters += 1
        self.conn.sendall(packet(0x90, body[:2] + b"\x01" * filters))

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def read_packet(self) -> tuple[int, bytes]:
        first = self._read(1)[0]
        length, shift = 0, 0
        while True:
            byte = self._read(1)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        return first, self._read(length)

    def acks(self, n: int) -> list[tuple[int, int]]:
        """The next n packets from the gateway as (type, packet id); PINGREQs are answered and skipped."""
        got: list[tuple[int, int]] = []
        while len(got) < n:
            first, body = self.read_packet()
            if first == 0xC0:
                self.conn.sendall(b"\xd0\x00")
                continue
            if first == 0xE0:  # DISCONNECT: the client ended the session (a gateway stopping may say so)
                raise ConnectionError("the client sent DISCONNECT")
            got.append((first, struct.unpack("!H", body[:2])[0]))
        return got

    def close(self) -> None:
        self.conn.close()


class ScriptedBroker:
    """A listening socket whose connections the test drives by hand."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(20)
        self.port = self.server.getsockname()[1]

    def accept(self) -> Session:
        conn, _ = self.server.accept()
        return Session(conn)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def scripted() -> Iterator[ScriptedBroker]:
    peer = ScriptedBroker()
    yield peer
    peer.close()


def stored(gw: Any) -> list[bytes]:
    """The stored raw payloads of the test's readings, in sequence order."""
    store = gw.runtime.store
    return gw.call(lambda: store.hour_batch(T0) + store.hour_batch(T0 + 3600))


# ------------------------------------------------------------------ the gateway against a scripted broker


def test_packets_split_anywhere_are_handled_in_order_and_acknowledged_once(
    scripted: ScriptedBroker,
    gw_config: Callable[..., Path],
    gw_gateway: Callable,
    gw_topic: Callable[[str], str],
) -> None:
    gw = gw_gateway(gw_config(scripted.port, gateway_id=f"split-{next(_ids)}"))
    session = scripted.accept()
    n = 60
    good = [signed(seq) for seq in range(1, n + 1)]
    stream = b"".join(publish(gw_topic(TOPIC), p, mid=seq) for seq, p in enumerate(good, 1))
    pos = 0
    for size in itertools.cycle([1, 2, 3, 5, 64, 333, 1000, 2]):  # cuts inside headers and payloads
        session.conn.sendall(stream[pos : pos + size])
        pos += size
        if pos >= len(stream):
            break
        time.sleep(0.001)
    assert session.acks(n) == [(PUBACK, mid) for mid in range(1, n + 1)]
    counts = gw.wait_total(n)
    assert counts[("reading",)] == n and sum(counts.values()) == n
    assert stored(gw) == good


def test_many_packets_in_one_write(
    scripted: ScriptedBroker,
    gw_config: Callable[..., Path],
    gw_gateway: Callable,
    gw_topic: Callable[[str], str],
) -> None:
    """Packets already read but not yet handled: the peer sends nothing more that could wake the
    reader for them."""
    gw = gw_gateway(gw_config(scripted.port, gateway_id=f"burst-{next(_ids)}"))
    session = scripted.accept()
    n = MANY
    good = [signed(seq) for seq in range(1, n + 1)]
    session.conn.sendall(b"".join(publish(gw_topic(TOPIC), p, mid=seq) for seq, p in enumerate(good, 1)))
    assert session.acks(n) == [(PUBACK, mid) for mid in range(1, n + 1)]
    assert gw.wait_total(n)[("reading",)] == n
    assert stored(gw) == good


def test_qos_0_1_2_mixed_are_answered_in_wire_order(
    scripted: ScriptedBroker,
    gw_config: Callable[..., Path],
    gw_gateway: Callable,
    gw_topic: Callable[[str], str],
) -> None:
    gw = gw_gateway(gw_config(scripted.port, gateway_id=f"mixed-{next(_ids)}"))
    session = scripted.accept()
    status = gw_topic("gridpact/meter/node-01/status")
    session.conn.sendall(
        publish(gw_topic(TOPIC), signed(1), qos=1, mid=11)
        + publish(gw_topic(TOPIC), signed(2), qos=0)
        + publish(gw_topic(TOPIC), signed(3), qos=1, mid=12, dup=True)
        + publish(gw_topic(TOPIC), signed(4), qos=2, mid=13)  # paho's: PUBREC now, delivered on PUBREL
        + publish(status, status_payload(), qos=1, mid=14)
        + publish("other/topic", b"x", qos=1, mid=15)
        + b"\xd0\x00"  # an unsolicited PINGRESP: paho's, and harmless
    )
    assert session.acks(5) == [(PUBACK, 11), (PUBACK, 12), (PUBREC, 13), (PUBACK, 14), (PUBACK, 15)]
    session.conn.sendall(packet(PUBREL, struct.pack("!H", 13)))
    assert session.acks(1) == [(PUBCOMP, 13)]
    counts = gw.wait_total(6)
    assert counts[("reading",)] == 4 and counts[("status",)] == 1
    assert counts[("unknown", "wrong_topic")] == 1
    assert stored(gw) == [signed(seq) for seq in (1, 2, 3, 4)]


def test_connection_ending_mid_packet_loses_nothing_after_the_reconnect(
    scripted: ScriptedBroker,
    gw_config: Callable[..., Path],
    gw_gateway: Callable,
    gw_topic: Callable[[str], str],
) -> None:
    gw = gw_gateway(gw_config(scripted.port, gateway_id=f"drop-{next(_ids)}"))
    session = scripted.accept()
    frames = [publish(gw_topic(TOPIC), signed(seq), mid=seq) for seq in range(1, 21)]
    session.conn.sendall(b"".join(frames[:10]))
    assert session.acks(10) == [(PUBACK, mid) for mid in range(1, 11)]
    session.conn.sendall(frames[10][:150])  # half of message 11, then the broker goes away
    time.sleep(0.05)
    session.close()
    again = scripted.accept()  # the gateway reconnects and subscribes again
    again.conn.sendall(publish(gw_topic(TOPIC), signed(11), mid=11, dup=True) + b"".join(frames[11:]))
    assert again.acks(10) == [(PUBACK, mid) for mid in range(11, 21)]
    counts = gw.wait_total(20)
    assert counts[("reading",)] == 20 and sum(counts.values()) == 20  # the half packet is not a message
    assert stored(gw) == [signed(seq) for seq in range(1, 21)]
    reconnects = gw.runtime.metrics.counter("meter_broker_reconnects_total", "")
    assert gw.call(reconnects.get) >= 1


def test_packet_larger_than_a_read_arriving_in_pieces_then_small_ones_behind_it(
    scripted: ScriptedBroker,
    gw_config: Callable[..., Path],
    gw_gateway: Callable,
    gw_topic: Callable[[str], str],
) -> None:
    gw = gw_gateway(gw_config(scripted.port, gateway_id=f"large-{next(_ids)}"))
    session = scripted.accept()
    huge = signed(1)[:-2] + b"x" * 300_000 + b'"}'  # too large a reading: counted as malformed
    stream = publish(gw_topic(TOPIC), huge, mid=1) + b"".join(
        publish(gw_topic(TOPIC), signed(seq), mid=seq) for seq in range(2, 6)
    )
    for pos in range(0, len(stream), 7_000):
        session.conn.sendall(stream[pos : pos + 7_000])
        time.sleep(0.001)
    assert session.acks(5) == [(PUBACK, mid) for mid in range(1, 6)]
    counts = gw.wait_total(5)
    assert counts[("reading", "malformed")] == 1 and counts[("reading",)] == 4
    assert stored(gw) == [signed(seq) for seq in range(2, 6)]


def test_malformed_remaining_length_ends_the_connection_and_it_comes_back(
    scripted: ScriptedBroker,
    gw_config: Callable[..., Path],
    gw_gateway: Callable,
    gw_topic: Callable[[str], str],
) -> None:
    gw = gw_gateway(gw_config(scripted.port, gateway_id=f"bad-{next(_ids)}"))
    session = scripted.accept()
    session.conn.sendall(publish(gw_topic(TOPIC), signed(1), mid=1) + b"\x32\xff\xff\xff\xff\x01")
    got: list[tuple[int, int]] = []
    with pytest.raises(ConnectionError):  # the gateway closes the connection (paho's protocol error path)
        while True:
            got += session.acks(1)
    # message 1 was handled; its PUBACK may not have left before the close (then the broker
    # resends it and it counts as a duplicate): never acknowledged before it was handled
    assert got in ([], [(PUBACK, 1)])
    assert gw.wait_total(1)[("reading",)] == 1
    again = scripted.accept()
    again.conn.sendall(publish(gw_topic(TOPIC), signed(2), mid=2))
    assert again.acks(1) == [(PUBACK, 2)]
    assert gw.wait_total(2)[("reading",)] == 2


# ------------------------------------------------------------------ through a real Mosquitto


def test_oversized_payload_spanning_reads_is_counted_and_acknowledged(
    mosquitto: MosquittoBroker,
    gw_config: Callable[..., Path],
    gw_gateway: Callable,
    gw_topic: Callable[[str], str],
) -> None:
    config = gw_config(mosquitto.info.port, gateway_id=f"big-{next(_ids)}-{time.monotonic_ns() % 10**6}")
    gw = gw_gateway(config)
    connected = gw.runtime.metrics.gauge("meter_broker_connected", "")
    deadline = time.monotonic() + 20
    while gw.call(connected.get) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    huge = signed(1)[:-2] + b"x" * 200_000 + b'"}'  # several 64 KiB reads for one packet
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"big-pub-{time.monotonic_ns()}")
    sender.connect("127.0.0.1", mosquitto.info.port)
    sender.loop_start()
    try:
        infos = [sender.publish(gw_topic(TOPIC), p, qos=1) for p in (signed(1), huge, signed(2), signed(3))]
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        sender.disconnect()
        sender.loop_stop()
    counts = gw.wait_total(4)
    assert counts[("reading",)] == 3 and counts[("reading", "malformed")] == 1
    gw.stop()
    again = gw_gateway(config)  # all four were acknowledged: the persistent session holds nothing
    time.sleep(0.5)
    assert sum(again.counts().values()) == 0


class Recorder:
    """The sink end of `Delivery`, recording what reaches it (the handler is tested elsewhere)."""

    def __init__(self) -> None:
        self.pending = 0
        self.got: list[tuple[str, bytes]] = []

    def handle(self, topic: str, payload: bytes) -> str:
        self.got.append((topic, payload))
        return "accepted"

    def flush(self) -> None:
        pass


def drain(port: int, ca_file: Path | None = None) -> list[tuple[str, bytes]]:
    """Publish MANY messages through the broker to an aiomqtt client fed by `Delivery`; what it got."""
    topic = f"stream-{next(_ids)}-{time.monotonic_ns()}/x"
    payloads = [b"p%d" % i + b"." * (i % 300) for i in range(MANY)]
    sink = Recorder()
    tls = aiomqtt.TLSParameters(ca_certs=str(ca_file)) if ca_file else None

    def send() -> None:
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"stream-pub-{time.monotonic_ns()}")
        if ca_file:
            pub.tls_set(ca_certs=str(ca_file))
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        for info in [pub.publish(topic, p, qos=1) for p in payloads]:
            info.wait_for_publish(timeout=30)
        pub.disconnect()
        pub.loop_stop()

    async def run() -> None:
        delivery = Delivery(sink, 0.05)
        client = aiomqtt.Client(
            "127.0.0.1",
            port,
            identifier=f"stream-{next(_ids)}",
            tls_params=tls,
            queue_type=delivery.queue_type(),
        )
        try:
            async with client:
                await client.subscribe(topic, 1)
                await asyncio.to_thread(send)
                deadline = time.monotonic() + 20
                while len(sink.got) < MANY and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                assert len(client.messages) == 0  # handled as they came, never queued
        finally:
            delivery.close()

    asyncio.run(run())
    assert sink.got == [(topic, p) for p in payloads]
    return sink.got


def test_plain_tcp_delivers_the_stream_in_order(mosquitto: MosquittoBroker) -> None:
    drain(mosquitto.info.port)


@pytest.fixture
def tls_mosquitto(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A Mosquitto with a TLS listener and a certificate from a throwaway CA: (port, CA file)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=gridpact test CA",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    )
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"cafile {tmp_path / 'ca.crt'}\ncertfile {tmp_path / 'srv.crt'}\nkeyfile {tmp_path / 'srv.key'}\n"
        + (
            "user root\n" if os.geteuid() == 0 else ""
        )  # as root it would drop to a user who cannot read tmp_path
    )
    proc = subprocess.Popen(
        [find_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port("127.0.0.1", port, 10, proc)
        yield port, tmp_path / "ca.crt"
    finally:
        proc.terminate()
        proc.wait(10)


def test_tls_connections_get_every_message(tls_mosquitto: tuple[int, Path]) -> None:
    port, ca_file = tls_mosquitto
    assert len(drain(port, ca_file=ca_file)) == MANY


def test_a_message_whose_handling_hits_a_storage_failure_is_not_acknowledged(
    scripted: ScriptedBroker,
    gw_config: Callable[..., Path],
    gw_gateway: Callable,
    gw_topic: Callable[[str], str],
) -> None:
    """The PUBACK follows the handling: a message the store could not take stays the broker's."""
    gw = gw_gateway(gw_config(scripted.port, gateway_id=f"fail-{next(_ids)}"))
    session = scripted.accept()
    other = sqlite3.connect(gw.runtime.store.path)
    other.execute("DROP TABLE readings")  # the next write of the gateway's store fails
    other.commit()
    other.close()
    session.conn.sendall(publish(gw_topic(TOPIC), signed(1), mid=1))
    assert session.acks(1) == [(PUBACK, 1)]  # verified and queued; its batch then fails in the writer
    time.sleep(0.3)
    session.conn.sendall(publish(gw_topic(STATUS), status_payload(), mid=2))  # stored at once: raises
    deadline = time.monotonic() + 10
    while gw.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not gw.alive and "no such table" in repr(gw.error)  # the storage failure ended the gateway
    session.conn.settimeout(1.0)
    with pytest.raises((ConnectionError, TimeoutError)):
        session.acks(1)  # and the status message was never acknowledged
