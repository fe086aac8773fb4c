"""A small Prometheus registry and its text exposition, served over HTTP by the service.

Written here rather than taken from prometheus_client to keep the Pi's footprint and the pins
small: counters and gauges with labels are all the gateway needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help_: str, labelnames: tuple[str, ...]) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"bad metric name {name!r}")
        self.name = name
        self.help = help_
        self.labelnames = labelnames
        self.values: dict[tuple[str, ...], float] = {}
        if not labelnames:
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

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {_escape(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for key, value in sorted(self.values.items()):
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


class Gauge(_Family):
    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        self.values[self._key(labels)] = float(value)

    def inc(self, n: float = 1, **labels: object) -> None:
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + n


class Metrics:
    """The registry shared by every part of the gateway (seam with gateway-trade)."""

    def __init__(self, prefix: str = "gridpact_") -> None:
        self.prefix = prefix
        self._families: dict[str, _Family] = {}

    def _get(self, cls: type[_Family], name: str, help_: str, labelnames: tuple[str, ...]) -> _Family:
        full = name if name.startswith(self.prefix) else self.prefix + name
        existing = self._families.get(full)
        if existing is not None:
            if type(existing) is not cls or existing.labelnames != tuple(labelnames):
                raise ValueError(f"metric {full} already registered differently")
            return existing
        family = cls(full, help_, tuple(labelnames))
        self._families[full] = family
        return family

    def counter(self, name: str, help_: str, labelnames: tuple[str, ...] | list[str] = ()) -> Counter:
        family = self._get(Counter, name, help_, tuple(labelnames))
        assert isinstance(family, Counter)
        return family

    def gauge(self, name: str, help_: str, labelnames: tuple[str, ...] | list[str] = ()) -> Gauge:
        family = self._get(Gauge, name, help_, tuple(labelnames))
        assert isinstance(family, Gauge)
        return family

    def render(self) -> str:
        lines: list[str] = []
        for family in self._families.values():
            lines += family.render()
        return "\n".join(lines) + "\n"


async def _handle(metrics: Metrics, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await asyncio.wait_for(reader.readline(), 5)
        while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
            pass
        parts = request.split()
        if len(parts) >= 2 and parts[0] == b"GET" and parts[1] in (b"/metrics", b"/"):
            body, status = metrics.render().encode(), "200 OK"
        else:
            body, status = b"not found\n", "404 Not Found"
        head = (
            f"HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
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
