"""The battery inverter's registers (gridpact.core.inverter) and meter_sim's inverter, driven by a
standard client (pymodbus) over Modbus TCP: a command changes what the household's meter measures
from the next tick on, lapses by itself, and bad writes are refused whole and counted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gridpact.core.inverter import (
    AUTO,
    Command,
    InverterError,
    InverterStatus,
    Mode,
    command_registers,
    parse_command,
    parse_status,
    status_registers,
)
from meter_sim.cli import UsageError, endpoints_from_args
from meter_sim.cli import build_parser as msim_parser
from meter_sim.clock import SimClock
from meter_sim.farm import MeterFarm
from meter_sim.inverter import Inverter
from meter_sim.profiles import Battery, Household, parse_profile

T0 = 1767225600.0 + 100 * 86400.0 + 20 * 3600.0  # an evening: no PV
NIGHT = "constant:load_w=800,pv_w=0"


def test_command_and_status_golden_vectors() -> None:
    assert command_registers(Command(Mode.CHARGE, 3000, 7200)) == (2, 3000, 7200)
    assert command_registers(AUTO) == (0, 0, 0)
    assert parse_command((3, 500, 60)) == Command(Mode.DISCHARGE, 500, 60)
    assert parse_command((0, 9, 9)) == AUTO  # auto has no power or lifetime
    st = InverterStatus(Mode.HOLD, 42, 731, -2500, 13_500, 5000)
    regs = status_registers(st)
    assert regs == (1, 42, 731, 0xF63C, 0, 13_500, 5000)
    assert parse_status(regs) == st
    assert parse_status((0, 0, 500, 100, 1, 0x0001, 3000)).capacity_wh == 65_537
    assert abs(st.room_wh - 13_500 * 0.269) < 1e-9
    for bad in ((4, 1, 1), (2, 0, 60), (2, 100, 0), (1, 0, 0), (1, 2)):
        with pytest.raises(InverterError):
            parse_command(bad)
    with pytest.raises(InverterError):
        parse_status((0, 0, 1001, 0, 0, 0, 0))


def test_the_battery_obeys_each_mode_and_falls_back_to_auto_when_the_command_lapses() -> None:
    b = Battery(10.0, 3000.0)  # half full
    assert b.decide(-800.0, 60.0, 0.0) == 800.0  # auto: covers the house's need
    b.obey(Command(Mode.HOLD, 0, 600), 0.0)
    assert b.decide(-800.0, 60.0, 10.0) == 0.0 and b.decide(1000.0, 60.0, 10.0) == -1000.0
    b.obey(Command(Mode.CHARGE, 5000, 600), 0.0)  # above the battery's 3 kW: clipped
    assert b.decide(-800.0, 60.0, 10.0) == -3000.0
    b.obey(Command(Mode.DISCHARGE, 1200, 600), 0.0)
    assert b.decide(2000.0, 60.0, 10.0) == 1200.0  # exports beside the PV surplus
    assert b.decide(-800.0, 60.0, 600.0) == 800.0  # lapsed: auto again
    b.soc_kwh = b.capacity_kwh
    b.obey(Command(Mode.CHARGE, 3000, 600), 0.0)
    assert b.decide(-800.0, 60.0, 10.0) == 0.0  # full: nothing more goes in


def _household(soc_kwh: float) -> Household:
    return Household(parse_profile(NIGHT), Battery(10.0, 3000.0, soc_kwh))


async def _client(port: int) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
    assert await client.connect()
    return client


def test_a_charge_command_over_modbus_moves_the_meter_and_lapses_by_itself() -> None:
    async def run() -> None:
        clock = SimClock(T0)
        async with MeterFarm(clock) as farm:
            driven = farm.add_meter("sdm120", 1, _household(5.0))
            control = farm.add_meter("sdm120", 2, _household(5.0))
            inverter = Inverter(driven, 11)
            ep = await farm.serve_tcp("127.0.0.1", 0, [driven, control], [inverter])
            client = await _client(ep.port)
            st = await client.read_input_registers(0, count=7, device_id=11)
            assert not st.isError()
            status = parse_status(st.registers)
            assert (status.mode, status.soc_permille, status.capacity_wh, status.max_power_w) == (
                Mode.AUTO, 500, 10_000, 3000)  # fmt: skip
            wr = await client.write_registers(0, list(command_registers(Command(Mode.CHARGE, 2000, 1800))),
                                              device_id=11)  # fmt: skip
            assert not wr.isError()
            held = await client.read_holding_registers(0, count=3, device_id=11)
            assert held.registers == [2, 2000, 1800]
            e0 = (driven.registers()["e_imp"], control.registers()["e_imp"])
            clock.advance(1800.0)  # the command's lifetime
            e1 = (driven.registers()["e_imp"], control.registers()["e_imp"])
            # driven: the house's 800 W plus 2 kW into the battery; control: its battery covers the house
            assert abs((e1[0] - e0[0]) - 1.4) < 0.01 and e1[1] - e0[1] < 0.01
            clock.advance(600.0)
            lapsed = parse_status((await client.read_input_registers(0, count=7, device_id=11)).registers)
            assert lapsed.mode == Mode.AUTO and lapsed.seconds_left == 0 and lapsed.battery_w > 0
            assert 580 <= lapsed.soc_permille <= 590  # + 1 kWh x 0.975 in, - 10 min x 800 W / 0.975 out
            client.close()
        assert inverter.counts["command"] == 1 and inverter.counts["refused"] == 0

    asyncio.run(run())


def test_bad_writes_are_refused_whole_and_counted() -> None:
    async def run() -> None:
        clock = SimClock(T0)
        async with MeterFarm(clock) as farm:
            meter = farm.add_meter("sdm120", 1, _household(5.0))
            inverter = Inverter(meter, 11)
            ep = await farm.serve_tcp("127.0.0.1", 0, [meter], [inverter])
            client = await _client(ep.port)
            for address, values in (
                (0, [2, 1000]),  # half a command
                (1, [1000, 60, 0]),  # shifted
                (0, [7, 1000, 60]),  # unknown mode
                (0, [2, 0, 60]),  # charge at nothing
                (0, [3, 1000, 0]),  # no lifetime: would never lapse
            ):
                rr = await client.write_registers(address, values, device_id=11)
                assert rr.isError(), (address, values)
            assert (await client.read_input_registers(0, count=8, device_id=11)).isError()
            assert (await client.read_holding_registers(2, count=2, device_id=11)).isError()
            held = await client.read_holding_registers(0, count=3, device_id=11)
            assert held.registers == [0, 0, 0]  # nothing of the bad writes took
            ok = await client.read_input_registers(0, count=2, device_id=1)  # the meter still answers
            assert not ok.isError()
            client.close()
        assert inverter.counts["refused"] == 7 and inverter.counts["command"] == 0
        assert meter.household.battery is not None and meter.household.battery.command == AUTO

    asyncio.run(run())


def test_an_inverter_needs_a_battery_its_own_unit_and_a_tcp_endpoint(tmp_path: Path) -> None:
    async def run() -> None:
        async with MeterFarm(SimClock(T0)) as farm:
            bare = farm.add_meter("sdm120", 1, NIGHT)
            with pytest.raises(ValueError, match="no battery"):
                Inverter(bare, 11)
            meter = farm.add_meter("sdm120", 2, _household(5.0))
            with pytest.raises(ValueError, match="not the meter's own"):
                Inverter(meter, 2)
            with pytest.raises(ValueError, match="unit id of its own"):
                await farm.serve_tcp("127.0.0.1", 0, [bare, meter], [Inverter(meter, 1)])

    asyncio.run(run())
    parser = msim_parser()
    with pytest.raises(UsageError, match="battery_kwh"):
        endpoints_from_args(parser.parse_args(["serve", "--tcp", "127.0.0.1:0", "--profile", NIGHT,
                                               "--inverter-unit", "9"]))  # fmt: skip
    with pytest.raises(UsageError, match="needs --profile"):
        endpoints_from_args(parser.parse_args(["serve", "--rtu", "/dev/null", "--profile", NIGHT + ",battery_kwh=5",
                                               "--inverter-unit", "9"]))  # fmt: skip
    cfg = tmp_path / "farm.json"
    meter = {"model": "sdm120", "unit_id": 1, "profile": NIGHT + ",battery_kwh=5", "inverter_unit": 9}
    cfg.write_text(json.dumps({"endpoints": [{"rtu": "/dev/null", "meters": [meter]}]}))
    with pytest.raises(Exception, match="tcp endpoints only"):
        endpoints_from_args(parser.parse_args(["serve", "--config", str(cfg)]))
    cfg.write_text(json.dumps({"endpoints": [{"tcp": "127.0.0.1:0", "meters": [meter]}]}))
    endpoints, _ = endpoints_from_args(parser.parse_args(["serve", "--config", str(cfg)]))
    assert endpoints[0].meters[0].inverter_unit == 9
