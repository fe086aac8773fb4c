"""`gridpact simulate --agents gateway`: each household's own gateway trades, not the simulator.

Every household runs `gateway.trading.service.run_trading` (its own dev key, a trading config
built here, the simulation's broker and chain, its ReadingStore and a forecaster) on the
simulation's stepped clock. The engine below only moves the meters and measures; agreements,
reports, settlements, refunds and anchors are the gateways' own transactions, and the report's
numbers are read back from the chain's events (hil/community/agentledger.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway.trading.observer import TradeFeed
from hil.community.engine import EngineConfig
from hil.community.fullstack import FullStackOptions, FullStackWorld
from hil.community.gateways import NO_PINGS
from hil.community.households import HouseholdSpec
from hil.community.market import MICRO, MarketWindow, Trade

LEAD_S = 180  # negotiation opens 3 simulated minutes before each window
ROUND_S = 15.0  # a peer's answer is awaited 15 simulated s (and the driver waits for the loop to catch up)
REPORT_DELAY_S = 60
CONFIRM_WAIT_S = 60
FINE_WALL_S = 0.004  # wall seconds per simulated second while messages fly (then the loop catches up)
MAX_FINE_WALL_S = 0.064  # the slowest pace the driver adapts to when answers time out under load
TAIL_H = 3  # simulated hours after the run for the last reports
NO_RPC = "http://127.0.0.1:1"  # a [chain] rpc_url never used: the simulator injects its own Web3
KEEPER = 0  # the household whose gateway runs the community keeper ([keeper], docs/keeper.md)
KEEPER_DELAY_S = 30.0  # after an hour ends, how long the keeper waits for the meters' statements
KEEPER_GRACE_S = 900.0  # after an hour ends, how long each gateway leaves its meter window to the keeper
KEEPER_SUBMIT_DELAY_S = KEEPER_DELAY_S  # after an hour starts: with the settlement, in one call
KEEPER_SUBMIT_GRACE_S = (
    60.0  # after an hour starts, how long each gateway leaves its agreements to the keeper
)
IDLE_PROBE_S = 0.004  # a round trip into the gateways' loop this fast means it has nothing queued
CATCH_UP_PROBES = 25


def no_engine_trades(window: MarketWindow) -> list[Trade]:
    """The engine's market stays empty: the gateways trade over MQTT themselves."""
    return []


class ProfileForecaster:
    """Net demand (W) of the household's profile: a perfect-weather forecast without the battery.

    Windows outside the run raise ValueError (the agent counts `forecast_unavailable`), so no
    agreement is made for hours the simulation does not meter.
    """

    def __init__(self, profile: Any, t0: int, t_end: int) -> None:
        self.profile, self.t0, self.t_end = profile, t0, t_end

    def net_demand(self, start: int, steps: int, step_s: int) -> np.ndarray:
        if start < self.t0 or start + steps * step_s > self.t_end:
            raise ValueError("outside the simulated span")
        return self.profile_net(start, steps, step_s)

    def profile_net(self, start: int, steps: int, step_s: int) -> np.ndarray:
        """The same figures without the span check (the dashboard draws the next 24 h, past the run's end)."""
        t = start + step_s * (np.arange(steps) + 0.5)
        load, pv = self.profile.at_times(t)
        return np.asarray(load, dtype=np.float64) - np.asarray(pv, dtype=np.float64)


def trading_tables(cfg: EngineConfig, host: str, port: int, rpc_url: str, market: str, state: Path,
                   margins: tuple[float, float, float], keeper: bool = False,
                   trade_market: str = "p2p") -> dict[str, dict[str, Any]]:  # fmt: skip
    """One household's [community]/[agent]/[chain] tables (prices in token base units per kWh), and
    [keeper] for the gateway that settles every household's meter window of an hour in one call."""
    unit = 10**cfg.decimals
    retail = round(cfg.tariff.day * MICRO) * (unit // MICRO)
    feed = round(cfg.tariff.feed_in * MICRO) * (unit // MICRO)
    spread = retail - feed
    sell_m, buy_m, cr = margins
    key = state / "dev-key-injected.json"  # never read: the simulator injects the account
    return {
        "community": {"id": "simulate", "host": host, "port": port, "roster_refresh_s": 3600.0,
                      "max_message_age_s": 30.0, "keepalive_s": NO_PINGS},
        "agent": {
            "window_s": 3600, "lead_s": LEAD_S, "round_timeout_s": ROUND_S, "max_rounds": cfg.rounds,
            "min_trade_wh": max(50, cfg.min_order_wh), "report_delay_s": REPORT_DELAY_S,
            "confirm_wait_s": CONFIRM_WAIT_S, "keeper_grace_s": KEEPER_GRACE_S,
            "keeper_submit_grace_s": KEEPER_SUBMIT_GRACE_S, "market": trade_market,
            "seller": {"price": {"ip": retail, "rp": feed + int(sell_m * spread), "dl": cfg.rounds, "cr": cr}},
            "buyer": {"price": {"ip": feed, "rp": retail - int(buy_m * spread), "dl": cfg.rounds, "cr": cr}},
        },
        "chain": {"rpc_url": rpc_url, "market": market, "keystore": str(key), "passphrase_file": str(key),
                  "anchor": True, "anchor_delay_s": 120.0, "receipt_timeout_s": 30.0, "retry_max_s": 5.0,
                  "rpc_timeout_s": 30.0},
    } | ({"keeper": {"settle_delay_s": KEEPER_DELAY_S, "group_windows": 1,
                   "submit_delay_s": KEEPER_SUBMIT_DELAY_S}} if keeper else {})  # fmt: skip


class AgentWorld(FullStackWorld):
    """The full-stack world with each household's gateway trading on its own."""

    def __init__(
        self, cfg: EngineConfig, specs: list[HouseholdSpec], opts: FullStackOptions, w3: Any, rpc_url: str
    ) -> None:
        self.rpc_url = rpc_url  # before the gateways are built: their [chain] table names it
        super().__init__(cfg, specs, opts, w3)
        if self.chain is not None:  # the community makes one household's gateway its keeper
            self.chain.grant_keeper(KEEPER)
        self.metrics: list[Any] = []
        self.agent_errors: list[str] = []
        self.trading_tasks: list[asyncio.Task[None]] = []
        self.tail_note = "no tail"
        self.resolved = 0
        self.fine_wall_s = FINE_WALL_S
        self._timeouts_seen = 0
        self._agreed_seen = 0
        self.live_ledger: Any = None  # the chain's events replayed after each hour (progress line)
        self.hourly_balances: list[list[int]] = []
        self.feeds = [TradeFeed() for _ in specs]  # each agent's sessions, for `--dashboard`
        self.forecasters: list[ProfileForecaster] = []

    def gateway_tables(self, i: int, host: str, port: int) -> dict[str, dict[str, Any]]:
        """Household i's [community]/[agent]/[chain] tables, on the community broker the gateways
        trade on (the run's own or `--broker URL`: `host`, `port`)."""
        from hil.community.engine import agent_params

        sell_m, buy_m, cr = agent_params(len(self.specs), self.cfg.seed)
        market = self.chain.market.address if self.chain is not None else "0x" + "00" * 20
        state = self.state / f"trading-{self.specs[i].name}"
        state.mkdir(parents=True, exist_ok=True)
        return trading_tables(self.cfg, host, port, self.rpc_url, market, state,
                              (float(sell_m[i]), float(buy_m[i]), float(cr[i])), i == KEEPER,
                              self.opts.market)  # fmt: skip

    def reading_span(self) -> tuple[int, int]:
        """The run's hours and the tail after them (the gateways report and anchor in the tail)."""
        return self.cfg.t0 - 3600, self.cfg.t0 + 3600 * (self.cfg.hours + TAIL_H + 1)

    # ------------------------------------------------------------ the gateways' trading tasks

    def start_agents(self) -> None:
        """Each gateway's `run_trading` as a task on the gateways' loop, beside its ingest."""
        from eth_account import Account
        from web3 import Web3

        from meter_sim.profiles import parse_profile

        if self.chain is None:
            raise RuntimeError(f"--agents gateway needs the chain layer: {self.chain_error}")
        t_end = self.cfg.t0 + 3600 * self.cfg.hours
        for i, (spec, gw) in enumerate(zip(self.specs, self.gateways, strict=True)):
            w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 30}))
            forecaster = ProfileForecaster(parse_profile(spec.profile_spec), self.cfg.t0, t_end)
            self.forecasters.append(forecaster)
            task = gw.start_trading(forecaster, self.state / f"trading-{spec.name}", self.aclock, w3,
                                    Account.from_key(self.chain.keys[i]), self.feeds[i])  # fmt: skip
            task.add_done_callback(self._task_done)
            self.trading_tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.agent_errors.append(f"{task.get_name()}: {task.exception()!r}"[:400])

    def stop_agents(self) -> None:
        if self.gateway_thread is not None:
            self.gateway_thread.cancel(self.trading_tasks)
        self.trading_tasks = []

    # ------------------------------------------------------------ the stepped clock underneath

    @property
    def broker_host(self) -> str:
        return self._broker()[0]

    @property
    def broker_port(self) -> int:
        return self._broker()[1]

    def _broker(self) -> tuple[str, int]:
        """The community broker the gateways trade on: the run's own, or `--broker URL`."""
        from hil.community.endpoints import parse_broker_url

        if self.opts.broker_url:
            return parse_broker_url(self.opts.broker_url)
        return self.broker.info.host, int(self.broker.info.port)

    def _step(self, dt: float, wall: float) -> None:
        self.clock.advance(dt)
        self.aclock.advanced()
        time.sleep(wall)
        self._catch_up()

    def _adapt_pace(self) -> None:
        """Slow the negotiation pace when most sessions of the hour timed out; recover after.

        On a loaded machine a message's trip through the broker can outlast a round's wall-clock
        share, and sessions time out instead of agreeing. A few timeouts are normal (a busy or
        silent peer); when timeouts outnumber agreements the pace doubles (up to MAX_FINE_WALL_S),
        and an hour where agreements win halves it again. Only the simulation's speed changes.
        """
        events = gateway_events(self)
        # a session that timed out, or an acceptance whose confirmation came too late: both are answers
        # that outlasted their share of wall time
        timeouts = events.get("timeout", 0) + events.get("confirm_missing", 0) - self._timeouts_seen
        agreed = events.get("agreed", 0) - self._agreed_seen
        self._timeouts_seen += timeouts
        self._agreed_seen += agreed
        if timeouts >= 2 and timeouts > agreed:
            self.fine_wall_s = min(self.fine_wall_s * 2, MAX_FINE_WALL_S)
        elif agreed > timeouts:
            self.fine_wall_s = max(self.fine_wall_s / 2, FINE_WALL_S)

    def _catch_up(self) -> None:
        """Hold simulated time until the gateways' loop has worked off what is queued.

        Signing and checking peer messages costs real CPU (pure-Python secp256k1 here); on a
        loaded machine a fixed wall pace would let timeouts fire before answers were computed.
        """
        if self.gateway_thread is None or self.gateway_thread.loop.is_closed():
            return
        loop = self.gateway_thread.loop
        for _ in range(CATCH_UP_PROBES):
            t = time.perf_counter()
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(60)
            if time.perf_counter() - t < IDLE_PROBE_S:
                return
            time.sleep(0.002)

    def run_minute(self, t_min: int) -> None:
        """One simulated minute: fine steps while negotiating or reporting, then the meters' poll."""
        into_hour = t_min % 3600
        negotiating = into_hour >= 3600 - LEAD_S
        reporting = REPORT_DELAY_S - 60 <= into_hour < REPORT_DELAY_S + CONFIRM_WAIT_S + 120
        if negotiating:
            for _ in range(60):
                self._step(1.0, self.fine_wall_s)
        elif reporting:
            for _ in range(6):
                self._step(10.0, 0.01)
        else:
            self._step(60.0, 0.002)
        now = self.clock.now()
        assert self.chain is not None
        try:  # before the poll: a statement signed at an hour's end must find the chain at that hour
            self.chain.set_time(int(now))
        except Exception as exc:  # a race with a gateway's block: the next minute moves it
            self.events.append({"t": int(now), "event": "chain time", "detail": str(exc)[:120]})
        for node in self.nodes:
            node.poll(now)

    def run_hour(self, k: int) -> None:
        start = self.cfg.t0 + 3600 * k
        for minute in range(60):
            self.run_minute(start + 60 * minute)
        self._drain(20)
        self._adapt_pace()
        self.resolve()
        self.hourly_balances.append(list(self.replay_chain().balance))
        if self.agent_errors:
            raise RuntimeError(f"a gateway's trading stopped: {self.agent_errors[0]}")

    def replay_chain(self) -> Any:
        """The Market's events so far through the Ledger: trades, settlements, refunds, disputes and
        tokens in escrow as they stand now (kept as `live_ledger` for the progress line)."""
        from hil.community.agentledger import read_agreements, replay

        assert self.chain is not None
        unit = 10**self.cfg.decimals
        agreements = read_agreements(self.chain.market, self.chain.addresses)
        ledger, _, _ = replay(
            agreements, len(self.specs), int(self.cfg.start_tokens) * unit, unit, lambda ag: 0
        )
        self.live_ledger = ledger
        return ledger

    def resolve(self) -> None:
        """The simulator is the community: it resolves the disputes the gateways' reports opened."""
        from hil.community.agentledger import journal_terms, resolve_disputes

        assert self.chain is not None
        failures: list[str] = []
        self.resolved += resolve_disputes(self.chain, journal_terms(self.state), failures)
        now = int(self.clock.now())
        self.events += [{"t": now, "event": "dispute", "detail": f} for f in failures]

    def agreements(self, k: int, trades: list[Trade]) -> None:
        """Nothing: the gateways submit their own agreements."""

    def settlements(self, k: int, settled: list[Any]) -> None:
        """Nothing: the gateways report, settle, reclaim and anchor themselves."""

    def finish(self) -> int:
        """Run simulated time on until every agreement on chain is closed (or TAIL_H hours); returns open ones."""
        from hil.community.agentledger import open_agreements

        assert self.chain is not None
        t = int(self.clock.now())
        t_start = t
        for _ in range(TAIL_H * 60):
            self.run_minute(t)
            t += 60
            if t % 600 == 0:
                self.resolve()
                if open_agreements(self.chain.market) == 0:
                    break
        self._drain(20)
        self.tail_note = f"{(t - t_start) / 60:.0f} simulated minutes more"
        return open_agreements(self.chain.market)

    def close(self) -> None:
        self.stop_agents()
        super().close()


def gateway_events(world: AgentWorld) -> dict[str, int]:
    """The gateways' own trading counters (gridpact_trade_events_total), summed over households."""
    out: dict[str, int] = {}
    for gw in world.gateways:
        for name in ("trade_events_total", "peer_messages_dropped_total"):
            for (label,), n in gw.samples(name).items():
                out[label] = out.get(label, 0) + int(n)
    return dict(sorted(out.items()))
