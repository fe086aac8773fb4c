"""Home Assistant discovery of the household's trading (gateway/ops/hass.py): golden payloads, the
journal fold with hand-computed figures, and a real gateway process on Mosquitto publishing retained
discovery, state and availability, with the last will firing when it is killed."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.chain.journal import Journal
from gateway.ops.hass import (
    AGENT_STATES,
    HassNames,
    JournalSource,
    NextAgreement,
    TradingView,
    discovery,
    next_payload,
    state_payload,
    trading_view,
)
from hil.services import MosquittoBroker

REPO = Path(__file__).resolve().parents[2]
GRIDPACT = REPO / ".venv" / "bin" / "gridpact"
GOLDEN = REPO / "docs" / "wire" / "golden" / "hass-v1.json"
NAMES = HassNames("house-07", "node-01", "gridpact", "homeassistant", "kWt", "0.1.0")
T0 = 1767225600  # 2026-01-01T00:00:00Z
PRICE = 25 * 10**16  # 0.25 tokens per kWh (18 decimals)
ME, PEER = "0x" + "11" * 20, "0x" + "22" * 20


def test_discovery_matches_the_golden_vectors() -> None:
    golden = json.loads(GOLDEN.read_text())
    got = [[topic, body.decode()] for topic, body in discovery(NAMES)]
    assert got == golden["discovery"]
    assert state_payload(_view()).decode() == golden["state"]
    assert (next_payload(_view()) or b"").decode() == golden["next"]
    assert next_payload(replace(_view(), next=None)) is None


def test_discovery_means_what_home_assistant_accepts() -> None:
    """Independent of the golden file: classes, units and state classes valid from Home Assistant 2024.1 on."""
    cfgs = {topic.split("/")[3]: json.loads(body) for topic, body in discovery(NAMES)}
    for obj in ("p2p_bought", "p2p_sold"):  # the Energy dashboard's requirements
        c = cfgs[obj]
        assert (c["device_class"], c["unit_of_measurement"], c["state_class"]) == (
            "energy",
            "kWh",
            "total_increasing",
        )
    for obj in ("token_balance", "tokens_earned", "tokens_paid", "tokens_refunded"):
        c = cfgs[obj]  # monetary allows only state class "total"
        assert (c["device_class"], c["unit_of_measurement"], c["state_class"]) == ("monetary", "kWt", "total")
    assert cfgs["agent_state"]["options"] == list(AGENT_STATES) and "state_class" not in cfgs["agent_state"]
    assert cfgs["next_start"]["device_class"] == "timestamp"
    for c in cfgs.values():
        assert c["device"]["identifiers"] == ["gridpact_gw_house-07"]
        assert c["device"]["via_device"] == "gridpact_node-01"  # the firmware's device identifier
        assert c["unique_id"].startswith("gridpact_gw_house-07_")
        if c["unique_id"].removeprefix("gridpact_gw_house-07_").startswith("next_"):
            # unavailable while there is no next agreement: no `None` state for Home Assistant 2024
            assert c["state_topic"] == "gridpact/gateway/house-07/next"
            assert c["availability"] == [
                {"topic": "gridpact/gateway/house-07/status"},
                {"topic": "gridpact/gateway/house-07/next/available"},
            ]
            assert c["availability_mode"] == "all"
        else:
            assert c["availability_topic"] == "gridpact/gateway/house-07/status"
            assert c["state_topic"] == "gridpact/gateway/house-07/trading"
    assert len({c["unique_id"] for c in cfgs.values()}) == len(cfgs) == 15


def _terms(q: int, start: int, seller: str = PEER, buyer: str = ME) -> dict[str, object]:
    return {"seller": seller, "buyer": buyer, "quantityWh": q, "unitPrice": str(PRICE), "deliveryStart": start,
            "deliveryEnd": start + 3600, "nonce": start % 97, "expiry": start - 60}  # fmt: skip


def _fill(journal: Journal) -> None:
    """Bought 1500 Wh, measured 1200 (settled); sold 2000, measured 2100 (capped); a refunded buy of
    1000; a disputed sale; a signed buy in the next hour."""
    rows = [
        ("a", "buyer", _terms(1500, T0), "closed", 1200, "settled"),
        ("b", "seller", _terms(2000, T0, ME, PEER), "closed", 2100, "settled"),
        ("c", "buyer", _terms(1000, T0 - 3600), "closed", None, "refunded"),
        ("d", "seller", _terms(800, T0 - 7200, ME, PEER), "reported", 800, "disputed"),
        ("e", "buyer", _terms(700, T0 + 7200), "signed", None, None),
    ]
    for aid, role, terms, state, wh, note in rows:
        journal.put_agreement(aid, role, PEER, terms, "0xsig", int(str(terms["deliveryEnd"])))
        journal.set_agreement_state(aid, state, measured_wh=wh, note=note)
    journal.set("free_balance", str(12 * 10**18 + 5 * 10**17))


def _view() -> TradingView:
    return TradingView(
        bought_wh=1200, sold_wh=2000, balance=12.5, earned=0.5, paid=0.3, refunded=0.325, agent="settling",
        open_agreements=2, disputes=1, next=NextAgreement(T0 + 7200, T0 + 10800, PEER, "buyer", 700, 0.25),
    )  # fmt: skip


def test_journal_source_folds_a_real_journal(tmp_path: Path) -> None:
    """Hand-computed: paid 1.2 kWh x 0.25 = 0.3, refunded 0.075 + 0.25; earned 2.0 kWh x 0.25 = 0.5."""
    journal = Journal(tmp_path / "trading.db")
    _fill(journal)
    source = JournalSource(tmp_path / "trading.db", 18, lambda: T0 + 4000.0)
    try:
        assert source() == _view()
    finally:
        source.close()
        journal.close()
    assert JournalSource(None, 18, time.time)() == TradingView(agent="off")
    assert JournalSource(tmp_path / "absent.db", 18, time.time)() == TradingView(agent="idle")


def test_agent_states() -> None:
    rec = _Rec("buyer", _terms(500, T0), "signed")
    assert trading_view([rec], T0 - 10, None, 18, True).agent == "contracted"
    assert trading_view([rec], T0 + 10, None, 18, True).agent == "delivering"
    assert trading_view([rec], T0 + 4000, None, 18, True).agent == "settling"
    assert (
        trading_view([_Rec("buyer", _terms(500, T0), "signing")], T0, None, 18, True).agent == "negotiating"
    )
    assert trading_view([], T0, None, 18, True).agent == "idle"
    assert trading_view([rec], T0, None, 18, False) == TradingView()
    assert json.loads(state_payload(TradingView()))["balance"] is None  # unknown, never 0


class _Rec:
    def __init__(self, role: str, terms: dict[str, object], state: str) -> None:
        self.role, self.peer, self.terms, self.state = role, PEER, terms, state
        self.measured_wh: int | None = None
        self.note: str | None = None


# ---------------------------------------------------------------- a real gateway on Mosquitto


class Retained:
    """Everything published under a prefix, last message per topic (paho on its own thread)."""

    def __init__(self, port: int, filters: list[str]) -> None:
        self.msgs: dict[str, bytes] = {}
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.filters = filters
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: paho.Client, *_: object) -> None:
        for f in self.filters:
            client.subscribe(f, 1)

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self.cond:
            self.msgs[msg.topic] = bytes(msg.payload)
            self.cond.notify_all()

    def wait(self, ok: Callable[[dict[str, bytes]], bool], timeout: float = 30) -> dict[str, bytes]:
        with self.cond:
            assert self.cond.wait_for(lambda: ok(self.msgs), timeout), sorted(self.msgs)
            return dict(self.msgs)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextmanager
def _gateway(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([GRIDPACT, "gateway", "run", "--config", str(config)], stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.poll() is not None


def test_gateway_publishes_retained_discovery_state_and_its_last_will(
    mosquitto: MosquittoBroker, gw_config: Callable[..., Path], gw_prefix: str
) -> None:
    config = gw_config(mosquitto.port, '[homeassistant]\nenabled = true\ncurrency = "kWt"\n')
    disc = "homeassistant/sensor/gridpact_gw_house-07/+/config"
    status, state = f"{gw_prefix}/gateway/house-07/status", f"{gw_prefix}/gateway/house-07/trading"
    next_available = f"{gw_prefix}/gateway/house-07/next/available"
    sub = Retained(mosquitto.port, [disc, status, state, next_available])
    try:
        with _gateway(config) as proc:
            got = sub.wait(lambda m: m.get(status) == b"online" and state in m and len(m) >= 18)
            assert got[next_available] == b"offline"  # no next agreement: those entities unavailable
            configs = [json.loads(v) for k, v in got.items() if k.endswith("/config")]
            assert {c["unit_of_measurement"] for c in configs if c.get("device_class") == "monetary"} == {
                "kWt"
            }
            assert all(c["state_topic"] in (state, f"{gw_prefix}/gateway/house-07/next") for c in configs)
            assert json.loads(got[state])["agent"] == "off"  # an ingest-only gateway does not trade
            proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker sends the will
            sub.wait(lambda m: m.get(status) == b"offline", 10)
        with _gateway(config) as proc:
            sub.wait(lambda m: m.get(status) == b"online")
            proc.send_signal(signal.SIGTERM)  # a clean stop publishes offline itself
            assert proc.wait(15) == 0
            sub.wait(lambda m: m.get(status) == b"offline", 5)
    finally:
        sub.close()
    # a fresh subscriber gets the retained messages: Home Assistant restarted later still sees them
    late = Retained(mosquitto.port, [disc, status])
    try:
        got = late.wait(lambda m: m.get(status) == b"offline" and len(m) >= 16)
        assert len([k for k in got if k.endswith("/config")]) == 15
    finally:
        late.close()


def test_sigterm_while_connecting_or_publishing_discovery_stops_within_2s(
    mosquitto: MosquittoBroker, gw_config: Callable[..., Path], gw_prefix: str
) -> None:
    """SIGTERM the moment the gateway says `online` (its broker clients still connecting, discovery
    in flight): aiomqtt's `wait_for` on Python 3.11 may swallow that cancel, and a task that ran on
    kept the gateway alive. Half of such stops hung before the fix; now every one ends in 2 s."""
    config = gw_config(mosquitto.port, "[homeassistant]\nenabled = true\n")
    status = f"{gw_prefix}/gateway/house-07/status"
    sub = Retained(mosquitto.port, [status])
    try:
        for _ in range(6):
            with sub.cond:
                sub.msgs.pop(status, None)
            with _gateway(config) as proc:
                sub.wait(lambda m: m.get(status) == b"online", 15)
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(5) == 0
                assert time.monotonic() - started < 2.0
    finally:
        sub.close()
