"""The firmware's request frames, taken off the wire, are byte-identical to pymodbus' client's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import serial
from pymodbus.client import ModbusSerialClient

from firmware.host.golden import pymodbus_request
from hil.virtual_board import VirtualBoard
from hil.wiring import SerialLine

EXAMPLE = Path(__file__).resolve().parents[2] / "firmware" / "config.example.json"


def sniff(port: serial.Serial, n: int, timeout: float = 5.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < n and time.monotonic() < deadline:
        data += port.read(n - len(data))
    return data


def test_wire_frames_match_pymodbus_client(tmp_path: Path) -> None:
    with SerialLine() as line, serial.Serial(line.meter, 9600, timeout=0.2) as far:
        # pymodbus' own client, sending on the line
        client = ModbusSerialClient(line.board, baudrate=9600, timeout=0.3, retries=0)
        assert client.connect()
        try:
            client.read_input_registers(0, count=76, device_id=7)
        except Exception:  # nobody answers: only the request's bytes matter here
            pass
        finally:
            client.close()
        theirs = sniff(far, 8)
        far.reset_input_buffer()
        # the firmware, as a virtual board, on the same line
        cfg = json.loads(EXAMPLE.read_text())
        cfg.update(device_id="vb-frames", poll_s=1)
        cfg["meter"]["unit_id"] = 7
        board = VirtualBoard(cfg, line.board, tmp_path, broker=("127.0.0.1", 1))
        board.start()
        try:
            ours = sniff(far, 8)
        finally:
            board.stop()
    assert theirs == bytes.fromhex(pymodbus_request(7, 4, 0, 76))
    assert ours == theirs, (ours.hex(), theirs.hex())
