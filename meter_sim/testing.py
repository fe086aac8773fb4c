"""Helpers for tests and the rig: a socat pty pair (a real serial line without hardware), decoding."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


class PtyPair:
    """Two linked ptys from socat: the meter opens `a`, the client opens `b`."""

    def __init__(self, directory: str | Path | None = None) -> None:
        if shutil.which("socat") is None:
            raise RuntimeError("socat is not installed: apt-get install socat")
        self._tmp = tempfile.TemporaryDirectory(prefix="msim-pty-") if directory is None else None
        base = Path(self._tmp.name if self._tmp is not None else str(directory))
        self.a, self.b = str(base / "a"), str(base / "b")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 5.0) -> PtyPair:
        self.proc = subprocess.Popen(
            ["socat", "-d", "-d", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while not (Path(self.a).exists() and Path(self.b).exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = (
                    self.proc.stderr.read().decode()
                    if self.proc.stderr and self.proc.poll() is not None
                    else ""
                )
                self.close()
                raise RuntimeError(f"socat did not make the pty pair: {err}")
            time.sleep(0.01)
        return self

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> PtyPair:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def registers_to_floats(registers: Sequence[int]) -> list[float]:
    """Float32 values from 16-bit registers, high word first (Eastron order)."""
    return [
        struct.unpack(">f", struct.pack(">HH", registers[i], registers[i + 1]))[0]
        for i in range(0, len(registers) - 1, 2)
    ]


def values_by_key(start: int, registers: Sequence[int], keys_by_address: dict[int, str]) -> dict[str, float]:
    """Map decoded floats of a read starting at `start` back to register-map keys."""
    floats = registers_to_floats(registers)
    return {
        keys_by_address[start + 2 * i]: v for i, v in enumerate(floats) if start + 2 * i in keys_by_address
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def cpu_share(pid: int, seconds: float) -> float:
    """The share of one core a process used over the next `seconds` (0.0 = idle, 1.0 = one busy core)."""
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - t0)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
