"""Meter clocks: real time, accelerated, or stepped by a simulation (deterministic).

Both are gridpact.core.clock.TimeSource (`now()`); the meters also ask how long meter time takes
on the wall (`real_seconds`), and a SimClock tells its listeners when it moves.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RealClock:
    """Unix time, optionally running `speed` times faster from `start`."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if not speed > 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self.start = time.time() if start is None else float(start)
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._mono0) * self.speed

    def real_seconds(self, meter_seconds: float) -> float:
        """How long `meter_seconds` of meter time take on the wall."""
        return meter_seconds / self.speed


class SimClock:
    """Time moves only when `advance()` is called; listeners (meters) catch up synchronously."""

    def __init__(self, start: float = 1767225600.0) -> None:
        self.t = float(start)
        self.start = self.t
        self.listeners: list[Callable[[float], None]] = []

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        """Move time forward by `seconds` (>= 0); every listener is up to date on return."""
        if not seconds >= 0:
            raise ValueError("a SimClock only moves forward")
        self.t += seconds
        for listener in list(self.listeners):
            listener(self.t)
        return self.t

    def real_seconds(self, meter_seconds: float) -> float:
        """A stepped clock has no wall-clock rate: faults such as `slow` use real seconds."""
        return meter_seconds


Clock = RealClock | SimClock
