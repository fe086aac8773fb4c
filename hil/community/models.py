"""The trading models of Ali et al. compared on one run's households and weather (`--market`).

Every model starts from the same metered hour: each household's import and export after its own
battery (the run's `batt_imp` / `batt_exp`), so the table shows what the model changes, nothing
else. Prices follow the run's tariff: retail by hour, feed-in flat.

- `battery_only`: no market, the grid buys and sells (the reference for "worse off").
- `p2p` (infrastructure-based): the run's own negotiated agreements, settled from the meters.
- `store` (large-scale storage): a community store buys every surplus it has room for; a seller
  is paid only once its stored energy is drawn by another household (first in, first out), at a
  share of the hour's spread; what is still stored when the run ends is paid at the feed-in price
  (our rule: the store would sell it to the grid, so no seller ends below the grid's offer). The
  store's operator keeps the rest of the spread, which pays for its conversion losses.
- `stations` (ad hoc with grid stations): each hour every short household publishes a request;
  sellers bid their ask (their reserve price of the run's agents); the buyer commits to the
  cheapest bids while ask plus the community's network fee is below retail; the fee goes to the
  grid operator's account.
- `demand_response` (section 3.3): the operator calls an event every day in the tariff's peak hours
  and pays a reward per kWh of metered reduction against the household's baseline (its import in
  those hours without the event: the battery-only run); each household with a battery answers by
  holding its charge for the hours before the event, so the battery covers the event instead.
- `loans` (the residential cooperative of Chakraborty, Baarslag and Kaisers): every hour the
  households pair up and bargain over energy loans (q, tau) with the cooperative engine
  (gateway.negotiation.cooperative, strategy s2: own battery plus loans) on the run's hourly net
  demand; each household then pays the grid for what its battery and its loans leave. A loan moves
  energy and is repaid within the run, so no tokens change hands (the collateral the live gateways
  lock comes back on repayment): operator_tokens is 0. The engine runs on hourly periods (the
  paper's are 15 minutes; the run keeps hourly load and PV): its window, loan sizes and forecast
  error are the paper's scaled to the hour (LoanParams). Hourly netting hides the swings within an
  hour that the run's batteries see at 15 minutes, so `loans_run` also gives the same batteries
  without loans on the same hourly data (`alone`, s1): the loans' own effect is the difference.

The store and the stations clear on the metered hour (ex post), the negotiated p2p market on
forecasts before it: the first two are an upper bound of what requests made ahead would get.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.negotiation.cooperative.agent import AgentSpec
from gateway.negotiation.cooperative.battery import BatterySpec
from gateway.negotiation.cooperative.cases import TABLE4
from gateway.negotiation.cooperative.contracts import ContractGrid
from gateway.negotiation.cooperative.scenarios import ScenarioModel
from gateway.negotiation.cooperative.simulation import Result, Settings
from gateway.negotiation.cooperative.simulation import run as cooperative_run
from gridpact.core.battery import (
    HOME_ROUND_TRIP,
    HOME_SOC_MAX,
    HOME_SOC_MIN,
    HOME_SOC_START,
    home_power_kw,
    simulate,
)
from hil.community.battery import BatteryParams, grid_flows
from hil.community.engine import STEP_S, EngineResult, agent_params, hourly, power_profiles
from hil.community.summary import cost

MODELS = ("p2p", "store", "stations", "demand_response", "loans")


@dataclass(frozen=True)
class StoreParams:
    """The community store: capacity per household of the community, efficiency, price shares."""

    kwh_per_household: float = 2.0
    round_trip: float = 0.9  # fraction of the energy stored that comes back out
    seller_share: float = 0.4  # of the hour's spread (retail - feed-in) above feed-in, paid on use
    buyer_share: float = 0.6  # of the spread above feed-in, paid by the household that draws


@dataclass(frozen=True)
class ModelOutcome:
    """One model over the run: per household cost (tokens) and the community's grid figures."""

    name: str
    cost: np.ndarray  # (households,) tokens paid for energy, net
    grid_imp: np.ndarray  # (households, hours) kWh
    grid_exp: np.ndarray
    operator_tokens: float  # store margin or network fees, the operator's account
    traded_kwh: float  # energy that went household to household (directly or through the store)


def _flows_cost(r: EngineResult, imp: np.ndarray, exp: np.ndarray) -> np.ndarray:
    return cost(imp, exp, r.retail, r.config.tariff.feed_in)


def battery_only(r: EngineResult) -> ModelOutcome:
    """No market: the reference every other model is compared with."""
    return ModelOutcome(
        "battery_only", _flows_cost(r, r.batt_imp, r.batt_exp), r.batt_imp, r.batt_exp, 0.0, 0.0
    )


def p2p(r: EngineResult) -> ModelOutcome:
    """The run's negotiated agreements, as settled."""
    led = r.ledger
    net = (np.array(led.paid) - np.array(led.earned)) / led.unit
    return ModelOutcome(
        "p2p",
        _flows_cost(r, r.grid_imp, r.grid_exp) + net,
        r.grid_imp,
        r.grid_exp,
        0.0,
        float(r.p2p_bought.sum()),
    )


def store(r: EngineResult, params: StoreParams = StoreParams()) -> ModelOutcome:
    """The community store, hour by hour: sellers' surplus in (pro rata when it fills), draws out."""
    n, hours = r.batt_imp.shape
    feed = r.config.tariff.feed_in
    cap = params.kwh_per_household * n
    soc = 0.0
    deposits: list[list[float]] = []  # FIFO of [household, kWh still stored (after losses)]
    money = np.zeros(n)  # tokens paid (+) or received (-) through the store
    grid_imp, grid_exp = r.batt_imp.astype(float), r.batt_exp.astype(float)  # copies
    operator = traded = 0.0
    for k in range(hours):
        spread = r.retail[k] - feed
        surplus = r.batt_exp[:, k]
        room = (cap - soc) / params.round_trip  # kWh the store can take from the meters this hour
        taken = min(float(surplus.sum()), room)
        if taken > 0:
            part = surplus * (taken / float(surplus.sum()))
            grid_exp[:, k] -= part
            for i in np.flatnonzero(part > 0):
                deposits.append([int(i), float(part[i]) * params.round_trip])
            soc += taken * params.round_trip
        need = r.batt_imp[:, k]
        drawn = min(float(need.sum()), soc)
        if drawn <= 0:
            continue
        got = need * (drawn / float(need.sum()))
        grid_imp[:, k] -= got
        soc -= drawn
        traded += drawn
        buy_price = feed + params.buyer_share * spread
        sell_price = feed + params.seller_share * spread
        money += got * buy_price
        operator += drawn * (buy_price - sell_price)
        left = drawn
        while left > 1e-12:  # the oldest deposits are used first: their sellers are paid now
            i, kwh = deposits[0]
            use = min(kwh, left)
            money[int(i)] -= use * sell_price
            left -= use
            if use >= kwh - 1e-12:
                deposits.pop(0)
            else:
                deposits[0][1] = kwh - use
    for i, kwh in deposits:  # still stored at the end: paid at the feed-in price
        money[int(i)] -= kwh * feed
        operator -= kwh * feed
    c = _flows_cost(r, grid_imp, grid_exp) + money
    return ModelOutcome("store", c, grid_imp, grid_exp, operator, traded)


def stations(r: EngineResult, fee_per_kwh: float = 0.02) -> ModelOutcome:
    """Buyer-initiated requests each hour; sellers bid their reserve; the network fee to the operator."""
    n, hours = r.batt_imp.shape
    feed = r.config.tariff.feed_in
    sell_margin, _, _ = agent_params(n, r.config.seed)
    rng = np.random.default_rng(r.config.seed + 15485863)
    money = np.zeros(n)
    grid_imp, grid_exp = r.batt_imp.astype(float), r.batt_exp.astype(float)  # copies
    operator = traded = 0.0
    for k in range(hours):
        ask = feed + sell_margin * (r.retail[k] - feed)
        offer = r.batt_exp[:, k].copy()
        order = [int(s) for s in np.argsort(ask, kind="stable") if offer[s] > 0]
        for b in rng.permutation(n):  # requests in a random (seeded) order each hour
            want = float(r.batt_imp[b, k])
            for s in order:
                if want <= 0 or ask[s] + fee_per_kwh >= r.retail[k]:
                    break
                q = min(want, float(offer[s]))
                if q <= 0:
                    continue
                offer[s] -= q
                want -= q
                grid_imp[b, k] -= q
                grid_exp[s, k] -= q
                money[b] += q * (ask[s] + fee_per_kwh)
                money[s] -= q * ask[s]
                operator += q * fee_per_kwh
                traded += q
    c = _flows_cost(r, grid_imp, grid_exp) + money
    return ModelOutcome("stations", c, grid_imp, grid_exp, operator, traded)


@dataclass(frozen=True)
class DemandResponse:
    """The operator's daily event: hours of the day [start, end) (None: the tariff's peak hours), the
    reward per kWh reduced, and how long before the event the households hold their batteries."""

    hours: tuple[int, int] | None = None
    reward_per_kwh: float = 0.15
    hold_h: int = 4


def demand_response(r: EngineResult, event: DemandResponse = DemandResponse()) -> ModelOutcome:
    """Daily events in the peak hours; batteries held before each; paid on metered reduction."""
    specs, load_w, pv_w, pv_actual, _ = power_profiles(r.config)
    sph = 3600 // STEP_S
    start, end = event.hours or r.config.tariff.peak_hours
    hours = r.config.hours
    hour_of_day = ((r.config.t0 + 3600 * np.arange(hours)) % 86400) // 3600
    in_event = (hour_of_day >= start) & (hour_of_day < end)
    held = ((hour_of_day - (start - event.hold_h)) % 24 < event.hold_h) & ~in_event
    battery = BatteryParams.home(np.array([s.battery_kwh for s in specs]))
    # each household keeps what its forecast says the event will need (never more than the battery holds)
    need = np.clip(hourly(load_w - pv_w, sph) * STEP_S / 3.6e6, 0, None) / battery.efficiency
    day = (r.config.t0 // 3600 + np.arange(hours)) // 24
    reserve_h = np.zeros_like(need)
    for d in np.unique(day):
        today = day == d
        want = need[:, today & in_event].sum(axis=1)
        cap = battery.capacity_kwh * battery.soc_max
        reserve_h[:, today & held] = np.minimum(want, cap)[:, None]
    imp, exp, _ = grid_flows(load_w, pv_actual, STEP_S, battery, reserve=np.repeat(reserve_h, sph, axis=1))
    grid_imp, grid_exp = hourly(imp, sph), hourly(exp, sph)
    reduced = np.clip(r.batt_imp[:, in_event] - grid_imp[:, in_event], 0, None).sum(axis=1)
    paid = reduced * event.reward_per_kwh
    c = _flows_cost(r, grid_imp, grid_exp) - paid
    return ModelOutcome("demand_response", c, grid_imp, grid_exp, -float(paid.sum()), 0.0)


@dataclass(frozen=True)
class LoanParams:
    """The cooperative engine on hourly periods: the paper's 15-minute settings scaled to the hour."""

    window_h: int = 24  # planning window w (the paper's one day)
    q_max_kwh: float = 2.8  # largest loan per hour: the paper's 0.7 kWh per 15 minutes, x4
    n_q: int = 15  # |Q|, 0 included
    sigma_kwh: float = 0.2  # forecast error at the window's end: the paper's 0.05 kWh per 15 minutes, x4
    scenarios: int = 20  # |S| (the paper: 100), for speed at 100 households x 168 h
    epsilon: float = 0.1


@dataclass(frozen=True)
class LoanOutcome:
    """The loans model's outcome and the cooperative engine's own result (sessions, residuals)."""

    outcome: ModelOutcome
    engine: Result
    pool: np.ndarray  # (households, hours) kWh each household's agreed loans added to its demand
    alone: ModelOutcome  # the same batteries on the same hourly net demand without loans (s1)


def home_battery(capacity_kwh: float, dt_h: float = 1.0) -> BatterySpec:
    """The run's home battery as the cooperative engine's BatterySpec; none: a battery that never moves."""
    if capacity_kwh <= 0:
        return BatterySpec(capacity_kwh=1e-6, soc_min=0.0, soc_max=1.0, charge_kw=0.0, discharge_kw=0.0,
                           degradation=0.0, dt_h=dt_h)  # fmt: skip
    power, eta = home_power_kw(capacity_kwh), HOME_ROUND_TRIP**0.5
    return BatterySpec(capacity_kwh, HOME_SOC_MIN, HOME_SOC_MAX, power, power, eta, eta, 0.0, dt_h)


def loan_agents(r: EngineResult) -> list[AgentSpec]:
    """One cooperative agent per household: its battery, and Table 4's weights and aspiration in turn."""
    out = []
    for i, spec in enumerate(r.specs):
        quantile, lam1, lam2, _, _ = TABLE4[i % len(TABLE4)]
        bat = home_battery(spec.battery_kwh)
        out.append(AgentSpec(spec.name, spec.profile_spec, bat, lam1, lam2, quantile, HOME_SOC_START))
    return out


def loans_run(r: EngineResult, params: LoanParams = LoanParams()) -> LoanOutcome:
    """Energy loans negotiated hour by hour on the run's net demand (load - PV, hourly kWh)."""
    w = params.window_h
    settings = Settings(
        w=w,
        epsilon=params.epsilon,
        seed=r.config.seed,
        backend="numpy",
        scenario=ScenarioModel(sigma_w=params.sigma_kwh, n_scenarios=params.scenarios),
        grid=ContractGrid.default(w, q_max=params.q_max_kwh, n_q=params.n_q),
        step_s=3600.0,
    )
    agents, demand = loan_agents(r), r.load_kwh - r.pv_kwh
    res = cooperative_run(agents, settings, demand=demand)
    n, hours = res.residual.shape
    pool = np.zeros((n, hours))
    lent = 0.0
    for s in res.sessions:
        if s.agreed:
            pool[s.a, s.t] += s.q
            pool[s.a, s.t + s.tau] -= s.q
            pool[s.b, s.t] -= s.q
            pool[s.b, s.t + s.tau] += s.q
            lent += abs(s.q)
    imp, exp = np.clip(res.residual, 0, None), np.clip(-res.residual, 0, None)
    # what went household to household: each loan twice, lent and given back
    outcome = ModelOutcome("loans", _flows_cost(r, imp, exp), imp, exp, 0.0, 2 * lent)
    alone = np.stack([simulate(a.x0, d, a.battery)[2] for a, d in zip(agents, demand, strict=True)])
    a_imp, a_exp = np.clip(alone, 0, None), np.clip(-alone, 0, None)
    return LoanOutcome(
        outcome,
        res,
        pool,
        ModelOutcome("battery_hourly", _flows_cost(r, a_imp, a_exp), a_imp, a_exp, 0.0, 0.0),
    )


def loans(r: EngineResult, params: LoanParams = LoanParams()) -> ModelOutcome:
    """The loans model's row: grid flows after each household's battery and its loans."""
    return loans_run(r, params).outcome


def compare(
    r: EngineResult, models: tuple[str, ...] = MODELS, store_params: StoreParams = StoreParams(),
    fee_per_kwh: float = 0.02, loan_params: LoanParams = LoanParams(),
) -> list[dict[str, float | int | str]]:  # fmt: skip
    """One row per model (battery_only first): cost, self-sufficiency, peak import, households worse off."""
    ref = battery_only(r)
    outcomes = [ref]
    for m in models:
        if m == "p2p":
            outcomes.append(p2p(r))
        elif m == "store":
            outcomes.append(store(r, store_params))
        elif m == "stations":
            outcomes.append(stations(r, fee_per_kwh))
        elif m == "demand_response":
            outcomes.append(demand_response(r))
        elif m == "loans":
            outcomes.append(loans(r, loan_params))
        else:
            raise ValueError(f"unknown trading model {m!r} (one of {', '.join(MODELS)})")
    load = float(r.load_kwh.sum())
    rows: list[dict[str, float | int | str]] = []
    for o in outcomes:
        community_imp = o.grid_imp.sum(axis=0)
        rows.append({
            "model": o.name,
            "households_cost": round(float(o.cost.sum()), 4),
            "operator_account": round(float(o.operator_tokens), 4),
            "traded_kwh": round(float(o.traded_kwh), 3),
            "grid_import_kwh": round(float(o.grid_imp.sum()), 3),
            "self_sufficiency": round(1 - float(o.grid_imp.sum()) / load, 4) if load else 0.0,
            "peak_import_kw": round(float(community_imp.max()), 3),
            "households_worse_off": int(((o.cost - ref.cost) > 1e-9).sum()),
            "worst_household_loss": round(float(max(0.0, (o.cost - ref.cost).max())), 4),
        })  # fmt: skip
    return rows
