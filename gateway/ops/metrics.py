"""A small Prometheus registry and its text exposition, served over HTTP by the service.

Written here rather than taken from prometheus_client to keep the Pi's footprint and the pins
small: counters and gauges with labels are all the gateway needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Callable

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _escape(value: str) -> str:
    """A label value: backslash, double quote and newline are escaped (text format 0.0.4)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    """HELP text: only backslash and newline are escaped; a quote stays as it is."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help_: str, labelnames: tuple[str, ...], absent: bool = False) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"bad metric name {name!r}")
        self.name = name
        self.help = help_
        self.labelnames = labelnames
        self.values: dict[tuple[str, ...], float] = {}
        if not labelnames and not absent:
            self.values[()] = 0.0

    def _key(self, labels: dict[str, object]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def labels(self, **labels: object) -> _Child:
        """A handle bound to one label set, for hot paths (no label checks per call)."""
        key = self._key(labels)
        self.values.setdefault(key, 0.0)
        return _Child(self, key)

    def get(self, **labels: object) -> float:
        return self.values.get(self._key(labels), 0.0)

    def remove(self, **labels: object) -> None:
        """Drop a series: "no value" is an absent sample, never a 0 that reads like a measurement."""
        self.values.pop(self._key(labels), None)

    def samples(self) -> dict[tuple[str, ...], float]:
        return self.values

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for key, value in sorted(self.samples().items()):
            label = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(self.labelnames, key, strict=True))
            lines.append(f"{self.name}{{{label}}} {_fmt(value)}" if label else f"{self.name} {_fmt(value)}")
        return lines


class _Child:
    """One time series of a family."""

    __slots__ = ("_family", "_key")

    def __init__(self, family: _Family, key: tuple[str, ...]) -> None:
        self._family = family
        self._key = key

    def inc(self, n: float = 1) -> None:
        if n < 0 and isinstance(self._family, Counter):
            raise ValueError("a counter only goes up")
        values = self._family.values
        values[self._key] = values[self._key] + n

    def set(self, value: float) -> None:
        if isinstance(self._family, Counter):
            raise ValueError("a counter cannot be set")
        self._family.values[self._key] = float(value)

    def get(self) -> float:
        return self._family.values[self._key]


class Counter(_Family):
    kind = "counter"

    def inc(self, n: float = 1, **labels: object) -> None:
        if n < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + n

    def mirror(self, value: float, **labels: object) -> None:
        """Copy a count kept by another process (the meter node's own counters): it drops back
        when that process restarts, which Prometheus reads as a counter reset."""
        if value < 0 or value != value:
            raise ValueError("a counter is never negative")
        self.values[self._key(labels)] = float(value)


class Gauge(_Family):
    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        self.values[self._key(labels)] = float(value)

    def inc(self, n: float = 1, **labels: object) -> None:
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + n


class ReadGauge(_Family):
    """A label-less gauge computed when scraped, so it never lags what it describes;
    `read` returns None for "no value", which leaves the sample out."""

    kind = "gauge"

    def __init__(self, name: str, help_: str, read: Callable[[], float | None]) -> None:
        super().__init__(name, help_, (), absent=True)
        self.read = read

    def samples(self) -> dict[tuple[str, ...], float]:
        value = self.read()
        return {} if value is None else {(): float(value)}


class Metrics:
    """The registry shared by every part of the gateway (seam with gateway-trade)."""

    def __init__(self, prefix: str = "gridpact_") -> None:
        self.prefix = prefix
        self._families: dict[str, _Family] = {}

    def _full(self, name: str) -> str:
        return name if name.startswith(self.prefix) else self.prefix + name

    def _get(
        self, cls: type[_Family], name: str, help_: str, labelnames: tuple[str, ...], absent: bool = False
    ) -> _Family:
        full = self._full(name)
        existing = self._families.get(full)
        if existing is not None:
            if type(existing) is not cls or existing.labelnames != tuple(labelnames):
                raise ValueError(f"metric {full} already registered differently")
            return existing
        family = cls(full, help_, tuple(labelnames), absent)
        self._families[full] = family
        return family

    def counter(self, name: str, help_: str, labelnames: tuple[str, ...] | list[str] = ()) -> Counter:
        family = self._get(Counter, name, help_, tuple(labelnames))
        assert isinstance(family, Counter)
        return family

    def gauge(
        self, name: str, help_: str, labelnames: tuple[str, ...] | list[str] = (), *, absent: bool = False
    ) -> Gauge:
        """absent=True: a label-less gauge shows no sample until first set (no value is not 0)."""
        family = self._get(Gauge, name, help_, tuple(labelnames), absent)
        assert isinstance(family, Gauge)
        return family

    def read_gauge(self, name: str, help_: str, read: Callable[[], float | None]) -> ReadGauge:
        """A gauge computed on every scrape (replaces an earlier `read` under the same name)."""
        full = self._full(name)
        existing = self._families.get(full)
        if existing is not None and not isinstance(existing, ReadGauge):
            raise ValueError(f"metric {full} already registered differently")
        family = ReadGauge(full, help_, read)
        self._families[full] = family
        return family

    def sample_values(self, name: str) -> dict[tuple[str, ...], float]:
        """One family's samples by label values (empty when not registered), for a reader in the same
        process (the simulator's checks) that would otherwise parse `render()`'s text."""
        family = self._families.get(self._full(name))
        return dict(family.samples()) if family is not None else {}

    def render(self) -> str:
        lines: list[str] = []
        for family in self._families.values():
            lines += family.render()
        return "\n".join(lines) + "\n"


def _request_target(line: bytes) -> tuple[bytes, bytes]:
    """Method and path of a request line; the query string (`?x=1`) names nothing here."""
    parts = line.split()
    if len(parts) < 2:
        return b"", b""
    return parts[0], parts[1].split(b"?", 1)[0].split(b"#", 1)[0]


async def _handle(metrics: Metrics, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await asyncio.wait_for(reader.readline(), 5)
        while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
            pass
        method, path = _request_target(request)
        extra = ""
        if path not in (b"/metrics", b"/"):
            body, status = b"not found\n", "404 Not Found"
        elif method not in (b"GET", b"HEAD"):
            body, status, extra = b"method not allowed\n", "405 Method Not Allowed", "Allow: GET, HEAD\r\n"
        else:
            body, status = metrics.render().encode(), "200 OK"
        head = (
            f"HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + (b"" if method == b"HEAD" else body))
        await writer.drain()
    except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def start_metrics_server(metrics: Metrics, host: str, port: int) -> asyncio.Server:
    """Serve `GET /metrics` in the Prometheus text format on host:port."""
    return await asyncio.start_server(lambda r, w: _handle(metrics, r, w), host, port, limit=8192)
