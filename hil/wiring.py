"""Wiring for virtual boards without hardware: the RS-485 line (a socat pty pair, hil.pty) with a
meter_sim RTU server on one end, and an in-process register UART. Part of the one rig package
(hil/, whose MQTT tap is hil.subscriber); used by the firmware tests, the HIL rig and the simulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from hil import readings
from hil.pty import PtyPair
from meter_sim.codec import crc16


class SerialLine(PtyPair):
    """The RS-485 line as a pty pair (hil.pty): the meter opens `.meter`, the board's UART opens `.board`."""

    def __init__(self) -> None:
        super().__init__()
        self.meter, self.board = self.a, self.b

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> SerialLine:
        return self


class MeterSim:
    """`gridpact meter-sim serve` on an RTU device, as its own process; ready when it says so."""

    def __init__(
        self,
        device: str,
        truth: Path,
        *,
        model: str = "sdm120",
        unit_id: int = 1,
        profile: str = "constant:load_w=2300,pv_w=0",
        baud: int = 9600,
        parity: str = "N",
        faults: list[dict[str, Any]] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.truth = truth
        cmd = [
            sys.executable, "-m", "gridpact.cli", "meter-sim", "serve", "--model", model,
            "--unit-id", str(unit_id), "--rtu", device, "--baud", str(baud), "--parity", parity,
            "--profile", profile, "--truth", str(truth),
        ]  # fmt: skip
        if faults is not None:
            fpath = (workdir or truth.parent) / "faults.json"
            fpath.write_text(json.dumps(faults))
            cmd += ["--faults", str(fpath)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        line = out.readline()
        if not line.startswith("meter-sim ready"):
            err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
            self.close()
            raise RuntimeError(f"meter-sim did not start: {line!r} {err}")

    def truth_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.truth.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue  # a line being written right now
        return lines

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def __enter__(self) -> MeterSim:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def verify_reading(payload: bytes, key: bytes) -> dict[str, Any]:
    """Check a reading as docs/wire/reading-v1.md says a receiver must (hil.readings), then parse it."""
    return json.loads(readings.verify_reading(payload, key).raw)


class RegisterUart:
    """A UART far end in process: answers Modbus RTU reads (function 3/4) from a register source,
    at once, with no serial line. For many virtual boards on an accelerated clock (the simulator),
    where ptys and real serial timing would be the bottleneck.

    `source()` returns the meter's values by register-map key (e.g. meter_sim's
    `Meter.registers()`); keys are placed at their addresses from `meter_sim/maps/<model>.json`.
    Requests with a bad CRC or another unit id get no answer, as on a real bus.
    """

    def __init__(self, source: Any, model: str = "sdm120", unit_id: int = 1) -> None:
        from firmware.host.maps_gen import load_map

        self.source = source
        self.unit_id = unit_id
        self.addresses = {r["key"]: int(r["address"]) for r in load_map(model)["input_registers"]}
        self._rx = bytearray()
        self.requests = 0

    @staticmethod
    def crc(data: bytes) -> int:
        """The Modbus CRC-16, meter_sim's (one implementation on the host)."""
        return crc16(data)

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        out = bytes(self._rx[:size])
        del self._rx[:size]
        return out

    def write(self, data: bytes, /) -> int:
        import struct

        self.requests += 1
        req = bytes(data)
        if len(req) != 8 or self.crc(req[:6]) != int.from_bytes(req[6:8], "little") or req[0] != self.unit_id:
            return len(req)
        fc, addr, count = req[1], int.from_bytes(req[2:4], "big"), int.from_bytes(req[4:6], "big")
        if fc not in (3, 4) or not 1 <= count <= 80:
            body = bytes((req[0], fc | 0x80, 1))
        else:
            values = self.source()
            regs = bytearray(2 * count)
            for key, a in self.addresses.items():
                if addr <= a and a + 2 <= addr + count and key in values:
                    struct.pack_into(">f", regs, 2 * (a - addr), float(values[key]))
            body = bytes((req[0], fc, 2 * count)) + bytes(regs)
        self._rx += body + self.crc(body).to_bytes(2, "little")
        return len(req)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
