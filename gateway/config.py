"""The gateway's one TOML config file, validated at start into frozen dataclasses.

Every error names the dotted key. Secrets are never values in this file, only paths to files or
systemd credential names (`LoadCredential=`), read when needed by `read_secret`, so a config
object can be printed or logged safely (reads and errors: gridpact.core.config, one style for every
part). `[community]`, `[agent]` and `[chain]` are handed to `gateway.trading.config.parse_trading_config`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.trading.config import TradingConfig, parse_trading_config
from gridpact.core.config import ConfigError, SecretRef, load_toml, read_secret
from gridpact.core.config import Table as _Table

DEVICE_RE = re.compile(r"[a-z0-9-]{1,32}")
ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
TOPIC_PREFIX_RE = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")
TRADING_TABLES = ("community", "agent", "chain", "loans", "keeper", "demand_response", "battery", "store")
CURRENCY_RE = re.compile(r"[A-Za-z0-9_]{1,16}")
LOG_LEVELS = ("debug", "info", "warning", "error")
ACCOUNT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")  # a dashboard account's name
OIDC_CALLBACK = "/oidc/callback"  # where the identity provider sends the browser back


@dataclass(frozen=True)
class GatewaySection:
    id: str
    state_dir: Path
    log_level: str = "info"


@dataclass(frozen=True)
class MeterSection:
    device_id: str
    model: str
    topic_prefix: str
    hmac_key: SecretRef
    counter_rollover_kwh: float = 100_000.0
    statement_signer: str | None = None  # the node's device-key address, as the installer registered it


@dataclass(frozen=True)
class BrokerSection:
    host: str
    port: int
    username: str | None
    password: SecretRef | None
    tls: bool
    ca_file: Path | None
    keepalive_s: int = 30  # MQTT keepalive; 0 sends no pings (the simulator's choice, docs/simulate.md)


@dataclass(frozen=True)
class StorageSection:
    path: Path
    retention_days: int
    max_gap_s: int


@dataclass(frozen=True)
class ForecastSection:
    step_s: int
    horizon_steps: int
    history_days: int
    alpha: float
    damping: float


@dataclass(frozen=True)
class MetricsSection:
    enabled: bool
    host: str
    port: int


@dataclass(frozen=True)
class HassSection:
    """Home Assistant discovery of the household's trading (gateway/ops/hass.py); off by default."""

    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    currency: str = "tokens"  # the community's currency name, the unit of the monetary entities
    token_decimals: int = 18
    interval_s: float = 10.0


@dataclass(frozen=True)
class OidcSection:
    """`[dashboard.oidc]`: sign-in against the community's OpenID Provider (optional).

    `accounts` maps the value of the ID token's `claim` (its subject, or a verified e-mail) to a local
    dashboard account, whose role and household decide what it sees; an identity not listed is
    refused. The client secret is a reference (file or systemd credential), never the secret.
    """

    issuer: str
    client_id: str
    client_secret: SecretRef
    redirect_uri: str
    accounts: dict[str, str] = field(default_factory=dict)
    claim: str = "sub"
    scope: str = "openid"
    name: str = "the community's identity provider"
    ca_file: Path | None = None  # a private CA for the provider's TLS certificate; None: the system's


@dataclass(frozen=True)
class DashboardSection:
    """The household dashboard (off unless enabled); binds loopback or a private LAN address only."""

    enabled: bool
    host: str
    port: int
    accounts_path: Path
    secure_cookies: bool
    max_viewers: int
    oidc: OidcSection | None = None


@dataclass(frozen=True)
class GatewayConfig:
    gateway: GatewaySection
    meter: MeterSection
    meter_broker: BrokerSection
    storage: StorageSection
    forecast: ForecastSection
    metrics: MetricsSection
    trading: TradingConfig | None = None  # None for an ingest-only gateway
    path: Path | None = None
    homeassistant: HassSection = HassSection()
    dashboard: DashboardSection | None = None


def _secret(table: _Table, stem: str, base: Path, required: bool) -> SecretRef | None:
    file = table.get_str(f"{stem}_file")
    credential = table.get_str(f"{stem}_credential")
    key = f"{table.name}.{stem}_file"
    if file and credential:
        raise ConfigError(key, f"give {stem}_file or {stem}_credential, not both")
    if not file and not credential:
        if required:
            raise ConfigError(key, f"is required (or {stem}_credential, a systemd LoadCredential name)")
        return None
    if credential is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", credential):
        raise ConfigError(f"{table.name}.{stem}_credential", "is not a valid credential name")
    return SecretRef(key, (base / file) if file else None, credential)


def read_hmac_key(ref: SecretRef, env: dict[str, str] | None = None) -> bytes:
    """The meter's HMAC key: a file holding 32..128 hex digits."""
    text = read_secret(ref, env).strip()
    if not re.fullmatch(rb"([0-9a-fA-F]{2}){16,64}", text):
        raise ConfigError(ref.key, "the key file must hold 32 to 128 hex digits (16 to 64 bytes)")
    return bytes.fromhex(text.decode())


def _host(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(re.fullmatch(r"[A-Za-z0-9.-]{1,253}", value))


def _parse_core(doc: dict[str, Any], base: Path, env: dict[str, str]) -> dict[str, Any]:
    g = _Table("gateway", doc.get("gateway", {}))
    gid = g.check("id", DEVICE_RE.fullmatch, "must match [a-z0-9-]{1,32}", g.get_str("id", required=True))
    state = Path(
        g.get_str("state_dir", env.get("STATE_DIRECTORY", "/var/lib/gridpact-gateway").split(":")[0])
    )
    level = g.check(
        "log_level", LOG_LEVELS.__contains__, f"must be one of {LOG_LEVELS}", g.get_str("log_level", "info")
    )
    g.done()
    state = state if state.is_absolute() else base / state

    m = _Table("meter", doc.get("meter", {}))
    dev = m.check(
        "device_id", DEVICE_RE.fullmatch, "must match [a-z0-9-]{1,32}", m.get_str("device_id", required=True)
    )
    model = m.check(
        "model", {"sdm120", "sdm630"}.__contains__, "must be sdm120 or sdm630", m.get_str("model", "sdm120")
    )
    prefix = m.check("topic_prefix", TOPIC_PREFIX_RE.fullmatch, "must be topic levels without wildcards",
                     m.get_str("topic_prefix", "gridpact"))  # fmt: skip
    key = _secret(m, "hmac_key", base, required=True)
    rollover = m.get_float("counter_rollover_kwh", 100_000.0, 1.0, 1e12)
    signer = m.get_str("statement_signer", "") or None
    if signer is not None and not ADDRESS_RE.fullmatch(signer):
        raise ConfigError("meter.statement_signer", "must be the node's address, 0x and 40 hex digits")
    m.done()

    b = _Table("meter_broker", doc.get("meter_broker", {}))
    host = b.check("host", _host, "is not a host name or address", b.get_str("host", "127.0.0.1"))
    port = b.get_int("port", 1883, 1, 65535)
    user = b.get_str("username")
    password = _secret(b, "password", base, required=False)
    tls = b.get_bool("tls", False)
    ca = b.get_str("ca_file")
    keepalive = b.get_int("keepalive_s", 30, 0, 65535)
    b.done()

    s = _Table("storage", doc.get("storage", {}))
    db = Path(s.get_str("path", "readings.sqlite3"))
    retention = s.get_int("retention_days", 90, 1, 3650)
    max_gap = s.get_int("max_gap_s", 120, 1, 86400)
    s.done()

    f = _Table("forecast", doc.get("forecast", {}))
    step = f.get_int("step_s", 900, 60, 86400)
    horizon = f.get_int("horizon_steps", 96, 1, 10_000)
    history = f.get_int("history_days", 28, 1, 400)
    alpha = f.get_float("alpha", 0.1, 0.01, 1.0)
    damping = f.get_float("damping", 0.8, 0.0, 1.0)
    f.done()
    if history > retention:
        raise ConfigError("forecast.history_days", "must not exceed storage.retention_days")

    mt = _Table("metrics", doc.get("metrics", {}))
    enabled = mt.get_bool("enabled", True)
    listen = mt.get_str("listen", "127.0.0.1:9308")
    mt.done()
    mhost, _, mport = listen.rpartition(":")
    if not mhost or not mport.isdigit() or not 0 <= int(mport) <= 65535 or not _host(mhost):
        raise ConfigError("metrics.listen", "must be HOST:PORT")

    h = _Table("homeassistant", doc.get("homeassistant", {}))
    ha_on = h.get_bool("enabled", False)
    disc = h.check("discovery_prefix", TOPIC_PREFIX_RE.fullmatch, "must be a topic prefix",
                   h.get_str("discovery_prefix", "homeassistant"))  # fmt: skip
    cur = h.check("currency", CURRENCY_RE.fullmatch, "must be 1-16 letters, digits or _",
                  h.get_str("currency", "tokens"))  # fmt: skip
    decimals = h.get_int("token_decimals", 18, 0, 36)
    every = h.get_float("interval_s", 10.0, 0.1, 3600.0)
    h.done()
    dashboard = parse_dashboard(doc, state, base)

    return {
        "gateway": GatewaySection(gid, state, level),
        "meter": MeterSection(dev, model, prefix, key, rollover, signer),  # type: ignore[arg-type]
        "meter_broker": BrokerSection(
            host, port, user, password, tls, (base / ca) if ca else None, keepalive
        ),
        "storage": StorageSection(db if db.is_absolute() else state / db, retention, max_gap),
        "forecast": ForecastSection(step, horizon, history, alpha, damping),
        "metrics": MetricsSection(enabled, mhost, int(mport)),
        "homeassistant": HassSection(ha_on, disc, cur, decimals, every),
        "dashboard": dashboard,
    }


def _lan_or_loopback(host: str) -> bool:
    """Loopback or a private (RFC 1918 / ULA / link-local) address: never a public or wildcard bind."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return not addr.is_unspecified and (addr.is_loopback or addr.is_private or addr.is_link_local)


def _loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _web_url(value: str, https_only: bool) -> bool:
    """An absolute http(s) URL with a host and no fragment; `https_only`: http only on loopback."""
    try:
        url = urlsplit(value)
        host = url.hostname
        _ = url.port  # raises on a port that is not a number
    except ValueError:
        return False
    if url.scheme not in ("https", "http") or not host or url.fragment or url.username or url.password:
        return False
    return not https_only or url.scheme == "https" or _loopback_host(host)


def parse_oidc(data: object, base: Path) -> OidcSection:
    """`[dashboard.oidc]`, checked: an https issuer (http only on loopback, for a local provider), a
    client id, the client secret's reference, the redirect URI ending in /oidc/callback, and at least
    one identity mapped to an account name."""
    o = _Table("dashboard.oidc", data)
    issuer = o.check("issuer", lambda v: _web_url(v, True) and not urlsplit(v).query,
                     "must be an https:// URL without query or fragment (http:// only on loopback)",
                     o.get_str("issuer", required=True))  # fmt: skip
    client_id = o.check("client_id", lambda v: 0 < len(v) <= 255 and v.isprintable(),
                        "must be 1 to 255 printable characters", o.get_str("client_id", required=True))  # fmt: skip
    secret = _secret(o, "client_secret", base, required=True)
    assert secret is not None
    redirect = o.check("redirect_uri", lambda v: _web_url(v, False) and urlsplit(v).path == OIDC_CALLBACK,
                       f"must be this dashboard's http(s) URL with the path {OIDC_CALLBACK}",
                       o.get_str("redirect_uri", required=True))  # fmt: skip
    claim = o.check("claim", re.compile(r"[A-Za-z0-9_.:-]{1,64}").fullmatch, "is not a claim name",
                    o.get_str("claim", "sub"))  # fmt: skip
    scope = o.check("scope", lambda v: "openid" in v.split(), "must include openid",
                    o.get_str("scope", "openid email" if claim == "email" else "openid"))  # fmt: skip
    name = o.check("name", lambda v: 0 < len(v) <= 64 and v.isprintable(), "must be 1 to 64 printable characters",
                   o.get_str("name", urlsplit(issuer).hostname))  # fmt: skip
    ca = o.get_str("ca_file")
    accounts = o.get_table("accounts", required=True)
    o.done()
    if not accounts:
        raise ConfigError("dashboard.oidc.accounts", "must map at least one identity to an account name")
    for ident, account in accounts.items():
        if not isinstance(account, str) or not ACCOUNT_NAME_RE.fullmatch(account):
            raise ConfigError(f"dashboard.oidc.accounts.{ident}", "must be an account name")
    return OidcSection(issuer, client_id, secret, redirect, dict(accounts), claim, scope, name,
                       (base / ca) if ca else None)  # fmt: skip


def parse_dashboard(doc: dict[str, Any], state: Path, base: Path | None = None) -> DashboardSection | None:
    """`[dashboard]` (None when absent); `base` resolves `[dashboard.oidc]`'s secret and CA files."""
    if "dashboard" not in doc:
        return None
    d = _Table("dashboard", doc["dashboard"])
    enabled = d.get_bool("enabled", False)
    listen = d.get_str("listen", "127.0.0.1:8088")
    accounts = Path(d.get_str("accounts_path", "dashboard.sqlite3"))
    secure = d.get_bool("secure_cookies", True)
    viewers = d.get_int("max_viewers", 64, 1, 10_000)
    d.used.add("oidc")
    oidc = parse_oidc(d.data["oidc"], base or state) if "oidc" in d.data else None
    d.done()
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("dashboard.listen", "must be HOST:PORT")
    if not _lan_or_loopback(host):
        raise ConfigError(
            "dashboard.listen", "must be a loopback or private LAN address (no 0.0.0.0, no public)"
        )
    accounts = accounts if accounts.is_absolute() else state / accounts
    return DashboardSection(enabled, host, int(port), accounts, secure, viewers, oidc)


def _parse_trading(doc: dict[str, Any], base: Path) -> TradingConfig | None:
    tables = {name: doc[name] for name in TRADING_TABLES if name in doc}
    if not tables:
        return None
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(name, "must be a table")
    return parse_trading_config(tables, base)


def parse_config(doc: dict[str, Any], base: Path, env: dict[str, str] | None = None) -> GatewayConfig:
    """Validate a parsed TOML document; `base` resolves relative paths (the config file's folder)."""
    env = dict(os.environ) if env is None else env
    known = {
        "gateway",
        "meter",
        "meter_broker",
        "storage",
        "forecast",
        "metrics",
        "homeassistant",
        "dashboard",
        *TRADING_TABLES,
    }
    for name in doc:
        if name not in known:
            raise ConfigError(name, "unknown section")
    core = _parse_core(doc, base, env)
    return GatewayConfig(**core, trading=_parse_trading(doc, base))


def load_config(path: Path | str, env: dict[str, str] | None = None) -> GatewayConfig:
    """Read and validate one TOML file (seam with gateway-trade)."""
    path = Path(path)
    doc = load_toml(path)
    cfg = parse_config(doc, path.resolve().parent, env)
    return GatewayConfig(**{**cfg.__dict__, "path": path.resolve()})


@dataclass(frozen=True)
class BrokerParams:
    """Where and how to reach an MQTT broker (the meter's, the community's, Home Assistant's)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    tls: bool = False
    identifier: str | None = None
    keepalive_s: int = 30
