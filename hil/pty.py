"""A linked pair of ptys from socat: the virtual RS-485 cable between a meter and a board."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hil.services import ServiceUnavailable


class PtyPair:
    """Two pty ends, `a` and `b`, joined by socat (raw, no echo); stop() removes them."""

    def __init__(self) -> None:
        socat = shutil.which("socat")
        if socat is None:
            raise ServiceUnavailable("socat is not installed: `sudo apt-get install -y socat`")
        self._dir = Path(tempfile.mkdtemp(prefix="gridpact-pty-"))
        self.a = str(self._dir / "a")
        self.b = str(self._dir / "b")
        self._proc = subprocess.Popen(
            [socat, "-d", "-d", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self.stop()
                raise ServiceUnavailable(f"socat did not create the pty pair: {err[-500:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._proc.stderr:
            self._proc.stderr.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PtyPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
