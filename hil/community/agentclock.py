"""The gateways' clock in `--agents gateway`: the simulation's stepped time, seen from asyncio.

`run_trading` takes a clock with `now()` and `async sleep(s)`. Here `now()` is the SimClock the
meters run on, and `sleep()` parks the task until the driver has moved simulated time past its
deadline, so timers inside the gateways fire exactly when the simulation says, however fast it runs.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any


class SteppedAsyncClock:
    """A gridpact.core.clock.Clock over a meter_sim SimClock; the driver calls `advanced()` after each step."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return float(self.sim.now())

    async def sleep(self, seconds: float) -> None:
        """Wait for simulated time to pass `now + seconds` (a zero sleep just yields)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        self.loop = loop
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiters, (self.now() + seconds, next(self._seq), fut))
        await fut

    def release(self) -> int:
        """On the loop's thread: wake every sleeper whose deadline has passed; returns how many."""
        now = self.now()
        woken = 0
        while self._waiters and self._waiters[0][0] <= now:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
                woken += 1
        return woken

    def advanced(self) -> None:
        """From the driver's thread, after moving the SimClock."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.release)
