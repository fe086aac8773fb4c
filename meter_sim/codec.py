"""Modbus framing as small pure functions: CRC-16, RTU frames, TCP MBAP headers, PDUs."""

from __future__ import annotations

import struct
from enum import IntEnum

READ_HOLDING = 0x03
READ_INPUT = 0x04
WRITE_MULTIPLE = 0x10


class ExceptionCode(IntEnum):
    """Modbus exception codes (those an Eastron meter or a TCP gateway returns)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SLAVE_DEVICE_FAILURE = 0x04
    SLAVE_DEVICE_BUSY = 0x06
    GATEWAY_TARGET_NO_RESPONSE = 0x0B


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """An RTU frame: unit id, PDU, CRC (low byte first)."""
    body = bytes([unit]) + pdu
    return body + struct.pack("<H", crc16(body))


def rtu_split(frame: bytes) -> tuple[int, bytes] | None:
    """(unit, pdu) of a frame whose CRC checks, None for a short or corrupt frame."""
    if len(frame) < 4 or crc16(frame[:-2]) != struct.unpack("<H", frame[-2:])[0]:
        return None
    return frame[0], frame[1:-2]


def rtu_request_length(buf: bytes | bytearray) -> int | None:
    """Length of the request frame starting `buf` if its function fixes it, else None."""
    if len(buf) < 2:
        return None
    if buf[1] in (READ_HOLDING, READ_INPUT):
        return 8
    if buf[1] == WRITE_MULTIPLE:
        return 9 + buf[6] if len(buf) >= 7 else None
    return None


def mbap(transaction: int, unit: int, pdu: bytes) -> bytes:
    """A Modbus TCP ADU: MBAP header (protocol 0, length = unit + PDU) then the PDU."""
    return struct.pack(">HHHB", transaction, 0, len(pdu) + 1, unit) + pdu


def parse_mbap(header: bytes) -> tuple[int, int, int, int]:
    """(transaction, protocol, length, unit) of a 7-byte MBAP header."""
    transaction, protocol, length, unit = struct.unpack(">HHHB", header)
    return transaction, protocol, length, unit


def exception_pdu(function: int, code: int) -> bytes:
    """An exception answer: the function with its high bit set, then the code."""
    return bytes([(function | 0x80) & 0xFF, code])


def read_answer_pdu(function: int, data: bytes) -> bytes:
    """Answer to function 0x03/0x04: byte count then the register bytes."""
    return bytes([function, len(data)]) + data


def parse_read(pdu: bytes) -> tuple[int, int] | None:
    """(start, count) of a read request PDU, None if its length is wrong."""
    if len(pdu) != 5:
        return None
    start, count = struct.unpack(">HH", pdu[1:5])
    return start, count


def parse_write_multiple(pdu: bytes) -> tuple[int, int, bytes] | None:
    """(start, count, data) of a 0x10 request, None if its lengths disagree."""
    if len(pdu) < 6:
        return None
    start, count, nbytes = struct.unpack(">HHB", pdu[1:6])
    data = pdu[6:]
    if nbytes != len(data) or nbytes != 2 * count:
        return None
    return start, count, data


def write_answer_pdu(start: int, count: int) -> bytes:
    """Answer to 0x10: echo of start address and count."""
    return struct.pack(">BHH", WRITE_MULTIPLE, start, count)


def float32(value: float) -> float:
    """The value a float32 register actually holds (round to single precision)."""
    return struct.unpack(">f", struct.pack(">f", value))[0]
