"""The wasm virtual board: the real firmware inside the MicroPython wasm interpreter, driven by Node.

`run_board.mjs` loads the interpreter, copies `firmware/device/*.py` and the shims here
(`machine`, `network`, `ntptime`, the transport bridge) into its filesystem, keeps the board's
flash in a host folder, reads and writes the UART on a pty, and gives the firmware Node's TCP
through its transport seam. A power cycle kills the Node process and starts a new one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from hil.services import REPO_ROOT, ServiceUnavailable

HERE = Path(__file__).resolve().parent
FIRMWARE = REPO_ROOT / "firmware" / "device"


class WasmBoard:
    """One node: `start()` boots it, `stop()` cuts power, `power_cycle()` does both."""

    def __init__(
        self,
        config: dict[str, Any],
        uart_device: str,
        state_dir: Path,
        heap: int = 2 << 20,
        device_key: bytes | None = None,
    ) -> None:
        """`device_key`: 32 bytes the installer provisions as the node's `device.key` (the wasm
        build has no os.urandom to make one; without it the node publishes no statements)."""
        node = shutil.which("node")
        if node is None:
            raise ServiceUnavailable("node is not installed: the wasm board runs under Node 20+")
        self.node = node
        self.uart = uart_device
        self.state = state_dir
        self.heap = heap
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "config.json").write_text(json.dumps(config))
        if device_key is not None:
            (self.state / "device.key").write_bytes(device_key)
        self.console: list[str] = []
        self.boots = 0
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def command(self, reset: str) -> list[str]:
        return [
            self.node, str(HERE / "run_board.mjs"), "--fw", str(FIRMWARE), "--shims", str(HERE / "shims"),
            "--state", str(self.state), "--uart", self.uart, "--reset", reset, "--heap", str(self.heap),
        ]  # fmt: skip

    def start(self, reset: str = "power", timeout: float = 20.0) -> None:
        """Power on and wait for the firmware's first console line (raises if it died at boot)."""
        self._proc = subprocess.Popen(
            self.command(reset), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.boots += 1
        seen = len(self.console)
        self._reader = threading.Thread(target=self._read, args=(self._proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while len(self.console) == seen:
            if self._proc.poll() is not None:
                time.sleep(0.1)
                raise AssertionError(f"the wasm board exited at boot: {self.console[-20:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the wasm board printed nothing within {timeout:.0f} s")
            time.sleep(0.02)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.console.append(line.rstrip("\n"))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Cut the power: the Node process is killed; flash written in the last 50 ms may be lost."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(10)
            if self._reader is not None:
                self._reader.join(5)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None

    def power_cycle(self, off_s: float = 0.5) -> None:
        self.stop()
        time.sleep(off_s)
        self.start("power")
