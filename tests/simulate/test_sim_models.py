"""The trading models compared on one run (`--market`): money and energy add up, the store's and the
stations' rules hold on hand-made hours, and the command reports the table."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gateway.negotiation.cooperative.simulation import Settings
from gateway.negotiation.cooperative.simulation import run as cooperative_run
from hil.community.battery import BatteryParams, grid_flows
from hil.community.cli import main as simulate_main
from hil.community.engine import EngineConfig, EngineResult, run_engine
from hil.community.models import (
    MODELS,
    DemandResponse,
    StoreParams,
    battery_only,
    compare,
    demand_response,
    home_battery,
    loan_agents,
    loans,
    loans_run,
    p2p,
    stations,
    store,
)
from hil.community.summary import cost


@pytest.fixture(scope="module")
def run() -> EngineResult:
    return run_engine(EngineConfig(households=10, hours=48, seed=3))


def _transfers(r: EngineResult, o_cost: np.ndarray, imp: np.ndarray, exp: np.ndarray) -> np.ndarray:
    """Tokens each household paid (+) or got (-) through the model, besides its grid bill."""
    return o_cost - cost(imp, exp, r.retail, r.config.tariff.feed_in)


@pytest.mark.parametrize("model", ["store", "stations"])
def test_money_and_energy_add_up(run: EngineResult, model: str) -> None:
    o = store(run) if model == "store" else stations(run)
    # every token a household paid went to another household or to the operator's account
    assert abs(_transfers(run, o.cost, o.grid_imp, o.grid_exp).sum() - o.operator_tokens) < 1e-9
    assert (o.grid_imp >= -1e-12).all() and (o.grid_exp >= -1e-12).all()
    assert (o.grid_imp <= run.batt_imp + 1e-12).all() and (o.grid_exp <= run.batt_exp + 1e-12).all()
    imported_less = float((run.batt_imp - o.grid_imp).sum())
    assert abs(imported_less - o.traded_kwh) < 1e-9
    exported_less = float((run.batt_exp - o.grid_exp).sum())
    if model == "stations":  # energy goes seller to buyer in the same hour
        assert abs(exported_less - o.traded_kwh) < 1e-9
    else:  # the store gives back at most what it took, less its losses
        assert o.traded_kwh <= exported_less * StoreParams().round_trip + 1e-9
    assert o.traded_kwh > 0


def test_loans_lent_energy_comes_back_and_grid_flows_add_up(run: EngineResult) -> None:
    lo = loans_run(run)
    o, hours = lo.outcome, run.config.hours
    agreed = [s for s in lo.engine.sessions if s.agreed]
    assert agreed and all(s.t + s.tau < hours for s in agreed)  # every loan is repaid within the run
    assert o.traded_kwh == pytest.approx(2 * sum(abs(s.q) for s in agreed))
    assert np.abs(lo.pool.sum(axis=1)).max() < 1e-9  # what each household lent or borrowed came back
    assert np.abs(lo.pool.sum(axis=0)).max() < 1e-9  # each hour, what was lent was borrowed
    assert (o.grid_imp >= 0).all() and (o.grid_exp >= 0).all()
    assert not ((o.grid_imp > 0) & (o.grid_exp > 0)).any()
    # no tokens change hands: each household pays the grid for what its battery and loans leave
    assert o.operator_tokens == 0
    assert np.allclose(o.cost, cost(o.grid_imp, o.grid_exp, run.retail, run.config.tariff.feed_in))
    demand = run.load_kwh - run.pv_kwh + lo.pool  # net demand with the loans, before the battery
    battery = o.grid_imp - o.grid_exp - demand  # what each battery took (+) or gave (-)
    none = np.array([s.battery_kwh <= 0 for s in run.specs])
    assert none.any() and np.abs(battery[none]).max() < 1e-9  # without a battery: the grid takes it all
    limit = np.array([home_battery(s.battery_kwh).charge_kw for s in run.specs])[~none]
    assert (np.abs(battery[~none]) <= limit[:, None] + 1e-9).all()
    # a household with no battery can still borrow (lend: q > 0 from the initiator's side)
    borrowers = {s.b if s.q > 0 else s.a for s in agreed}
    assert any(none[i] for i in borrowers)


def test_loans_same_seed_same_row_and_the_seed_matters(run: EngineResult) -> None:
    a, b = loans_run(run), loans_run(run)
    assert a.engine.fingerprint() == b.engine.fingerprint()
    assert np.array_equal(a.outcome.cost, b.outcome.cost) and np.array_equal(a.pool, b.pool)
    other = loans(replace(run, config=replace(run.config, seed=run.config.seed + 1)))
    assert not np.array_equal(other.grid_imp, a.outcome.grid_imp)


def test_cooperative_engine_takes_given_demand_and_checks_it(run: EngineResult) -> None:
    agents = loan_agents(run)
    demand = run.load_kwh - run.pv_kwh
    with pytest.raises(ValueError, match="demand"):
        cooperative_run(agents, Settings(w=24, step_s=3600.0), demand=demand[:-1])
    with pytest.raises(ValueError, match="periods"):  # batteries of 15 minutes on hourly data
        cooperative_run(agents, Settings(w=24), demand=demand)


def _hand_made(
    run: EngineResult, imp: list[list[float]], exp: list[list[float]], retail: list[float]
) -> EngineResult:
    a_imp, a_exp = np.array(imp), np.array(exp)
    return replace(run, batt_imp=a_imp, batt_exp=a_exp, retail=np.array(retail), load_kwh=a_imp + 1.0,
                   config=replace(run.config, households=2, hours=len(retail)))  # fmt: skip


def test_store_pays_a_seller_only_when_its_energy_is_used(run: EngineResult) -> None:
    # hour 0: A exports 1 kWh, nobody needs any; hour 1: B draws 0.5 kWh; the rest is paid at feed-in at the end
    r = _hand_made(run, imp=[[0, 0, 0], [0, 0.5, 0]], exp=[[1, 0, 0], [0, 0, 0]], retail=[0.3, 0.38, 0.3])
    feed = r.config.tariff.feed_in
    params = StoreParams(kwh_per_household=5.0)
    o = store(r, params)
    money = _transfers(r, o.cost, o.grid_imp, o.grid_exp)
    sell_price = feed + params.seller_share * (0.38 - feed)
    buy_price = feed + params.buyer_share * (0.38 - feed)
    left = 1.0 * params.round_trip - 0.5
    assert money[0] == pytest.approx(-(0.5 * sell_price + left * feed))
    assert money[1] == pytest.approx(0.5 * buy_price)
    assert o.grid_exp[0, 0] == pytest.approx(0.0) and o.grid_imp[1, 1] == pytest.approx(0.0)
    # an empty store sells nothing: with the draw before the deposit, B buys from the grid
    early = store(_hand_made(run, imp=[[0, 0], [0.5, 0]], exp=[[0, 1], [0, 0]], retail=[0.3, 0.3]), params)
    assert early.grid_imp[1, 0] == pytest.approx(0.5) and early.traded_kwh == 0


def test_store_takes_no_more_than_its_room(run: EngineResult) -> None:
    r = _hand_made(run, imp=[[0, 0], [0, 0]], exp=[[10, 10], [0, 0]], retail=[0.3, 0.3])
    o = store(r, StoreParams(kwh_per_household=1.0, round_trip=0.8))  # 2 kWh stored at most
    assert float((r.batt_exp - o.grid_exp).sum()) == pytest.approx(2.0 / 0.8)


def test_stations_cheapest_bid_wins_and_the_fee_goes_to_the_operator(run: EngineResult) -> None:
    r = _hand_made(run, imp=[[0], [1.0]], exp=[[2.0], [0]], retail=[0.3])
    feed = r.config.tariff.feed_in
    o = stations(r, fee_per_kwh=0.03)
    assert o.traded_kwh == pytest.approx(1.0)
    assert o.operator_tokens == pytest.approx(0.03)
    money = _transfers(r, o.cost, o.grid_imp, o.grid_exp)
    assert money[1] + money[0] == pytest.approx(0.03)  # the buyer paid the seller's ask plus the fee
    assert -money[0] > feed  # the seller got more than the grid's feed-in
    # a fee that leaves no margin under retail: nobody trades, everybody keeps the grid
    none = stations(r, fee_per_kwh=0.3)
    assert none.traded_kwh == 0 and none.operator_tokens == 0


def test_compare_rows(run: EngineResult) -> None:
    rows = compare(run)
    assert [row["model"] for row in rows] == ["battery_only", *MODELS]
    ref, p2p_row = rows[0], rows[1]
    assert p2p_row["households_cost"] == pytest.approx(float(p2p(run).cost.sum()), abs=1e-4)
    assert ref["households_cost"] == pytest.approx(float(battery_only(run).cost.sum()), abs=1e-4)
    loans_row = rows[[row["model"] for row in rows].index("loans")]
    assert loans_row["households_cost"] == pytest.approx(float(loans(run).cost.sum()), abs=1e-4)
    for row in rows:
        assert 0 <= float(row["self_sufficiency"]) <= 1
        if row["model"] != "loans":  # a lender may import to lend: loans can raise a household's import
            assert float(row["grid_import_kwh"]) <= float(ref["grid_import_kwh"]) + 1e-6
    with pytest.raises(ValueError, match="unknown trading model"):
        compare(run, ("barter",))


def test_simulate_market_all_reports_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--engine-only",
        "--households",
        "8",
        "--hours",
        "24",
        "--seed",
        "5",
        "--market",
        "all",
        "--quiet",
    ]
    assert simulate_main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert simulate_main([*argv, "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "market store" in out and "market stations" in out and "market demand_response" in out
    assert "market store" in out and "market stations" in out and "market loans" in out
    a = json.loads((tmp_path / "a" / "summary.json").read_text())["markets"]
    b = json.loads((tmp_path / "b" / "summary.json").read_text())["markets"]
    assert a == b and [row["model"] for row in a] == ["battery_only", *MODELS]
    assert "Trading models compared" in (tmp_path / "a" / "report.html").read_text()


def test_market_needs_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_main(["--market", "store", "--out", str(tmp_path)]) == 2
    assert "--engine-only" in capsys.readouterr().err


def test_demand_response_pays_the_metered_reduction(run: EngineResult) -> None:
    event = DemandResponse(reward_per_kwh=0.2)
    o = demand_response(run, event)
    start, end = run.config.tariff.peak_hours
    hour = ((run.config.t0 + 3600 * np.arange(run.config.hours)) % 86400) // 3600
    in_event = (hour >= start) & (hour < end)
    reduced = np.clip(run.batt_imp[:, in_event] - o.grid_imp[:, in_event], 0, None).sum(axis=1)
    money = _transfers(run, o.cost, o.grid_imp, o.grid_exp)
    assert money == pytest.approx(-0.2 * reduced)  # each household is paid its own metered reduction
    assert o.operator_tokens == pytest.approx(-0.2 * float(reduced.sum()))
    assert reduced.sum() > 0
    assert o.grid_imp[:, in_event].sum() < run.batt_imp[:, in_event].sum()
    no_battery = [i for i, s in enumerate(run.specs) if s.battery_kwh == 0]
    assert no_battery, "the community should have households without a battery"
    for i in no_battery:  # nothing to hold: the same flows, no reward
        assert o.grid_imp[i] == pytest.approx(run.batt_imp[i]) and money[i] == pytest.approx(0.0)


def test_a_reserve_stops_discharge_and_never_charges_from_the_grid() -> None:
    battery = BatteryParams(np.array([10.0]), np.array([100.0]), efficiency=1.0, soc_min=0.0, soc_max=1.0,
                            soc_start=0.5)  # fmt: skip
    load = np.full((1, 4), 4000.0)  # 1 kWh a step (900 s)
    pv = np.zeros((1, 4))
    free, _, _ = grid_flows(load, pv, 900, battery)
    assert free.sum() == pytest.approx(0.0)  # 5 kWh cover the 4 steps
    held, _, soc = grid_flows(load, pv, 900, battery, reserve=np.array([[4.0, 4.0, 9.0, 0.0]]))
    assert held[0] == pytest.approx([0.0, 1.0, 1.0, 0.0])  # down to 4 kWh, then kept, never topped up to 9
    assert soc[0] == pytest.approx([4.0, 4.0, 4.0, 3.0])
