"""The gateway service: the structured-concurrency root that `gridpact gateway run` starts.

One asyncio TaskGroup holds named tasks: ingest, metrics, watchdog, housekeeping, trading when the
config has trading sections and dashboard with `[dashboard] enabled = true`. A failing task cancels
its siblings and the service exits
non-zero (systemd restarts it); SIGTERM cancels the root and everything shuts down cleanly:
STOPPING=1 is sent, pending readings are committed and the store is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field

from gateway.config import BrokerParams, GatewayConfig, read_hmac_key, read_secret
from gateway.forecast import Forecaster
from gateway.ingest.mqtt import IngestHandler, run_ingest
from gateway.ingest.verifier import ReadingVerifier
from gateway.ops.hass import HassNames, JournalSource, run_hass
from gateway.ops.logs import ErrorLatch, log_event
from gateway.ops.metrics import Metrics, start_metrics_server
from gateway.ops.notify import Notifier, watchdog_loop
from gateway.storage import ReadingStore
from gateway.trading.config import TradingConfig
from gateway.trading.observer import TradeFeed
from gridpact.core.clock import Clock, SystemClock

HOUSEKEEPING_S = 60.0
PRUNE_EVERY_S = 3600.0


@dataclass
class Runtime:
    """What the running tasks share; built before READY so config and secret errors surface at start."""

    cfg: GatewayConfig
    clock: Clock
    store: ReadingStore
    metrics: Metrics
    forecaster: Forecaster
    handler: IngestHandler
    broker: BrokerParams
    latch: ErrorLatch
    trades: TradeFeed = field(default_factory=TradeFeed)  # the agent's sessions, shown by the dashboard


def build_runtime(cfg: GatewayConfig, clock: Clock, env: dict[str, str] | None = None) -> Runtime:
    """Read secrets, open the store, wire the parts; raises ConfigError naming the key on bad secrets."""
    key = read_hmac_key(cfg.meter.hmac_key, env)
    password = read_secret(cfg.meter_broker.password, env).decode() if cfg.meter_broker.password else None
    store = ReadingStore(
        cfg.storage.path,
        cfg.meter.device_id,
        cfg.storage.max_gap_s,
        round(cfg.meter.counter_rollover_kwh * 1000),
    )
    metrics = Metrics()
    metrics.gauge("gateway_info", "constant 1, labelled with the gateway id", ("gateway",)).set(
        1, gateway=cfg.gateway.id
    )
    verifier = ReadingVerifier({cfg.meter.device_id: key}, store.last_seqs())
    signers = {cfg.meter.device_id: cfg.meter.statement_signer} if cfg.meter.statement_signer else None
    handler = IngestHandler(cfg.meter.topic_prefix, store, verifier, metrics, clock.now, signers)
    forecaster = Forecaster(store, clock, cfg.forecast.history_days, cfg.forecast.alpha, cfg.forecast.damping)
    b = cfg.meter_broker
    broker = BrokerParams(
        b.host,
        b.port,
        b.username,
        password,
        str(b.ca_file) if b.ca_file else None,
        b.tls,
        f"gridpact-gw-{cfg.gateway.id}",
        b.keepalive_s,
    )
    return Runtime(cfg, clock, store, metrics, forecaster, handler, broker, ErrorLatch())


def meter_is_stale(now: float, started: float, arrived: float | None, max_gap_s: float) -> bool:
    """No reading accepted within max_gap_s (counted from start until the first one arrives)."""
    return now - (started if arrived is None else arrived) > max_gap_s


async def housekeeping(rt: Runtime) -> None:
    """The forecast gauge and the staleness log once a minute, retention once an hour; the stale
    gauge itself is computed on every scrape, so it never lags the meter."""
    pruned = rt.metrics.counter("storage_pruned_total", "readings deleted by retention")
    nxt = rt.metrics.gauge(
        "forecast_next_step_watts", "forecast net demand for the next step (absent: no forecast)", absent=True
    )
    dev = rt.cfg.meter.device_id
    started = rt.clock.now()
    max_gap = rt.cfg.storage.max_gap_s

    def stale_now() -> float:
        return float(meter_is_stale(rt.clock.now(), started, rt.handler.arrived.get(dev), max_gap))

    rt.metrics.read_gauge("meter_stale", "1 if no reading arrived within storage.max_gap_s", stale_now)
    last_prune = -PRUNE_EVERY_S
    while True:
        now = rt.clock.now()
        if now - last_prune >= PRUNE_EVERY_S:
            pruned.inc(rt.store.prune(int(now) - rt.cfg.storage.retention_days * 86400))
            last_prune = now
        arrived = rt.handler.arrived.get(dev)
        if meter_is_stale(now, started, arrived, max_gap):
            newest = rt.handler.last_ts.values.get((dev,))
            rt.latch.fail("meter.stale", dev=dev, last_ts=newest if newest is not None else "never")
        else:
            rt.latch.recover("meter.stale", dev=dev)
        step = rt.cfg.forecast.step_s
        try:
            value = await asyncio.to_thread(rt.forecaster.next_step, int(now) // step * step + step, step)
            if value is None:
                nxt.remove()  # no history: a "0 W" forecast would read like a real one
            else:
                nxt.set(value)
            rt.latch.recover("forecast.failed")
        except (ValueError, ArithmeticError) as exc:
            nxt.remove()  # an old forecast is not the next step's: show none
            rt.latch.fail("forecast.failed", error=str(exc)[:200])
        await asyncio.sleep(HOUSEKEEPING_S)


async def _trading_task(rt: Runtime, trading: TradingConfig) -> None:
    """The trading task, with what it takes from the rest of the gateway (web3 is loaded only for it)."""
    from gateway.trading.service import TradingDeps, run_trading

    deps = TradingDeps(
        store=rt.store,
        forecaster=rt.forecaster,
        metrics=rt.metrics,
        gateway_id=rt.cfg.gateway.id,
        state_dir=rt.cfg.gateway.state_dir,
        clock=rt.clock,
        observer=rt.trades,
    )
    await run_trading(trading, deps)


async def _hass_task(rt: Runtime) -> None:
    """The household's trading in Home Assistant, on the meter broker (where Home Assistant listens)."""
    cfg, ha = rt.cfg, rt.cfg.homeassistant
    names = HassNames(
        cfg.gateway.id, cfg.meter.device_id, cfg.meter.topic_prefix, ha.discovery_prefix, ha.currency
    )
    path = cfg.gateway.state_dir / "trading.db" if cfg.trading is not None else None
    source = JournalSource(path, ha.token_decimals, rt.clock.now)
    try:
        await run_hass(rt.broker, names, source, ha.interval_s, rt.latch, random.Random())
    finally:
        source.close()


async def run_gateway(
    cfg: GatewayConfig,
    clock: Clock | None = None,
    notifier: Notifier | None = None,
    env: dict[str, str] | None = None,
    started: asyncio.Future[Runtime] | None = None,
) -> None:
    """Run until cancelled; `started` (for tests and the simulator) resolves once READY is sent."""
    clock = clock or SystemClock()
    notifier = notifier or Notifier(env)
    try:
        rt = build_runtime(cfg, clock, env)
    except Exception as exc:
        if started is not None and not started.done():
            started.set_exception(exc)
        raise
    server: asyncio.Server | None = None
    try:
        if cfg.metrics.enabled:
            server = await start_metrics_server(rt.metrics, cfg.metrics.host, cfg.metrics.port)
        await _run_tasks(rt, notifier, started)
    except Exception as exc:
        if started is not None and not started.done():
            started.set_exception(exc)
        raise
    finally:
        notifier.send("STOPPING=1")
        log_event(logging.INFO, "gateway.stopping", gateway=cfg.gateway.id)
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        rt.handler.flush()
        rt.store.close()


async def _run_tasks(rt: Runtime, notifier: Notifier, started: asyncio.Future[Runtime] | None) -> None:
    """The TaskGroup of named tasks; READY=1 once they are created."""
    cfg = rt.cfg
    async with asyncio.TaskGroup() as tg:
        tg.create_task(
            run_ingest(rt.broker, rt.handler, rt.metrics, rt.latch, random.Random()), name="ingest"
        )
        tg.create_task(watchdog_loop(notifier), name="watchdog")
        tg.create_task(housekeeping(rt), name="housekeeping")
        if cfg.trading is not None:
            tg.create_task(_trading_task(rt, cfg.trading), name="trading")
        if cfg.homeassistant.enabled:
            tg.create_task(_hass_task(rt), name="hass")
        if cfg.dashboard is not None and cfg.dashboard.enabled:
            from gateway.dashboard.server import run_household_dashboard

            tg.create_task(run_household_dashboard(rt), name="dashboard")
        notifier.send("READY=1", f"STATUS=gateway {cfg.gateway.id} running")
        log_event(logging.INFO, "gateway.ready", gateway=cfg.gateway.id, trading=cfg.trading is not None)
        if started is not None and not started.done():
            started.set_result(rt)
