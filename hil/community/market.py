"""The hourly market (Mezquita et al., section 4.1) with time-dependent concession (Kröhling et al., Eq. 1), as one pluggable call.

Sellers publish their forecast surplus for the next hour and buyers their forecast need. Over
`rounds` negotiation steps each agent's price follows Eq. 1, O_t = ip + (rp - ip) * (t/dl)^(1/cr):
sellers concede down from the retail price towards their reserve, buyers up from the feed-in
price towards theirs. At each step the highest bids meet the cheapest asks (4.1: sellers sell to
the highest bidders, buyers buy the cheapest) and every crossing pair trades at the midpoint.
Reserves are inside [feed-in, retail] and every buyer's reserve is at least every seller's,
so by the deadline no buyer is left wanting while a seller still has energy: the 4.1 invariant.

Units are those of the Market contract: energy in integer Wh, prices in token base units
(micro-tokens) per kWh, payment = Wh * price // 1000.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gridpact.core.concession import concession as eq1
from gridpact.core.settlement import value

MICRO = 1_000_000  # token base units per token


@dataclass(frozen=True)
class Order:
    """A household's published position for the window: quantity (Wh) and Eq. 1 parameters."""

    household: int
    wh: int
    ip: int  # initial price, micro-tokens per kWh
    rp: int  # reserve price
    cr: float  # concession rate: < 1 Boulware (holds out), > 1 conceder


@dataclass(frozen=True)
class Trade:
    """An agreement: seller delivers `wh` to buyer during the window at `price` per kWh."""

    seller: int
    buyer: int
    wh: int
    price: int
    round: int

    @property
    def payment(self) -> int:
        """Token base units the buyer escrows for this agreement."""
        return payment(self.wh, self.price)


@dataclass(frozen=True)
class MarketWindow:
    """Everything a strategy sees for one hourly window."""

    hour_start: int
    retail: int
    feed_in: int
    asks: list[Order] = field(default_factory=list)
    bids: list[Order] = field(default_factory=list)
    rounds: int = 20
    unit: int = MICRO  # token base units per token, to express prices per kWh in tokens


Strategy = Callable[[MarketWindow], list[Trade]]


def payment(wh: int, price: int) -> int:
    """Payment in base units for `wh` at `price` per kWh, rounded down (the contract's `value`)."""
    return value(wh, price)


def concession(ip: int, rp: int, t: int, dl: int, cr: float) -> int:
    """Kröhling et al., Eq. 1 (gridpact.core.concession) in whole base units: the reservation price exactly at the deadline."""
    if dl <= 0 or t >= dl:
        return rp
    return round(eq1(ip, rp, dl, cr, t))


def hourly_concession_market(window: MarketWindow) -> list[Trade]:
    """Clear a window by stepped concession and highest-bid/cheapest-ask matching (the default strategy)."""
    ask_left = {o.household: o.wh for o in window.asks if o.wh > 0}
    bid_left = {o.household: o.wh for o in window.bids if o.wh > 0}
    asks = {o.household: o for o in window.asks}
    bids = {o.household: o for o in window.bids}
    trades: list[Trade] = []
    for t in range(window.rounds + 1):
        if not ask_left or not bid_left:
            break
        ask_p = {h: concession(asks[h].ip, asks[h].rp, t, window.rounds, asks[h].cr) for h in ask_left}
        bid_p = {h: concession(bids[h].ip, bids[h].rp, t, window.rounds, bids[h].cr) for h in bid_left}
        sellers = sorted(ask_left, key=lambda h: (ask_p[h], h))
        buyers = sorted(bid_left, key=lambda h: (-bid_p[h], h))
        i = j = 0
        while i < len(sellers) and j < len(buyers):
            s, b = sellers[i], buyers[j]
            if bid_p[b] < ask_p[s]:
                break
            q = min(ask_left[s], bid_left[b])
            trades.append(Trade(s, b, q, (ask_p[s] + bid_p[b]) // 2, t))
            ask_left[s] -= q
            bid_left[b] -= q
            if ask_left[s] == 0:
                del ask_left[s]
                i += 1
            if bid_left[b] == 0:
                del bid_left[b]
                j += 1
    return trades


def check_trades(window: MarketWindow, trades: list[Trade]) -> None:
    """Reject a strategy's output that breaks the market's rules (quantities, price bounds)."""
    sold: dict[int, int] = {}
    bought: dict[int, int] = {}
    for tr in trades:
        if tr.wh <= 0 or not window.feed_in <= tr.price <= window.retail:
            raise ValueError(f"trade outside the market's bounds: {tr}")
        sold[tr.seller] = sold.get(tr.seller, 0) + tr.wh
        bought[tr.buyer] = bought.get(tr.buyer, 0) + tr.wh
    for o in window.asks:
        if sold.get(o.household, 0) > o.wh:
            raise ValueError(f"household {o.household} sold more than it offered")
    for o in window.bids:
        if bought.get(o.household, 0) > o.wh:
            raise ValueError(f"household {o.household} bought more than it asked for")
    if set(sold) - {o.household for o in window.asks} or set(bought) - {o.household for o in window.bids}:
        raise ValueError("a trade names a household that published no order")
