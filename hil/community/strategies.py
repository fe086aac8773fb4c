"""The market strategies `gridpact simulate --strategy` can run, each one `MarketWindow -> list[Trade]`.

- `concession`: the simulator's own hourly market (hil/community/market.py).
- `engine`: the negotiation engine's hourly offer market (`gateway.negotiation.run_window`,
  Mezquita et al., 4.1: buyers negotiate with every publisher, per-counterparty timeouts, closing phase).
  This adapter only converts units: Wh and token base units here, kWh and tokens per kWh there.
"""

from __future__ import annotations

from gateway import negotiation as neg
from gridpact.core.tariff import Tariff
from hil.community.market import MarketWindow, Strategy, Trade, hourly_concession_market


def engine_market(window: MarketWindow) -> list[Trade]:
    """One window through `gateway.negotiation.run_window`, trades rounded down to whole Wh."""
    unit = window.unit
    tariffs = Tariff(feed_in=window.feed_in / unit, retail=window.retail / unit)
    sellers = [neg.SellerState(str(o.household), o.wh / 1000, o.rp / unit, o.cr) for o in window.asks]
    buyers = [neg.BuyerState(str(o.household), o.wh / 1000, o.rp / unit, o.cr) for o in window.bids]
    slot = window.hour_start // 3600
    offers = neg.get_offers(neg.publish_offers(sellers, slot, tariffs), slot)
    closing = max(1, min(3, window.rounds - 3))
    result = neg.run_window(offers, sellers, buyers, tariffs, neg.MarketConfig(window.rounds, closing))
    ask_left = {o.household: o.wh for o in window.asks}
    bid_left = {o.household: o.wh for o in window.bids}
    trades = []
    for t in result.trades:
        s, b = int(t.seller), int(t.buyer)
        wh = min(int(t.kwh * 1000 + 1e-6), ask_left[s], bid_left[b])
        if wh <= 0:
            continue
        price = min(max(round(t.price * unit), window.feed_in), window.retail)
        ask_left[s] -= wh
        bid_left[b] -= wh
        trades.append(Trade(s, b, wh, price, 0))
    return trades


def engine_available() -> bool:
    """The engine is part of this package now (a direct import); kept for `pick`'s callers."""
    return True


STRATEGIES: dict[str, Strategy] = {"concession": hourly_concession_market, "engine": engine_market}


def pick(name: str) -> tuple[str, Strategy]:
    """(name, strategy); `auto` is the negotiation engine when it is importable, else `concession`."""
    if name == "auto":
        name = "engine" if engine_available() else "concession"
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of auto, {', '.join(STRATEGIES)}; got {name!r}")
    if name == "engine" and not engine_available():
        raise ValueError("--strategy engine: gateway.negotiation's hourly market is not importable")
    return name, STRATEGIES[name]
