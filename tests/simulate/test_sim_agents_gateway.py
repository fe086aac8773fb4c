"""`gridpact simulate --agents gateway`: the households' own gateways trade over MQTT and on chain.

Pure parts with golden vectors (forecaster, stepped asyncio clock, chain-event replay, the
trading config the simulator builds), then a real run: amqtt, anvil, the real Market, three
households' `run_trading` for four sunny simulated hours.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from gateway.trading.config import parse_trading_config
from hil.community.agentclock import SteppedAsyncClock
from hil.community.agentledger import ChainAgreement, replay, under_delivered
from hil.community.agents import ProfileForecaster, trading_tables
from hil.community.cli import main as simulate_main
from hil.community.engine import EngineConfig
from hil.community.fullstack import FullStackOptions
from meter_sim.clock import SimClock
from meter_sim.profiles import parse_profile
from tests.simulate.test_sim_fullstack import assert_gateways_built_by_the_service

UNIT = 10**18
T0 = 1_811_808_000


def test_sim_agents_forecaster_is_load_minus_pv_inside_the_run() -> None:
    f = ProfileForecaster(parse_profile("constant:load_w=500,pv_w=2000"), T0, T0 + 7200)
    assert np.allclose(f.net_demand(T0, 12, 300), -1500.0)
    with pytest.raises(ValueError):
        f.net_demand(T0 + 3600, 12, 600)  # ends after the run
    with pytest.raises(ValueError):
        f.net_demand(T0 - 3600, 12, 300)


def test_sim_agents_clock_wakes_sleepers_only_when_simulated_time_passes() -> None:
    sim = SimClock(start=float(T0))
    clock = SteppedAsyncClock(sim)

    async def scenario() -> list[str]:
        woke: list[str] = []

        async def sleeper(name: str, s: float) -> None:
            await clock.sleep(s)
            woke.append(f"{name}@{clock.now() - T0:g}")

        tasks = [asyncio.create_task(sleeper("a", 5)), asyncio.create_task(sleeper("b", 60))]
        await asyncio.sleep(0.01)
        assert woke == [] and clock.release() == 0  # real time passing wakes nobody
        sim.advance(5)
        clock.release()
        await asyncio.sleep(0.01)
        sim.advance(54)
        clock.release()
        await asyncio.sleep(0.01)
        assert woke == ["a@5"]
        sim.advance(1)
        clock.advanced()  # the driver's thread-safe path
        await asyncio.gather(*tasks)
        await clock.sleep(0)  # a zero sleep only yields
        return woke

    assert asyncio.run(scenario()) == ["a@5", "b@60"]


def _ag(seller: int, buyer: int, wh: int, delivered: int | None, paid: int | None = None,
        refund: int | None = None, reclaimed: int | None = None) -> ChainAgreement:  # fmt: skip
    return ChainAgreement(bytes([seller, buyer, wh % 256]) * 8, seller, buyer, wh, 2 * 10**17, 1,
                          delivered, paid, refund, reclaimed)  # fmt: skip


def test_sim_agents_replay_golden_and_disagreement() -> None:
    start = 50 * UNIT
    # 1000 Wh at 0.2 token/kWh = 0.2 token escrowed; 600 Wh delivered: pay 0.12, penalty 10 % of 0.08
    full = _ag(0, 1, 500, 500, 10**17, 0)
    short = _ag(0, 2, 1000, 600, 12 * 10**16 - 8 * 10**15, 8 * 10**16 + 8 * 10**15)
    reclaimed = _ag(1, 2, 250, None, reclaimed=5 * 10**16)
    ledger, settled, problems = replay([full, short, reclaimed], 3, start, UNIT, lambda ag: 7)
    assert problems == []
    assert ledger.balance == [start + 10**17 + 112 * 10**15, start - 10**17, start - 112 * 10**15]
    assert ledger.conserved() and ledger.escrowed() == 0
    assert [(st.hour, st.delivered_wh, st.refund) for st in settled] == [(7, 500, 0), (7, 600, 88 * 10**15)]
    assert ledger.refunds == 2  # the short one and the reclaimed escrow
    wrong = _ag(0, 1, 500, 500, 10**17 - 1, 1)
    _, _, problems = replay([wrong], 2, start, UNIT, lambda ag: 0)
    assert len(problems) == 1 and "chain paid/refunded" in problems[0]


def _split_ag(wh: int, reports: tuple[int, ...], delivered: int, paid: int, refund: int,
              disputed: bool = False) -> ChainAgreement:  # fmt: skip
    return ChainAgreement(bytes([wh % 256, delivered % 256]) * 16, 0, 1, wh, 2 * 10**17, 1, delivered, paid,
                          refund, None, disputed, reports)  # fmt: skip


def test_sim_agents_replay_two_reports_buyer_charged_on_the_larger() -> None:
    """The 3 x 6 h virtual run's case: the seller reported its full 306 Wh, the buyer's meter saw 304.
    The contract pays the seller on 304 less the penalty on 2 Wh and charges the buyer on 306 (no
    refund), the gap to the treasury: short, but not owed a refund. A split off the rule, or a buyer
    charged below the quantity without a refund, must still fail the checks."""
    start = 50 * UNIT
    # 0.2 token/kWh: escrow value(306) = 0.0612; value(304) = 0.0608; penalty 10 % of value(2 Wh) = 4e13
    full_charge = _split_ag(306, (306, 304), 304, 608 * 10**14 - 4 * 10**13, 0)
    # reports 300 and 296: paid value(296) - penalty(10 Wh), refund escrow - value(300) + penalty(6 Wh)
    partial = _split_ag(306, (296, 300), 296, 592 * 10**14 - 2 * 10**14, 12 * 10**14 + 12 * 10**13)
    # a dispute the community resolved at 200 Wh: paid and charged on 200
    resolved = _split_ag(306, (306, 200), 200, 400 * 10**14 - 212 * 10**13, 212 * 10**14 + 212 * 10**13, True)
    ledger, settled, problems = replay([full_charge, partial, resolved], 2, start, UNIT, lambda ag: 0)
    assert problems == []
    assert [st.charged for st in settled] == [306, 300, 200]
    assert ledger.treasury == 44 * 10**13 + (8 * 10**14 + 2 * 10**14 - 12 * 10**13)
    assert ledger.conserved() and ledger.escrowed() == 0
    assert under_delivered(settled) == (3, 1, True)
    # tokens lost in the split (the buyer got nothing back and the seller less than the rule): flagged
    lost = _split_ag(306, (306, 304), 304, 608 * 10**14 - 4 * 10**13 - 1, 0)
    _, settled, problems = replay([lost], 2, start, UNIT, lambda ag: 0)
    assert len(problems) == 1 and "contract's rule gives neither" in problems[0]
    assert settled[0].charged == 304 and under_delivered(settled) == (1, 0, False)


def test_sim_agents_trading_config_parses_with_prices_in_base_units(tmp_path: Path) -> None:
    cfg = EngineConfig(decimals=18)
    tables = trading_tables(cfg, "127.0.0.1", 1883, "http://127.0.0.1:8545", "0x" + "11" * 20, tmp_path,
                            (0.25, 0.25, 1.0))  # fmt: skip
    trading = parse_trading_config(tables, tmp_path)
    assert trading.agent.window_s == 3600 and trading.community.port == 1883
    seller = trading.agent.seller["price"]
    assert seller["ip"] == 30 * 10**16 and seller["rp"] == 8 * 10**16 + int(0.25 * 22 * 10**16)
    assert trading.agent.buyer["price"]["rp"] == 30 * 10**16 - int(0.25 * 22 * 10**16)


def test_sim_agents_cli_refuses_combinations_it_cannot_run(tmp_path: Path) -> None:
    assert simulate_main(["--agents", "gateway", "--engine-only", "--out", str(tmp_path)]) == 2
    assert simulate_main(["--agents", "gateway", "--faults", "--quiet", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "summary.json").exists()


def test_sim_agents_three_gateways_trade_settle_and_reconcile_on_chain() -> None:
    from hil.community.agentrun import run_agents

    cfg = EngineConfig(households=3, hours=4, seed=1)
    result, summary = run_agents(cfg, FullStackOptions(), start_hour=10)
    problems = [c for c in summary["checks"] if c.startswith("PROBLEM")]
    assert problems == [], summary["checks"]
    events = summary["gateway_events"]
    # the keeper's gateway submits the hour's agreements in one call; a party only when it stays silent
    assert events.get("keeper_submitted", 0) + events.get("submitted", 0) >= 1, events
    assert events.get("settled", 0) >= 2, events
    assert events.get("anchored", 0) >= 3 * 3  # each gateway anchors its own finished hours
    assert result.settled and summary["community"]["trades"] == len(result.settled)
    assert summary["community"]["token_conservation"] is True
    assert "per-household free balances on chain equal the replayed ledger: True" in summary["checks"]
    # nothing left in escrow; a two-report gap (buyer charged on the larger report) is the treasury's
    assert result.ledger.escrowed() == 0 and result.ledger.minted == 3 * 50 * UNIT
    assert sum(result.ledger.balance) + result.ledger.treasury == result.ledger.minted
    assert "gateway.trading.run_trading" in summary["layers"]["gateways"]
    assert_gateways_built_by_the_service("\n".join(summary["checks"]), 3)


def test_sim_gateways_match_by_grid_station_auctions_and_settle_on_chain() -> None:
    """`--market stations`: the same full stack, the gateways' buyers call for bids and sellers bid."""
    from hil.community.agentrun import run_agents

    cfg = EngineConfig(households=3, hours=4, seed=1)
    opts = FullStackOptions(nodes="firmware", clock="virtual", market="stations")
    result, summary = run_agents(cfg, opts, start_hour=10)
    assert [c for c in summary["checks"] if c.startswith("PROBLEM")] == [], summary["checks"]
    events = summary["gateway_events"]
    assert events.get("sent_request", 0) >= 1 and events.get("sent_bid", 0) >= 1, events
    assert events.get("auction_won", 0) >= 1 and events.get("settled", 0) >= 2, events
    assert events.get("sent_offer", 0) == 0 and events.get("sent_propose", 0) == 0, events  # no p2p sessions
    assert result.settled and summary["community"]["trades"] == len(result.settled)
    assert "per-household free balances on chain equal the replayed ledger: True" in summary["checks"]


def test_sim_cli_runs_stations_live_and_refuses_other_models_without_the_engine(tmp_path: Path) -> None:
    assert simulate_main(["--market", "loans", "--quiet", "--out", str(tmp_path)]) == 2
    assert (
        simulate_main(["--market", "stations", "--agents", "engine", "--quiet", "--out", str(tmp_path)]) == 2
    )
    assert not (tmp_path / "summary.json").exists()
