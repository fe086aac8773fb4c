"""Demand response moves the household's battery (gateway/trading/demand.py, gateway/inverter.py).

The plan is pure; then the gateway's own Modbus TCP adapter drives meter_sim's inverter on a real
socket, on one stepped clock with the household's meter: the battery is charged ahead of the event
window and covers the house in it, so the meter shows the cut a claim is paid for, while the same
household left alone imports its whole load.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import tomllib
from pathlib import Path

import pytest

from gateway.chain.journal import Journal
from gateway.errors import ConfigError
from gateway.inverter import InverterUnavailable, ModbusInverter
from gateway.trading.config import parse_trading_config
from gateway.trading.demand import BatteryShift, battery_plan, charge_start, sales_between
from gridpact.core.inverter import Command, InverterStatus, Mode
from meter_sim.clock import SimClock
from meter_sim.farm import MeterFarm
from meter_sim.inverter import Inverter
from meter_sim.profiles import Battery, Household, parse_profile

HOUR = 3600
W = 1_776_024_000  # an hour-aligned event window, 20:00 UTC
TABLES = tomllib.loads(
    (Path(__file__).resolve().parents[3] / "gateway/trading/config.example.toml").read_text()
)
HALF = InverterStatus(Mode.AUTO, 0, 500, 0, 10_000, 5000)  # 5 kWh of room, 5 kW


def test_the_plan_charges_as_late_as_fills_the_battery_and_stops_at_the_window() -> None:
    start = charge_start(W, 7200, HALF)
    assert start == W - 1.25 * HOUR  # 5 kWh at 5 kW, with a quarter's margin
    assert battery_plan([W], start - 1, 7200, HALF) is None
    assert battery_plan([W], start, 7200, HALF) == Command(Mode.CHARGE, 5000, int(1.25 * HOUR))
    assert battery_plan([W], W - 10.5, 7200, HALF) == Command(Mode.CHARGE, 5000, 11)  # lapses at W
    assert battery_plan([W], W, 7200, HALF) is None  # the window: self-consumption covers the house
    empty = InverterStatus(Mode.AUTO, 0, 0, 0, 20_000, 2000)
    assert charge_start(W, 7200, empty) == W - 7200  # never earlier than prepare_s
    full = InverterStatus(Mode.AUTO, 0, 1000, 0, 10_000, 5000)
    assert battery_plan([W], W - 60, 7200, full) is None
    # back-to-back events: no charging inside the first window for the second
    assert battery_plan([W, W + HOUR], W + 1800, 7200, HALF) is None
    assert battery_plan([W, W + 2 * HOUR], W + HOUR + 1, 7200, HALF) == Command(Mode.CHARGE, 5000, HOUR - 1)


def test_the_charge_never_eats_a_sale_of_the_households_own_surplus() -> None:
    start = charge_start(W, 7200, HALF)
    sale = (int(start) + 600, int(start) + 600 + 900)  # a quarter-hour the household sold its surplus
    lapses_at_the_sale = Command(Mode.CHARGE, 5000, 600)
    assert battery_plan([W], start, 7200, HALF, [sale]) == lapses_at_the_sale
    assert battery_plan([W], sale[0] + 1, 7200, HALF, [sale]) is None  # during it: self-consumption
    assert battery_plan([W], sale[1], 7200, HALF, [sale]) == Command(Mode.CHARGE, 5000, int(W - sale[1]))


def test_sales_between_reads_our_seller_agreements_still_to_deliver(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "trading.db")
    for aid, role, start, state in (("a", "seller", W - 3600, "submitted"), ("b", "buyer", W - 3600, "signed"),
                                    ("c", "seller", W - 7200, "signed"), ("d", "seller", W - 1800, "abandoned"),
                                    ("e", "seller", W + HOUR, "signed")):  # fmt: skip
        journal.put_agreement(
            aid, role, "0xpeer", {"deliveryStart": start, "deliveryEnd": start + 900}, "", start
        )
        journal.set_agreement_state(aid, state)
    assert sales_between(journal, W - 4000, W) == [(W - 3600, W - 2700)]
    journal.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_gateway_charges_its_battery_for_an_event_and_its_meter_shows_the_cut() -> None:
    async def run() -> None:
        clock = SimClock(W - 3 * HOUR)
        profile = "constant:load_w=1000,pv_w=0"
        async with MeterFarm(clock) as farm:
            # two identical households, batteries at their floor after the afternoon
            mine = farm.add_meter("sdm120", 1, Household(parse_profile(profile), Battery(10.0, 5000.0, 1.0)))
            other = farm.add_meter("sdm120", 2, Household(parse_profile(profile), Battery(10.0, 5000.0, 1.0)))
            ep = await farm.serve_tcp("127.0.0.1", 0, [mine, other], [Inverter(mine, 9)])
            counts: list[str] = []
            shift = BatteryShift(ModbusInverter("127.0.0.1", ep.port, 9, timeout_s=2.0), 7200, counts.append)
            imports: dict[float, tuple[float, float]] = {}
            again = await shift.act([W], clock.now())
            assert again == W - 7200  # nothing until the charge may start
            while clock.now() < W + HOUR:
                clock.advance(min(300.0, W + HOUR - clock.now()))
                if clock.now() in (W, W + HOUR):
                    imports[clock.now()] = (mine.registers()["e_imp"], other.registers()["e_imp"])
                await shift.act([W] if clock.now() < W + HOUR else [], clock.now())
            assert counts == ["dr_battery_charged"]
            mine_wh = 1000 * (imports[W + HOUR][0] - imports[W][0])
            other_wh = 1000 * (imports[W + HOUR][1] - imports[W][1])
            assert other_wh == pytest.approx(1000, abs=5)  # the whole load from the grid
            assert mine_wh < 5  # the battery charged before covers the house
            st = await ModbusInverter("127.0.0.1", ep.port, 9).status()
            assert st.mode == Mode.AUTO and st.battery_w > 0  # the command lapsed at the window by itself

    asyncio.run(run())


def test_an_unreachable_inverter_is_counted_once_and_retried_quietly() -> None:
    async def run() -> None:
        counts: list[str] = []
        dead = ModbusInverter("127.0.0.1", _free_port(), 9, timeout_s=1.0)
        shift = BatteryShift(dead, 7200, counts.append)
        for k in range(3):
            again = await shift.act([W], W - 600 + k)
            assert again == W - 600 + k + 60  # looked at again in a minute, not in a busy loop
        assert counts == ["dr_battery_unreachable"] and shift.down
        with pytest.raises(InverterUnavailable, match="ConnectionRefused"):
            await dead.status()

    asyncio.run(run())


def test_a_meter_is_not_an_inverter_the_adapter_says_so() -> None:
    async def run() -> None:
        clock = SimClock(W)
        async with MeterFarm(clock) as farm:
            farm.add_meter("sdm120", 1, "constant:load_w=100,pv_w=0")
            ep = await farm.serve_tcp("127.0.0.1", 0)
            with pytest.raises(InverterUnavailable, match="Modbus exception"):
                await ModbusInverter("127.0.0.1", ep.port, 1).status()  # odd count: the meter refuses
            with pytest.raises(InverterUnavailable, match="Modbus exception 11"):
                await ModbusInverter("127.0.0.1", ep.port, 5).command(Command(Mode.HOLD, 0, 60))

    asyncio.run(run())


def _tables(dr: dict, battery: dict | None) -> dict:
    tables = copy.deepcopy(TABLES)
    tables["demand_response"] = {"contract": "0x" + "22" * 20, **dr}
    if battery is not None:
        tables["battery"] = battery
    return tables


def test_the_battery_table_is_checked(tmp_path: Path) -> None:
    cfg = parse_trading_config(_tables({"prepare_s": 3600}, {"host": "10.0.0.5", "unit": 3}), tmp_path)
    assert cfg.battery is not None and cfg.demand is not None and cfg.demand.prepare_s == 3600
    assert (cfg.battery.host, cfg.battery.port, cfg.battery.unit, cfg.battery.timeout_s) == (
        "10.0.0.5",
        502,
        3,
        3.0,
    )
    assert parse_trading_config(_tables({}, None), tmp_path).battery is None
    for dr, battery, key in (
        ({}, {"host": "10.0.0.5", "unit": 0}, "battery.unit"),
        ({}, {"host": ""}, "battery.host"),
        ({}, {"host": "h", "port": 70000}, "battery.port"),
        ({}, {"host": "h", "password": "x"}, "battery"),
        ({}, {"host": "h", "timeout_s": 0}, "battery.timeout_s"),
        ({"prepare_s": 100_000}, None, "demand_response.prepare_s"),
    ):
        with pytest.raises(ConfigError) as err:
            parse_trading_config(_tables(dr, battery), tmp_path)
        assert key in str(err.value), (dr, battery)
