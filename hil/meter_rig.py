"""A meter_sim meter served on an RTU line (a pty or the bench's RS-485 adapter) from its own thread.

The HIL fixtures are synchronous; meter_sim's farm is asyncio. This adapter owns one event loop
in a daemon thread and offers blocking calls: inject a fault, read the meter's truth, stop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from pathlib import Path
from typing import Any


class MeterOnLine:
    """One software meter answering Modbus RTU on `device`, on a real-time clock."""

    def __init__(
        self, device: str, model: str = "sdm120", unit_id: int = 1, profile: str = "constant:load_w=2300,pv_w=0",
        baud: int = 9600, parity: str = "N", seed: int = 0, truth: Path | None = None,
    ) -> None:  # fmt: skip
        from gridpact.core.clock import AcceleratedClock
        from meter_sim.farm import MeterFarm

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hil-meter", daemon=True)
        self._thread.start()
        self.clock = AcceleratedClock()
        self.truth_path = truth
        self.farm = MeterFarm(self.clock, seed=seed, truth=truth)
        self.meter = self.farm.add_meter(model, unit_id, profile)
        self._call(self.farm.serve_rtu(device, [self.meter], baud=baud, parity=parity))

    def _call(self, coro: Any, timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a plain call on the meter's loop thread (the meter is not thread-safe)."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def call() -> None:
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                fut.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        return fut.result(10)

    def inject(self, fault: str, duration_s: float, **params: Any) -> None:
        """Start a meter_sim fault now (no_response, crc, exception, stuck, reset, nan, garbage, slow)."""
        self._run(self.meter.inject, fault, duration_s, **params)

    def truth(self) -> dict[str, float]:
        """The values the meter's registers hold right now."""
        return self._run(self.meter.registers)

    def truth_rows(self) -> list[dict[str, Any]]:
        """The truth file's rows so far (values the registers held, per physics step)."""
        if self.truth_path is None:
            raise ValueError("this meter keeps no truth file")
        self._run(self.farm.sync)
        if self.farm.truth is not None:
            self._run(self.farm.truth.flush)
        rows = []
        for line in self.truth_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line being written
        return rows

    def now(self) -> float:
        return self.clock.now()

    def stop(self) -> None:
        if self._loop.is_running():
            try:
                self._call(self.farm.close(), timeout=10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()
