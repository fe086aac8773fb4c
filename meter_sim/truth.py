"""The ground-truth log: JSON lines of what each meter's registers held, over time."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO


def clean(value: float) -> float | None:
    """JSON has no NaN: a NaN register is written as null."""
    return None if math.isnan(value) or math.isinf(value) else value


class TruthWriter:
    """Appends one JSON object per line; flushed on close (and every `flush_every` lines)."""

    def __init__(self, path: str | Path, flush_every: int = 200) -> None:
        self.path = Path(path)
        self._f: IO[str] | None = self.path.open("w", encoding="utf-8")
        self.flush_every, self._pending, self.lines = flush_every, 0, 0

    def write(self, record: dict[str, object]) -> None:
        if self._f is None:
            return
        self._f.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        self.lines += 1
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()
            self._pending = 0

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def read_truth(path: str | Path) -> list[dict]:
    """All records of a truth file (for tests and tools)."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def registers_at(rows: list[dict], t: float, unit: int | None = None, meter: str | None = None) -> dict:
    """What one meter's registers held at meter time `t`: its last truth line at or before `t`.

    Pick the meter by `unit` or by `meter` name (needed when several meters share a unit id on
    different endpoints). Raises LookupError when the truth has no such line.
    """
    best: dict | None = None
    for row in rows:
        if (
            row["t"] > t
            or (unit is not None and row["unit"] != unit)
            or (meter is not None and row["meter"] != meter)
        ):
            continue
        if best is None or row["t"] >= best["t"]:
            best = row
    if best is None:
        raise LookupError(f"no truth line for unit={unit} meter={meter} at or before t={t}")
    return best["r"]
