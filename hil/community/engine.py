"""The engine-only community run: profiles -> batteries -> hourly market -> delivery -> tokens.

Pure computation (no MQTT, no chain) so research runs scale to hundreds of households. The
full-stack run reuses the same market and ledger, with real services underneath.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hil.community.battery import BatteryParams, grid_flows
from hil.community.households import HouseholdSpec, community_power, make_community
from hil.community.ledger import Ledger, meter_delivery
from hil.community.market import (
    MICRO,
    MarketWindow,
    Order,
    Strategy,
    Trade,
    check_trades,
    hourly_concession_market,
)
from hil.community.tariffs import COMMUNITY_TARIFF, Tariff

T0_DEFAULT = 1780272000  # 2026-06-01 00:00 UTC: a summer day, so PV matters
STEP_S = 900


@dataclass(frozen=True)
class PvTrip:
    """A fault: household `household`'s PV inverter trips for hours [start, end) of the run."""

    household: int
    start_hour: int
    end_hour: int


@dataclass
class EngineConfig:
    """What one run needs; defaults are the README's default community."""

    households: int = 6
    hours: int = 24
    seed: int = 1
    t0: int = T0_DEFAULT
    tariff: Tariff = COMMUNITY_TARIFF
    forecast_sigma: float = 0.25
    rounds: int = 20
    start_tokens: float = 50.0
    min_order_wh: int = 10
    pv_trips: tuple[PvTrip, ...] = ()
    speed: float = 0.0  # simulated seconds per wall second; 0 = as fast as possible
    strategy_name: str = "hourly-concession"
    decimals: int = 6  # token decimals of the accounting: 18 when a chain mirrors it


@dataclass
class SettledTrade:
    """A trade after its delivery window: what was delivered and how the escrow was split."""

    hour: int
    trade: Trade
    delivered_wh: int
    to_seller: int
    refund: int
    # what the buyer was charged for: the larger of two differing reports when the chain settled on both
    # (the seller is paid on the smaller, the gap goes to the treasury); None: the delivered quantity
    charged_wh: int | None = None

    @property
    def charged(self) -> int:
        """Wh the buyer paid for: below the agreed quantity, the buyer must have had a refund."""
        return self.delivered_wh if self.charged_wh is None else self.charged_wh


class World(Protocol):
    """What lies under the market in a full-stack run: real meters, boards, broker, chain.

    The engine asks it to run each hour, to measure what each household imported and exported
    (from its meter data), and to put the hour's agreements and settlements on chain.
    """

    def run_hour(self, k: int) -> None: ...

    def measure(self, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def agreements(self, k: int, trades: list[Trade]) -> None: ...

    def settlements(self, k: int, settled: list[SettledTrade]) -> None: ...


@dataclass
class EngineResult:
    """Everything the report needs from a run."""

    config: EngineConfig
    specs: list[HouseholdSpec]
    profile_source: str
    load_kwh: np.ndarray  # (households, hours)
    pv_kwh: np.ndarray
    base_imp: np.ndarray  # grid-only baseline flows
    base_exp: np.ndarray
    batt_imp: np.ndarray  # individual battery control flows (also the physical flows with the market)
    batt_exp: np.ndarray
    grid_imp: np.ndarray  # after peer-to-peer settlement
    grid_exp: np.ndarray
    p2p_bought: np.ndarray
    p2p_sold: np.ndarray
    balance: np.ndarray  # token balance after each hour (base units)
    retail: np.ndarray  # (hours,) tokens per kWh
    ledger: Ledger
    settled: list[SettledTrade]
    conserved_every_hour: bool
    wall_s: float


def agent_params(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per household: seller margin, buyer margin (fractions of the tariff spread) and concession rate."""
    rng = np.random.default_rng(seed + 7919)
    return (
        rng.uniform(0.1, 0.4, n),
        rng.uniform(0.1, 0.4, n),
        np.exp(rng.uniform(np.log(0.5), np.log(2.0), n)),
    )


def hourly(x: np.ndarray, steps_per_hour: int) -> np.ndarray:
    """Sum (households, steps) into (households, hours)."""
    h, s = x.shape
    return x[:, : s - s % steps_per_hour].reshape(h, -1, steps_per_hour).sum(axis=2)


def allocate(total: int, parts: list[int]) -> list[int]:
    """Split `total` over `parts` in proportion, never above a part, exactly summing to min(total, sum)."""
    cap = sum(parts)
    total = max(0, min(total, cap))
    if cap == 0:
        return [0] * len(parts)
    out = [p * total // cap for p in parts]
    rest = total - sum(out)
    for i, p in enumerate(parts):
        if rest == 0:
            break
        extra = min(rest, p - out[i])
        out[i] += extra
        rest -= extra
    return out


def power_profiles(cfg: EngineConfig) -> tuple[list[HouseholdSpec], np.ndarray, np.ndarray, np.ndarray, str]:
    """The run's households and their power (W, every STEP_S): specs, load, PV forecast, PV as it
    came (PV trips applied), the profiles' source. Same config, same profiles."""
    specs = make_community(cfg.households, cfg.seed)
    sph = 3600 // STEP_S
    load_w, pv_w, source = community_power(specs, cfg.t0, cfg.hours * sph, STEP_S)
    pv_actual = pv_w.copy()
    for trip in cfg.pv_trips:
        pv_actual[trip.household, trip.start_hour * sph : trip.end_hour * sph] = 0.0
    return specs, load_w, pv_w, pv_actual, source


def run_engine(
    cfg: EngineConfig,
    strategy: Strategy = hourly_concession_market,
    progress: Callable[[int, int, Ledger], None] | None = None,
    world: World | None = None,
) -> EngineResult:
    """Run the community hour by hour and return the flows, trades and tokens.

    Without a world the hour's actual flows come from the battery model; with one, from the
    world's meter data (and the baselines are computed from those same measured flows).
    """
    started = time.perf_counter()
    cfg.tariff.validate()
    specs, load_w, pv_w, pv_actual, source = power_profiles(cfg)
    n, sph = len(specs), 3600 // STEP_S
    battery = BatteryParams.home(np.array([s.battery_kwh for s in specs]))
    plan_imp, plan_exp, _ = grid_flows(load_w, pv_w, STEP_S, battery)  # what forecasts see
    b_imp, b_exp, _ = grid_flows(load_w, pv_actual, STEP_S, None)
    a_imp, a_exp, _ = grid_flows(load_w, pv_actual, STEP_S, battery)
    base_imp, base_exp = hourly(b_imp, sph), hourly(b_exp, sph)
    plan_imp, plan_exp = hourly(plan_imp, sph), hourly(plan_exp, sph)
    act_imp, act_exp = hourly(a_imp, sph), hourly(a_exp, sph)

    rng = np.random.default_rng(cfg.seed + 104729)
    sell_m, buy_m, cr = agent_params(n, cfg.seed)
    unit = 10**cfg.decimals
    ledger = Ledger(n, unit=unit)
    for i in range(n):
        ledger.mint(i, int(cfg.start_tokens) * unit)
    hours = cfg.hours
    grid_imp, grid_exp = act_imp.copy(), act_exp.copy()
    bought, sold = np.zeros((n, hours)), np.zeros((n, hours))
    balance = np.zeros((n, hours))  # float: 18-decimal balances overflow int64
    retail = np.array(
        [cfg.tariff.retail_at(int(((cfg.t0 + 3600 * k) % 86400) // 3600)) for k in range(hours)]
    )
    feed = round(cfg.tariff.feed_in * MICRO) * (unit // MICRO)
    settled: list[SettledTrade] = []
    conserved = True
    for k in range(hours):
        ret = round(retail[k] * MICRO) * (unit // MICRO)
        spread = ret - feed
        noise = rng.lognormal(0.0, cfg.forecast_sigma, (2, n))
        f_net = plan_imp[:, k] * noise[0] - plan_exp[:, k] * noise[1]  # kWh, forecast for the window
        asks, bids = [], []
        for i in range(n):
            wh = round(abs(f_net[i]) * 1000)
            if wh < cfg.min_order_wh:
                continue
            if f_net[i] < 0:
                asks.append(Order(i, wh, ret, feed + int(sell_m[i] * spread), float(cr[i])))
            else:
                wh = min(wh, ledger.affordable_wh(i, ret))
                if wh >= cfg.min_order_wh:
                    bids.append(Order(i, wh, feed, ret - int(buy_m[i] * spread), float(cr[i])))
        window = MarketWindow(cfg.t0 + 3600 * k, ret, feed, asks, bids, cfg.rounds, unit)
        trades = strategy(window)
        check_trades(window, trades)
        ids = [ledger.agree(t) for t in trades]
        if world is not None:  # agreements go on chain before the window, meter data come during it
            world.agreements(k, trades)
            world.run_hour(k)
            act_imp[:, k], act_exp[:, k] = world.measure(k)
        # delivery by the Market's meter rule: the seller's metered export matched to the buyer's metered import
        delivered = meter_delivery(
            trades, [round(x * 1000) for x in act_exp[:, k]], [round(x * 1000) for x in act_imp[:, k]]
        )
        hour_settled = []
        for j, t in enumerate(trades):
            to_seller, refund = ledger.settle(ids[j], delivered[j])
            hour_settled.append(SettledTrade(k, t, delivered[j], to_seller, refund))
            sold[t.seller, k] += delivered[j] / 1000
            bought[t.buyer, k] += delivered[j] / 1000
        if world is not None:
            world.settlements(k, hour_settled)
        settled.extend(hour_settled)
        grid_exp[:, k] = act_exp[:, k] - sold[:, k] + np.clip(bought[:, k] - act_imp[:, k], 0, None)
        grid_imp[:, k] = np.clip(act_imp[:, k] - bought[:, k], 0, None)
        balance[:, k] = ledger.balance
        conserved = conserved and ledger.conserved()
        if progress is not None:
            progress(k + 1, hours, ledger)
        if cfg.speed > 0:
            ahead = (k + 1) * 3600 / cfg.speed - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
    return EngineResult(
        cfg, specs, source, hourly(load_w, sph) * STEP_S / 3.6e6, hourly(pv_actual, sph) * STEP_S / 3.6e6,
        base_imp, base_exp, act_imp, act_exp, grid_imp, grid_exp, bought, sold, balance, retail,
        ledger, settled, conserved, time.perf_counter() - started,
    )  # fmt: skip
