"""The run's figures as plain data: per household energy, tokens and savings; community welfare.

Costs are what a household pays for energy over the run, in tokens: grid imports at the retail
price, minus exports at the feed-in price, plus tokens paid to peers, minus tokens earned.
Three scenarios share the same meters: grid-only (no battery, no market), individual battery
control (no market) and the community (battery and market).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from hil.community.engine import EngineResult


def cost(imp: np.ndarray, exp: np.ndarray, retail: np.ndarray, feed_in: float) -> np.ndarray:
    """Per household energy cost (tokens) of hourly import/export (households, hours)."""
    return (imp * retail[None, :]).sum(axis=1) - exp.sum(axis=1) * feed_in


def without_wall_times(obj: Any) -> Any:
    """The summary less its wall times: what a seeded `--clock virtual` run must reproduce."""
    if isinstance(obj, dict):
        return {k: without_wall_times(v) for k, v in obj.items() if k != "wall_s"}
    if isinstance(obj, list):
        return [without_wall_times(v) for v in obj]
    return obj


def summary_digest(summary: dict[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of the summary as summary.json holds it, wall times left out,
    so two runs (or two versions of the code) can be compared from their bench lines."""
    plain = without_wall_times(json.loads(json.dumps(summary)))
    return hashlib.sha256(json.dumps(plain, indent=1).encode()).hexdigest()[:16]


def summarize(r: EngineResult, layers: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON summary: config, layers that ran, per household rows and community totals."""
    feed = r.config.tariff.feed_in
    led = r.ledger
    unit = led.unit
    c_grid = cost(r.base_imp, r.base_exp, r.retail, feed)
    c_batt = cost(r.batt_imp, r.batt_exp, r.retail, feed)
    paid = np.array(led.paid) / unit
    earned = np.array(led.earned) / unit
    c_comm = cost(r.grid_imp, r.grid_exp, r.retail, feed) + paid - earned
    rows = []
    for i, spec in enumerate(r.specs):
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "pv_kwp": spec.pv_kwp,
                "battery_kwh": spec.battery_kwh,
                "load_kwh": round(float(r.load_kwh[i].sum()), 3),
                "pv_kwh": round(float(r.pv_kwh[i].sum()), 3),
                "imported_kwh": round(float(r.grid_imp[i].sum()), 3),
                "exported_kwh": round(float(r.grid_exp[i].sum()), 3),
                "p2p_bought_kwh": round(float(r.p2p_bought[i].sum()), 3),
                "p2p_sold_kwh": round(float(r.p2p_sold[i].sum()), 3),
                "tokens_paid": round(float(paid[i]), 6),
                "tokens_earned": round(float(earned[i]), 6),
                "tokens_refunded": round(led.refunded[i] / unit, 6),
                "tokens_final": round(led.balance[i] / unit, 6),
                "cost_grid_only": round(float(c_grid[i]), 4),
                "cost_battery_only": round(float(c_batt[i]), 4),
                "cost_community": round(float(c_comm[i]), 4),
                "savings_vs_grid_only": round(float(c_grid[i] - c_comm[i]), 4),
                "savings_vs_battery_only": round(float(c_batt[i] - c_comm[i]), 4),
            }
        )
    # surplus per household-hour: a household is buyer or seller in a window, never both
    paid_h = np.zeros_like(r.grid_imp)
    earned_h = np.zeros_like(r.grid_imp)
    for st in r.settled:
        paid_h[st.trade.buyer, st.hour] += st.to_seller / unit
        earned_h[st.trade.seller, st.hour] += st.to_seller / unit
    gain_h = (r.batt_imp - r.grid_imp) * r.retail[None, :] - (r.batt_exp - r.grid_exp) * feed
    gain_h += earned_h - paid_h
    cs = float(gain_h[r.p2p_bought > 0].sum())
    ps = float(gain_h[r.p2p_sold > 0].sum())
    delivered = sum(st.delivered_wh for st in r.settled)
    load = float(r.load_kwh.sum())
    community = {
        "households": len(r.specs),
        "hours": r.config.hours,
        "trades": len(r.settled),
        "settlements": led.settled,
        "refunds": led.refunds,
        "p2p_kwh": round(delivered / 1000, 3),
        "contracted_kwh": round(sum(st.trade.wh for st in r.settled) / 1000, 3),
        "mean_p2p_price": round(
            sum(st.trade.price * st.delivered_wh for st in r.settled) / max(delivered, 1) / unit, 4
        ),
        "grid_import_kwh": round(float(r.grid_imp.sum()), 3),
        "grid_export_kwh": round(float(r.grid_exp.sum()), 3),
        "self_sufficiency": round(1 - float(r.grid_imp.sum()) / load, 4) if load else 0.0,
        # community money to the micro-token (the ledger's unit), so welfare = CS + PS reads true to 1e-6
        "cost_grid_only": round(float(c_grid.sum()), 6),
        "cost_battery_only": round(float(c_batt.sum()), 6),
        "cost_community": round(float(c_comm.sum()), 6),
        "welfare_gain_vs_grid_only": round(float((c_grid - c_comm).sum()), 6),
        "welfare_gain_vs_battery_only": round(float((c_batt - c_comm).sum()), 6),
        "consumer_surplus": round(cs, 6),
        "producer_surplus": round(ps, 6),
        "households_worse_than_battery_only": int(((c_batt - c_comm) < -1e-9).sum()),
        "tokens_minted": led.minted / unit,
        "tokens_in_balances": sum(led.balance) / unit,
        "tokens_in_escrow": led.escrowed() / unit,
        "tokens_refunded": sum(led.refunded) / unit,
        "token_conservation": bool(r.conserved_every_hour and led.conserved()),
    }
    return {
        "config": {
            "households": r.config.households,
            "hours": r.config.hours,
            "seed": r.config.seed,
            "t0": r.config.t0,
            "strategy": r.config.strategy_name,
            "tariff": {
                "day": r.config.tariff.day,
                "peak": r.config.tariff.peak,
                "night": r.config.tariff.night,
                "feed_in": feed,
            },
            "profile_source": r.profile_source,
            "pv_trips": [vars(t) for t in r.config.pv_trips],
        },
        "layers": layers
        or {"engine": f"ran: strategy {r.config.strategy_name}", "mqtt": "not used", "chain": "not used"},
        "wall_s": round(r.wall_s, 3),
        "community": community,
        "households": rows,
    }


def token_path(r: EngineResult) -> np.ndarray:
    """Each household's tokens (free balance plus its own escrow) at the start and after each hour.

    Rebuilt from the settled trades, hour by hour: a seller gains what it was paid, a buyer loses
    what it paid (the refund stays its own). The engine's end-of-hour balance is not used because
    after `--agents gateway` it is the final balance repeated (the trades are read back from the
    chain at the end), which drew flat lines.
    """
    n, hours = len(r.specs), r.config.hours
    unit = r.ledger.unit
    delta = np.zeros((n, hours + 1))
    for st in r.settled:
        h = min(max(st.hour, 0), hours - 1) + 1
        delta[st.trade.seller, h] += st.to_seller / unit
        delta[st.trade.buyer, h] -= st.to_seller / unit
    start = r.ledger.minted / unit / max(n, 1)
    return start + np.cumsum(delta, axis=1)


def clock(t0: int, t: int) -> str:
    """A run-relative time for people: `h05:20` is 5 h 20 min into the run."""
    s = max(0, int(t) - int(t0))
    return f"h{s // 3600:02d}:{s % 3600 // 60:02d}"


def timeline(r: EngineResult, recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What happened, in time order: the run's recorded events (faults, disputes), PV trips,
    and every settlement that refunded a buyer because the seller under-delivered."""
    t0, unit, names = r.config.t0, r.ledger.unit, [s.name for s in r.specs]
    out = [dict(e) for e in recorded]
    for trip in r.config.pv_trips:
        out.append(
            {"t": t0 + 3600 * trip.start_hour, "event": "PV trip",
             "detail": f"{names[trip.household]}'s inverter off until hour {trip.end_hour}"}
        )  # fmt: skip
    for st in r.settled:
        if st.refund <= 0:
            continue
        tr = st.trade
        out.append(
            {"t": t0 + 3600 * st.hour, "event": "refund",
             "detail": f"{names[tr.seller]} delivered {st.delivered_wh} of {tr.wh} Wh to {names[tr.buyer]}; "
             f"{st.refund / unit:.4f} tokens back to the buyer"}
        )  # fmt: skip
    out.sort(key=lambda e: (int(e.get("t", 0)), str(e.get("event", ""))))
    return [{"time": clock(t0, int(e.get("t", t0))), **e} for e in out]
