"""Modbus RTU on a real pty pair (socat): two meters on one bus, pymodbus as the master, faults, noise."""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from meter_sim import codec
from meter_sim.clock import SimClock
from meter_sim.farm import MeterFarm
from meter_sim.maps import load_map
from meter_sim.testing import PtyPair, values_by_key
from meter_sim.truth import read_truth, registers_at

T0 = 1767225600.0 + 200 * 86400.0


@pytest.fixture
def pty() -> Iterator[PtyPair]:
    with PtyPair() as pair:
        yield pair


def test_two_meters_on_one_bus_match_truth(pty: PtyPair, tmp_path: Path) -> None:
    async def run() -> None:
        clock = SimClock(T0)
        async with MeterFarm(clock, truth=tmp_path / "t.jsonl") as farm:
            farm.add_meter("sdm120", 1, "household:seed=1,pv_kwp=4", tick_s=10.0)
            farm.add_meter("sdm630", 2, "household:seed=2,pv_kwp=6,battery_kwh=5", tick_s=10.0)
            await farm.serve_rtu(pty.a, baud=9600, parity="N")
            client = AsyncModbusSerialClient(pty.b, baudrate=9600, parity="N", timeout=1.0, retries=0)
            assert await client.connect()
            seen = []
            for _ in range(3):
                clock.advance(4 * 3600.0)
                for unit, model in ((1, "sdm120"), (2, "sdm630")):
                    keys = {r.address: r.key for r in load_map(model).inputs}
                    values: dict[str, float] = {}
                    for start in (0, 80, 200, 340):
                        rr = await client.read_input_registers(start, count=20, device_id=unit)
                        assert not rr.isError(), rr
                        values.update(values_by_key(start, rr.registers, keys))
                    seen.append((clock.now(), unit, values))
            rr = await client.read_input_registers(0, count=82, device_id=1)
            assert rr.isError() and rr.exception_code == 3
            rr = await client.read_holding_registers(18, count=12, device_id=2)  # parity .. baud
            config = values_by_key(18, rr.registers, {18: "parity", 20: "unit_id", 28: "baud"})
            assert config == {"parity": 0.0, "unit_id": 2.0, "baud": 2.0}  # N1, 9600 baud
            with pytest.raises(ModbusIOException):  # nobody on the bus has unit 9: silence
                await client.read_input_registers(0, count=2, device_id=9)
            client.close()
        rows = read_truth(tmp_path / "t.jsonl")
        for t, unit, values in seen:
            held = registers_at(rows, t, unit=unit)
            for key, v in values.items():
                assert v == held[key], key

    asyncio.run(run())


def _exchange(port: serial.Serial, frame: bytes, expect: int = 0) -> bytes:
    """Send a frame, collect the answer: `expect` bytes (waiting up to 3 s), or 0.3 s of silence."""
    port.reset_input_buffer()
    port.write(frame)
    deadline = time.monotonic() + (3.0 if expect else 0.3)
    out = b""
    while time.monotonic() < deadline and (not expect or len(out) < expect):
        out += port.read(256)
    return out + port.read(256)  # anything beyond what was expected shows up here


def test_bus_bytes_faults_and_noise(pty: PtyPair) -> None:
    """Raw bytes on the wire: a corrupt request gets silence, a crc fault a bad CRC, noise is survived."""

    async def run() -> None:
        clock = SimClock(T0)
        async with MeterFarm(clock) as farm:
            meter = farm.add_meter("sdm120", 5, "constant:load_w=2300,pv_w=0")
            ep = await farm.serve_rtu(pty.a, baud=9600, parity="N")
            port = serial.Serial(pty.b, 9600, timeout=0.02)
            read_p = codec.rtu_frame(5, bytes.fromhex("04000c0002"))
            answer = codec.rtu_frame(5, bytes.fromhex("0404") + struct.pack(">f", 2300.0))

            async def ask(frame: bytes, expect: int = 0) -> bytes:
                return await asyncio.to_thread(_exchange, port, frame, expect)

            assert await ask(read_p, len(answer)) == answer
            corrupt = read_p[:-1] + bytes([read_p[-1] ^ 0xFF])
            assert await ask(corrupt) == b""
            assert await ask(b"\x05\x04\x00\x0c") == b""  # a cut-off request: silence, then normal service
            assert await ask(random.Random(3).randbytes(300)) == b""
            assert await ask(read_p, len(answer)) == answer
            assert await ask(codec.rtu_frame(0, bytes.fromhex("0400000002"))) == b""  # broadcast read: silent
            echo = codec.rtu_frame(5, bytes.fromhex("080000abcd"))
            assert await ask(echo, len(echo)) == echo  # diagnostics 08/00 return query data
            meter.inject("crc", 10.0)
            spoiled = await ask(read_p, len(answer))
            assert len(spoiled) == len(answer) and codec.rtu_split(spoiled) is None
            clock.advance(10.0)
            meter.inject("garbage", 10.0, length=5)
            assert len(await ask(read_p, 5)) == 5
            clock.advance(10.0)
            meter.inject("no_response", 10.0)
            assert await ask(read_p) == b""
            clock.advance(10.0)
            assert await ask(read_p, len(answer)) == answer
            port.close()
            assert ep.stats.counts["bad_crc_or_short"] >= 2 and ep.stats.counts["internal_error"] == 0

    asyncio.run(run())
