"""Board backends for the HIL suite: one interface over a real board and the virtual ones.

- `VirtualCpythonBoard`: the firmware's own `VirtualBoard` (the real main loop on CPython, its
  UART on a pty).
- `VirtualWasmBoard`: the same firmware inside the real MicroPython wasm interpreter (Node), its
  UART on a pty and its network stream bridged to Node's TCP (hil/wasm_board).
- `HardwareBoard`: an ESP32 or Pico W on the bench, flashed with `gridpact firmware deploy`
  (mpremote), its console read from the USB serial port, reset by DTR/RTS or mpremote.
Every wait takes an explicit timeout and fails with what it was waiting for.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hil.rig import Rig
from hil.services import REPO_ROOT


def node_config(rig: Rig, broker_host: str, broker_port: int) -> dict[str, Any]:
    """The node's config.json for this rig (the example config with the rig's values)."""
    cfg = json.loads((REPO_ROOT / "firmware" / "config.example.json").read_text())
    cfg["wifi"] = {"ssid": rig.wifi_ssid or "virtual", "password": rig.wifi_password or "virtual"}
    cfg["broker"].update(
        {"host": broker_host, "port": broker_port, "user": "", "password": "", "keepalive_s": 10}
    )
    cfg["broker"]["backoff_max_s"] = 2
    cfg["device_id"] = rig.device_id
    cfg["hmac_key"] = rig.hmac_key_hex
    cfg["meter"].update({"model": rig.meter_model, "unit_id": rig.unit_id, "baud": rig.rs485_baud})
    cfg["meter"]["parity"] = rig.rs485_parity
    cfg["poll_s"] = rig.poll_s
    cfg["prefix"] = rig.topic_prefix
    cfg["health_s"] = 5
    cfg["ntp_hold_s"] = 0
    return cfg


class Board(Protocol):
    """What the scenarios need from a board, real or virtual."""

    console: list[str]

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def power_cycle(self) -> None: ...

    def wait_console(self, pattern: str, timeout: float) -> str: ...


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


class VirtualCpythonBoard:
    """The firmware's VirtualBoard on the host clock, UART on `uart_device`."""

    def __init__(self, rig: Rig, uart_device: str, state_dir: Path, broker: tuple[str, int]) -> None:
        from gridpact.core.clock import SystemClock
        from hil.virtual_board import VirtualBoard

        board = "pico-w" if rig.board == "pico-w" else "esp32"
        self.vb = VirtualBoard(
            node_config(rig, *broker), uart_device, state_dir, board=board, clock=SystemClock(),
            broker=broker, name=rig.device_id,
        )  # fmt: skip

    @property
    def console(self) -> list[str]:
        return list(self.vb.console)

    def start(self) -> None:
        self.vb.start()

    def stop(self) -> None:
        if self.vb.running:
            self.vb.stop()

    def power_cycle(self) -> None:
        self.vb.power_cycle(off_s=0.5)

    def stats(self) -> dict[str, Any]:
        return self.vb.stats()

    def wait_console(self, pattern: str, timeout: float) -> str:
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.vb.console if re.search(pattern, line)][:1]
            return bool(found)

        _wait(seen, timeout, f"console line matching {pattern!r}")
        return found[0]


class VirtualWasmBoard:
    """The firmware inside the MicroPython wasm interpreter (hil/wasm_board), UART on `uart_device`."""

    def __init__(self, rig: Rig, uart_device: str, state_dir: Path, broker: tuple[str, int]) -> None:
        from hil.wasm_board import WasmBoard

        self.wb = WasmBoard(node_config(rig, *broker), uart_device, state_dir)

    @property
    def console(self) -> list[str]:
        return list(self.wb.console)

    def start(self) -> None:
        self.wb.start()

    def stop(self) -> None:
        self.wb.stop()

    def power_cycle(self) -> None:
        self.wb.power_cycle(off_s=0.5)

    def wait_console(self, pattern: str, timeout: float) -> str:
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.wb.console if re.search(pattern, line)][:1]
            return bool(found)

        _wait(seen, timeout, f"console line matching {pattern!r}")
        return found[0]


class HardwareBoard:
    """A real board: flashed through mpremote, console captured from its USB serial port."""

    def __init__(self, rig: Rig, state_dir: Path, broker: tuple[str, int]) -> None:
        if not rig.console_port:
            raise ValueError("a hardware board needs board.console in the rig file")
        self.rig = rig
        self.port = rig.console_port
        self.config_path = state_dir / "config.json"
        self.config_path.write_text(json.dumps(node_config(rig, *broker)))
        self.console: list[str] = []
        self._serial: Any = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()

    def deploy_command(self) -> list[str]:
        """`gridpact firmware deploy` for this rig (copies the bundle and config, resets the board)."""
        return [
            sys.executable, "-m", "gridpact.cli", "firmware", "deploy", "--port", self.port,
            "--board", self.rig.board, "--config", str(self.config_path),
        ]  # fmt: skip

    def start(self) -> None:
        proc = subprocess.run(self.deploy_command(), capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise AssertionError(
                f"deploy failed ({proc.returncode}): {proc.stdout[-800:]}{proc.stderr[-800:]}"
            )
        self._open_console()

    def _open_console(self) -> None:
        import serial

        self._serial = serial.Serial(self.port, 115200, timeout=0.2)
        self._stop.clear()
        self._reader = threading.Thread(target=self._read, name="hil-console", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = self._serial.read(256)
            except Exception as exc:  # the USB port vanished (board reset): note it and stop reading
                self.console.append(f"[hil] console read failed: {exc!r}")
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            self.console.extend(line.decode(errors="replace").rstrip("\r") for line in lines)

    def _close_console(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(2)
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    def stop(self) -> None:
        self._close_console()

    def power_cycle(self) -> None:
        """Reset through the rig's reset line: DTR/RTS pulse on the USB serial adapter, or mpremote."""
        line = self.rig.reset_line
        if line in ("dtr", "rts") and self._serial is not None:
            setattr(self._serial, line, True)
            time.sleep(0.2)
            setattr(self._serial, line, False)
            return
        self._close_console()
        cmd = [sys.executable, "-m", "mpremote", "connect", self.port, "reset"]
        subprocess.run(cmd, capture_output=True, timeout=30, check=True)
        time.sleep(1.0)
        self._open_console()

    def wait_console(self, pattern: str, timeout: float) -> str:
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.console if re.search(pattern, line)][:1]
            return bool(found)

        _wait(seen, timeout, f"console line matching {pattern!r}")
        return found[0]
