"""Golden vectors for the Modbus framing: CRC, RTU frames, MBAP, float32 word order."""

from __future__ import annotations

import struct

import pytest

from meter_sim import codec
from meter_sim.maps import load_map, parse_map
from meter_sim.testing import registers_to_floats


def test_crc_golden_vectors() -> None:
    # Eastron's protocol document: read 2 input registers at 0 from unit 1 -> CRC bytes 71 CB
    assert codec.rtu_frame(1, bytes.fromhex("0400000002")) == bytes.fromhex("01040000000271CB")
    # the classic Modbus example: 01 03 00 00 00 0A -> C5 CD
    assert codec.rtu_frame(1, bytes.fromhex("030000000A")) == bytes.fromhex(
        "0103000000 0AC5CD".replace(" ", "")
    )
    assert codec.crc16(b"") == 0xFFFF


def test_rtu_split_rejects_corruption() -> None:
    frame = codec.rtu_frame(7, bytes.fromhex("0400480002"))
    assert codec.rtu_split(frame) == (7, bytes.fromhex("0400480002"))
    for i in range(len(frame)):
        bad = bytearray(frame)
        bad[i] ^= 0x01
        assert codec.rtu_split(bytes(bad)) is None
    assert codec.rtu_split(b"\x01\x04") is None


def test_request_length() -> None:
    assert codec.rtu_request_length(b"\x01") is None
    assert codec.rtu_request_length(b"\x01\x04") == 8
    assert codec.rtu_request_length(b"\x01\x10\x00\x14\x00\x02\x04") == 13
    assert codec.rtu_request_length(b"\x01\x2b\x00") is None


def test_mbap_roundtrip_and_exception() -> None:
    adu = codec.mbap(0x1234, 5, bytes.fromhex("0404435c0000"))
    assert adu[:7] == bytes.fromhex("12340000000705")
    assert codec.parse_mbap(adu[:7]) == (0x1234, 0, 7, 5)
    assert codec.exception_pdu(0x04, 2) == b"\x84\x02"


def test_float32_high_word_first() -> None:
    # 230.0 V is 0x43660000: registers [0x4366, 0x0000]
    assert struct.pack(">f", 230.0) == bytes.fromhex("43660000")
    assert registers_to_floats([0x4366, 0x0000, 0x4248, 0x0000]) == [230.0, 50.0]
    assert codec.float32(0.1) == pytest.approx(0.1, rel=1e-7) and codec.float32(0.1) != 0.1


def test_write_multiple_parse() -> None:
    pdu = bytes.fromhex("10001400020442c80000")
    assert codec.parse_write_multiple(pdu) == (20, 2, bytes.fromhex("42c80000"))
    assert codec.parse_write_multiple(pdu[:-1]) is None
    assert codec.write_answer_pdu(20, 2) == bytes.fromhex("1000140002")


def test_maps_keep_documented_addresses() -> None:
    for model in ("sdm120", "sdm630"):
        keys = {r.key: r.address for r in load_map(model).inputs}
        assert keys["u1"] == 0x0000 and keys["i1"] == 0x0006 and keys["p1"] == 0x000C
        assert keys["s1"] == 0x0012 and keys["pf1"] == 0x001E and keys["f"] == 0x0046
        assert keys["e_imp"] == 0x0048 and keys["e_exp"] == 0x004A and keys["e_tot"] == 0x0156
    assert load_map("sdm630").input_by_key()["p"].address == 52
    with pytest.raises(ValueError, match="unknown meter model"):
        load_map("sdm999")
    with pytest.raises(ValueError, match="odd"):
        parse_map({"model": "x", "input_registers": [{"address": 3, "key": "k"}]})


def test_holding_validation() -> None:
    rmap = load_map("sdm120")
    unit = rmap.holding_by_key("unit_id")
    assert unit.valid(1.0) and unit.valid(247.0)
    assert (
        not unit.valid(0.0) and not unit.valid(248.0) and not unit.valid(2.5) and not unit.valid(float("nan"))
    )
    baud = rmap.holding_by_key("baud")
    assert baud.valid(2.0) and baud.valid(5.0) and not baud.valid(3.0)
