"""The meter-node MQTT adapter: subscribe, hand each message to `IngestHandler`, reconnect with backoff.

`IngestHandler.handle` is synchronous and never raises on bad input: every message ends as an
acceptance or a counted rejection. aiomqtt owns the connection, through its public API only; each
message is handled as aiomqtt receives it (`Delivery`), so its PUBACK leaves only once it is
verified and queued for the next commit. Storage commits are batched and at most `FLUSH_DELAY_S`
late (a household's meter sends one reading every few seconds; a backlog after an outage drains
at a few thousand readings a second).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Protocol

import aiomqtt

from gateway.aio import raise_if_cancel_was_swallowed
from gateway.config import BrokerParams
from gateway.ingest.verifier import ControlVerifier, ReadingVerifier
from gateway.ops.logs import ErrorLatch, log_event
from gateway.ops.metrics import Counter, Gauge, Metrics
from gateway.storage import ReadingStore
from gridpact.core.statement import StatementLedger, StatementRejected, parse_message, recover_signer
from gridpact.core.wire import DEVICE_RE, Reading, Rejected

KINDS = ("reading", "status", "health", "statement")
REASONS = ("forged", "replayed", "duplicate", "unknown_device", "malformed")
CONTROL_REASONS = ("unsigned", "forged", "replayed", "unknown_device", "malformed")
COMMIT_EVERY = 1000
FLUSH_DELAY_S = 0.05
TOPIC_CACHE = 64


def topic_filters(prefix: str) -> list[str]:
    return [f"{prefix}/meter/+/{kind}" for kind in KINDS]


def classify(topic: str, prefix: str) -> tuple[str, str]:
    """(kind, device) for `<prefix>/meter/<dev>/<kind>`; Rejected("wrong_topic") otherwise."""
    head = prefix + "/meter/"
    rest = topic[len(head) :].split("/") if topic.startswith(head) else []
    if len(rest) != 2 or rest[1] not in KINDS or not DEVICE_RE.fullmatch(rest[0]):
        raise Rejected("wrong_topic", f"unexpected topic {topic[:80]!r}")
    return rest[1], rest[0]


def _health_metrics(metrics: Metrics) -> dict[str, Counter | Gauge]:
    """One metric per quantity of the node's health report, in base units (it once was one gauge
    `meter_health{field}` mixing seconds, bytes and counts)."""
    return {
        "boot": metrics.counter(
            "meter_node_boots_total", "boots of the meter node since it was flashed", ("dev",)
        ),
        "drop": metrics.counter(
            "meter_node_dropped_readings_total", "readings the node dropped from its full buffer", ("dev",)
        ),
        "err": metrics.counter("meter_node_errors_total", "errors the meter node counted", ("dev",)),
        "up_s": metrics.gauge("meter_node_uptime_seconds", "seconds since the meter node booted", ("dev",)),
        "buf": metrics.gauge(
            "meter_node_buffered_readings", "readings waiting in the node's buffer", ("dev",)
        ),
        "mem": metrics.gauge("meter_node_free_memory_bytes", "free heap on the meter node", ("dev",)),
    }


class IngestHandler:
    """Verification, storage and counting for every message from the meter broker."""

    def __init__(
        self,
        prefix: str,
        store: ReadingStore,
        verifier: ReadingVerifier,
        metrics: Metrics,
        now: Callable[[], float],
        statement_signers: dict[str, str] | None = None,
    ) -> None:
        self.prefix = prefix
        # the node's hourly signed statements: checked against the registered signer when the
        # installer configured one ([meter] statement_signer), else only for a valid signature
        self.statements = StatementLedger(statement_signers or {})
        self.statement_end = metrics.gauge(
            "meter_statement_window_end_timestamp_seconds",
            "end of the newest signed statement's hour",
            ("dev",),
        )
        self._signers_seen: dict[str, str] = {}
        self.store = store
        self.verifier = verifier
        self.controls = ControlVerifier(verifier, store.control_marks())
        self.now = now
        self.pending = 0
        self.newest: Reading | None = None
        self.accepted = metrics.counter("ingest_accepted_total", "MQTT messages accepted", ("kind",))
        self.rejected = metrics.counter("ingest_rejected_total", "MQTT messages rejected", ("kind", "reason"))
        self.online = metrics.gauge("meter_online", "1 if the meter node says it is online", ("dev",))
        self.last_ts = metrics.gauge(
            "meter_last_reading_timestamp_seconds", "ts of the newest reading", ("dev",)
        )
        self.last_seq = metrics.gauge("meter_last_seq", "last accepted sequence number", ("dev",))
        self.arrived: dict[str, float] = {}  # dev -> gateway time its newest reading was accepted
        self._health_sinks = _health_metrics(metrics)
        self.health_info = metrics.gauge(
            "meter_health_info", "reset cause and firmware", ("dev", "reset", "fw")
        )
        self._accepted_reading = self.accepted.labels(kind="reading")
        for reason in REASONS:
            self.rejected.labels(kind="reading", reason=reason)
        for kind in ("status", "health"):  # forged, replayed or unsigned control messages show as 0
            for reason in CONTROL_REASONS:
                self.rejected.labels(kind=kind, reason=reason)
        self._topics: dict[str, tuple[str, str]] = {}

    def _classify(self, topic: str) -> tuple[str, str]:
        known = self._topics.get(topic)
        if known is None:
            known = classify(topic, self.prefix)
            if len(self._topics) < TOPIC_CACHE:
                self._topics[topic] = known
        return known

    def handle(self, topic: str, payload: bytes) -> str:
        """'accepted' or the rejection reason; counted either way, never raising on bad input."""
        kind = "unknown"
        try:
            kind, dev = self._classify(topic)
            if kind == "reading":
                self._reading(dev, payload)
                self._accepted_reading.inc()
                return "accepted"
            if not self.verifier.knows(dev):
                raise Rejected("unknown_device", f"no meter {dev!r} configured")
            if kind == "status":
                self._status(dev, payload)
            elif kind == "statement":
                self._statement(dev, payload)
            else:
                self._health(dev, payload)
        except Rejected as exc:
            self.rejected.inc(kind=kind, reason=exc.reason)
            log_event(logging.DEBUG, "ingest.rejected", kind=kind, reason=exc.reason, detail=exc.detail[:120])
            return exc.reason
        self.accepted.inc(kind=kind)
        return "accepted"

    def _reading(self, dev: str, payload: bytes) -> None:
        reading = self.verifier.check(dev, payload)
        self.store.add(reading)
        self.verifier.accept(reading)
        self.newest = reading
        self.pending += 1
        if self.pending >= COMMIT_EVERY:
            self.flush()

    def _status(self, dev: str, payload: bytes) -> None:
        """A signed `online` opens a session, its signed last will `offline` ends it
        (docs/wire/control-v1.md); anything unsigned, forged or replayed changes nothing."""
        msg, marks = self.controls.check("status", dev, payload)
        self.store.set_control(dev, marks)
        self.controls.accept(dev, marks)
        status = str(msg.fields["st"])
        self.online.set(1 if status == "online" else 0, dev=dev)
        self.store.set_status(dev, status, self.now())
        log_event(logging.INFO, "meter.status", dev=dev, status=status, boot=msg.boot, n=msg.n)

    def _statement(self, dev: str, payload: bytes) -> None:
        now = int(self.now())
        try:
            if dev in self.statements.meters:
                st = self.statements.check(dev, payload, now)
                _, raw, sig = parse_message(payload)
                self.store.add_statement(dev, st.window_end, raw, sig)  # settlement's evidence
            else:
                st, raw, sig = parse_message(payload)
                signer = recover_signer(raw, sig)
                if st.dev != dev:
                    raise StatementRejected("device", f"statement of {st.dev!r} on {dev!r}'s topic")
                if self._signers_seen.get(dev) != signer:  # tell the installer what to register, once
                    self._signers_seen[dev] = signer
                    log_event(
                        logging.INFO, "meter.statement_signer", dev=dev, signer=signer, registered=False
                    )
        except StatementRejected as exc:
            reason = "forged" if exc.reason in ("signer", "signature") else f"statement_{exc.reason}"
            raise Rejected(reason, str(exc)) from None
        self.statement_end.set(st.window_end, dev=dev)

    def _health(self, dev: str, payload: bytes) -> None:
        msg, marks = self.controls.check("health", dev, payload)
        self.store.set_control(dev, marks)
        self.controls.accept(dev, marks)
        report = {**msg.fields, "boot": msg.boot}
        for name, family in self._health_sinks.items():
            value = float(report[name])
            if isinstance(family, Counter):
                family.mirror(max(value, 0.0), dev=dev)
            else:
                family.set(value, dev=dev)
        info = self.health_info.values
        for key in [k for k in info if k[0] == dev]:  # one series per device, whatever it sends
            del info[key]
        self.health_info.set(1, dev=dev, reset=str(report["reset"]), fw=str(report["fw"]))

    def flush(self) -> None:
        """Commit queued readings and publish the newest one's seq and ts as gauges."""
        if self.pending:
            self.store.commit_soon()  # written by the store's writer thread; reads wait for it
            self.pending = 0
        if self.newest is not None:
            self.arrived[self.newest.dev] = self.now()
            self.last_ts.set(self.newest.ts, dev=self.newest.dev)
            self.last_seq.set(self.newest.seq, dev=self.newest.dev)


def _backoff(attempt: int, rng: random.Random) -> float:
    """Exponential backoff capped at 60 s, with jitter so a neighbourhood does not reconnect in step."""
    return min(60.0, 0.5 * 2 ** min(attempt, 7)) * rng.uniform(0.5, 1.5)


class MessageSink(Protocol):
    """What ingest feeds: `IngestHandler` (handle, pending, flush)."""

    pending: int

    def handle(self, topic: str, payload: bytes) -> str: ...

    def flush(self) -> None: ...


class Delivery:
    """Hands each message to the sink as aiomqtt receives it, so its PUBACK follows the handling.

    aiomqtt puts every incoming message into its queue from paho's message callback, and paho
    acknowledges a QoS 1 message only once that callback has returned (its automatic
    acknowledgement), so a queue (aiomqtt's public `queue_type`) whose `put_nowait` handles the
    message acknowledges it only once it is verified (or counted as rejected) and queued for the
    next commit. A storage failure raises out of the callback: paho sends no PUBACK, aiomqtt
    reports the connection failed, and `failed` ends the ingest task. The queue stays empty.
    """

    def __init__(self, sink: MessageSink, flush_delay_s: float) -> None:
        self.sink = sink
        self.flush_delay_s = flush_delay_s
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush: asyncio.TimerHandle | None = None

    def queue_type(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        """The queue class for `aiomqtt.Client(queue_type=...)`, bound to this delivery."""
        deliver = self.deliver

        class HandlingQueue(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                deliver(item)

        return HandlingQueue

    def deliver(self, message: aiomqtt.Message) -> None:
        """Handle one message; raising (storage failure) keeps paho from acknowledging it."""
        if self.failed.done():
            raise StorageFailed("ingest is ending after a storage failure")  # acknowledge no more
        payload = message.payload
        try:
            self.sink.handle(message.topic.value, payload if isinstance(payload, bytes) else bytes(payload))
        except Exception as exc:  # not bad input (that is counted): storage, which ends ingest
            self._fail(exc)
            raise
        if self.sink.pending and self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self.flush_delay_s, self._do_flush)

    def _fail(self, exc: Exception) -> None:
        if not self.failed.done():
            self.failed.set_exception(exc)

    def _do_flush(self) -> None:
        self._flush = None
        try:
            self.sink.flush()
        except Exception as exc:
            self._fail(exc)

    def close(self) -> None:
        """Cancel the flush timer (the caller flushes on its own way out)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None


class StorageFailed(RuntimeError):
    """Raised to paho for messages that arrive after the store failed, so none is acknowledged."""


async def _until_disconnected(client: aiomqtt.Client, failed: asyncio.Future[None]) -> None:
    """Messages are handled as they arrive: wait for aiomqtt to report the end of the connection
    (its MqttError is raised) or for a storage failure (raised)."""
    end = asyncio.ensure_future(anext(aiter(client.messages)))
    try:
        await asyncio.wait([end, failed], return_when=asyncio.FIRST_COMPLETED)
    finally:
        end.cancel()
    if failed.done():
        failed.result()
    end.result()  # raises the MqttError that ended the session
    raise aiomqtt.MqttError("a message bypassed the handling queue")


async def run_ingest(
    params: BrokerParams,
    handler: IngestHandler,
    metrics: Metrics,
    latch: ErrorLatch,
    rng: random.Random | None = None,
) -> None:
    """Subscribe to the meter topics forever, reconnecting after any broker failure; a storage
    failure ends it (raised)."""
    rng = rng or random.Random()
    connected = metrics.gauge("meter_broker_connected", "1 while connected to the meter broker")
    reconnects = metrics.counter("meter_broker_reconnects_total", "connection attempts that failed or ended")
    tls = aiomqtt.TLSParameters(ca_certs=params.ca_file) if params.tls else None
    delivery = Delivery(handler, FLUSH_DELAY_S)
    attempt = 0
    try:
        while True:
            try:
                client = aiomqtt.Client(
                    params.host,
                    params.port,
                    username=params.username,
                    password=params.password,
                    identifier=params.identifier,
                    clean_session=params.identifier is None,
                    tls_params=tls,
                    keepalive=params.keepalive_s,
                    timeout=10,
                    queue_type=delivery.queue_type(),
                )
                async with client:
                    raise_if_cancel_was_swallowed()
                    await client.subscribe([(f, 1) for f in topic_filters(handler.prefix)])
                    raise_if_cancel_was_swallowed()
                    connected.set(1)
                    attempt = 0
                    latch.recover("meter_broker.unreachable", host=params.host, port=params.port)
                    log_event(logging.INFO, "meter_broker.connected", host=params.host, port=params.port)
                    await _until_disconnected(client, delivery.failed)
            except aiomqtt.MqttError as exc:
                if delivery.failed.done():
                    delivery.failed.result()  # the storage error, not the disconnect it caused
                delivery.close()
                handler.flush()
                connected.set(0)
                reconnects.inc()
                latch.fail(
                    "meter_broker.unreachable", host=params.host, port=params.port, error=str(exc)[:200]
                )
                await asyncio.sleep(_backoff(attempt, rng))
                attempt += 1
    finally:
        delivery.close()
        connected.set(0)
        if not delivery.failed.done():
            handler.flush()
        elif not delivery.failed.cancelled():
            delivery.failed.exception()  # retrieved: raised above or superseded by a cancellation
