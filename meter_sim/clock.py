"""The meters' stepped clock, for deterministic simulations.

Real and accelerated time is gridpact.core.clock.AcceleratedClock (`--speed`); this SimClock is,
like it, a gridpact.core.clock.TimeSource (`now()`), and tells its listeners when it moves.
"""

from __future__ import annotations

from collections.abc import Callable


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
