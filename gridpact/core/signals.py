"""SIGTERM handled like Ctrl-C, so one unwinding path (every `finally`, every clean-up) serves both."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block SIGTERM raises KeyboardInterrupt in the main thread; the old handler comes back after."""
    old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def stop_within(deadline_s: float, status: int = 130) -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise KeyboardInterrupt in the main thread, and the process
    is gone `deadline_s` after the first signal whatever the main thread does: a library that catches
    the interrupt (a cluster client's waits) cannot keep it running. Children that must die with it
    need a parent-death signal (hil.services, hil.study.cluster)."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        if not fired.is_set():
            fired.set()
            threading.Thread(target=watchdog, name="stop-watchdog", daemon=True).start()
        raise KeyboardInterrupt(f"signal {signum}")

    def watchdog() -> None:
        time.sleep(deadline_s)
        print(
            f"stopping: still running {deadline_s} s after the signal; exiting now",
            file=sys.stderr,
            flush=True,
        )
        os._exit(status)

    fired = threading.Event()
    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
