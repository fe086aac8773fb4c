"""Time sources for virtual boards: the host's clock, or an accelerated one for simulations.

A virtual board reads the world's time (what NTP would answer) from `clock.time()` and runs its
own monotonic clock (ticks_ms, sleeps, timeouts) `clock.rate` times faster than real time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What a virtual board needs from a time source."""

    rate: float  # board seconds per real second

    def time(self) -> float:
        """The world's Unix time now, in seconds."""
        ...


class SystemClock:
    """The host's own clock, at real speed."""

    rate = 1.0

    def time(self) -> float:
        return time.time()


class AcceleratedClock:
    """Unix time that starts at `start` (default: now) and runs `rate` times faster than real time."""

    def __init__(self, rate: float, start: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self._start = time.time() if start is None else float(start)
        self._t0 = time.monotonic()

    def time(self) -> float:
        return self._start + (time.monotonic() - self._t0) * self.rate
