"""Home Assistant: the household's trading as MQTT discovery + state (docs/home-assistant.md).

Pure core: `trading_view` folds the trading journal's agreements into the figures a household
sees, `discovery` and `state_payload` turn names and figures into the retained messages. Thin
I/O: `run_hass` keeps one MQTT connection to the household broker (the meter broker, where Home
Assistant listens) with a retained last will `offline` on the gateway's status topic, publishes
`online`, the discovery configs and the state, and republishes the state when it changes.

Payloads use only what Home Assistant accepts from 2024.1 on: `monetary` takes state class
`total` (never `total_increasing`), the agent's state is an `enum` with its options listed, and
absent values are JSON null, which the templates render as `None` (shown as unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import aiomqtt

from gateway.aio import raise_if_cancel_was_swallowed
from gateway.chain.journal import Journal
from gateway.config import BrokerParams
from gateway.ops.logs import ErrorLatch
from gridpact.core import settlement

log = logging.getLogger("gridpact.gateway.hass")

AGENT_STATES = ("off", "idle", "negotiating", "contracted", "delivering", "settling")
OPEN = ("signing", "signed", "submitted", "reported")
BACKOFF_MAX_S = 30.0


class AgreementLike(Protocol):
    """What the view needs of gateway.chain.journal.AgreementRecord."""

    @property
    def role(self) -> str: ...
    @property
    def peer(self) -> str: ...
    @property
    def terms(self) -> dict[str, object]: ...
    @property
    def state(self) -> str: ...
    @property
    def measured_wh(self) -> int | None: ...
    @property
    def note(self) -> str | None: ...


@dataclass(frozen=True)
class HassNames:
    """Where and under which names the gateway appears in Home Assistant."""

    gateway_id: str
    node_id: str  # the meter node's device id: the gateway device is linked to it (via_device)
    topic_prefix: str = "gridpact"
    discovery_prefix: str = "homeassistant"
    currency: str = "tokens"
    sw_version: str = "0.1.0"

    @property
    def state_topic(self) -> str:
        return f"{self.topic_prefix}/gateway/{self.gateway_id}/trading"

    @property
    def status_topic(self) -> str:
        return f"{self.topic_prefix}/gateway/{self.gateway_id}/status"

    @property
    def next_topic(self) -> str:
        """The next agreement alone, published only while there is one (see `next_payload`)."""
        return f"{self.topic_prefix}/gateway/{self.gateway_id}/next"

    @property
    def next_available_topic(self) -> str:
        return f"{self.topic_prefix}/gateway/{self.gateway_id}/next/available"

    @property
    def device_id(self) -> str:
        return f"gridpact_gw_{self.gateway_id}"


@dataclass(frozen=True)
class NextAgreement:
    start: int
    end: int
    peer: str
    role: str  # "buyer" or "seller": this household's side
    quantity_wh: int
    price: float  # tokens per kWh


@dataclass(frozen=True)
class TradingView:
    """The household's trading as the journal knows it (tokens in whole units)."""

    bought_wh: int = 0
    sold_wh: int = 0
    balance: float | None = None
    earned: float = 0.0
    paid: float = 0.0
    refunded: float = 0.0
    agent: str = "off"
    open_agreements: int = 0
    disputes: int = 0
    next: NextAgreement | None = None


def _int(terms: dict[str, object], key: str) -> int:
    value = terms[key]
    if not isinstance(value, int | str):
        raise ValueError(f"terms.{key} is not an integer")
    return int(value)


def trading_view(
    agreements: Iterable[AgreementLike], now: float, balance_units: int | None, decimals: int, trading: bool
) -> TradingView:
    """Fold the agreements: settled ones count what this gateway measured (capped at the agreed
    quantity) as delivered and paid, the rest of the escrow as refunded; refunded and cancelled
    ones give the buyer the whole escrow back. The chain's events stay the authority."""
    if not trading:
        return TradingView()
    unit = 10**decimals
    bought = sold = earned = paid = refunded = n_open = disputes = 0
    states: set[str] = set()
    nxt: NextAgreement | None = None
    for rec in agreements:
        t = rec.terms
        q, price = _int(t, "quantityWh"), _int(t, "unitPrice")
        start, end = _int(t, "deliveryStart"), _int(t, "deliveryEnd")
        escrow = settlement.value(q, price)
        if rec.state == "closed":
            if rec.note == "settled":
                got = q if rec.measured_wh is None else max(0, min(rec.measured_wh, q))
                value = settlement.value(got, price)
                if rec.role == "buyer":
                    bought, paid, refunded = bought + got, paid + value, refunded + escrow - value
                else:
                    sold, earned = sold + got, earned + value
            elif rec.role == "buyer" and rec.note in ("refunded", "cancelled"):
                refunded += escrow
            continue
        if rec.state not in OPEN:
            continue
        n_open += 1
        disputes += rec.note == "disputed"
        if rec.state == "signing":
            states.add("negotiating")
        elif start <= now < end:
            states.add("delivering")
        elif now >= end:
            states.add("settling")
        else:
            states.add("contracted")
        if end > now and rec.state != "signing" and (nxt is None or start < nxt.start):
            nxt = NextAgreement(start, end, rec.peer, rec.role, q, price / unit)
    agent = next((s for s in ("negotiating", "delivering", "settling", "contracted") if s in states), "idle")
    return TradingView(
        bought_wh=bought,
        sold_wh=sold,
        balance=None if balance_units is None else balance_units / unit,
        earned=earned / unit,
        paid=paid / unit,
        refunded=refunded / unit,
        agent=agent,
        open_agreements=n_open,
        disputes=disputes,
        next=nxt,
    )


class JournalSource:
    """The trading journal read on its own SQLite connection (WAL: trading keeps writing meanwhile)."""

    def __init__(self, path: Path | None, decimals: int, now: Callable[[], float]) -> None:
        self.path = path  # None: an ingest-only gateway, the agent is "off"
        self.decimals = decimals
        self.now = now
        self._journal: Journal | None = None

    def __call__(self) -> TradingView:
        if self.path is None:
            return TradingView()
        if self._journal is None:
            if not self.path.exists():  # trading has not started yet
                return TradingView(agent="idle")
            self._journal = Journal(self.path)
        stored = self._journal.get("free_balance")
        balance = int(stored) if stored is not None and stored.isdigit() else None
        return trading_view(self._journal.agreements(), self.now(), balance, self.decimals, True)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def state_payload(view: TradingView) -> bytes:
    """The retained state message every trading entity but the next agreement's reads with its template."""
    body = {
        "bought_kWh": round(view.bought_wh / 1000, 3),
        "sold_kWh": round(view.sold_wh / 1000, 3),
        "balance": None if view.balance is None else round(view.balance, 6),
        "earned": round(view.earned, 6),
        "paid": round(view.paid, 6),
        "refunded": round(view.refunded, 6),
        "agent": view.agent,
        "open": view.open_agreements,
        "disputes": view.disputes,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def next_payload(view: TradingView) -> bytes | None:
    """The next agreement's retained message, or None when there is none.

    Its own topic, and no message at all while there is no next agreement (the entities go
    unavailable instead): Home Assistant before 2025 shows a text sensor's `None` as the word and
    logs a warning for a timestamp that is `None`, on every state message.
    """
    n = view.next
    if n is None:
        return None
    body = {
        "start": _iso(n.start),
        "end": _iso(n.end),
        "peer": n.peer,
        "role": n.role,
        "kWh": round(n.quantity_wh / 1000, 3),
        "price": round(n.price, 6),
    }
    return json.dumps(body, separators=(",", ":")).encode()


# object id -> (name, template, unit, device class, state class, extra); "{cur}" is the currency
_NEXT = "{{ value_json.%s }}"  # on the next-agreement topic
ENTITIES: tuple[tuple[str, str, str, str | None, str | None, str | None, dict[str, object]], ...] = (
    ("p2p_bought", "Energy bought from peers", "{{ value_json.bought_kWh }}", "kWh", "energy", "total_increasing", {}),
    ("p2p_sold", "Energy sold to peers", "{{ value_json.sold_kWh }}", "kWh", "energy", "total_increasing", {}),
    ("token_balance", "Token balance", "{{ value_json.balance }}", "{cur}", "monetary", "total", {}),
    ("tokens_earned", "Tokens earned", "{{ value_json.earned }}", "{cur}", "monetary", "total", {}),
    ("tokens_paid", "Tokens paid", "{{ value_json.paid }}", "{cur}", "monetary", "total", {}),
    ("tokens_refunded", "Tokens refunded", "{{ value_json.refunded }}", "{cur}", "monetary", "total", {}),
    ("agent_state", "Agent state", "{{ value_json.agent }}", None, "enum", None, {"options": list(AGENT_STATES)}),
    ("next_start", "Next agreement start", _NEXT % "start", None, "timestamp", None, {}),
    ("next_end", "Next agreement end", _NEXT % "end", None, "timestamp", None, {}),
    ("next_peer", "Next agreement peer", _NEXT % "peer", None, None, None, {}),
    ("next_role", "Next agreement side", _NEXT % "role", None, None, None, {}),
    ("next_quantity", "Next agreement quantity", _NEXT % "kWh", "kWh", "energy", None, {}),
    ("next_price", "Next agreement price", _NEXT % "price", "{cur}/kWh", None, None, {}),
    ("open_agreements", "Open agreements", "{{ value_json.open }}", None, None, "measurement", {}),
    ("open_disputes", "Open disputes", "{{ value_json.disputes }}", None, None, "measurement", {}),
)  # fmt: skip


def discovery(names: HassNames) -> list[tuple[str, bytes]]:
    """(topic, retained payload) per trading entity, all under one gateway device."""
    device = {
        "identifiers": [names.device_id],
        "name": f"gridpact gateway {names.gateway_id}",
        "manufacturer": "gridpact",
        "model": "household gateway",
        "sw_version": names.sw_version,
        "via_device": f"gridpact_{names.node_id}",
    }
    out = []
    for obj, name, tpl, unit, cls, state_class, extra in ENTITIES:
        cfg: dict[str, object] = {
            "name": name,
            "unique_id": f"{names.device_id}_{obj}",
            "state_topic": names.state_topic,
            "value_template": tpl,
        }
        if unit:
            cfg["unit_of_measurement"] = unit.replace("{cur}", names.currency)
        if cls:
            cfg["device_class"] = cls
        if state_class:
            cfg["state_class"] = state_class
        cfg.update(extra)
        if obj.startswith("next_"):  # available while the gateway is and there is a next agreement
            cfg["state_topic"] = names.next_topic
            cfg["availability"] = [{"topic": names.status_topic}, {"topic": names.next_available_topic}]
            cfg["availability_mode"] = "all"
        else:
            cfg["availability_topic"] = names.status_topic
        cfg.update(payload_available="online", payload_not_available="offline", device=device)
        topic = f"{names.discovery_prefix}/sensor/{names.device_id}/{obj}/config"
        out.append((topic, json.dumps(cfg, separators=(",", ":")).encode()))
    return out


async def run_hass(
    params: BrokerParams,
    names: HassNames,
    snapshot: Callable[[], TradingView],
    interval_s: float,
    latch: ErrorLatch,
    rng: random.Random | None = None,
) -> None:
    """Publish discovery, availability and state forever; reconnect with backoff; `offline` on the way out."""
    rng = rng or random.Random()
    tls = aiomqtt.TLSParameters(ca_certs=params.ca_file) if params.tls else None
    will = aiomqtt.Will(names.status_topic, b"offline", qos=1, retain=True)
    ident = f"{params.identifier}-ha" if params.identifier else None
    attempt = 0
    while True:
        try:
            async with aiomqtt.Client(params.host, params.port, username=params.username, password=params.password,
                                      identifier=ident, tls_params=tls, will=will, keepalive=30,
                                      timeout=10) as client:  # fmt: skip
                raise_if_cancel_was_swallowed()
                try:
                    await client.publish(names.status_topic, b"online", qos=1, retain=True)
                    raise_if_cancel_was_swallowed()
                    for topic, body in discovery(names):
                        await client.publish(topic, body, qos=1, retain=True)
                        raise_if_cancel_was_swallowed()
                    latch.recover("hass.broker")
                    attempt = 0
                    last: bytes = b""
                    last_next: bytes | None = b""
                    while True:
                        view = snapshot()
                        body = state_payload(view)
                        if body != last:
                            await client.publish(names.state_topic, body, qos=1, retain=True)
                            raise_if_cancel_was_swallowed()
                            last = body
                        nxt = next_payload(view)
                        if nxt != last_next:
                            if nxt is not None:
                                await client.publish(names.next_topic, nxt, qos=1, retain=True)
                                raise_if_cancel_was_swallowed()
                            avail = b"offline" if nxt is None else b"online"
                            await client.publish(names.next_available_topic, avail, qos=1, retain=True)
                            raise_if_cancel_was_swallowed()
                            last_next = nxt
                        await asyncio.sleep(interval_s)
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception):  # a clean stop is not a death: say so
                        await asyncio.wait_for(
                            client.publish(names.status_topic, b"offline", qos=0, retain=True), 0.5
                        )
                    raise
        except aiomqtt.MqttError as exc:
            latch.fail("hass.broker", host=params.host, port=params.port, error=str(exc)[:200])
            delay = min(BACKOFF_MAX_S, 0.5 * 2**attempt)
            attempt = min(attempt + 1, 10)
            await asyncio.sleep(delay / 2 + rng.random() * delay / 2)
