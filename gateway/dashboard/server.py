"""The household dashboard inside the gateway's TaskGroup: the app, its reading and trading watchers.

Served by `serving.serve_app` (the gateway's root task owns the signals; cancelling stops uvicorn and
ends open streams within 2 s).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from gateway.config import OidcSection
from gateway.dashboard.app import HouseholdSite, create_app
from gateway.dashboard.auth import AccountStore
from gateway.dashboard.household import (
    HouseholdData,
    ReadingSource,
    forecast_ahead,
    ledger_view,
    live_event,
    local_midnight,
    snapshot,
)
from gateway.dashboard.live import LiveHub
from gateway.dashboard.serving import serve_app
from gridpact.core.wire import Reading

WATCH_S = 0.2
LEDGER_EVERY = 5  # journal reads (schedule, tokens) every 5 x WATCH_S, only while someone watches
FORECAST_EVERY_S = 300.0  # the forecast is recorded so the page can draw it against what happened


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


async def watch_readings(source: ReadingSource, hub: LiveHub, now: Callable[[], float]) -> None:
    """Publish each new verified reading to the hub (one server-side check per WATCH_S for all viewers)."""
    last: Reading | None = None
    while True:
        newest = source.newest()
        if newest is not None and newest is not last:
            last = newest
            hub.publish(live_event(newest, source.energy_today(now())))
        await asyncio.sleep(WATCH_S)


async def watch_trading(data: HouseholdData, hub: LiveHub, now: Callable[[], float]) -> None:
    """Publish the agent's sessions (`trade`) when they change and the schedule and tokens (`ledger`)
    when the journal's view of them changes; the journal is read only while a viewer is connected."""
    seen_version = -1
    last_ledger = ""
    last_forecast = -FORECAST_EVERY_S
    tick = 0
    while True:
        feed = data.trades
        if feed is not None and feed.version != seen_version:
            seen_version = feed.version
            hub.publish(feed.view(), "trade")
        t = now()
        if t - last_forecast >= FORECAST_EVERY_S:
            last_forecast = t
            forecast_ahead(data, t)
        if hub.viewers and tick % LEDGER_EVERY == 0:
            ledger = ledger_view(data, t)
            encoded = json.dumps(ledger, sort_keys=True)
            if encoded != last_ledger:
                last_ledger = encoded
                hub.publish(ledger, "ledger")
        tick += 1
        await asyncio.sleep(WATCH_S)


async def serve_households(
    households: Sequence[HouseholdData],
    accounts: AccountStore,
    host: str,
    port: int,
    now: Callable[[], float],
    secure_cookies: bool = True,
    max_viewers: int = 64,
    started: asyncio.Event | None = None,
    oidc: OidcSection | None = None,
) -> None:
    """The household view of each of `households` on one server (a hub and two watchers each), until
    cancelled. A gateway serves its own; `gridpact simulate --dashboard` serves every household's."""
    hubs = [LiveHub(max_viewers, snapshots=frozenset({"trade", "ledger"})) for _ in households]
    sites = [
        HouseholdSite(data.gateway_id, partial(snapshot, data), hub, accounts, secure_cookies, now, oidc)
        for data, hub in zip(households, hubs, strict=True)
    ]

    def close_all() -> None:
        for hub in hubs:
            hub.close()

    try:
        async with asyncio.TaskGroup() as tg:
            for data, hub in zip(households, hubs, strict=True):
                tg.create_task(
                    watch_readings(data.source, hub, now), name=f"dashboard-watch-{data.gateway_id}"
                )
                tg.create_task(watch_trading(data, hub, now), name=f"dashboard-trading-{data.gateway_id}")
            tg.create_task(
                serve_app(create_app(sites), host, port, started, close_all), name="dashboard-http"
            )
    finally:
        close_all()


async def run_household_dashboard(rt: Any, started: asyncio.Event | None = None) -> None:
    """The gateway's `dashboard` task: the app on the configured loopback/LAN address, and its watcher."""
    cfg = rt.cfg.dashboard
    accounts = AccountStore(Path(cfg.accounts_path))
    source = RuntimeSource(rt)
    journal = Path(rt.cfg.gateway.state_dir) / "trading.db"
    agent = rt.cfg.trading.agent if rt.cfg.trading is not None else None
    tariff = None
    if agent is not None and agent.import_tariff is not None and agent.export_tariff is not None:
        tariff = (agent.import_tariff, agent.export_tariff)
    trades = rt.trades if rt.cfg.trading is not None else None
    data = HouseholdData(source, journal, rt.cfg.gateway.id, trades, tariff)
    try:
        await serve_households(
            [data],
            accounts,
            cfg.host,
            cfg.port,
            rt.clock.now,
            cfg.secure_cookies,
            cfg.max_viewers,
            started,
            cfg.oidc,
        )
    finally:
        accounts.close()
