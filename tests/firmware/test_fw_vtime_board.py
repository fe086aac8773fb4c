"""The real firmware on a virtual board in virtual time (hil/virtual_time.py): board time
moves only under `advance_to`, so a simulator can step it; MQTT goes to a real broker."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from hil.services import BrokerInfo
from hil.subscriber import MqttTap
from hil.virtual_board import VirtualBoard
from hil.virtual_time import VirtualTime
from hil.wiring import RegisterUart, verify_reading

EXAMPLE = Path(__file__).resolve().parents[2] / "firmware" / "config.example.json"
T0 = 1_780_272_000  # 2026-06-01 00:00 UTC
REPLAYED = 0x080
BROKER_WAIT_S = 10.0  # real seconds the board's loop waits for a broker's answer before time moves on


def vt_config(dev: str, poll_s: int = 60) -> dict[str, Any]:
    cfg = json.loads(EXAMPLE.read_text())
    cfg.update(device_id=dev, poll_s=poll_s, health_s=300, ntp_hold_s=60)
    return cfg


class Meter:
    """Register values that move on each read (constant ones are flagged STUCK by the firmware)."""

    def __init__(self) -> None:
        self.reads = 0

    def __call__(self) -> dict[str, float]:
        self.reads += 1
        e = 12.0 + 0.01 * self.reads
        return {"u1": 230.0 + self.reads % 3, "i1": 2.0, "p1": 460.0, "f": 50.0, "e_imp": e, "e_exp": 0.25}


def test_a_day_of_readings_follows_the_simulated_clock(broker: BrokerInfo, tmp_path: Path) -> None:
    """24 simulated hours, one advance per poll interval: exactly one reading each, seq 1..1441,
    ts = t0 + 60 k, all signed; the first one was taken before MQTT was up and is replayed."""
    cfg = vt_config("vt-day")
    tap = MqttTap(broker.host, broker.port, ["gridpact/meter/vt-day/reading"], "tap-vt-day")
    # the broker runs in real time: on a loaded machine its PUBACK can take longer than the default
    # 2 s of real waiting, and the board would then resend in virtual time (counted in `resent`)
    vt = VirtualTime(T0, io_wait_s=BROKER_WAIT_S)
    board = VirtualBoard(cfg, RegisterUart(Meter()), tmp_path / "flash", clock=vt,
                         broker=(broker.host, broker.port))  # fmt: skip
    board.start()
    try:
        for k in range(24 * 60 + 1):
            board.advance_to(T0 + 60 * k + 1)
            assert board.app.seq.next == k + 2, f"poll {k}: {board.stats()}"
        assert vt.now() == T0 + 24 * 3600 + 1
        deadline = time.monotonic() + 20
        while len(tap.on("/reading")) < 1441 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = board.stats()
    finally:
        board.stop()
        tap.close()
    readings = [verify_reading(p, bytes.fromhex(cfg["hmac_key"])) for p in tap.on("/reading")]
    assert [r["seq"] for r in readings] == list(range(1, 1442))
    assert [r["ts"] for r in readings] == [T0 + 60 * k for k in range(1441)]
    assert readings[0]["q"] == REPLAYED and all(r["q"] == 0 for r in readings[1:])
    assert readings[5]["r"]["e_imp_kWh"] == pytest.approx(12.06)  # the 6th read of the meter
    assert stats["resent"] == 0 and stats["errors"] == 0 and stats["modbus_faults"] == 0, stats


def test_board_time_stands_still_between_advances(tmp_path: Path) -> None:
    """No broker at all: nothing moves in real time; a meter that never answers costs board time only."""

    class Silent(RegisterUart):
        def write(self, data: bytes, /) -> int:
            self.requests += 1
            return len(data)

    uart = Silent(Meter())
    vt = VirtualTime(T0)
    cfg = vt_config("vt-still")
    cfg["broker"].update(host="127.0.0.1", port=1)  # refused at once: the firmware backs off
    board = VirtualBoard(cfg, uart, tmp_path / "flash", clock=vt)
    board.start()
    try:
        board.advance_to(T0 + 121)
        seq_before, requests = board.app.seq.next, uart.requests
        time.sleep(0.3)
        assert vt.now() == T0 + 121
        assert (board.app.seq.next, uart.requests) == (seq_before, requests)
        assert board.app.seq.next == 4 and board.app.faults == 3  # polls at 0, 60, 120 s, all timed out
        board.advance_to(T0 + 60)  # the past: a no-op
        assert vt.now() == T0 + 121
    finally:
        board.stop()


def test_advance_to_needs_virtual_time(tmp_path: Path) -> None:
    board = VirtualBoard(vt_config("vt-real"), RegisterUart(Meter()), tmp_path / "flash")
    with pytest.raises(TypeError, match="VirtualTime"):
        board.advance_to(T0)


def test_the_node_signs_an_hourly_statement_of_its_counters(broker: BrokerInfo, tmp_path: Path) -> None:
    """3 simulated hours: one statement per hour on .../statement, signed by the key the node made
    on its flash (recovered by the gateway's verifier), counters = the last reading before the hour,
    and the statements' readings digests partition the published readings in order."""
    import hashlib

    import coincurve

    from gridpact.core import statement as st

    cfg = vt_config("vt-stmt")
    tap = MqttTap(broker.host, broker.port, ["gridpact/meter/vt-stmt/#"], "tap-vt-stmt")
    vt = VirtualTime(T0, io_wait_s=BROKER_WAIT_S)
    board = VirtualBoard(cfg, RegisterUart(Meter()), tmp_path / "flash", clock=vt,
                         broker=(broker.host, broker.port))  # fmt: skip
    board.start()
    try:
        for k in range(3 * 60 + 2):
            board.advance_to(T0 + 60 * k + 1)
        deadline = time.monotonic() + 20
        while len(tap.on("/statement")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        board.stop()
        tap.close()
    secret = (tmp_path / "flash" / "device.key").read_bytes()
    address = st.address_of(coincurve.PrivateKey(secret).public_key.format(False)[1:])
    statements = [st.verify_message(p, address) for p in tap.on("/statement")]
    assert [s.window_end for s in statements] == [T0 + 3600 * h for h in (1, 2, 3)]
    readings = [verify_reading(p, bytes.fromhex(cfg["hmac_key"])) for p in tap.on("/reading")]
    raws = tap.on("/reading")
    by_ts = {r["ts"]: r for r in readings}
    used = 0
    for s in statements:
        last = by_ts[s.window_end - 60]["r"]
        assert (s.import_wh, s.export_wh) == (
            round(last["e_imp_kWh"] * 1000),
            round(last["e_exp_kWh"] * 1000),
        )
        window = raws[used : used + s.readings]
        want = hashlib.sha256(b"".join(len(p).to_bytes(2, "big") + p for p in window)).digest()
        assert s.readings_digest == want and s.dev == "vt-stmt"
        used += s.readings
    assert 170 <= used <= len(raws) and statements[1].readings == 60
