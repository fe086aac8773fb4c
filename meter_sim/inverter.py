"""A household's battery inverter in software: gridpact.core.inverter's registers over Modbus.

It drives the battery of a software meter's household, so a command written here changes what that
meter measures from the next tick on. Served beside the meters on a TCP endpoint under its own unit
id (`TcpEndpoint(..., inverters=[...])`). Bad requests get Modbus exceptions and are counted; a
write is the whole command or nothing.
"""

from __future__ import annotations

import struct
from collections import Counter

from gridpact.core.inverter import (
    COMMAND_ADDRESS,
    COMMAND_COUNT,
    STATUS_COUNT,
    InverterError,
    InverterStatus,
    command_registers,
    parse_command,
    status_registers,
)
from meter_sim import codec
from meter_sim.codec import ExceptionCode
from meter_sim.meter import Meter
from meter_sim.profiles import Battery


class Inverter:
    """The inverter of `meter`'s household battery, at Modbus unit `unit_id`."""

    def __init__(self, meter: Meter, unit_id: int) -> None:
        battery = meter.household.battery
        if battery is None:
            raise ValueError(f"meter {meter.name}: its household has no battery to control")
        if not 1 <= unit_id <= 247 or unit_id == meter.unit_id:
            raise ValueError(f"inverter unit id {unit_id}: 1..247 and not the meter's own")
        self.meter, self.unit_id, self.battery = meter, unit_id, battery
        self.counts: Counter[str] = Counter()

    def status(self) -> InverterStatus:
        """What the input registers say now (the meter brought up to the present first)."""
        now = self.meter.clock.now()
        self.meter.sync(now)
        b: Battery = self.battery
        cmd = b.command_at(now)
        left = max(0, int(b.command_until - now)) if cmd is b.command and b.command_until > now else 0
        return InverterStatus(
            mode=cmd.mode,
            seconds_left=left,
            soc_permille=round(1000 * b.soc_kwh / b.capacity_kwh) if b.capacity_kwh > 0 else 0,
            battery_w=round(self.meter.household.battery_w),
            capacity_wh=round(b.capacity_kwh * 1000),
            max_power_w=round(b.power_w),
        )

    def answer(self, pdu: bytes) -> bytes:
        """The answer PDU to one request PDU."""
        if not pdu:
            self.counts["malformed"] += 1
            return codec.exception_pdu(0, ExceptionCode.ILLEGAL_FUNCTION)
        fn = pdu[0]
        if fn in (codec.READ_INPUT, codec.READ_HOLDING):
            parsed = codec.parse_read(pdu)
            size = STATUS_COUNT if fn == codec.READ_INPUT else COMMAND_COUNT
            if parsed is None or not 1 <= parsed[1] <= size:
                return self._refuse(fn, ExceptionCode.ILLEGAL_DATA_VALUE)
            start, count = parsed
            if start + count > size:
                return self._refuse(fn, ExceptionCode.ILLEGAL_DATA_ADDRESS)
            regs = status_registers(self.status()) if fn == codec.READ_INPUT else self._command_regs()
            self.counts["read"] += 1
            return codec.read_answer_pdu(fn, struct.pack(f">{count}H", *regs[start : start + count]))
        if fn == codec.WRITE_MULTIPLE:
            return self._write(pdu)
        return self._refuse(fn, ExceptionCode.ILLEGAL_FUNCTION)

    def _command_regs(self) -> tuple[int, int, int]:
        now = self.meter.clock.now()
        return command_registers(self.battery.command_at(now))

    def _write(self, pdu: bytes) -> bytes:
        fn = codec.WRITE_MULTIPLE
        parsed = codec.parse_write_multiple(pdu)
        if parsed is None:
            return self._refuse(fn, ExceptionCode.ILLEGAL_DATA_VALUE)
        start, count, data = parsed
        if start != COMMAND_ADDRESS or count != COMMAND_COUNT:
            return self._refuse(fn, ExceptionCode.ILLEGAL_DATA_ADDRESS)  # the whole command or nothing
        try:
            command = parse_command(struct.unpack(">3H", data[:6]))
        except InverterError:
            return self._refuse(fn, ExceptionCode.ILLEGAL_DATA_VALUE)
        now = self.meter.clock.now()
        self.meter.sync(now)  # what ran before the command ran under the old one
        self.battery.obey(command, now)
        self.counts["command"] += 1
        return codec.write_answer_pdu(start, count)

    def _refuse(self, fn: int, code: int) -> bytes:
        self.counts["refused"] += 1
        return codec.exception_pdu(fn, code)
