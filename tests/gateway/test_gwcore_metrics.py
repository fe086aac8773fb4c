"""Prometheus registry and its HTTP endpoint, structured logs and the error latch."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.ops.logs import ErrorLatch, logfmt
from gateway.ops.metrics import Metrics, start_metrics_server
from gateway.ops.status import parse_samples


def test_render_counters_and_gauges() -> None:
    m = Metrics()
    c = m.counter("ingest_rejected_total", "rejections", ("reason",))
    c.inc(reason="forged")
    c.inc(2, reason="forged")
    c.inc(reason='we"ird')
    g = m.gauge("meter_online", "online")
    g.set(1)
    text = m.render()
    assert "# TYPE gridpact_ingest_rejected_total counter" in text
    assert 'gridpact_ingest_rejected_total{reason="forged"} 3' in text
    assert 'gridpact_ingest_rejected_total{reason="we\\"ird"} 1' in text
    assert "gridpact_meter_online 1\n" in text
    assert m.counter("ingest_rejected_total", "again", ("reason",)) is c


def test_registry_refuses_misuse() -> None:
    m = Metrics()
    c = m.counter("x_total", "x", ("a",))
    with pytest.raises(ValueError):
        c.inc(-1, a="1")
    with pytest.raises(ValueError):
        c.inc(b="1")
    with pytest.raises(ValueError):
        m.gauge("x_total", "x", ("a",))
    with pytest.raises(ValueError):
        m.counter("bad name", "x")


def test_http_endpoint_serves_text_format() -> None:
    async def scenario() -> tuple[bytes, bytes, bytes]:
        m = Metrics()
        m.counter("hits_total", "hits").inc(7)
        server = await start_metrics_server(m, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def get(request: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            data = await reader.read()
            writer.close()
            return data

        ok = await get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        missing = await get(b"GET /nope HTTP/1.0\r\n\r\n")
        junk = await get(b"\xff" * 20000 + b"\r\n\r\n")
        server.close()
        await server.wait_closed()
        return ok, missing, junk

    ok, missing, junk = asyncio.run(scenario())
    assert ok.startswith(b"HTTP/1.0 200 OK") and b"gridpact_hits_total 7" in ok
    assert parse_samples(ok.split(b"\r\n\r\n", 1)[1].decode()) == {"gridpact_hits_total": 7.0}
    assert missing.startswith(b"HTTP/1.0 404")
    assert not junk.startswith(b"HTTP/1.0 200")


def test_logfmt_quotes_values() -> None:
    assert logfmt("a.b", x=1, y="two words", z='q"') == 'event=a.b x=1 y="two words" z="q\\""'


def test_error_latch_logs_once_until_recovery(caplog: pytest.LogCaptureFixture) -> None:
    latch = ErrorLatch()
    with caplog.at_level(logging.INFO, logger="gridpact.gateway"):
        for _ in range(50):
            latch.fail("meter_broker.unreachable", host="h")
        latch.recover("meter_broker.unreachable")
        latch.recover("meter_broker.unreachable")
        latch.fail("meter_broker.unreachable", host="h")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "event=meter_broker.unreachable host=h",
        "event=meter_broker.unreachable.recovered",
        "event=meter_broker.unreachable host=h",
    ]
