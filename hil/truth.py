"""Matching published readings against the meter's truth (meter_sim's truth file).

The firmware prints each float32 rounded to its unit's decimals (docs/firmware.md, the float
rule), so a published value is right when it is within half a unit in the last place of a
value the registers held at the time of the poll.
"""

from __future__ import annotations

from typing import Any

from hil.readings import Reading

DECIMALS: dict[str, int] = {
    "V": 2,
    "A": 3,
    "W": 1,
    "VA": 1,
    "var": 1,
    "deg": 2,
    "Hz": 3,
    "kWh": 3,
    "kvarh": 3,
}
PF_DECIMALS = 3


def split_key(wire_key: str) -> tuple[str, int]:
    """(register key, decimals) for a wire key such as `u1_V`, `e_imp_kWh` or `pf1`."""
    for unit, decimals in DECIMALS.items():
        if wire_key.endswith("_" + unit):
            return wire_key[: -len(unit) - 1], decimals
    return wire_key, PF_DECIMALS


def matches(values: dict[str, float], registers: dict[str, Any]) -> list[str]:
    """The wire keys whose value is not the register value rounded (empty list: all match)."""
    wrong = []
    for wire_key, published in values.items():
        key, decimals = split_key(wire_key)
        held = registers.get(key)
        if held is None or abs(published - float(held)) > 0.5 * 10**-decimals + 1e-9:
            wrong.append(wire_key)
    return wrong


def find_truth(reading: Reading, rows: list[dict[str, Any]], window_s: float = 1.5) -> dict[str, Any] | None:
    """A truth row near the reading's time whose registers explain every published value."""
    for row in rows:
        if abs(float(row["t"]) - reading.ts) <= window_s and not matches(reading.values, row["r"]):
            return row
    return None
