"""The real firmware main loop as a virtual board, against meter_sim's RTU server on a pty and a
real Mosquitto: readings match the meter's truth, are signed, numbered and announced to HA."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.host.golden import device_namespace, f32_text_reference
from firmware.host.maps_gen import PAYLOAD_KEYS, compact
from gridpact.core.clock import AcceleratedClock
from gridpact.core.wire import Control, TagChecker, parse_control
from hil.services import BrokerInfo, MosquittoBroker
from hil.subscriber import MqttTap
from hil.virtual_board import VirtualBoard
from hil.wiring import MeterSim, RegisterUart, SerialLine, verify_reading

EXAMPLE = Path(__file__).resolve().parents[2] / "firmware" / "config.example.json"
UNITS = device_namespace().load("meter").UNITS


def board_config(dev: str, **over: Any) -> dict[str, Any]:
    cfg = json.loads(EXAMPLE.read_text())
    cfg.update(device_id=dev, poll_s=1, health_s=5, ntp_hold_s=0)
    cfg["broker"]["backoff_max_s"] = 2
    cfg["meter"]["timeout_ms"] = 1000  # generous: the suite shares 2 cores with other areas
    for k, v in over.items():
        cfg[k] = v
    return cfg


MODBUS_TIMEOUT = 0x004


def good(payloads: list[bytes]) -> list[bytes]:
    """Readings with values (not flagged MODBUS_TIMEOUT)."""
    return [p for p in payloads if b'"q":4,' not in p and b'"r":{}' not in p]


def key_of(cfg: dict[str, Any]) -> bytes:
    return bytes.fromhex(cfg["hmac_key"])


def controls(tap: MqttTap, leaf: str, key: bytes) -> list[Control]:
    """The node's status or health messages, each checked as the gateway checks it (its HMAC)."""
    return [parse_control(leaf, TagChecker(key), p) for p in tap.on("/" + leaf)]


def truth_texts(model: str, line: dict[str, Any]) -> dict[str, float] | None:
    """The values a correct reading taken at this truth step must carry (after float printing)."""
    out = {}
    for (name, unit, _off, _label), key in zip(compact(model)[3], PAYLOAD_KEYS[model], strict=True):
        v = line["r"].get(key)
        if v is None:
            return None
        out[name] = float(f32_text_reference(v, UNITS[unit][0]))
    return out


@pytest.fixture
def line() -> Iterator[SerialLine]:
    with SerialLine() as ln:
        yield ln


def test_readings_match_truth_and_are_signed(line: SerialLine, broker: BrokerInfo, tmp_path: Path) -> None:
    """Against both brokers (Mosquitto and the embedded amqtt)."""
    cfg = board_config("vb-truth")
    topics = ["gridpact/meter/vb-truth/#", "homeassistant/sensor/vb-truth/#"]
    tap = MqttTap(broker.host, broker.port, topics, "tap-truth")
    with MeterSim(line.meter, tmp_path / "truth.jsonl", profile="constant:load_w=2300,pv_w=0") as sim:
        board = VirtualBoard(cfg, line.board, tmp_path / "flash", broker=(broker.host, broker.port))
        board.start()
        try:
            board.wait_until(lambda: len(good(tap.on("/reading"))) >= 6, 40, "6 good readings")
            board.wait_until(lambda: len(tap.on("/health")) >= 1, 15, "health")
        finally:
            board.stop()
            tap.close()
    truths = [t for t in (truth_texts("sdm120", ln) for ln in sim.truth_lines()) if t]
    readings = [verify_reading(p, key_of(cfg)) for p in tap.on("/reading")]
    seqs = [r["seq"] for r in readings]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    for r in readings:
        assert r["dev"] == "vb-truth" and r["m"] == "sdm120" and r["v"] == 1
        if r["q"] & MODBUS_TIMEOUT:  # a meter process starved of CPU on a loaded host: flagged, empty
            assert r["r"] == {} and r["q"] & ~(0x0C2 | MODBUS_TIMEOUT) == 0, r
            continue
        # a healthy line: at most TIME_CORRECTED, STUCK, REPLAYED (taken before the first connect)
        assert r["q"] & ~0x0C2 == 0, r
        assert list(r["r"]) == [e[0] for e in compact("sdm120")[3]]
        assert r["r"] in truths, f"reading {r['r']} matches no truth step"
    assert board.de_toggles >= 2 * len(readings)
    status = controls(tap, "status", key_of(cfg))[0]
    assert status.fields["st"] == "online" and status.boot == 1
    health = controls(tap, "health", key_of(cfg))[-1]
    assert health.boot == 1 and health.fields["reset"] == "power" and health.fields["err"] == 0
    assert health.mark > status.mark  # each control message of a boot takes the next n
    configs = [json.loads(p) for p in tap.on("/config")]
    assert len(configs) >= len(PAYLOAD_KEYS["sdm120"])
    energy = next(c for c in configs if c["unique_id"] == "gridpact_vb-truth_e_imp_kWh")
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
        "energy", "total_increasing", "kWh",
    )  # fmt: skip
    assert energy["availability_topic"] == "gridpact/meter/vb-truth/status"
    assert energy["availability_template"] == "{{ value_json.st }}"  # the signed status' word
    assert energy["device"]["identifiers"] == ["gridpact_vb-truth"]


def test_sequence_survives_power_cycles(line: SerialLine, mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    cfg = board_config("vb-boot")
    tap = MqttTap("127.0.0.1", mosquitto.port, ["gridpact/meter/vb-boot/#"], "tap-boot")
    with MeterSim(line.meter, tmp_path / "truth.jsonl"):
        board = VirtualBoard(cfg, line.board, tmp_path / "flash", broker=("127.0.0.1", mosquitto.port))
        board.start()
        try:
            for n in (2, 4, 6):
                board.wait_until(lambda n=n: len(tap.on("/reading")) >= n, 20, f"{n} readings")
                board.power_cycle()
            board.wait_until(lambda: len(tap.on("/reading")) >= 8, 20, "8 readings")
            board.wait_until(lambda: b'"boot":4' in b"".join(tap.on("/health")), 20, "boot 4 in health")
        finally:
            board.stop()
            tap.close()
    seqs = [verify_reading(p, key_of(cfg))["seq"] for p in tap.on("/reading")]
    assert all(b > a for a, b in itertools.pairwise(seqs)), seqs
    assert board.reboots == 3


def test_watchdog_resets_a_hung_node(line: SerialLine, tmp_path: Path) -> None:
    """A poll task stuck inside the Modbus read stops the watchdog feeding; the board resets and
    reports the cause. Board clock 10x real time (no meter on the line: every read times out)."""
    cfg = board_config("vb-wdt")
    cfg["meter"]["timeout_ms"] = 2000
    board = VirtualBoard(
        cfg, line.board, tmp_path / "flash", broker=("127.0.0.1", 1), clock=AcceleratedClock(10)
    )
    board.start()
    try:
        board.wait_until(lambda: board.stats().get("polls", 0) >= 2, 10, "2 polls")
        first = board.app

        async def stuck(*_args: object) -> tuple[int, int]:
            await asyncio.Event().wait()
            return 0, 0

        first.master.read = stuck
        board.wait_until(lambda: board.app is not None and board.app is not first, 30, "a watchdog reset")
        board.wait_until(lambda: board.stats().get("polls", 0) >= 1, 10, "polling again")
        st = board.stats()
    finally:
        board.stop()
    assert st["reset"] == "watchdog" and st["boot"] == 2
    assert "watchdog expired: reset" in board.console


def test_bad_config_is_reported_on_the_console(line: SerialLine, tmp_path: Path) -> None:
    cfg = board_config("Bad_Id")
    cfg["meter"]["model"] = "sdm72"
    board = VirtualBoard(cfg, line.board, tmp_path / "flash", broker=("127.0.0.1", 1))
    board.start()
    board.wait_until(lambda: not board.running, 5, "halt")
    board.stop()
    text = "\n".join(board.console)
    assert "config error: device_id" in text
    assert "config error: meter.model" in text
    assert board.app is None


def test_many_boards_on_an_accelerated_clock(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """Three boards in one process on a clock 10x real time, each with an in-process meter: a 10 s
    poll every 1 s real, timestamps following the accelerated clock."""
    clock = AcceleratedClock(10, start=1767225600.0)
    tap = MqttTap("127.0.0.1", mosquitto.port, ["gridpact/meter/+/reading"], "tap-fast")
    boards = []
    for i in range(3):
        cfg = board_config(f"vb-fast-{i}", poll_s=10)
        uart = RegisterUart(lambda i=i: {"u1": 230.0 + i, "p1": 100.0 * i, "e_imp": 5.5, "f": 50.0})
        boards.append(
            VirtualBoard(cfg, uart, tmp_path / str(i), broker=("127.0.0.1", mosquitto.port), clock=clock)
        )
    try:
        for b in boards:
            b.start()
        boards[0].wait_until(lambda: len(tap.on("/reading")) >= 3 * 6, 30, "6 readings per board")
    finally:
        for b in boards:
            b.stop()
        tap.close()
    key = bytes.fromhex(board_config("x")["hmac_key"])
    rs = [verify_reading(p, key) for p in tap.on("/reading")]
    for i in range(3):
        mine = [r for r in rs if r["dev"] == f"vb-fast-{i}"]
        assert len(mine) >= 5
        assert all(r["r"]["u1_V"] == 230.0 + i and r["r"]["p1_W"] == 100.0 * i for r in mine)
        ts = [r["ts"] for r in mine]
        steps = [b - a for a, b in itertools.pairwise(ts)]
        # 10 s apart on the board's clock; a host stall (x10) delays a poll or skips one, never bursts
        assert 9 <= statistics.median(steps) <= 11 and min(steps) >= 5, ts
        assert 1767225600 <= ts[0] < 1767225600 + 120


def test_power_off_fires_the_last_will(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    cfg = board_config("vb-will")
    tap = MqttTap("127.0.0.1", mosquitto.port, ["gridpact/meter/vb-will/status"], "tap-will")
    board = VirtualBoard(
        cfg, RegisterUart(lambda: {"u1": 230.0}), tmp_path, broker=("127.0.0.1", mosquitto.port)
    )
    key = key_of(cfg)

    def words() -> list[object]:
        return [c.fields["st"] for c in controls(tap, "status", key)]

    board.start()
    try:
        board.wait_until(lambda: words() == ["online"], 10, "online")
    finally:
        board.stop()
    board.wait_until(lambda: words()[-1:] == ["offline"], 10, "offline from the last will")
    online, will = controls(tap, "status", key)
    assert will.mark == online.mark  # the will names the session it ends
    tap.close()
