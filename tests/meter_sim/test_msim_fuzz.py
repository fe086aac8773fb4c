"""Bad input of any shape: a counted rejection or the answer a meter gives, never a crash."""

from __future__ import annotations

import asyncio
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from meter_sim import codec
from meter_sim.clock import SimClock
from meter_sim.farm import MeterFarm
from meter_sim.maps import load_map
from meter_sim.meter import Meter
from meter_sim.requests import reply_for

CLOCK = SimClock(1767225600.0)
METER = Meter(load_map("sdm630"), 1, "household:seed=1,pv_kwp=5", CLOCK, tick_s=60.0)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_pdu_gets_a_valid_answer_or_silence(pdu: bytes) -> None:
    reply = reply_for(METER, pdu)
    if reply.silent:
        assert not pdu  # only the empty PDU goes unanswered (no broadcast here)
        return
    answer = reply.pdu
    assert answer and answer[0] & 0x7F == pdu[0] & 0x7F
    if answer[0] & 0x80:
        assert len(answer) == 2 and answer[1] in (1, 2, 3)
    assert 1 <= METER.unit_id <= 247


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.sampled_from([3, 4]))
def test_reads_follow_eastron_rules(start: int, count: int, function: int) -> None:
    reply = reply_for(METER, struct.pack(">BHH", function, start, count))
    ok = 1 <= count <= 80 and start % 2 == 0 and count % 2 == 0 and start + count <= 512
    assert reply.is_exception != ok
    if ok:
        assert reply.pdu[1] == 2 * count and len(reply.pdu) == 2 + 2 * count


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([10, 18, 20, 28, 12, 0]), st.floats(allow_nan=True, allow_infinity=True, width=32))
def test_holding_writes_are_validated(address: int, value: float) -> None:
    meter = Meter(load_map("sdm630"), 1, "constant:load_w=1", CLOCK)
    data = struct.pack(">f", value)
    reply = reply_for(meter, struct.pack(">BHHB", 0x10, address, 2, 4) + data)
    reg = meter.rmap.holding_at(address)
    if reg is None:
        assert reply.pdu == b"\x90\x02"
    elif reg.valid(value):
        assert reply.pdu == codec.write_answer_pdu(address, 2)
        assert meter.holding[reg.key] == value
    else:
        assert reply.pdu == b"\x90\x03" and meter.holding[reg.key] == reg.default  # unchanged


def test_random_streams_on_tcp_and_rtu_framer_never_stop_the_server() -> None:
    async def run() -> None:
        import random

        rng = random.Random(5)
        clock = SimClock(1767225600.0)
        async with MeterFarm(clock) as farm:
            farm.add_meter("sdm120", 1, "constant:load_w=42,pv_w=0")
            ep = await farm.serve_tcp("127.0.0.1", 0)
            for _ in range(40):
                reader, writer = await asyncio.open_connection("127.0.0.1", ep.port)
                writer.write(rng.randbytes(rng.randint(1, 400)))
                await writer.drain()
                writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", ep.port)
            writer.write(codec.mbap(7, 1, bytes.fromhex("04000c0002")))
            answer = await asyncio.wait_for(reader.readexactly(13), 2.0)
            assert answer == codec.mbap(7, 1, b"\x04\x04" + struct.pack(">f", 42.0))
            writer.close()
            assert ep.stats.counts["internal_error"] == 0

    asyncio.run(run())
