"""The clock protocol every timed part uses, so the simulator can run it faster than real time.

Implementations: `SystemClock` here (real time); meter_sim.clock's RealClock and SimClock (time
sources for the software meters); the simulator's stepped clocks (hil.community.agentclock,
firmware.host.virtual_time)."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class TimeSource(Protocol):
    """What reads the time only (the forecaster, the software meters): Unix seconds, real or virtual."""

    def now(self) -> float: ...


class Clock(TimeSource, Protocol):
    """What also waits on it (the gateway's loops, trading, the chain runner)."""

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time: Unix seconds and asyncio.sleep."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
