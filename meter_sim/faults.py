"""Faults a meter can be told to show, on a timeline: validated data, no behaviour here."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

# name -> allowed parameters with their defaults
FAULTS: dict[str, dict[str, object]] = {
    "no_response": {},
    "crc": {},
    "exception": {"code": 4},
    "stuck": {},
    "reset": {},
    "nan": {"keys": None},
    "garbage": {"length": 8},
    "slow": {"delay_s": 0.5},
}


class FaultError(ValueError):
    """A fault or timeline that cannot be used, with the reason."""


@dataclass(frozen=True)
class Fault:
    """`name` active on [start, end) of the meter clock, with its parameters."""

    name: str
    start: float
    end: float
    params: dict[str, object] = field(default_factory=dict)

    def active(self, t: float) -> bool:
        return self.start <= t < self.end


def make_fault(name: str, start: float, duration_s: float, params: dict[str, object]) -> Fault:
    """A checked fault: known name, known parameters, sane values."""
    if name not in FAULTS:
        raise FaultError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
    unknown = set(params) - set(FAULTS[name])
    if unknown:
        raise FaultError(f"fault {name}: unknown parameters {sorted(unknown)}")
    if not (math.isfinite(start) and math.isfinite(duration_s)) or duration_s < 0:
        raise FaultError(f"fault {name}: start and duration_s must be finite, duration_s >= 0")
    merged = {**FAULTS[name], **params}
    if name == "exception":
        code = merged["code"]
        if not isinstance(code, int) or isinstance(code, bool) or not 1 <= code <= 255:
            raise FaultError("fault exception: code must be an integer 1..255")
    if name == "slow":
        delay = merged["delay_s"]
        if not isinstance(delay, int | float) or not 0 <= delay <= 60:
            raise FaultError("fault slow: delay_s must be a number 0..60")
    if name == "garbage":
        length = merged["length"]
        if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= 256:
            raise FaultError("fault garbage: length must be an integer 1..256")
    if name == "nan":
        keys = merged["keys"]
        if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
            raise FaultError("fault nan: keys must be a list of register keys")
    end = start + duration_s if name != "reset" else start + max(duration_s, 1e-9)
    return Fault(name, float(start), float(end), merged)


def parse_timeline(entries: object, t0: float) -> list[tuple[int | None, Fault]]:
    """Timeline entries `{"at": s, "fault": name, "duration_s": s, "unit": n, ...params}`.

    `at` is seconds after `t0` (the start of serving); `at_unix` gives an absolute time instead.
    """
    if isinstance(entries, dict) and "faults" in entries:
        entries = entries["faults"]
    if not isinstance(entries, list):
        raise FaultError("a faults timeline is a JSON list of entries")
    out: list[tuple[int | None, Fault]] = []
    for n, raw in enumerate(entries):
        if not isinstance(raw, dict):
            raise FaultError(f"faults entry {n}: not an object")
        entry = dict(raw)
        try:
            name = str(entry.pop("fault"))
            start = float(entry.pop("at_unix")) if "at_unix" in entry else t0 + float(entry.pop("at"))
            duration = float(entry.pop("duration_s", 0.0))
            unit = entry.pop("unit", None)
            params = dict(entry.pop("params", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise FaultError(f"faults entry {n}: needs fault, at (or at_unix): {exc}") from None
        params.update(entry)
        if unit is not None and (not isinstance(unit, int) or not 1 <= unit <= 247):
            raise FaultError(f"faults entry {n}: unit must be 1..247")
        try:
            out.append((unit, make_fault(name, start, duration, params)))
        except FaultError as exc:
            raise FaultError(f"faults entry {n}: {exc}") from None
    return out


def load_timeline(path: str, t0: float) -> list[tuple[int | None, Fault]]:
    """Read a faults timeline file (JSON)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FaultError(f"faults file {path}: {exc}") from None
    return parse_timeline(data, t0)
