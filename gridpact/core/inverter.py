"""The battery inverter's control registers: the one place their layout is written down.

A household's gateway moves its battery through the storage inverter on the LAN (Modbus TCP). Real
inverters each have their own map (SunSpec model 124 is the nearest standard); gridpact speaks this
small one, and an installer's adapter translates where a brand differs. meter_sim serves it for the
software households, so the gateway's own adapter is tested on a real socket.

Holding registers (read 0x03; write 0x10, the whole command in one write so that an inverter never
runs half of one):
  0  mode        0 auto (self-consumption), 1 hold (no discharge; charge from surplus only),
                 2 charge at `power_w` (from the grid if need be), 3 discharge at `power_w`
  1  power_w     0..65535 W, clipped by the inverter to its own limit
  2  lifetime_s  1..65535: the command lapses back to auto after this long, so a gateway that dies
                 mid-command never leaves the battery charging or emptying itself for good

Input registers (read 0x04):
  0  mode in force      1  seconds left of the command (0 in auto)
  2  state of charge in per mille of capacity
  3  battery power in W, int16 two's complement, + discharging into the house
  4-5 capacity in Wh, uint32 high word first          6  the inverter's power limit in W
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

COMMAND_ADDRESS = 0
COMMAND_COUNT = 3
STATUS_ADDRESS = 0
STATUS_COUNT = 7
U16 = 0xFFFF


class Mode(IntEnum):
    AUTO = 0
    HOLD = 1
    CHARGE = 2
    DISCHARGE = 3


class InverterError(ValueError):
    """Registers that do not make a valid command or status."""


@dataclass(frozen=True)
class Command:
    """What the battery should do, and for how long before it falls back to auto by itself."""

    mode: Mode
    power_w: int = 0
    lifetime_s: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.power_w <= U16:
            raise InverterError(f"power_w {self.power_w} outside 0..65535")
        if self.mode != Mode.AUTO and not 1 <= self.lifetime_s <= U16:
            raise InverterError(f"lifetime_s {self.lifetime_s} outside 1..65535")
        if self.mode in (Mode.CHARGE, Mode.DISCHARGE) and self.power_w == 0:
            raise InverterError(f"{self.mode.name.lower()} needs power_w > 0")


AUTO = Command(Mode.AUTO)


def command_registers(cmd: Command) -> tuple[int, int, int]:
    """The three holding registers that carry `cmd`."""
    return (0, 0, 0) if cmd.mode == Mode.AUTO else (int(cmd.mode), cmd.power_w, cmd.lifetime_s)


def parse_command(regs: Sequence[int]) -> Command:
    """The command three holding registers ask for (InverterError for an unknown mode or a bad value)."""
    if len(regs) != COMMAND_COUNT:
        raise InverterError(f"a command is {COMMAND_COUNT} registers, not {len(regs)}")
    mode, power, lifetime = regs
    if mode not in Mode.__members__.values():
        raise InverterError(f"unknown mode {mode}")
    return AUTO if mode == Mode.AUTO else Command(Mode(mode), power, lifetime)


@dataclass(frozen=True)
class InverterStatus:
    """What the inverter reports: the command in force, the battery's charge and power, its size."""

    mode: Mode
    seconds_left: int
    soc_permille: int
    battery_w: int  # + discharging into the house
    capacity_wh: int
    max_power_w: int

    @property
    def room_wh(self) -> float:
        """How much more the battery could hold."""
        return self.capacity_wh * (1000 - self.soc_permille) / 1000.0


def status_registers(st: InverterStatus) -> tuple[int, ...]:
    """The seven input registers that report `st` (values saturate at their register's range)."""
    watts = max(-32768, min(32767, st.battery_w))
    capacity = max(0, min(0xFFFFFFFF, st.capacity_wh))
    return (
        int(st.mode),
        max(0, min(U16, st.seconds_left)),
        max(0, min(1000, st.soc_permille)),
        watts & U16,
        capacity >> 16,
        capacity & U16,
        max(0, min(U16, st.max_power_w)),
    )


def parse_status(regs: Sequence[int]) -> InverterStatus:
    """The status seven input registers report."""
    if len(regs) != STATUS_COUNT:
        raise InverterError(f"a status is {STATUS_COUNT} registers, not {len(regs)}")
    mode, left, soc, watts, cap_hi, cap_lo, limit = regs
    if mode not in Mode.__members__.values():
        raise InverterError(f"unknown mode {mode}")
    if soc > 1000:
        raise InverterError(f"state of charge {soc} per mille above 1000")
    signed = watts - 0x10000 if watts & 0x8000 else watts
    return InverterStatus(Mode(mode), left, soc, signed, (cap_hi << 16) | cap_lo, limit)
