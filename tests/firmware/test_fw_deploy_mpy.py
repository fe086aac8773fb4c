"""`gridpact firmware deploy` onto a real MicroPython: the wasm build's REPL behind a pty
(hil/mpy_wasm/repl.mjs, serial_board.py), driven by the unmodified deploy command and mpremote.

The board boots from the copied files (main.py, the .mpy bundle, config.json), polls a meter
served by `gridpact meter-sim serve --rtu` over a pty and publishes signed readings to a real
Mosquitto through the firmware's transport seam (the wasm build has no sockets). A failed copy
(full flash, read-only flash, a dropped line) is reported and leaves the previous firmware to boot.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware.host.build import build
from hil.mpy_wasm.serial_board import SerialBoard
from hil.services import MosquittoBroker
from hil.wiring import verify_reading
from meter_sim.testing import PtyPair

GRIDPACT = str(Path(sys.executable).with_name("gridpact"))
EXAMPLE = Path(__file__).resolve().parents[2] / "firmware" / "config.example.json"


def _config(tmp_path: Path, broker_port: int, device: str) -> Path:
    cfg = json.loads(EXAMPLE.read_text())
    cfg.update(device_id=device, poll_s=1, ntp_hold_s=0, health_s=5)
    cfg["broker"].update(host="127.0.0.1", port=broker_port, backoff_max_s=1)
    cfg["meter"]["timeout_ms"] = 300
    path = tmp_path / f"{device}.json"
    path.write_text(json.dumps(cfg))
    return path


def _deploy(port: Path, config: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    argv = [GRIDPACT, "firmware", "deploy", "--port", str(port), "--board", "esp32", "--config", str(config)]
    return subprocess.run([*argv, "--bundle", str(bundle)], capture_output=True, text=True, timeout=300)


@pytest.fixture
def meter() -> Iterator[PtyPair]:
    """An SDM120 from meter_sim on one end of a pty pair; the board's UART is the other end."""
    with PtyPair() as pair:
        proc = subprocess.Popen(
            [GRIDPACT, "meter-sim", "serve", "--rtu", pair.a, "--profile", "constant:load_w=1150,pv_w=0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().startswith("meter-sim ready")
        yield pair
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        proc.stdout.close()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("esp32", tmp_path_factory.mktemp("fw") / "bundle").out


class _Readings:
    def __init__(self, broker: MosquittoBroker, device: str) -> None:
        self.got: list[bytes] = []
        self.event = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{device}")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"gridpact/meter/{device}/reading", qos=1)
        self.client.loop_start()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.got.append(bytes(msg.payload))
        self.event.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_deploy_copies_resets_and_the_node_boots_and_publishes(
    tmp_path: Path, mosquitto: MosquittoBroker, meter: PtyPair, bundle: Path
) -> None:
    flash = tmp_path / "flash"
    config = _config(tmp_path, mosquitto.port, "wasm-dep-01")
    readings = _Readings(mosquitto, "wasm-dep-01")
    board = SerialBoard(flash, tmp_path / "ttyBOARD", uart=meter.b).start()
    try:
        t0 = time.monotonic()
        res = _deploy(board.port, config, bundle)
        took = time.monotonic() - t0
        print(f"deploy onto the wasm MicroPython: rc={res.returncode} in {took:.1f} s")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "deployed" in res.stdout
        on_flash = sorted(p.name for p in flash.iterdir())
        assert on_flash == sorted(
            [*(p.name for p in bundle.iterdir() if p.suffix == ".mpy"), "main.py", "config.json"]
        )
        assert json.loads((flash / "config.json").read_text())["device_id"] == "wasm-dep-01"
        assert readings.event.wait(60), bytes(board.console[-3000:]).decode(errors="replace")
        key = bytes.fromhex(json.loads(config.read_text())["hmac_key"])
        first = verify_reading(readings.got[0], key)
        print(f"first reading from the deployed node: seq={first['seq']} r={first['r']}")
        assert first["r"].get("p1_W") == pytest.approx(1150, rel=0.05)
    finally:
        board.stop()
        readings.close()


NODE_STATE = frozenset({"boot.dat", "ring.dat", "seq.dat"})  # written by the running node, not by a deploy


def _firmware_files(flash: Path) -> dict[str, bytes]:
    """The deployed files (code, config, keys) on the board's flash: what a failed deploy must leave as
    they were. The node's own state files change whenever the old firmware boots, which it may do as
    the board starts, before the deploy takes the line."""
    return {p.name: p.read_bytes() for p in flash.iterdir() if p.is_file() and p.name not in NODE_STATE}


@pytest.mark.parametrize("failure", ["full", "read-only", "dropped"])
def test_a_failed_deploy_is_reported_and_the_old_firmware_still_boots(
    tmp_path: Path, mosquitto: MosquittoBroker, meter: PtyPair, bundle: Path, failure: str
) -> None:
    flash = tmp_path / "flash"
    old = _config(tmp_path, mosquitto.port, "wasm-old-01")
    with SerialBoard(flash, tmp_path / "ttyBOARD", uart=meter.b) as board:
        assert _deploy(board.port, old, bundle).returncode == 0
    before = _firmware_files(flash)
    used = sum(len(p.read_bytes()) for p in flash.iterdir() if p.is_file())

    new = _config(tmp_path, mosquitto.port, "wasm-new-01")
    options: dict[str, object] = {
        "full": {"flash_bytes": used + 4000},  # room for a few files, not a second copy
        "read-only": {"read_only": True},
        "dropped": {"drop_after": 20_000},  # the line goes in the middle of the copy
    }[failure]  # type: ignore[assignment]
    board = SerialBoard(flash, tmp_path / "ttyBOARD", uart=meter.b, **options)  # type: ignore[arg-type]
    board.start()
    try:
        res = _deploy(board.port, new, bundle)
    finally:
        board.stop()
    print(f"{failure}: rc={res.returncode}: {res.stderr.strip().splitlines()[-1]}")
    assert res.returncode != 0
    assert "deploy failed: copying to the board failed" in res.stderr
    assert "keeps its previous firmware" in res.stderr
    assert _firmware_files(flash) == before  # every old file as it was (a partial staging folder aside)

    readings = _Readings(mosquitto, "wasm-old-01")
    try:
        with SerialBoard(flash, tmp_path / "ttyBOARD", uart=meter.b) as board:
            assert readings.event.wait(60), bytes(board.console[-3000:]).decode(errors="replace")
    finally:
        readings.close()
