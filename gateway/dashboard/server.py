"""Running the dashboard inside the gateway's TaskGroup: uvicorn without its own signal handling.

The gateway's root task owns SIGTERM/SIGINT; cancelling `serve` stops uvicorn at once (open SSE
streams are ended by closing the hub) so the service still stops within 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from gateway.dashboard.app import HouseholdSite, create_app
from gateway.dashboard.auth import AccountStore
from gateway.dashboard.household import ReadingSource, live_event, local_midnight, snapshot
from gateway.dashboard.live import LiveHub
from gridpact.core.wire import Reading

WATCH_S = 0.2


class _EmbeddedServer(uvicorn.Server):
    """uvicorn.Server that leaves signals to the process that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_app(
    app: Starlette,
    host: str,
    port: int,
    started: asyncio.Event | None = None,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Serve `app` until cancelled; `on_stop` runs first on the way out (ends open streams)."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", access_log=False,
        timeout_graceful_shutdown=1, server_header=False,
    )  # fmt: skip
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(), name="dashboard-uvicorn")
    try:
        while not server.started:
            if task.done():
                await task  # raises the bind error
                raise OSError(f"dashboard server on {host}:{port} stopped at start")
            await asyncio.sleep(0.02)
        if started is not None:
            started.set()
        await task
    finally:
        if on_stop is not None:
            on_stop()
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 2)


class RuntimeSource:
    """The gateway Runtime as the dashboard's ReadingSource (all reads on the gateway's loop)."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt

    def newest(self) -> Reading | None:
        return self.rt.handler.newest

    def energy_today(self, now: float) -> tuple[int, int, bool]:
        e = self.rt.store.energy_between(local_midnight(now), int(now) + 1)
        return int(e.import_wh), int(e.export_wh), bool(e.complete)

    def net_power(self, start: int, steps: int, step_s: int) -> list[float]:
        return [float(v) for v in self.rt.store.net_power(start, steps, step_s)]

    def forecast(self, start: int, steps: int, step_s: int) -> list[float]:
        return [float(v) for v in self.rt.forecaster.net_demand(start, steps, step_s)]


async def watch_readings(source: ReadingSource, hub: LiveHub, now: Any) -> None:
    """Publish each new verified reading to the hub (one server-side check per WATCH_S for all viewers)."""
    last: Reading | None = None
    while True:
        newest = source.newest()
        if newest is not None and newest is not last:
            last = newest
            hub.publish(live_event(newest, source.energy_today(now())))
        await asyncio.sleep(WATCH_S)


async def run_household_dashboard(rt: Any, started: asyncio.Event | None = None) -> None:
    """The gateway's `dashboard` task: the app on the configured loopback/LAN address, and its watcher."""
    cfg = rt.cfg.dashboard
    accounts = AccountStore(Path(cfg.accounts_path))
    hub = LiveHub(cfg.max_viewers)
    source = RuntimeSource(rt)
    journal = Path(rt.cfg.gateway.state_dir) / "trading.db"
    site = HouseholdSite(
        rt.cfg.gateway.id,
        lambda now: snapshot(source, journal, rt.cfg.gateway.id, now),
        hub,
        accounts,
        secure_cookies=cfg.secure_cookies,
        now=rt.clock.now,
    )
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(watch_readings(source, hub, rt.clock.now), name="dashboard-watch")
            tg.create_task(
                serve_app(create_app(site), cfg.host, cfg.port, started, hub.close), name="dashboard-http"
            )
    finally:
        hub.close()
        accounts.close()
