"""The ingest hot path: paho's own callbacks inside aiomqtt's connection, no per-message objects.

aiomqtt keeps the connection lifecycle (connect, subscribe, keepalive, disconnect, errors), but
for each message it builds an `aiomqtt.Message` with a validated `Topic` and reads one packet per
event-loop wake-up. Profiling the bench showed those two costs, not verification or SQLite, made
the gateway run at ~40 % of a bare paho subscriber. So, per connection:

- paho's `on_message` calls `IngestHandler.handle` directly with the topic and payload;
- the socket's reader drains up to `MAX_BURST` packets per wake-up (public `loop_read`, repeated
  while it still delivers messages), so the event loop is entered once per burst, not per packet;
- PUBACKs are written inline (`loop_write`) rather than through a writer callback in the next loop
  turn; a writer is registered only if the socket would block.

What is acknowledged when is unchanged: paho sends a message's PUBACK once `handle` has returned,
i.e. once the reading was verified (or counted as rejected) and queued for the next commit, which
starts at most `FLUSH_DELAY_S` or `COMMIT_EVERY` readings later in the store's writer thread.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import aiomqtt
import paho.mqtt.client as mqtt

MAX_BURST = 64  # packets per reader wake-up: bounded so timers (flush, watchdog) still run


class MessageSink(Protocol):
    """What the hot path feeds: `IngestHandler` (handle, pending, flush)."""

    pending: int

    def handle(self, topic: str, payload: bytes) -> str: ...

    def flush(self) -> None: ...


class FastPath:
    """Per-connection hot path; `failed` ends ingest (storage error), `lost` reconnects."""

    def __init__(
        self, client: aiomqtt.Client, sink: MessageSink, failed: asyncio.Future[None], flush_delay_s: float
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
        self.delivered = 0
        self._flush: asyncio.TimerHandle | None = None
        self._aiomqtt_register = paho.on_socket_register_write
        self._aiomqtt_unregister = paho.on_socket_unregister_write
        self._writer = False  # whether aiomqtt's writer callback is registered with the loop
        paho.on_message = self._on_message  # replaces aiomqtt's Message conversion and queue
        paho.on_socket_register_write = self._register_write
        paho.on_socket_unregister_write = self._unregister_write

    def take_over_reads(self) -> None:
        """Swap aiomqtt's one-packet reader for the draining one (call once connected)."""
        sock = self.paho.socket()
        if sock is not None:
            self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            for _ in range(MAX_BURST):
                before = self.delivered
                if self.paho.loop_read() != mqtt.MQTT_ERR_SUCCESS or self.delivered == before:
                    break  # would block, a non-message packet, or the connection ended
        except Exception as exc:  # e.g. a broken pipe: the connection is gone, reconnect
            if not self.lost.done():
                self.lost.set_exception(aiomqtt.MqttError(f"read failed: {exc}"))

    def _register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.paho.loop_write()
        if self.paho.want_write() and self._aiomqtt_register is not None and not self._writer:
            self._writer = True
            self._aiomqtt_register(client, userdata, sock)

    def _unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        """Only remove a writer that was added: saves a selector lookup per PUBACK."""
        if self._writer and self._aiomqtt_unregister is not None:
            self._writer = False
            self._aiomqtt_unregister(client, userdata, sock)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
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
        """Cancel the pending flush timer (the caller flushes on its own way out)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self.lost.done() and not self.lost.cancelled():
            self.lost.exception()  # retrieved: aiomqtt may have reported the same loss first
