"""The firmware's whole main loop on the real MicroPython interpreter (wasm): its asyncio, its
file system, its struct/hashlib. Only machine/network/ntptime and the network link are stand-ins
(hil/wasm_board/memory (with hil/wasm_board/shims)); what it publishes is checked here with CPython, independently."""

from __future__ import annotations

import json
from pathlib import Path

from firmware.host.devload import DEVICE_DIR
from hil.mpy_wasm import run_micropython
from hil.wiring import verify_reading

HERE = Path(__file__).parent
WASM_BOARD = [
    DEVICE_DIR.parents[1] / "hil" / "wasm_board" / d for d in ("shims", "memory")
]  # memory's machine wins
EXAMPLE = DEVICE_DIR.parent / "config.example.json"
TIMEOUT, CRC, EXCEPTION, REPLAYED = 0x004, 0x008, 0x010, 0x080
GOLDEN_R = {"u1_V": 230.1, "i1_A": 5.0, "p1_W": 1127.5, "s1_VA": 1150.5, "pf1": 0.98, "f_Hz": 50.01,
            "e_imp_kWh": 1234.5, "e_exp_kWh": 56.25}  # fmt: skip


def test_main_loop_on_micropython() -> None:
    cfg = json.loads(EXAMPLE.read_text())
    cfg.update(device_id="wasm-01", poll_s=1, ntp_hold_s=0, health_s=5)
    cfg["broker"]["backoff_max_s"] = 1
    cfg["meter"]["timeout_ms"] = 100
    code = f"CONFIG = {json.dumps(cfg)!r}\n" + (HERE / "wasm_board_scenario_mpy.py").read_text()
    res = run_micropython(code, libs=[DEVICE_DIR, *WASM_BOARD], timeout=120, heap=32 << 20).check()
    pubs = [ln.split() for ln in res.stdout.splitlines() if ln.startswith("PUB ")]
    stats = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("STATS "))[6:])
    key = bytes.fromhex(cfg["hmac_key"])
    readings = [verify_reading(bytes.fromhex(p[2]), key) for p in pubs if p[1].endswith("/reading")]
    seqs = sorted({r["seq"] for r in readings})
    assert seqs == list(range(1, seqs[-1] + 1)), seqs  # no gap across the outage
    assert len(seqs) >= 12 and stats["buffered_in_outage"] >= 2 and stats["connects"] >= 2
    assert any(r["q"] & REPLAYED for r in readings)
    seen = 0
    for r in readings:
        seen |= r["q"]
        if r["q"] & (TIMEOUT | CRC | EXCEPTION):
            assert r["r"] == {}
        else:
            assert r["r"] == GOLDEN_R  # the golden vector's values, read off the fake meter
    assert seen & TIMEOUT and seen & CRC and seen & EXCEPTION, hex(seen)
    retained = {p[1]: bytes.fromhex(p[2]) for p in pubs if p[3] == "1"}
    assert json.loads(retained["gridpact/meter/wasm-01/status"])["st"] == "online"
    assert "homeassistant/sensor/wasm-01/e_imp_kWh/config" in retained
    assert json.loads(retained["gridpact/meter/wasm-01/health"])["boot"] == 1
    assert stats["errors"] == 0, res.stdout[-3000:]


def test_mqtt_client_on_micropython() -> None:
    """PUBACK timeout with DUP resend, giving up, keepalive, refusals: MicroPython's asyncio."""
    res = run_micropython((HERE / "mqtt_checks_mpy.py").read_text(), libs=[DEVICE_DIR, *WASM_BOARD]).check()
    assert "MQTT OK" in res.stdout and int(res.stdout.split("MQTT OK")[1].split()[0]) == 16, res.stdout
