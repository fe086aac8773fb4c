"""The hourly offer market of Mezquita et al., section 4.1, as pure functions over one window.

Sellers publish their forecast surplus (MakeOffer); buyers fetch the offers (GetOffers) and
negotiate price with every publisher at once; in the closing rounds sellers sell to the highest
standing bids and buyers then take the cheapest remaining asks. Every price stays within
[feed-in, retail], so both sides always do at least as well as with the grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.negotiation.negotiator import Negotiator
from gateway.negotiation.offers import Accept, Counter, Offer
from gateway.negotiation.strategy import IssueConcession, TimeDependentStrategy
from gridpact.core.concession import ConcessionParams
from gridpact.core.tariff import Tariff

EPS_KWH = 1e-9


def _check(name: str, value: float, low: float = 0.0) -> None:
    if not math.isfinite(value) or value < low:
        raise ValueError(f"{name} must be finite and >= {low}, got {value!r}")


@dataclass(frozen=True)
class SellerState:
    """A household with forecast surplus for the window; `latency` = rounds it takes to answer."""

    id: str
    surplus_kwh: float
    reservation: float
    cr: float = 1.0
    latency: int = 0

    def __post_init__(self) -> None:
        _check(f"seller {self.id} surplus_kwh", self.surplus_kwh)
        _check(f"seller {self.id} reservation", self.reservation)
        _check(f"seller {self.id} cr", self.cr, 1e-6)
        if self.latency < 0:
            raise ValueError(f"seller {self.id} latency must be >= 0")


@dataclass(frozen=True)
class BuyerState:
    """A household with a forecast need; `timeout` = rounds it waits for a counterparty's answer."""

    id: str
    need_kwh: float
    reservation: float
    cr: float = 1.0
    timeout: int = 2

    def __post_init__(self) -> None:
        _check(f"buyer {self.id} need_kwh", self.need_kwh)
        _check(f"buyer {self.id} reservation", self.reservation)
        _check(f"buyer {self.id} cr", self.cr, 1e-6)
        if self.timeout < 0:
            raise ValueError(f"buyer {self.id} timeout must be >= 0")


@dataclass(frozen=True)
class MarketOffer:
    """What MakeOffer() publishes: who sells how much in which window, and the opening ask."""

    seller: str
    window: int
    kwh: float
    ask: float


@dataclass(frozen=True)
class MarketConfig:
    """Rounds per window; the last `closing_rounds` are the closing phase."""

    rounds: int = 20
    closing_rounds: int = 3

    def __post_init__(self) -> None:
        if self.closing_rounds < 1 or self.rounds - self.closing_rounds < 2:
            raise ValueError("need closing_rounds >= 1 and at least 2 negotiation rounds before them")

    @property
    def negotiation_deadline(self) -> int:
        return self.rounds - self.closing_rounds - 1


@dataclass(frozen=True)
class Trade:
    """Energy moved from seller to buyer at a price; phase is 'bid' (sellers' pass) or 'ask' (buyers')."""

    seller: str
    buyer: str
    kwh: float
    price: float
    phase: str
    agreed: bool


@dataclass(frozen=True)
class PairState:
    """Where one buyer-seller negotiation stood when the closing phase began."""

    agreed_price: float | None
    last_bid: float | None
    last_ask: float | None
    dropped: bool


@dataclass
class WindowResult:
    """Trades of one window and what was left to the grid."""

    trades: list[Trade]
    grid_import: dict[str, float]
    grid_export: dict[str, float]
    pairs: dict[tuple[str, str], PairState] = field(default_factory=dict)

    @property
    def unsold_kwh(self) -> float:
        return sum(self.grid_export.values())

    @property
    def dropped(self) -> list[tuple[str, str]]:
        return sorted(k for k, v in self.pairs.items() if v.dropped)

    def reachable(self, buyer: str) -> list[str]:
        return sorted(s for (b, s), v in self.pairs.items() if b == buyer and not v.dropped)


def publish_offers(sellers: Sequence[SellerState], window: int, tariffs: Tariff) -> list[MarketOffer]:
    """MakeOffer(): one offer per seller with surplus, opening at the retail tariff."""
    tariffs.validate()
    return [
        MarketOffer(s.id, window, s.surplus_kwh, tariffs.retail) for s in sellers if s.surplus_kwh > EPS_KWH
    ]


def get_offers(published: Sequence[MarketOffer], window: int) -> list[MarketOffer]:
    """GetOffers(): what a buyer sees for one window, best (cheapest, then largest) first."""
    return sorted((o for o in published if o.window == window), key=lambda o: (o.ask, -o.kwh, o.seller))


def _price_negotiator(ip: float, rp: float, dl: int, cr: float, prefer_high: bool) -> Negotiator:
    strategy = TimeDependentStrategy(
        {"price": IssueConcession(ConcessionParams(ip, rp, dl, cr), prefer_high)}
    )
    return Negotiator(strategy)


def negotiate_pair(
    seller: SellerState, buyer: BuyerState, tariffs: Tariff, config: MarketConfig
) -> PairState:
    """One buyer-initiated price session; each exchange takes 1 + latency rounds of the window clock."""
    if seller.latency > buyer.timeout:
        return PairState(None, None, None, dropped=True)
    dl = config.negotiation_deadline
    b = _price_negotiator(tariffs.feed_in, tariffs.clamp(buyer.reservation), dl, buyer.cr, prefer_high=False)
    s = _price_negotiator(tariffs.retail, tariffs.clamp(seller.reservation), dl, seller.cr, prefer_high=True)
    stride = 1 + seller.latency
    bid: Offer = b.first_offer(0)
    ask: Offer | None = None
    t = 0
    while t <= dl:
        reply = s.respond(bid, t)
        if isinstance(reply, Accept):
            return PairState(bid.price, bid.price, None if ask is None else ask.price, False)
        if not isinstance(reply, Counter):
            break
        ask = reply.offer
        t += stride
        if t > dl:
            break
        reply = b.respond(ask, t)
        if isinstance(reply, Accept):
            return PairState(ask.price, bid.price, ask.price, False)
        if not isinstance(reply, Counter):
            break
        bid = reply.offer
    return PairState(None, bid.price, None if ask is None else ask.price, False)


def run_window(
    offers: Sequence[MarketOffer],
    sellers: Sequence[SellerState],
    buyers: Sequence[BuyerState],
    tariffs: Tariff,
    config: MarketConfig | None = None,
) -> WindowResult:
    """Negotiate every (buyer, publisher) pair, then clear in the closing phase."""
    tariffs.validate()
    cfg = config or MarketConfig()
    by_id = {s.id: s for s in sellers}
    if len(by_id) != len(sellers) or len({b.id for b in buyers}) != len(buyers):
        raise ValueError("seller and buyer ids must be unique")
    left = {o.seller: o.kwh for o in offers}
    unknown = set(left) - set(by_id)
    if unknown:
        raise ValueError(f"offers from unknown sellers: {sorted(unknown)}")
    need = {b.id: b.need_kwh for b in buyers}
    pairs = {
        (b.id, sid): negotiate_pair(by_id[sid], b, tariffs, cfg)
        for b in buyers
        if b.need_kwh > EPS_KWH
        for sid in left
    }
    trades: list[Trade] = []

    def fill(buyer: str, seller: str, price: float, phase: str, agreed: bool) -> None:
        kwh = min(need[buyer], left[seller])
        if kwh > EPS_KWH:
            trades.append(Trade(seller, buyer, kwh, tariffs.clamp(price), phase, agreed))
            need[buyer] -= kwh
            left[seller] -= kwh

    # Closing, pass 1: sellers sell to the highest standing bids (an agreed price is a bid).
    bids = [
        (p.agreed_price if p.agreed_price is not None else p.last_bid, b, s, p.agreed_price is not None)
        for (b, s), p in pairs.items()
        if not p.dropped and p.last_bid is not None
    ]
    for price, b, s, agreed in sorted(bids, key=lambda x: (-x[0], not x[3], x[1], x[2])):
        fill(b, s, price, "bid", agreed)
    # Pass 2: buyers still short buy the cheapest remaining asks of the sellers they reach.
    asks = [
        (p.last_ask if p.last_ask is not None else tariffs.retail, b, s)
        for (b, s), p in pairs.items()
        if not p.dropped
    ]
    for price, b, s in sorted(asks):
        fill(b, s, price, "ask", False)
    return WindowResult(
        trades,
        {b: max(v, 0.0) for b, v in need.items()},
        {s: max(v, 0.0) for s, v in left.items()},
        pairs,
    )
