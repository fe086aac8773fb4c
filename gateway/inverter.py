"""The household's battery inverter on the LAN: one small Modbus TCP adapter (gridpact.core.inverter's map).

Commands are rare (a few per demand-response event), so each request opens its own connection and
closes it: nothing lingers between them, and an inverter that rebooted meanwhile costs nothing. Any
failure (refused, timed out, a Modbus exception, a garbled answer) is an `InverterUnavailable` with
the reason, for the caller to count and retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Protocol

from gridpact.core.inverter import (
    COMMAND_ADDRESS,
    COMMAND_COUNT,
    STATUS_ADDRESS,
    STATUS_COUNT,
    Command,
    InverterError,
    InverterStatus,
    command_registers,
    parse_status,
)

READ_INPUT = 0x04
WRITE_MULTIPLE = 0x10


class InverterUnavailable(Exception):
    """The inverter did not do what was asked; the message says why."""


class BatteryControl(Protocol):
    """What moves the household's battery (gateway/trading/demand.py's seam)."""

    async def status(self) -> InverterStatus: ...

    async def command(self, cmd: Command) -> None: ...


class ModbusInverter:
    """gridpact's inverter map over Modbus TCP at `host:port`, unit `unit`."""

    def __init__(self, host: str, port: int = 502, unit: int = 1, timeout_s: float = 3.0) -> None:
        self.host, self.port, self.unit, self.timeout_s = host, port, unit, timeout_s
        self._tid = 0

    async def status(self) -> InverterStatus:
        pdu = struct.pack(">BHH", READ_INPUT, STATUS_ADDRESS, STATUS_COUNT)
        answer = await self._request(pdu)
        if len(answer) != 2 + 2 * STATUS_COUNT or answer[1] != 2 * STATUS_COUNT:
            raise InverterUnavailable(f"status answer of {len(answer)} bytes")
        try:
            return parse_status(struct.unpack(f">{STATUS_COUNT}H", answer[2:]))
        except InverterError as exc:
            raise InverterUnavailable(f"status: {exc}") from None

    async def command(self, cmd: Command) -> None:
        regs = command_registers(cmd)
        pdu = struct.pack(">BHHB3H", WRITE_MULTIPLE, COMMAND_ADDRESS, COMMAND_COUNT, 2 * COMMAND_COUNT, *regs)
        answer = await self._request(pdu)
        if answer != struct.pack(">BHH", WRITE_MULTIPLE, COMMAND_ADDRESS, COMMAND_COUNT):
            raise InverterUnavailable(f"command answer {answer.hex()} is not the echo of the write")

    async def _request(self, pdu: bytes) -> bytes:
        """One request PDU, its answer PDU (a Modbus exception raised as InverterUnavailable)."""
        self._tid = (self._tid + 1) & 0xFFFF
        frame = struct.pack(">HHHB", self._tid, 0, len(pdu) + 1, self.unit) + pdu
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(frame)
                await writer.drain()
                tid, proto, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                if tid != self._tid or proto != 0 or unit != self.unit or not 2 <= length <= 254:
                    raise InverterUnavailable(
                        f"answer header tid={tid} proto={proto} unit={unit} len={length}"
                    )
                answer = await reader.readexactly(length - 1)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise InverterUnavailable(
                f"{self.host}:{self.port}: {type(exc).__name__} {exc}".strip()
            ) from None
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        if answer[0] == pdu[0] | 0x80:
            raise InverterUnavailable(f"Modbus exception {answer[1] if len(answer) > 1 else '?'}")
        if answer[0] != pdu[0]:
            raise InverterUnavailable(f"answer to function {answer[0]:#x}, asked {pdu[0]:#x}")
        return answer
