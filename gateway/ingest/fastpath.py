"""The ingest hot path: aiomqtt's connection, paho's protocol handling, our own reader.

aiomqtt keeps the connection lifecycle (connect, subscribe, keepalive, disconnect, errors), but
for each message it builds an `aiomqtt.Message` with a validated `Topic` and reads one packet per
event-loop wake-up; paho itself reads a packet with about four `recv` calls, builds an
`MQTTMessage` and sends each PUBACK with its own `send`. Profiling the bench put these costs above
verification and SQLite together. So, per connection on a plain TCP socket:

- the reader takes the socket's bytes in large chunks (`gateway.ingest.bufsock`), splits them
  into MQTT packets and hands QoS 0/1 PUBLISH packets' topic and payload straight to
  `IngestHandler.handle`; every other packet (CONNACK, SUBACK, PINGRESP, QoS 2 flows, anything
  unusual) goes to paho whole, through paho's public `loop_read`, so paho's protocol state and
  error handling are unchanged;
- a wake-up handles up to `MAX_BURST` packets; complete packets left over schedule the next burst
  (`call_soon`, after timers: the selector does not wake for bytes already read);
- the PUBACKs of a burst, each written once its message's `handle` returned, leave in one `send`
  at the end of the burst, in order with paho's own writes.

TLS (and MQTT 5) connections keep paho's reader, draining up to `MAX_BURST` packets per wake-up.
paho does not see the PUBLISH packets and PUBACKs of the framed path, so on a busy connection its
keepalive sends a PINGREQ every keepalive period; the PINGRESP reaches it like any other packet.

What is acknowledged when is unchanged: a message's PUBACK is written only after `handle`
returned, i.e. once the reading was verified (or counted as rejected) and queued for the next
commit, which starts at most `FLUSH_DELAY_S` or `COMMIT_EVERY` readings later in the store's
writer thread. A storage failure ends the session without acknowledging the message.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Protocol

import aiomqtt
import paho.mqtt.client as mqtt

from gateway.ingest.bufsock import PUBLISH, READ_SIZE, BufferedSocket, MalformedPacket, next_packet

MAX_BURST = 64  # packets per reader wake-up: bounded so timers (flush, watchdog) still run
PUBACK = b"\x40\x02"  # MQTT 3.1.1 PUBACK: fixed header and remaining length; the packet id follows


class MessageSink(Protocol):
    """What the hot path feeds: `IngestHandler` (handle, pending, flush)."""

    pending: int

    def handle(self, topic: str, payload: bytes) -> str: ...

    def flush(self) -> None: ...


class FastPath:
    """Per-connection hot path; `failed` ends ingest (storage error), `lost` reconnects."""

    def __init__(
        self,
        client: aiomqtt.Client,
        sink: MessageSink,
        failed: asyncio.Future[None],
        flush_delay_s: float,
        framed: bool = True,
    ) -> None:
        paho = getattr(client, "_client", None)  # the underlying paho client (aiomqtt pinned at 2.5.1)
        if not isinstance(paho, mqtt.Client):
            raise TypeError("aiomqtt.Client without a paho client: check the aiomqtt pin")
        self.paho = paho
        self.sink = sink
        self.failed = failed
        self.loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.flush_delay_s = flush_delay_s
        self.framed = framed and paho.transport == "tcp" and paho.protocol != mqtt.MQTTv5
        self.bsock: BufferedSocket | None = None
        self.delivered = 0
        self._rest: bytes | bytearray = b""  # read but not handled yet: the next packet(s), or a start
        self._fd = -1
        self._flush: asyncio.TimerHandle | None = None
        self._again: asyncio.Handle | None = None  # the next burst, while complete packets are left
        self._aiomqtt_register = paho.on_socket_register_write
        self._aiomqtt_unregister = paho.on_socket_unregister_write
        self._writer = False  # whether aiomqtt's writer callback is registered with the loop
        self._unsent_writer = False  # whether ours (for the wrapper's unsent bytes) is
        self._in_burst = False
        self._write_due = False  # paho asked to write during the burst: done once, at the end
        paho.on_message = self._on_message  # replaces aiomqtt's Message conversion and queue
        paho.on_socket_register_write = self._register_write
        paho.on_socket_unregister_write = self._unregister_write

    def take_over_reads(self) -> None:
        """Swap aiomqtt's one-packet reader for ours (call once connected)."""
        sock = self.paho.socket()
        if sock is None:
            return
        if self.framed and type(sock) is socket.socket:  # not an ssl.SSLSocket
            self.bsock = BufferedSocket(sock)
            self.paho._sock = self.bsock  # paho has no public way to wrap its socket (pinned 2.2.0)
        self._fd = sock.fileno()
        self.loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        if self._again is not None:  # the selector woke first: one burst is enough
            self._again.cancel()
            self._again = None
        if self.failed.done():  # storage failed: the ingest task is ending; read and acknowledge no more
            self.loop.remove_reader(self._fd)
            return
        if self.paho.socket() is None:
            return  # paho closed the connection since this burst was scheduled
        bsock = self.bsock
        self._in_burst = True
        if bsock is not None:
            bsock.cork()
        try:
            if bsock is None:
                self._paho_burst()
            else:
                self._framed_burst(bsock)
        except Exception as exc:  # e.g. a broken pipe: the connection is gone, reconnect
            self._lose(exc)
        finally:
            self._in_burst = False
            try:
                self._send_writes()
            except Exception as exc:
                self._lose(exc)
            if bsock is not None:
                bsock.corked = False

    def _paho_burst(self) -> None:
        """paho reads: up to MAX_BURST packets while they keep delivering messages."""
        for _ in range(MAX_BURST):
            before = self.delivered
            if self.paho.loop_read() != mqtt.MQTT_ERR_SUCCESS or self.delivered == before:
                break  # the connection ended, would block, or a non-message packet

    def _framed_burst(self, bsock: BufferedSocket) -> None:
        """Up to MAX_BURST packets from what was left and what the socket has now."""
        buf, pos, handled = self._rest, 0, 0
        self._rest = b""
        paho, sink = self.paho, self.sink
        while True:
            try:
                frame = next_packet(buf, pos)
            except MalformedPacket as exc:
                self._end(bsock, OSError(str(exc)))
                return
            if frame is None:
                if handled >= MAX_BURST:
                    self._rest = buf[pos:]  # incomplete: the selector wakes when the rest arrives
                    return
                try:
                    data = bsock.sock.recv(READ_SIZE)
                except (BlockingIOError, InterruptedError):
                    self._rest = buf[pos:]
                    return
                except OSError as exc:
                    self._end(bsock, exc)
                    return
                if not data:
                    self._end(bsock, None)
                    return
                if pos == len(buf):
                    buf = data
                elif len(buf) - pos < READ_SIZE:
                    buf = bytes(buf[pos:]) + data
                else:  # a packet larger than a read: grown in place, not copied once per read
                    if pos or type(buf) is bytes:
                        buf = bytearray(buf[pos:])
                    buf += data
                pos = 0
                continue
            if handled >= MAX_BURST:
                self._rest = buf[pos:]
                self._again = self.loop.call_soon(self._readable)
                return
            handled += 1
            start, end = frame
            cmd = buf[pos]
            qos = cmd & 0x06
            if cmd & 0xF0 == PUBLISH and qos < 0x04 and end - start >= 2:
                topic_end = start + 2 + (buf[start] << 8 | buf[start + 1])
                body = topic_end + 2 if qos else topic_end
                if body <= end and (not qos or buf[topic_end] or buf[topic_end + 1]):
                    pos = end
                    try:
                        topic = buf[start + 2 : topic_end].decode()
                    except UnicodeDecodeError:
                        topic = "\ufffd"  # not a valid topic: counted as wrong_topic
                    payload = buf[body:end]
                    if type(payload) is not bytes:  # from a buffer that held a large packet
                        payload = bytes(payload)
                    self.delivered += 1
                    try:
                        sink.handle(topic, payload)
                        if sink.pending and self._flush is None:
                            self._flush = self.loop.call_later(self.flush_delay_s, self._do_flush)
                    except Exception as exc:  # storage failure, not bad input: ends the ingest task
                        if not self.failed.done():
                            self.failed.set_exception(exc)
                        return  # this message is not acknowledged
                    if qos:
                        bsock.send(PUBACK + buf[topic_end : topic_end + 2])
                    continue
            bsock.feed(buf[pos:end])  # anything else is paho's, whole
            pos = end
            if paho.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                return  # paho ended the connection (a protocol error, or our disconnect)
            if self._write_due:  # e.g. a PUBREC: on the wire in the order of the packets it answers
                self._write_due = False
                self._write(paho)

    def _end(self, bsock: BufferedSocket, error: OSError | None) -> None:
        """The stream ended (None) or failed: let paho read that, close and report the disconnect."""
        self._rest = b""
        bsock.fail(error)
        self.paho.loop_read()

    def _send_writes(self) -> None:
        """Hand paho's queued packets to the socket, and send what the wrapper collected."""
        if self._write_due:
            self._write_due = False
            self._write(self.paho)
        bsock = self.bsock
        if bsock is not None and bsock.unsent and not bsock.flush() and not self._unsent_writer:
            self._unsent_writer = True  # the socket is full: send the rest when it drains
            self.loop.add_writer(self._fd, self._send_unsent)

    def _send_unsent(self) -> None:
        try:
            if self.bsock is None or self.bsock.flush():
                self._unsent_writer = False
                self.loop.remove_writer(self._fd)
        except Exception as exc:
            self._lose(exc)

    def _lose(self, exc: Exception) -> None:
        if not self.lost.done():
            self.lost.set_exception(aiomqtt.MqttError(f"connection failed: {exc}"))

    def _register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._in_burst:
            self._write_due = True  # paho keeps its "registered" flag: no further calls this burst
            return
        self._write(client)

    def _write(self, client: mqtt.Client) -> None:
        self.paho.loop_write()
        sock = self.paho.socket()
        if (
            sock is not None
            and self.paho.want_write()
            and self._aiomqtt_register is not None
            and not self._writer
        ):
            self._writer = True
            self._aiomqtt_register(client, client.user_data_get(), sock)

    def _unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        """Only remove a writer that was added: saves a selector lookup per write."""
        if self._writer and self._aiomqtt_unregister is not None:
            self._writer = False
            self._aiomqtt_unregister(client, userdata, sock)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Messages paho decodes: all of them over TLS, QoS 2 ones otherwise."""
        self.delivered += 1
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "\ufffd"  # not a valid topic: counted as wrong_topic
        payload = message.payload  # bytes from paho's decoder; typed as possibly a bytearray
        try:
            self.sink.handle(topic, payload if isinstance(payload, bytes) else bytes(payload))
            if self.sink.pending and self._flush is None:
                self._flush = self.loop.call_later(self.flush_delay_s, self._do_flush)
        except Exception as exc:  # storage failure, not bad input: ends the ingest task
            if not self.failed.done():
                self.failed.set_exception(exc)

    def _do_flush(self) -> None:
        self._flush = None
        try:
            self.sink.flush()
        except Exception as exc:
            if not self.failed.done():
                self.failed.set_exception(exc)

    def close(self) -> None:
        """Cancel the flush timer and the next burst (the caller flushes on its own way out)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._again is not None:
            self._again.cancel()
            self._again = None
        if self._unsent_writer:
            self._unsent_writer = False
            self.loop.remove_writer(self._fd)
        if self.lost.done() and not self.lost.cancelled():
            self.lost.exception()  # retrieved: aiomqtt may have reported the same loss first
