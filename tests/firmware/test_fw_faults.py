"""Modbus faults from meter_sim give flagged readings with empty values, never wrong values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from firmware.host.golden import device_namespace, f32_text_reference
from firmware.host.maps_gen import PAYLOAD_KEYS, compact
from hil.services import MosquittoBroker
from hil.subscriber import MqttTap
from hil.virtual_board import VirtualBoard
from hil.wiring import MeterSim, SerialLine, verify_reading

EXAMPLE = Path(__file__).resolve().parents[2] / "firmware" / "config.example.json"
UNITS = device_namespace().load("meter").UNITS
TIMEOUT, CRC, EXCEPTION, INVALID, STUCK, COUNTER_RESET = 0x004, 0x008, 0x010, 0x020, 0x040, 0x100
FAULTS = [
    {"at": 3, "fault": "no_response", "duration_s": 2.5},
    {"at": 7, "fault": "crc", "duration_s": 2.5},
    {"at": 11, "fault": "exception", "duration_s": 2.5, "code": 4},
    {"at": 15, "fault": "nan", "duration_s": 2.5, "keys": ["i1"]},
    {"at": 19, "fault": "slow", "duration_s": 2.5, "delay_s": 0.6},
    {"at": 23, "fault": "garbage", "duration_s": 2.5, "length": 8},
    {"at": 27, "fault": "stuck", "duration_s": 9},
    {"at": 38, "fault": "reset", "duration_s": 0},
]


def truth_values(line: dict[str, Any]) -> dict[str, float]:
    out = {}
    for (name, unit, _o, _l), key in zip(compact("sdm120")[3], PAYLOAD_KEYS["sdm120"], strict=True):
        v = line["r"].get(key)
        if v is not None:
            out[name] = float(f32_text_reference(v, UNITS[unit][0]))
    return out


def test_faults_are_flagged_never_wrong(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    cfg = json.loads(EXAMPLE.read_text())
    cfg.update(device_id="vb-faults", poll_s=1, ntp_hold_s=0)
    cfg["meter"]["timeout_ms"] = 400
    key = bytes.fromhex(cfg["hmac_key"])
    tap = MqttTap("127.0.0.1", mosquitto.port, ["gridpact/meter/vb-faults/reading"], "tap-faults")
    with SerialLine() as line, MeterSim(line.meter, tmp_path / "truth.jsonl", faults=FAULTS) as sim:
        board = VirtualBoard(cfg, line.board, tmp_path / "flash", broker=("127.0.0.1", mosquitto.port))
        board.start()
        try:
            board.wait_until(lambda: len(tap.on("/reading")) >= 42, 70, "42 readings")
        finally:
            board.stop()
            tap.close()
    truths = [truth_values(t) for t in sim.truth_lines()]  # once meter-sim has flushed and closed it
    rs = [verify_reading(p, key) for p in tap.on("/reading")]
    seen = 0
    for r in rs:
        q = r["q"]
        seen |= q
        if q & (TIMEOUT | CRC | EXCEPTION):
            assert r["r"] == {}, r
            continue
        # every value published equals the meter's register value at some physics step
        assert any(all(t.get(k) == v for k, v in r["r"].items()) for t in truths), r
        if q & INVALID:
            assert "i1_A" not in r["r"] and "u1_V" in r["r"], r
        else:
            assert len(r["r"]) == len(PAYLOAD_KEYS["sdm120"]), r
    assert seen & TIMEOUT and seen & CRC and seen & EXCEPTION and seen & INVALID, hex(seen)
    assert seen & STUCK and seen & COUNTER_RESET, hex(seen)
    reset = next(r for r in rs if r["q"] & COUNTER_RESET)
    assert reset["r"]["e_imp_kWh"] < max(r["r"].get("e_imp_kWh", 0) for r in rs)
    assert board.stats()["errors"] == 0
    healthy = [r for r in rs[-5:] if r["q"] & (TIMEOUT | CRC | EXCEPTION | INVALID | STUCK) == 0]
    assert healthy, "the node did not recover after the faults"
