"""Read-only queries behind the household view: what the gateway already stores, shaped for a page.

The live part comes from the ingest handler's newest verified reading (in memory); the rest from the
reading store (energy from the counters), the trading journal (agreements, read through a read-only
connection of its own) and the forecaster. Nothing here writes.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gateway.trading.observer import TradeFeed
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


ESCROW_STATES = ("submitted", "reported")  # on chain, the buyer's tokens held by the Market
OPEN_LOAN_STATES = ("open", "reported")  # a loan on chain: the borrower's collateral is locked
BATTERY_ROUND_TRIP = 0.9  # the own-battery counterfactual's round-trip efficiency (docs/dashboard.md)


def value(quantity_wh: int, unit_price: int) -> int:
    """Tokens for q Wh at p per kWh: q * p / 1000, floored (the Market's rule)."""
    return quantity_wh * unit_price // 1000


def shown_state(state: str, note: str | None, start: int, end: int, now: float) -> str:
    """The schedule's word for an agreement: from the journal's state, its note and the clock."""
    if state == "closed":
        return note if note in ("settled", "refunded", "cancelled") else "closed"
    if state == "abandoned":
        return "abandoned"
    if note == "disputed":
        return "disputed"
    if now < start:
        return "upcoming"
    if now < end:
        return "delivering"
    return "awaiting evidence"


def loan_state(state: str, note: str | None, return_by: int, now: float) -> str:
    """The schedule's word for a loan of the loan book (gateway/trading/loans.py's states)."""
    if state in ("closed", "abandoned"):
        return state
    if note == "disputed":
        return "disputed"
    if state in OPEN_LOAN_STATES:
        return "to be returned" if now < return_by else "awaiting evidence"
    return "upcoming"


@dataclass(frozen=True)
class AgreementRow:
    """One line of the schedule: an energy agreement (kind "trade") or a loan (kind "loan")."""

    id: str
    kind: str
    role: str
    peer: str
    state: str
    start: int
    end: int
    quantity_wh: int | None
    delivered_wh: int | None
    unit_price: int | None
    tokens: int | None  # the trade's value at the contracted quantity, or the loan's collateral
    return_by: int | None = None  # loans only
    returned_wh: int | None = None  # loans only


def _terms_int(terms: dict[str, Any], key: str) -> int | None:
    v = terms.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _read(db: sqlite3.Connection, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.Error:  # no such table (a gateway that does not trade or lend): nothing to show
        return []


def _json(raw: str) -> dict[str, Any]:
    try:
        out = json.loads(raw)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


@dataclass(frozen=True)
class Ledger:
    """What the journal says: the schedule of agreements and loans, and the free balance last read."""

    rows: list[AgreementRow]
    free_balance: int | None
    states: dict[str, str] = field(default_factory=dict)  # the journal's own state of each row
    demand: list[dict[str, Any]] = field(default_factory=list)  # demand-response events, newest first


def demand_rows(kv: list[tuple[Any, ...]], now: float, limit: int = 20) -> list[dict[str, Any]]:
    """The demand-response events the gateway's task noted (`dr:ev:<id>`), each with what it did:
    coming, under way, to be claimed, claimed (cut in Wh), paid (tokens), no cut to claim, missed."""
    values = {str(k): str(v) for k, v in kv}
    rows = []
    for key, raw in values.items():
        if not key.startswith("dr:ev:"):
            continue
        eid = key.removeprefix("dr:ev:")
        ev, claim = _json(raw), _json(values.get(f"dr:claim:{eid}", "{}"))
        start = _terms_int(ev, "window_start")
        if start is None or not eid.isdigit():
            continue
        state = values.get(f"dr:{eid}")
        shown = {"claimed": "claimed", "paid": "paid", "none": "no cut to claim", "missed": "missed"}.get(
            state or "", "coming" if now < start else "under way" if now < start + 3600 else "to be claimed"
        )
        paid = values.get(f"dr:paid:{eid}", "")
        rows.append({"id": int(eid), "window_start": start, "reward_per_kwh": _terms_int(ev, "reward_per_kwh"),
                     "claim_by": _terms_int(ev, "claim_by"), "state": shown,
                     "reduction_wh": _terms_int(claim, "reduction_wh"), "baseline_wh": _terms_int(claim, "baseline_wh"),
                     "paid": int(paid) if paid.isdigit() else None})  # fmt: skip
    rows.sort(key=lambda r: (-r["window_start"], -r["id"]))
    return rows[:limit]


def read_ledger(journal_path: Path, now: float, limit: int = 50) -> Ledger:
    """The newest agreements and loans in the trading journal (empty when the gateway does not trade)."""
    if not journal_path.exists():
        return Ledger([], None)
    db = sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True)
    try:
        trades = _read(db, "SELECT id, role, peer, state, window_end, terms, measured_wh, note FROM agreements"
                           " ORDER BY window_end DESC, id LIMIT ?", (limit,))  # fmt: skip
        loans = _read(db, "SELECT id, role, peer, state, terms, lent_wh, returned_wh, note FROM loans"
                          " ORDER BY updated DESC LIMIT ?", (limit,))  # fmt: skip
        kv = _read(db, "SELECT value FROM kv WHERE key='free_balance'")
        dr = _read(db, "SELECT key, value FROM kv WHERE key LIKE 'dr:%' AND key != 'dr:seen'")
    finally:
        db.close()
    rows = []
    for aid, role, peer, state, end, raw, measured, note in trades:
        terms = _json(raw)
        qty, price = _terms_int(terms, "quantityWh"), _terms_int(terms, "unitPrice")
        start = _terms_int(terms, "deliveryStart") or int(end)
        rows.append(AgreementRow(aid, "trade", role, peer, shown_state(state, note, start, int(end), now), start,
                                 int(end), qty, measured, price,
                                 None if qty is None or price is None else value(qty, price)))  # fmt: skip
    for lid, role, peer, state, raw, lent, returned, note in loans:
        terms = _json(raw)
        return_by = _terms_int(terms, "returnBy") or 0
        rows.append(AgreementRow(lid, "loan", role, peer, loan_state(state, note, return_by, now), return_by,
                                 return_by, _terms_int(terms, "quantityWh"), lent, None,
                                 _terms_int(terms, "collateral"), return_by, returned))  # fmt: skip
    states = {str(t[0]): str(t[3]) for t in trades} | {str(t[0]): str(t[3]) for t in loans}
    rows.sort(key=lambda r: (-r.end, r.id))
    free = int(kv[0][0]) if kv and str(kv[0][0]).lstrip("-").isdigit() else None
    return Ledger(rows[:limit], free, states, demand_rows(dr, now))


def tokens(ledger: Ledger) -> dict[str, Any]:
    """Free, in escrow and as collateral, and the flows per agreement (before the Market's penalties)."""
    journal_states = ledger.states
    escrow = sum(r.tokens or 0 for r in ledger.rows
                 if r.kind == "trade" and r.role == "buyer" and journal_states.get(r.id) in ESCROW_STATES)  # fmt: skip
    collateral = sum(r.tokens or 0 for r in ledger.rows
                     if r.kind == "loan" and r.role == "borrower" and journal_states.get(r.id) in OPEN_LOAN_STATES)  # fmt: skip
    history = []
    for r in ledger.rows:
        if r.kind != "trade" or r.unit_price is None or r.tokens is None:
            continue
        delivered = value(r.delivered_wh, r.unit_price) if r.delivered_wh is not None else None
        if r.state == "settled" and delivered is not None:
            history.append({"at": r.end, "agreement": r.id, "what": "paid" if r.role == "buyer" else "received",
                            "amount": -delivered if r.role == "buyer" else delivered})  # fmt: skip
        elif r.state == "refunded" and r.role == "buyer":
            history.append({"at": r.end, "agreement": r.id, "what": "escrow returned", "amount": 0})
        elif r.role == "buyer" and journal_states.get(r.id) in ESCROW_STATES:
            history.append({"at": r.start, "agreement": r.id, "what": "escrowed", "amount": -r.tokens})
    return {"free": ledger.free_balance, "escrow": escrow, "collateral": collateral, "history": history[:20]}


def savings(rows: list[AgreementRow], tariff: tuple[float, float] | None,
            round_trip: float = BATTERY_ROUND_TRIP) -> dict[str, Any]:  # fmt: skip
    """Tokens saved by the delivered energy of settled and reported trades, against two counterfactuals.

    Grid only: a Wh bought from a neighbour would have cost the import tariff, a Wh sold would have
    earned the export tariff. Own battery only (an ideal battery, large enough, `round_trip` efficiency):
    a Wh sold would have been stored and later displaced round_trip Wh of imports, a Wh bought would
    have come from own surplus stored earlier, whose cost is the export it forwent, 1/round_trip Wh of
    it. A lower bound on what trading gained over a battery; `tariff` is (import, export) per kWh.
    """
    if tariff is None:
        return {"tariff": None}
    imp, exp = tariff
    grid = battery = 0.0
    energy = counted = 0
    for r in rows:
        if r.kind != "trade" or r.delivered_wh is None or r.unit_price is None:
            continue
        if r.state not in ("settled", "awaiting evidence"):
            continue
        d, p = r.delivered_wh, float(r.unit_price)
        if r.role == "buyer":
            grid += d * (imp - p) / 1000
            battery += d * (exp / round_trip - p) / 1000
        else:
            grid += d * (p - exp) / 1000
            battery += d * (p - round_trip * imp) / 1000
        energy += d
        counted += 1
    return {"tariff": {"import": imp, "export": exp}, "round_trip": round_trip, "agreements": counted,
            "energy_wh": energy, "vs_grid": round(grid, 1), "vs_battery": round(battery, 1)}  # fmt: skip


class ForecastLog:
    """The first forecast this process made for each step, kept a day, to draw against what happened."""

    def __init__(self) -> None:
        self.made: dict[int, float] = {}

    def record(self, start: int, step: int, values: list[float | None], now: float) -> None:
        for i, v in enumerate(values):
            t = start + i * step
            if v is not None and t > now and t not in self.made:
                self.made[t] = v
        for t in [t for t in self.made if t < now - 24 * 3600]:
            del self.made[t]

    def against(
        self, start: int, step: int, actual: list[float | None]
    ) -> tuple[list[float | None], float | None]:
        """(forecast made beforehand per past step, mean absolute error over the steps that have both)."""
        made = [self.made.get(start + i * step) for i in range(len(actual))]
        pairs = [(m, a) for m, a in zip(made, actual, strict=True) if m is not None and a is not None]
        mae = round(sum(abs(m - a) for m, a in pairs) / len(pairs), 1) if pairs else None
        return made, mae


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


@dataclass
class HouseholdData:
    """Where the household page's figures come from, besides the readings."""

    source: ReadingSource
    journal_path: Path
    gateway_id: str
    trades: TradeFeed | None = None
    tariff: tuple[float, float] | None = None  # (import, export) per kWh, from [agent]
    forecasts: ForecastLog = field(default_factory=ForecastLog)


def ledger_view(data: HouseholdData, now: float) -> dict[str, Any]:
    """Schedule, tokens and savings (one journal read): the `ledger` event and part of the snapshot."""
    ledger = read_ledger(data.journal_path, now)
    return {"schedule": [a.__dict__ for a in ledger.rows], "tokens": tokens(ledger),
            "savings": savings(ledger.rows, data.tariff), "demand": ledger.demand}  # fmt: skip


def forecast_ahead(data: HouseholdData, now: float) -> tuple[int, list[float | None]]:
    """The next 24 h of forecast (recorded, to be drawn against what happens)."""
    step = HISTORY_STEP_S
    here = int(now) // step * step
    try:
        ahead = _finite(data.source.forecast(here, 24 * 3600 // step, step))
    except (ValueError, ArithmeticError, LookupError):
        ahead = []
    data.forecasts.record(here, step, ahead, now)
    return here, ahead


def snapshot(data: HouseholdData, now: float) -> dict[str, Any]:
    """Everything the household page shows at first render."""
    source = data.source
    newest = source.newest()
    today = source.energy_today(now)
    step = HISTORY_STEP_S
    here, ahead = forecast_ahead(data, now)
    past_start = here - 24 * 3600
    try:
        actual = _finite(source.net_power(past_start, 24 * 3600 // step, step))
    except (ValueError, ArithmeticError):
        actual = []
    made, mae = data.forecasts.against(past_start, step, actual)
    return {
        "gateway": data.gateway_id,
        "live": live_event(newest, today) if newest is not None else None,
        "today": {"import_wh": today[0], "export_wh": today[1], "complete": today[2]},
        "trading": data.trades.view() if data.trades is not None else None,
        **ledger_view(data, now),
        "series": {
            "start": past_start,
            "step": step,
            "actual": actual,
            "forecast_made": made,
            "forecast_mae": mae,
            "forecast_start": here,
            "forecast": ahead,
        },
    }
