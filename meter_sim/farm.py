"""Many meters on one asyncio loop and one clock: the in-process API of the simulator and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from gridpact.core.clock import AcceleratedClock
from meter_sim.clock import SimClock
from meter_sim.faults import Fault
from meter_sim.inverter import Inverter
from meter_sim.maps import load_map
from meter_sim.meter import Meter
from meter_sim.profiles import Household, Profile
from meter_sim.server import RtuEndpoint, TcpEndpoint
from meter_sim.truth import TruthWriter

log = logging.getLogger("meter_sim")

TICK_PERIOD_S = 0.25  # wall seconds between background catch-ups, however fast the clock runs
SLICE_TICKS = 20_000  # ticks a meter runs before the loop may handle a signal or a request
CLOSE_BUDGET_S = 1.0  # wall seconds close() may spend bringing the truth file up to date


class MeterFarm:
    """Owns meters, endpoints and the truth file; `async with` stops everything it started."""

    def __init__(
        self,
        clock: AcceleratedClock | SimClock | None = None,
        *,
        truth: str | Path | None = None,
        truth_every_s: float | None = None,
        seed: int = 0,
    ) -> None:
        self.clock = clock or AcceleratedClock()
        self.truth = TruthWriter(truth) if truth is not None else None
        self.truth_every_s, self.seed = truth_every_s, seed
        self.meters: list[Meter] = []
        self.endpoints: list[TcpEndpoint | RtuEndpoint] = []
        self._ticker: asyncio.Task[None] | None = None
        if isinstance(self.clock, SimClock):
            self.clock.listeners.append(self._on_advance)

    def add_meter(
        self,
        model: str,
        unit_id: int,
        profile: str | Profile | Household,
        *,
        seed: int | None = None,
        name: str | None = None,
        faults: Sequence[Fault] = (),
        tick_s: float = 1.0,
    ) -> Meter:
        """A new meter on this farm's clock (its seed defaults to farm seed + unit id)."""
        meter = Meter(
            load_map(model),
            unit_id,
            profile,
            self.clock,
            seed=self.seed + unit_id if seed is None else seed,
            name=name or f"{model}-{unit_id}-{len(self.meters)}",
            tick_s=tick_s,
            truth=self.truth,
            truth_every_s=self.truth_every_s,
            faults=faults,
        )
        self.meters.append(meter)
        return meter

    async def serve_tcp(
        self, host: str, port: int, meters: Sequence[Meter] | None = None, inverters: Sequence[Inverter] = ()
    ) -> TcpEndpoint:
        """Serve `meters` (default: all) and battery `inverters` on a Modbus TCP port (0: pick a free one)."""
        endpoint = TcpEndpoint(meters or self.meters, host, port, seed=self.seed, inverters=inverters)
        _check_units(endpoint.meters)
        taken = {m.unit_id for m in endpoint.meters}
        if len(endpoint.inverters) != len(inverters) or taken & set(endpoint.inverters):
            raise ValueError("each inverter needs a unit id of its own on the endpoint")
        await endpoint.start()
        self.endpoints.append(endpoint)
        self._start_ticker()
        return endpoint

    async def serve_rtu(
        self,
        device: str,
        meters: Sequence[Meter] | None = None,
        *,
        baud: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
    ) -> RtuEndpoint:
        """Serve `meters` (default: all) on one RTU bus (a serial device or a pty)."""
        endpoint = RtuEndpoint(meters or self.meters, device, baud, parity, stopbits, seed=self.seed)
        _check_units(endpoint.meters)
        for meter in endpoint.meters:
            _show_line_settings(meter, baud, f"{parity}{stopbits}")
        await endpoint.start()
        self.endpoints.append(endpoint)
        self._start_ticker()
        return endpoint

    def sync(self) -> None:
        """Bring every meter to the clock's time (truth lines included)."""
        now = self.clock.now()
        for meter in self.meters:
            meter.sync(now)

    def _on_advance(self, now: float) -> None:
        for meter in self.meters:
            meter.sync(now)

    def _start_ticker(self) -> None:
        """With a real clock, meters tick in the background so no backlog of ticks builds up
        between requests (at --speed 3600 an idle half hour is millions of ticks, which a later
        request or the stop would have to run at once) and the truth file stays complete."""
        if self._ticker is None and isinstance(self.clock, AcceleratedClock):
            self._ticker = asyncio.create_task(self._tick_forever(self.clock), name="meter-ticker")

    async def _tick_forever(self, clock: AcceleratedClock) -> None:
        tick = min((m.tick_s for m in self.meters), default=1.0)
        period = max(clock.real_seconds(tick), TICK_PERIOD_S)  # batches ticks: no wake-up per tick
        while True:
            await asyncio.sleep(period)
            now = clock.now()
            for meter in self.meters:
                while meter.t_synced < now:  # in slices, so a signal is handled between them
                    meter.sync(min(now, meter.t_synced + SLICE_TICKS * meter.tick_s))
                    await asyncio.sleep(0)
            if self.truth is not None:
                self.truth.flush()

    def _final_sync(self) -> None:
        """Bring meters up to the clock for the truth file, within CLOSE_BUDGET_S of wall time."""
        now, deadline = self.clock.now(), time.monotonic() + CLOSE_BUDGET_S
        for meter in self.meters:
            while meter.t_synced < now and time.monotonic() < deadline:
                meter.sync(min(now, meter.t_synced + SLICE_TICKS * meter.tick_s))
        behind = [m.name for m in self.meters if m.t_synced < now]
        if behind:
            log.warning("meter-sim: stopped before the truth caught up with the clock for %s", behind)

    async def close(self) -> None:
        """Stop the endpoints and the ticker, bring meters up to date, close the truth file."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for endpoint in self.endpoints:
            await endpoint.stop()
        self.endpoints.clear()
        if self.truth is not None:  # without a truth file nothing reads the meters after this
            self._final_sync()
        if isinstance(self.clock, SimClock) and self._on_advance in self.clock.listeners:
            self.clock.listeners.remove(self._on_advance)
        if self.truth is not None:
            self.truth.close()

    async def __aenter__(self) -> MeterFarm:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _check_units(meters: Sequence[Meter]) -> None:
    units = [m.unit_id for m in meters]
    if len(set(units)) != len(units):
        raise ValueError(f"two meters share a unit id on one endpoint: {sorted(units)}")
    if not units:
        raise ValueError("an endpoint needs at least one meter")


def _show_line_settings(meter: Meter, baud: int, framing: str) -> None:
    """Holding registers read back the bus settings the meter actually runs at (where listed)."""
    for key, wanted in (("baud", baud), ("parity", framing)):
        if key in meter.holding:
            reg = meter.rmap.holding_by_key(key)
            code = next((c for c, v in reg.choices.items() if v == wanted), None)
            if code is not None:
                meter.holding[key] = float(code)
