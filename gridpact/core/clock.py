"""The clock protocols every timed part uses, so the simulator can run it faster than real time.

`TimeSource` reads the time (`now()`: Unix seconds); `Clock` also waits on it; `BoardTime` is what
a virtual board runs on: the world's time (what NTP would answer) and the rate of its own clock;
`SteppedBoardTime` is board time a simulation steps.

Implementations: `SystemClock` (real time; all three) and `AcceleratedClock` (real time from a
start, `rate` times faster: the software meters' `--speed`, virtual boards in tests) here;
meter_sim.clock.SimClock (stepped by a simulation); the stepped board times
hil.virtual_time.VirtualTime and hil.community.simloop.BoardClock; the gateways' clocks
on the simulator's loops (hil.community.agentclock, hil.community.simloop.LoopClock)."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable


class TimeSource(Protocol):
    """What reads the time only (the forecaster, the software meters): Unix seconds, real or virtual."""

    def now(self) -> float: ...


class Clock(TimeSource, Protocol):
    """What also waits on it (the gateway's loops, trading, the chain runner)."""

    async def sleep(self, seconds: float) -> None: ...


class BoardTime(TimeSource, Protocol):
    """A virtual board's time: `now()` is the world's Unix time (its NTP answer); its own monotonic
    clock (ticks_ms, sleeps, timeouts) runs `rate` board seconds per real second."""

    rate: float


@runtime_checkable
class SteppedBoardTime(BoardTime, Protocol):
    """Board time that moves only when the simulator steps it: the board's own monotonic seconds,
    and a blocking sleep that moves them on (nothing else runs meanwhile on a device)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time: Unix seconds and asyncio.sleep."""

    rate = 1.0

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class AcceleratedClock:
    """Unix time that starts at `start` (default: now) and runs `rate` times faster than real time."""

    def __init__(self, rate: float = 1.0, start: float | None = None) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.start = time.time() if start is None else float(start)
        self._t0 = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._t0) * self.rate

    def real_seconds(self, seconds: float) -> float:
        """How long `seconds` of this clock's time take on the wall."""
        return seconds / self.rate
