"""`gridpact gateway status`: what the store says and what the running service's metrics say."""

from __future__ import annotations

import http.client
import time

from gateway.config import GatewayConfig
from gateway.storage import ReadingStore

WATCHED = (
    "gridpact_ingest_accepted_total",
    "gridpact_ingest_rejected_total",
    "gridpact_meter_online",
    "gridpact_meter_stale",
    "gridpact_meter_broker_connected",
    "gridpact_forecast_next_step_watts",
)


def fetch_metrics(host: str, port: int, timeout: float = 3.0) -> str:
    """The service's /metrics text; OSError if it does not answer."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        if response.status != 200:
            raise OSError(f"metrics endpoint answered {response.status}")
        return response.read().decode()
    finally:
        conn.close()


def parse_samples(text: str) -> dict[str, float]:
    """Prometheus text to {'name{labels}': value}, skipping comments and unparsable lines."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def scrape(host: str, port: int, timeout: float = 2.0) -> dict[str, float]:
    """The running service's samples, or {} while it does not answer (benches and tests poll this)."""
    try:
        return parse_samples(fetch_metrics(host, port, timeout))
    except OSError:
        return {}


def status_lines(cfg: GatewayConfig, now: float | None = None) -> tuple[list[str], bool]:
    """Lines of key=value and whether the service is up and its meter fresh."""
    now = time.time() if now is None else now
    lines = [f"gateway={cfg.gateway.id}", f"state_db={cfg.storage.path}"]
    healthy = True
    if cfg.storage.path.exists():
        store = ReadingStore(cfg.storage.path, cfg.meter.device_id, readonly=True)
        try:
            summary = store.summary()
        finally:
            store.close()
        lines += [f"{k}={v}" for k, v in summary.items()]
        last = summary.get("last_ts")
        if isinstance(last, int):
            lines.append(f"last_reading_age_s={int(now - last)}")
    else:
        lines.append("readings=0 (no state database yet)")
        healthy = False
    if not cfg.metrics.enabled:
        lines.append("service=unknown (metrics disabled)")
        return lines, healthy
    try:
        samples = parse_samples(fetch_metrics(cfg.metrics.host, cfg.metrics.port))
    except OSError as exc:
        lines.append(f"service=unreachable ({cfg.metrics.host}:{cfg.metrics.port}: {exc})")
        return lines, False
    lines.append("service=running")
    for name, value in sorted(samples.items()):
        if name.split("{")[0] in WATCHED:
            lines.append(f"{name}={value:g}")
    if samples.get("gridpact_meter_stale", 0) > 0:
        healthy = False
    return lines, healthy
