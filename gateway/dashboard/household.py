"""Read-only queries behind the household view: what the gateway already stores, shaped for a page.

The live part comes from the ingest handler's newest verified reading (in memory); the rest from the
reading store (energy from the counters), the trading journal (agreements, read through a read-only
connection of its own) and the forecaster. Nothing here writes.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gridpact.core.wire import Reading

POWER_KEYS = ("p_W", "p1_W", "p2_W", "p3_W")
HISTORY_STEP_S = 900


class ReadingSource(Protocol):
    """What the view needs from the gateway's runtime (the service's Runtime satisfies it)."""

    def newest(self) -> Reading | None: ...

    def energy_today(self, now: float) -> tuple[int, int, bool]: ...

    def net_power(self, start: int, steps: int, step_s: int) -> list[float]: ...

    def forecast(self, start: int, steps: int, step_s: int) -> list[float]: ...


def reading_power_w(reading: Reading) -> float | None:
    """Net power of a reading (W, import positive): the total when given, else the phases' sum."""
    values = reading.values
    if "p_W" in values:
        return float(values["p_W"])
    phases = [float(values[k]) for k in POWER_KEYS[1:] if k in values]
    return sum(phases) if phases else None


def local_midnight(now: float) -> int:
    """Start of the local day containing `now` (the gateway's time zone)."""
    day = datetime.fromtimestamp(now).astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    return int(day.timestamp())


def _finite(values: list[float]) -> list[float | None]:
    return [None if (v is None or math.isnan(v)) else round(float(v), 1) for v in values]


@dataclass(frozen=True)
class AgreementRow:
    id: str
    role: str
    peer: str
    state: str
    window_end: int
    quantity_wh: int | None
    unit_price: int | None
    delivered_wh: int | None


def agreements(journal_path: Path, limit: int = 50) -> list[AgreementRow]:
    """The newest agreements in the trading journal (none when the gateway does not trade)."""
    if not journal_path.exists():
        return []
    db = sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT id, role, peer, state, window_end, terms, measured_wh FROM agreements"
            " ORDER BY window_end DESC, id LIMIT ?",
            (limit,),
        ).fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()
    out = []
    for aid, role, peer, state, end, terms_json, measured in rows:
        try:
            terms: dict[str, Any] = json.loads(terms_json)
        except ValueError:
            terms = {}
        qty, price = terms.get("quantityWh"), terms.get("unitPrice")
        out.append(
            AgreementRow(
                aid,
                role,
                peer,
                state,
                int(end),
                int(qty) if isinstance(qty, int) else None,
                int(price) if isinstance(price, int) else None,
                measured,
            )
        )
    return out


def live_event(reading: Reading, today: tuple[int, int, bool]) -> dict[str, Any]:
    """The SSE payload for one new reading."""
    power = reading_power_w(reading)
    return {
        "ts": reading.ts,
        "seq": reading.seq,
        "power_w": None if power is None else round(power, 1),
        "import_today_wh": today[0],
        "export_today_wh": today[1],
        "complete": today[2],
    }


def snapshot(source: ReadingSource, journal_path: Path, gateway_id: str, now: float) -> dict[str, Any]:
    """Everything the household page shows at first render."""
    newest = source.newest()
    today = source.energy_today(now)
    step = HISTORY_STEP_S
    here = int(now) // step * step
    past_start = here - 24 * 3600
    try:
        actual = _finite(source.net_power(past_start, 24 * 3600 // step, step))
    except (ValueError, ArithmeticError):
        actual = []
    try:
        ahead = _finite(source.forecast(here, 24 * 3600 // step, step))
    except (ValueError, ArithmeticError, LookupError):
        ahead = []
    return {
        "gateway": gateway_id,
        "live": live_event(newest, today) if newest is not None else None,
        "today": {"import_wh": today[0], "export_wh": today[1], "complete": today[2]},
        "agreements": [a.__dict__ for a in agreements(journal_path)],
        "series": {
            "start": past_start,
            "step": step,
            "actual": actual,
            "forecast_start": here,
            "forecast": ahead,
        },
    }
