"""The meter-node MQTT adapter: subscribe, hand each message to `IngestHandler`, reconnect with backoff.

`IngestHandler.handle` is synchronous and never raises on bad input: every message ends as an
acceptance or a counted rejection. aiomqtt owns the connection; messages reach the handler
straight from paho's callbacks (`gateway.ingest.fastpath`), not through aiomqtt's queue or async
iterator, which cost a task or an object per message: on a Pi the difference is whether ingest
keeps up with the broker. Storage commits are batched and at most `FLUSH_DELAY_S` late.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable

import aiomqtt

from gateway.config import BrokerParams
from gateway.ingest.fastpath import FastPath
from gateway.ingest.verifier import ReadingVerifier
from gateway.ops.aio import raise_if_cancel_was_swallowed
from gateway.ops.logs import ErrorLatch, log_event
from gateway.ops.metrics import Counter, Gauge, Metrics
from gateway.storage import ReadingStore
from gridpact.core.statement import StatementLedger, StatementRejected, parse_message, recover_signer
from gridpact.core.wire import DEVICE_RE, Reading, Rejected

HEALTH_NUMBERS = ("boot", "up_s", "buf", "drop", "err", "mem")
HEALTH_TEXTS = ("reset", "fw")  # reset cause and firmware version
KINDS = ("reading", "status", "health", "statement")
REASONS = ("forged", "replayed", "duplicate", "unknown_device", "malformed")
MAX_STATUS = 64
MAX_HEALTH = 2048
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
            if not self.verifier.knows(dev):  # unsigned topics: only for our own meter node
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
        if len(payload) > MAX_STATUS or payload not in (b"online", b"offline"):
            raise Rejected("malformed", "status must be 'online' or 'offline'")
        status = payload.decode()
        self.online.set(1 if status == "online" else 0, dev=dev)
        self.store.set_status(dev, status, self.now())
        log_event(logging.INFO, "meter.status", dev=dev, status=status)

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
        if len(payload) > MAX_HEALTH:
            raise Rejected("malformed", "health report too large")
        try:
            report = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise Rejected("malformed", "health is not JSON") from None
        if not isinstance(report, dict):
            raise Rejected("malformed", "health must be an object")
        for name in HEALTH_NUMBERS:
            value = report.get(name)
            if value is not None and (type(value) not in (int, float) or value != value):
                raise Rejected("malformed", f"health field {name!r} must be a number")
        for name in HEALTH_TEXTS:
            value = report.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > 64):
                raise Rejected("malformed", f"health field {name!r} must be a short string")
        for name in HEALTH_NUMBERS:
            if name in report:
                family = self._health_sinks[name]
                if isinstance(family, Counter):
                    family.mirror(max(float(report[name]), 0.0), dev=dev)
                else:
                    family.set(float(report[name]), dev=dev)
        info = self.health_info.values
        for key in [k for k in info if k[0] == dev]:  # one series per device, whatever it sends
            del info[key]
        self.health_info.set(1, dev=dev, reset=report.get("reset", ""), fw=report.get("fw", ""))

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


async def _until_disconnected(client: aiomqtt.Client) -> None:
    """Messages bypass aiomqtt's queue, so this only waits for aiomqtt to report the end of the connection."""
    async for _ in client.messages:
        pass


async def run_ingest(
    params: BrokerParams,
    handler: IngestHandler,
    metrics: Metrics,
    latch: ErrorLatch,
    rng: random.Random | None = None,
) -> None:
    """Subscribe to the meter topics forever, reconnecting after any broker failure."""
    rng = rng or random.Random()
    connected = metrics.gauge("meter_broker_connected", "1 while connected to the meter broker")
    reconnects = metrics.counter("meter_broker_reconnects_total", "connection attempts that failed or ended")
    tls = aiomqtt.TLSParameters(ca_certs=params.ca_file) if params.tls else None
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    attempt = 0
    while True:
        fast: FastPath | None = None
        try:
            client = aiomqtt.Client(
                params.host,
                params.port,
                username=params.username,
                password=params.password,
                identifier=params.identifier,
                clean_session=params.identifier is None,
                tls_params=tls,
                keepalive=30,
                timeout=10,
            )
            fast = FastPath(client, handler, failed, FLUSH_DELAY_S)
            async with client:
                raise_if_cancel_was_swallowed()
                fast.take_over_reads()
                await client.subscribe([(f, 1) for f in topic_filters(handler.prefix)])
                raise_if_cancel_was_swallowed()
                connected.set(1)
                attempt = 0
                latch.recover("meter_broker.unreachable", host=params.host, port=params.port)
                log_event(logging.INFO, "meter_broker.connected", host=params.host, port=params.port)
                watch = asyncio.create_task(_until_disconnected(client))
                try:
                    await asyncio.wait([failed, fast.lost, watch], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    watch.cancel()
                if failed.done():
                    failed.result()
                if fast.lost.done():
                    fast.lost.result()  # raises the MqttError that ended the session
                await watch  # raises the MqttError that ended the session
                raise aiomqtt.MqttError("disconnected")
        except aiomqtt.MqttError as exc:
            handler.flush()
            connected.set(0)
            reconnects.inc()
            latch.fail("meter_broker.unreachable", host=params.host, port=params.port, error=str(exc)[:200])
            await asyncio.sleep(_backoff(attempt, rng))
            attempt += 1
        finally:
            if fast is not None:
                fast.close()
            handler.flush()
            connected.set(0)
