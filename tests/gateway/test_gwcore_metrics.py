"""Prometheus registry and its HTTP endpoint, structured logs and the error latch."""

from __future__ import annotations

import asyncio
import logging
import subprocess

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
    # the same figures read in process, by label values, without parsing the text
    assert m.sample_values("ingest_rejected_total") == {("forged",): 3.0, ('we"ird',): 1.0}
    assert m.sample_values("gridpact_meter_online") == {(): 1.0} == m.sample_values("meter_online")
    assert m.sample_values("no_such_metric") == {}


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


def test_help_is_escaped_by_the_help_rules_and_promtool_accepts_it() -> None:
    m = Metrics()
    m.gauge("quoted_bytes", 'a "quoted" help\\ with\nnewline', ("dev",)).set(1, dev='a"b\\c\nd')
    text = m.render()
    assert '# HELP gridpact_quoted_bytes a "quoted" help\\\\ with\\nnewline\n' in text
    assert 'gridpact_quoted_bytes{dev="a\\"b\\\\c\\nd"} 1' in text
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), check.stdout + check.stderr


def test_promtool_fails_on_a_bad_scrape() -> None:
    """The check can fail: a gauge named like a counter is a complaint."""
    m = Metrics()
    m.gauge("wrong_total", "a gauge that claims to be a counter").set(1)
    check = subprocess.run(["promtool", "check", "metrics"], input=m.render().encode(), capture_output=True)
    assert check.returncode != 0 and b"_total" in check.stdout + check.stderr


def test_no_value_is_absence_and_read_gauges_are_computed_on_scrape() -> None:
    m = Metrics()
    g = m.gauge("next_watts", "forecast", absent=True)
    assert (
        "gridpact_next_watts" not in parse_samples(m.render()) and "# TYPE gridpact_next_watts" in m.render()
    )
    g.set(0)
    assert parse_samples(m.render())["gridpact_next_watts"] == 0
    g.remove()
    assert "gridpact_next_watts" not in parse_samples(m.render())
    box: list[float | None] = [None]
    m.read_gauge("stale", "computed when read", lambda: box[0])
    assert "gridpact_stale" not in parse_samples(m.render())
    box[0] = 1
    assert "gridpact_stale 1\n" in m.render()
    c = m.counter("boots_total", "node boots", ("dev",))
    c.mirror(5, dev="n")
    c.mirror(1, dev="n")  # the node restarted its count: Prometheus sees a reset
    assert 'gridpact_boots_total{dev="n"} 1' in m.render()
    with pytest.raises(ValueError):
        c.mirror(-1, dev="n")


def test_http_serves_query_strings_and_head() -> None:
    async def scenario() -> list[bytes]:
        m = Metrics()
        m.counter("hits_total", "hits").inc(7)
        server = await start_metrics_server(m, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        out = []
        for request in (
            b"GET /metrics?x=1 HTTP/1.1\r\n\r\n",
            b"HEAD /metrics HTTP/1.1\r\n\r\n",
            b"POST /metrics HTTP/1.1\r\n\r\n",
            b"GET /metricsx HTTP/1.1\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            out.append(await reader.read())
            writer.close()
        server.close()
        await server.wait_closed()
        return out

    query, head, post, other = asyncio.run(scenario())
    assert query.startswith(b"HTTP/1.0 200") and b"gridpact_hits_total 7" in query
    head_fields, body = head.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200") and body == b"" and b"Content-Length: " in head_fields
    assert int(head_fields.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(
        query.split(b"\r\n\r\n", 1)[1]
    )
    assert post.startswith(b"HTTP/1.0 405") and b"Allow: GET, HEAD" in post
    assert other.startswith(b"HTTP/1.0 404")


def test_meter_is_stale_golden() -> None:
    from gateway.service import meter_is_stale

    assert meter_is_stale(now=200.0, started=0.0, arrived=None, max_gap_s=120)
    assert not meter_is_stale(now=100.0, started=0.0, arrived=None, max_gap_s=120)
    assert not meter_is_stale(now=200.0, started=0.0, arrived=150.0, max_gap_s=120)
    assert meter_is_stale(now=300.0, started=0.0, arrived=150.0, max_gap_s=120)
