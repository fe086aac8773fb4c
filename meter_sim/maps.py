"""Register maps loaded from `meter_sim/maps/*.json`: a new meter model is a new map file."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

MAPS_DIR = Path(__file__).with_name("maps")


@dataclass(frozen=True)
class Register:
    """One float32 value (two 16-bit registers, high word first)."""

    address: int
    key: str
    name: str
    unit: str = ""


@dataclass(frozen=True)
class HoldingRegister:
    """A configuration register: valid values are `choices` (code -> meaning) or `min..max`."""

    address: int
    key: str
    name: str
    default: float
    choices: dict[int, object] = field(default_factory=dict)
    min: float | None = None
    max: float | None = None

    def valid(self, value: float) -> bool:
        """Whether a written value is one a real meter accepts."""
        if value != value or value in (float("inf"), float("-inf")):
            return False
        if self.choices:
            return value == int(value) and int(value) in self.choices
        lo = self.min if self.min is not None else float("-inf")
        hi = self.max if self.max is not None else float("inf")
        return lo <= value <= hi and value == int(value)


@dataclass(frozen=True)
class RegisterMap:
    """A meter model's registers and the request rules its firmware enforces."""

    model: str
    phases: int
    inputs: tuple[Register, ...]
    holdings: tuple[HoldingRegister, ...]
    max_registers: int = 80
    even_address: bool = True
    even_count: bool = True
    max_address: int = 512

    def input_by_key(self) -> dict[str, Register]:
        return {r.key: r for r in self.inputs}

    def holding_at(self, address: int) -> HoldingRegister | None:
        return next((h for h in self.holdings if h.address == address), None)

    def holding_by_key(self, key: str) -> HoldingRegister:
        return next(h for h in self.holdings if h.key == key)


def parse_map(data: dict) -> RegisterMap:
    """Build a RegisterMap from the JSON document (schema of `maps/sdm120.json`)."""
    limits = data.get("limits", {})
    inputs = tuple(
        Register(int(r["address"]), str(r["key"]), str(r.get("name", r["key"])), str(r.get("unit", "")))
        for r in data["input_registers"]
    )
    holdings = tuple(
        HoldingRegister(
            address=int(h["address"]),
            key=str(h["key"]),
            name=str(h.get("name", h["key"])),
            default=float(h.get("default", 0)),
            choices={int(k): v for k, v in h.get("choices", {}).items()},
            min=float(h["min"]) if "min" in h else None,
            max=float(h["max"]) if "max" in h else None,
        )
        for h in data.get("holding_registers", [])
    )
    for r in inputs:
        if r.address % 2 or r.address + 2 > int(limits.get("max_address", 512)):
            raise ValueError(f"register {r.key}: address {r.address} is odd or out of range")
    return RegisterMap(
        model=str(data["model"]),
        phases=int(data.get("phases", 1)),
        inputs=inputs,
        holdings=holdings,
        max_registers=int(limits.get("max_registers", 80)),
        even_address=bool(limits.get("even_address", True)),
        even_count=bool(limits.get("even_count", True)),
        max_address=int(limits.get("max_address", 512)),
    )


@cache
def load_map(model: str) -> RegisterMap:
    """The map of a model name (`sdm120`, `sdm630`) or of a path to a map file."""
    path = Path(model) if model.endswith(".json") else MAPS_DIR / f"{model}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in MAPS_DIR.glob("*.json")))
        raise ValueError(f"unknown meter model {model!r} (known: {known})")
    return parse_map(json.loads(path.read_text()))


def pack_floats(values: dict[int, float], n_registers: int) -> bytearray:
    """A register image: float32 big-endian at each address, zero elsewhere."""
    image = bytearray(2 * n_registers)
    for address, value in values.items():
        struct.pack_into(">f", image, 2 * address, value)
    return image
