"""Many hourly windows of the offer market over meter_sim household profiles (`gridpact negotiate market`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gateway.negotiation.households import SUMMER_T0, hourly_net_kwh, household_spec
from gateway.negotiation.market import (
    EPS_KWH,
    BuyerState,
    MarketConfig,
    SellerState,
    Tariff,
    WindowResult,
    publish_offers,
    run_window,
)

DEFAULT_TARIFFS = Tariff(feed_in=0.08, retail=0.30)


def invariant_violations(result: WindowResult) -> int:
    """Buyers importing from the grid while a seller they reached still has energy left."""
    bad = 0
    for buyer, short in result.grid_import.items():
        if short > EPS_KWH and any(result.grid_export.get(s, 0.0) > EPS_KWH for s in result.reachable(buyer)):
            bad += 1
    return bad


def simulate_market(households: int, hours: int, seed: int, t0_unix: float = SUMMER_T0) -> dict[str, Any]:
    """Run `hours` windows for `households` homes; returns totals and the invariant count."""
    tariffs = DEFAULT_TARIFFS
    spread = tariffs.retail - tariffs.feed_in
    rng = np.random.default_rng(seed)
    nets = np.stack([hourly_net_kwh(household_spec(seed, i), t0_unix, hours) for i in range(households)])
    sell_res = tariffs.feed_in + spread * rng.uniform(0.1, 0.5, households)
    buy_res = tariffs.retail - spread * rng.uniform(0.1, 0.5, households)
    crs = rng.choice([0.5, 1.0, 2.0], households)
    latency = rng.choice([0, 0, 0, 0, 0, 0, 1, 1, 2, 4], households)  # one seller in ten too slow
    timeout = rng.choice([1, 2, 3], households)
    totals = {"traded_kwh": 0.0, "import_kwh": 0.0, "export_kwh": 0.0, "value": 0.0, "stranded_kwh": 0.0}
    savings = {"buyers": 0.0, "sellers": 0.0}
    violations = dropped = trades = 0
    for w in range(hours):
        sellers = [
            SellerState(f"h{i}", float(-nets[i, w]), float(sell_res[i]), float(crs[i]), int(latency[i]))
            for i in range(households)
            if nets[i, w] < -EPS_KWH
        ]
        buyers = [
            BuyerState(f"h{i}", float(nets[i, w]), float(buy_res[i]), float(crs[i]), int(timeout[i]))
            for i in range(households)
            if nets[i, w] > EPS_KWH
        ]
        result = run_window(publish_offers(sellers, w, tariffs), sellers, buyers, tariffs, MarketConfig())
        violations += invariant_violations(result)
        dropped += len(result.dropped)
        trades += len(result.trades)
        for tr in result.trades:
            totals["traded_kwh"] += tr.kwh
            totals["value"] += tr.kwh * tr.price
            savings["buyers"] += tr.kwh * (tariffs.retail - tr.price)
            savings["sellers"] += tr.kwh * (tr.price - tariffs.feed_in)
        totals["import_kwh"] += sum(result.grid_import.values())
        totals["export_kwh"] += sum(result.grid_export.values())
        if any(v > EPS_KWH for v in result.grid_import.values()):
            # Exported in a window where someone imported: left unsold only because of timeouts.
            totals["stranded_kwh"] += result.unsold_kwh
    mean_price = totals["value"] / totals["traded_kwh"] if totals["traded_kwh"] > 0 else None
    return {
        "households": households,
        "hours": hours,
        "seed": seed,
        "tariffs": {"feed_in": tariffs.feed_in, "retail": tariffs.retail},
        "trades": trades,
        "traded_kwh": round(totals["traded_kwh"], 6),
        "grid_import_kwh": round(totals["import_kwh"], 6),
        "grid_export_kwh": round(totals["export_kwh"], 6),
        "mean_price": None if mean_price is None else round(mean_price, 6),
        "buyer_savings": round(savings["buyers"], 6),
        "seller_gains": round(savings["sellers"], 6),
        "stranded_by_timeouts_kwh": round(totals["stranded_kwh"], 6),
        "dropped_pairs": dropped,
        "invariant_violations": violations,
    }


def format_summary(s: Mapping[str, Any]) -> str:
    price = "-" if s["mean_price"] is None else f"{s['mean_price']:.4f}"
    return "\n".join(
        [
            f"hourly offer market: {s['households']} households x {s['hours']} h (seed {s['seed']})",
            f"  tariffs: feed-in {s['tariffs']['feed_in']}, retail {s['tariffs']['retail']} per kWh",
            f"  {s['trades']} trades, {s['traded_kwh']:.3f} kWh traded at mean {price} per kWh",
            f"  grid import {s['grid_import_kwh']:.3f} kWh, grid export {s['grid_export_kwh']:.3f} kWh",
            f"  buyers saved {s['buyer_savings']:.4f}, sellers gained {s['seller_gains']:.4f} vs the grid",
            f"  dropped (timed-out) pairs {s['dropped_pairs']}, invariant violations {s['invariant_violations']}",
            f"  exported while someone imported (sellers dropped by timeouts): {s['stranded_by_timeouts_kwh']:.3f} kWh",
        ]
    )
