"""A MicroPython board on a serial port: the wasm build's REPL (repl.mjs) behind a pty.

`gridpact firmware deploy --port PORT` and mpremote see a serial device whose other end is the
real MicroPython REPL (raw REPL, soft and hard reset) with a filesystem kept in a host folder.
The pty is made here rather than by socat: this side keeps the pty open between mpremote runs,
so one mpremote closing the port does not hang up the line for the next, as it would not on a
USB serial adapter either.
"""

from __future__ import annotations

import contextlib
import os
import pty
import selectors
import shutil
import subprocess
import threading
import tty
from pathlib import Path

from hil.services import REPO_ROOT, ServiceUnavailable

BRIDGE = Path(__file__).with_name("repl.mjs")
SHIMS = REPO_ROOT / "hil" / "wasm_board" / "shims"


class SerialBoard:
    """`start()` powers the board (main.py runs if the flash has one); `stop()` cuts the line."""

    def __init__(
        self,
        flash: Path,
        port: Path,
        *,
        uart: str | None = None,
        flash_bytes: int | None = None,
        read_only: bool = False,
        drop_after: int | None = None,
    ) -> None:
        node = shutil.which("node")
        if node is None:
            raise ServiceUnavailable("node is not installed: the wasm board runs under Node 20+")
        self.command = [node, str(BRIDGE), "--flash", str(flash), "--rom", str(SHIMS)]
        if uart is not None:
            self.command += ["--uart", uart]
        if flash_bytes is not None:
            self.command += ["--flash-bytes", str(flash_bytes)]
        if read_only:
            self.command += ["--read-only", "1"]
        if drop_after is not None:
            self.command += ["--drop-after", str(drop_after)]
        self.port = port
        self.console = bytearray()  # everything the board wrote on its serial line
        self.stderr = b""
        self._proc: subprocess.Popen[bytes] | None = None
        self._master = -1
        self._slave = -1
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> SerialBoard:
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        with contextlib.suppress(FileNotFoundError):
            self.port.unlink()
        self.port.symlink_to(os.ttyname(self._slave))
        self._proc = subprocess.Popen(
            self.command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._stop.clear()
        self._thread = threading.Thread(target=self._relay, name="serial-board", daemon=True)
        self._thread.start()
        return self

    def _relay(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self._master, selectors.EVENT_READ, "host")
        sel.register(proc.stdout, selectors.EVENT_READ, "board")
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.2):
                    if key.data == "host":
                        data = os.read(self._master, 4096)
                        proc.stdin.write(data)
                        proc.stdin.flush()
                    else:
                        data = os.read(proc.stdout.fileno(), 4096)
                        if not data:
                            return  # the board (the line) is gone
                        self.console += data
                        os.write(self._master, data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            self._hang_up()

    def _hang_up(self) -> None:
        """The line is gone: mpremote's next read or write on the port fails."""
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            if self._proc.stderr is not None:
                self.stderr = self._proc.stderr.read()
            for f in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
            self._proc = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._hang_up()
        with contextlib.suppress(FileNotFoundError):
            self.port.unlink()

    def __enter__(self) -> SerialBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
