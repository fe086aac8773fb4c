"""What a meter answers to one request PDU: Eastron's rules, then the faults in force."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from meter_sim import codec
from meter_sim.codec import ExceptionCode
from meter_sim.maps import RegisterMap
from meter_sim.meter import Meter

DIAGNOSTICS = 0x08


@dataclass(frozen=True)
class Reply:
    """How to answer: a PDU, nothing (`silent`), or raw bytes; after `delay_s`, CRC optionally spoiled."""

    pdu: bytes = b""
    silent: bool = False
    raw: bytes = b""
    delay_s: float = 0.0
    bad_crc: bool = False

    @property
    def is_exception(self) -> bool:
        return bool(self.pdu) and self.pdu[0] & 0x80 != 0


SILENT = Reply(silent=True)


def check_read(rmap: RegisterMap, start: int, count: int) -> int | None:
    """The exception code an Eastron meter gives for a read of `count` registers at `start`, or None."""
    if count < 1 or count > rmap.max_registers:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    if (rmap.even_address and start % 2) or (rmap.even_count and count % 2):
        return ExceptionCode.ILLEGAL_DATA_ADDRESS  # "an attempt to read part of a floating point value"
    if start + count > rmap.max_address:
        return ExceptionCode.ILLEGAL_DATA_ADDRESS
    return None


def answer_pdu(meter: Meter, pdu: bytes, broadcast: bool = False) -> bytes | None:
    """The meter's answer PDU without faults (None: no answer, e.g. to a broadcast)."""
    if not pdu:
        return None
    function = pdu[0]
    if function in (codec.READ_INPUT, codec.READ_HOLDING):
        if broadcast:
            return None
        parsed = codec.parse_read(pdu)
        if parsed is None:
            return codec.exception_pdu(function, ExceptionCode.ILLEGAL_DATA_VALUE)
        start, count = parsed
        code = check_read(meter.rmap, start, count)
        if code is not None:
            return codec.exception_pdu(function, code)
        meter.sync()
        image = meter.input_image() if function == codec.READ_INPUT else meter.holding_image()
        return codec.read_answer_pdu(function, image[2 * start : 2 * (start + count)])
    if function == codec.WRITE_MULTIPLE:
        answer = write_holding(meter, pdu)
        return None if broadcast else answer
    if function == DIAGNOSTICS and not broadcast:
        if len(pdu) >= 3 and pdu[1:3] == b"\x00\x00":  # sub-function 0: return query data
            return pdu
        return codec.exception_pdu(function, ExceptionCode.ILLEGAL_FUNCTION)
    return None if broadcast else codec.exception_pdu(function, ExceptionCode.ILLEGAL_FUNCTION)


def write_holding(meter: Meter, pdu: bytes) -> bytes:
    """Function 0x10 on the configuration registers: whole floats, known registers, valid values."""
    fn = codec.WRITE_MULTIPLE
    parsed = codec.parse_write_multiple(pdu)
    if parsed is None:
        return codec.exception_pdu(fn, ExceptionCode.ILLEGAL_DATA_VALUE)
    start, count, data = parsed
    if count < 1 or count > meter.rmap.max_registers or start % 2 or count % 2:
        return codec.exception_pdu(fn, ExceptionCode.ILLEGAL_DATA_ADDRESS)
    updates: list[tuple[str, float]] = []
    for n in range(count // 2):
        reg = meter.rmap.holding_at(start + 2 * n)
        if reg is None:
            return codec.exception_pdu(fn, ExceptionCode.ILLEGAL_DATA_ADDRESS)
        value = struct.unpack(">f", data[4 * n : 4 * n + 4])[0]
        if not reg.valid(value):
            return codec.exception_pdu(fn, ExceptionCode.ILLEGAL_DATA_VALUE)
        updates.append((reg.key, value))
    for key, value in updates:
        meter.set_holding(key, value)
    return codec.write_answer_pdu(start, count)


def reply_for(meter: Meter, pdu: bytes, broadcast: bool = False, rng: random.Random | None = None) -> Reply:
    """The full reply: faults first (silence, garbage, exception), then the normal answer, slowed or spoiled."""
    now = meter.clock.now()
    meter.sync(now)
    if meter.active("no_response", now):
        return SILENT
    garbage = meter.active("garbage", now)
    if garbage is not None and not broadcast:
        length = garbage.params["length"]
        return Reply(raw=(rng or random).randbytes(length if isinstance(length, int) else 8))
    exc = meter.active("exception", now)
    if exc is not None and not broadcast and pdu:
        code = exc.params["code"]
        return Reply(pdu=codec.exception_pdu(pdu[0], code if isinstance(code, int) else 4))
    answer = answer_pdu(meter, pdu, broadcast)
    if answer is None:
        return SILENT
    slow = meter.active("slow", now)
    delay = slow.params["delay_s"] if slow is not None else 0.0
    return Reply(
        pdu=answer,
        delay_s=float(delay) if isinstance(delay, int | float) else 0.0,
        bad_crc=meter.active("crc", now) is not None,
    )
