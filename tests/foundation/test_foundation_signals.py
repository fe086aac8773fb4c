"""`gridpact.core.signals.stop_within`: a signal ends the process within its deadline even when code
in the main thread catches the KeyboardInterrupt (as a cluster client's waits may)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.process_helpers import stop_and_time

SWALLOWER = """
import sys, time
from gridpact.core.signals import stop_within
with stop_within(0.5):
    ready = False
    while True:  # a library that swallows the interrupt and goes on
        try:
            if not ready:  # inside the try: the one signal cannot land outside it
                ready = True
                print("ready", flush=True)
            time.sleep(0.05)
        except KeyboardInterrupt:
            pass
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_swallowed_interrupt_still_ends_the_process_by_the_deadline(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SWALLOWER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        took = stop_and_time(proc, sig)
        rc = proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert rc == 130
    assert took < 2.0, f"took {took:.2f} s"
    assert "still running 0.5 s after the signal" in (proc.stderr.read() if proc.stderr else "")
