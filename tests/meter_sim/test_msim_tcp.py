"""A standard client (pymodbus) over Modbus TCP: values equal the truth, Eastron rules, faults, bad input."""

from __future__ import annotations

import asyncio
import math
import struct
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from meter_sim.clock import SimClock
from meter_sim.farm import MeterFarm
from meter_sim.maps import load_map
from meter_sim.testing import values_by_key
from meter_sim.truth import read_truth, registers_at

T0 = 1767225600.0 + 100 * 86400.0


async def _client(port: int, timeout: float = 1.0) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0)
    assert await client.connect()
    return client


async def _read_all(client: AsyncModbusTcpClient, unit: int, model: str) -> dict[str, float]:
    """Read every input register of the map in requests of at most 80 registers."""
    keys = {r.address: r.key for r in load_map(model).inputs}
    out: dict[str, float] = {}
    for start in (0, 80, 160, 240, 320, 400):
        rr = await client.read_input_registers(start, count=80, device_id=unit)
        assert not rr.isError(), rr
        out.update(values_by_key(start, rr.registers, keys))
    return out


def test_readings_equal_truth(tmp_path: Path) -> None:
    async def run() -> None:
        clock = SimClock(T0)
        async with MeterFarm(clock, truth=tmp_path / "t.jsonl") as farm:
            farm.add_meter("sdm120", 1, "household:seed=7,pv_kwp=5,battery_kwh=7", tick_s=5.0)
            farm.add_meter("sdm630", 2, "household:seed=9,pv_kwp=8", tick_s=5.0)
            ep = await farm.serve_tcp("127.0.0.1", 0)
            client = await _client(ep.port)
            seen = []
            for _ in range(6):
                clock.advance(3600.0 * 2 + 1.0)
                for unit, model in ((1, "sdm120"), (2, "sdm630")):
                    seen.append((clock.now(), unit, await _read_all(client, unit, model)))
            client.close()
        rows = read_truth(tmp_path / "t.jsonl")
        for t, unit, values in seen:
            # the registers at time t are those of the last truth line at or before t
            held = registers_at(rows, t, unit=unit)
            assert set(held) == set(values)
            for key, v in values.items():
                assert v == held[key], key  # exact: both are the float32 on the wire

    asyncio.run(run())


def test_eastron_rules_and_exceptions() -> None:
    async def run() -> None:
        clock = SimClock(T0)
        async with MeterFarm(clock) as farm:
            meter = farm.add_meter("sdm120", 1, "constant:load_w=2300,pv_w=0")
            farm.add_meter("sdm120", 3, "constant:load_w=100,pv_w=0")
            ep = await farm.serve_tcp("127.0.0.1", 0)
            c = await _client(ep.port)
            cases = [
                (c.read_input_registers(1, count=2, device_id=1), 2),  # odd start: part of a float
                (c.read_input_registers(0, count=3, device_id=1), 2),  # odd count
                (c.read_input_registers(0, count=82, device_id=1), 3),  # over 80 registers
                (c.read_input_registers(500, count=20, device_id=1), 2),  # past the map's end
                (c.read_coils(0, count=1, device_id=1), 1),  # function the meter lacks
                (c.write_register(20, 5, device_id=1), 1),  # 0x06 is not supported, only 0x10
                (c.read_input_registers(0, count=2, device_id=9), 0x0B),  # no such unit behind the port
            ]
            for call, code in cases:
                rr = await call
                assert rr.isError() and rr.exception_code == code
            rr = await c.read_input_registers(12, count=2, device_id=1)
            assert struct.unpack(">f", struct.pack(">HH", *rr.registers))[0] == 2300.0
            # holding registers: readable; writes validated
            rr = await c.read_holding_registers(20, count=2, device_id=1)
            assert struct.unpack(">f", struct.pack(">HH", *rr.registers))[0] == 1.0
            bad = list(struct.unpack(">HH", struct.pack(">f", 300.0)))
            rr = await c.write_registers(20, bad, device_id=1)
            assert rr.isError() and rr.exception_code == 3
            rr = await c.write_registers(22, bad, device_id=1)  # not a holding register
            assert rr.isError() and rr.exception_code == 2
            good = list(struct.unpack(">HH", struct.pack(">f", 2.0)))
            rr = await c.write_registers(20, good, device_id=1)
            assert not rr.isError()
            assert meter.unit_id == 2
            rr = await c.read_input_registers(0, count=2, device_id=2)
            assert not rr.isError()
            c.close()
            assert ep.stats.counts["exceptions"] >= 7

    asyncio.run(run())


def test_faults_over_tcp() -> None:
    async def run() -> None:
        clock = SimClock(T0)
        async with MeterFarm(clock) as farm:
            meter = farm.add_meter("sdm120", 1, "constant:load_w=1000,pv_w=0")
            ep = await farm.serve_tcp("127.0.0.1", 0)
            c = await _client(ep.port, timeout=0.3)
            meter.inject("exception", 10.0, code=6)
            rr = await c.read_input_registers(0, count=2, device_id=1)
            assert rr.isError() and rr.exception_code == 6
            clock.advance(10.0)
            meter.inject("no_response", 10.0)
            with pytest.raises(ModbusIOException):
                await c.read_input_registers(0, count=2, device_id=1)
            clock.advance(10.0)
            meter.inject("slow", 5.0, delay_s=0.1)
            loop = asyncio.get_running_loop()
            t = loop.time()
            rr = await c.read_input_registers(12, count=2, device_id=1)
            assert not rr.isError() and loop.time() - t >= 0.1
            clock.advance(5.0)
            meter.inject("nan", 5.0)
            rr = await c.read_input_registers(12, count=2, device_id=1)
            assert math.isnan(struct.unpack(">f", struct.pack(">HH", *rr.registers))[0])
            c.close()
            clock.advance(5.0)
            meter.inject("garbage", 5.0, length=12)
            reader, writer = await asyncio.open_connection("127.0.0.1", ep.port)
            writer.write(bytes.fromhex("000100000006010400000002"))
            junk = await asyncio.wait_for(reader.readexactly(12), 2.0)
            assert len(junk) == 12
            writer.close()

    asyncio.run(run())


def test_bad_input_never_stops_the_server() -> None:
    async def run() -> None:
        clock = SimClock(T0)
        async with MeterFarm(clock) as farm:
            farm.add_meter("sdm630", 1, "constant:load_w=500,pv_w=0")
            ep = await farm.serve_tcp("127.0.0.1", 0)
            good = await _client(ep.port)
            raw_inputs = [
                bytes.fromhex("0001 0001 0006 01 0400000002".replace(" ", "")),  # protocol id 1
                bytes.fromhex("0001 0000 0000 01".replace(" ", "")),  # length 0
                bytes.fromhex("0001 0000 0003 01 0400".replace(" ", "")),  # truncated read PDU
                bytes.fromhex("0001 0000 0002 01 99".replace(" ", "")),  # unknown function
                b"\xff" * 300,
                b"GET / HTTP/1.0\r\n\r\n",
            ]
            answers = []
            for raw in raw_inputs:
                reader, writer = await asyncio.open_connection("127.0.0.1", ep.port)
                writer.write(raw)
                await writer.drain()
                try:
                    answers.append(await asyncio.wait_for(reader.read(64), 0.5))
                except TimeoutError:
                    answers.append(None)
                writer.close()
                rr = await good.read_input_registers(52, count=2, device_id=1)
                assert not rr.isError()
            assert answers[0] == b"" and answers[1] == b""  # framing lost: connection closed
            assert answers[2] is not None and answers[2][7:] == b"\x84\x03"
            assert answers[3] is not None and answers[3][7:] == b"\x99\x01"
            assert ep.stats.counts["rejected_mbap"] >= 2 and ep.stats.counts["internal_error"] == 0
            good.close()

    asyncio.run(run())
