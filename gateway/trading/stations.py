"""Grid-station auctions: the ad hoc P2P model of Ali et al., between live gateways.

A buyer broadcasts a `request` for a window (quantity, its limit price); sellers with uncommitted
surplus answer with a `bid`: EIP-712 terms they have already signed at their price, so a bid is
a firm offer the buyer can take as it stands. When the bidding time is over the buyer commits to
the cheapest bids that fit its need (`confirm`, its own signature) and declines the rest
(`reject`, reason `outbid`). The distributor is paid for carrying the energy by the Market's
network fee (per kWh delivered, out of the seller's payout), so a seller's floor is its reserve
price plus that fee.

A seller's signature binds it until the terms expire: a declined bid could still be submitted by
the buyer (who would pay for it), so the seller never frees the capacity it bid. Sellers
therefore bid only surplus nothing else holds, and a declined bid costs them that capacity for
the window: the price of firm bids, kept because releasing it would let a buyer collect bids and
submit them all, leaving sellers to pay penalties on energy they could not deliver.

A buyer could abuse that: call for bids every window and decline them all (or never answer),
locking every seller's surplus at no cost to itself, so that its own energy, or a friend's, is
all that is left to sell. Each seller therefore keeps a `DeclineBook`: a buyer may leave at most
`DECLINES_FREE` more of our bids unconfirmed than it confirmed over the last day, and beyond that
we stay silent to its calls (counted `request_from_decliner`) until a day has passed. An honest
buyer that declined us (we were outbid) loses little: our price lost to it anyway.

Pure rules here (the bid price, a bid's checks, the choice, the decline book); `Agent` drives
the messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from gateway.chain.market import signed_by, terms_from_dict
from gateway.trading.protocol import Envelope
from gridpact.core.eip712 import Domain, Terms

DECLINES_FREE = 2  # net unconfirmed bids a buyer may leave us with per DECLINE_MEMORY_S
DECLINE_MEMORY_S = 24 * 3600


@dataclass
class Auction:
    """One call for bids of ours: what we asked, and the bids that came in while it was open."""

    id: str
    window: int
    window_s: int
    quantity_wh: int
    limit: int  # the highest unit price we take (token base units per kWh)
    bids: list[Envelope] = field(default_factory=list)


@dataclass(frozen=True)
class Bid:
    """A checked bid: the seller's signed terms."""

    seller: str
    terms: Terms
    sig: str


def bid_price(ask: int, floor: int, limit: int) -> int | None:
    """A seller's sealed bid: its ask, capped at the buyer's limit, never below its floor (reserve
    price plus the network fee); None when the limit is below the floor."""
    if floor > limit:
        return None
    return max(floor, min(ask, limit))


def check_bid(env: Envelope, auction: Auction, me: str, domain: Domain, min_trade_wh: int) -> Bid | str:
    """The bid if its terms are exactly what the auction asked for and the sender signed them;
    else the reason it is refused (a counter label)."""
    try:
        terms = terms_from_dict(env.body["terms"])
    except (ValueError, KeyError):
        return "bid_bad_terms"
    start, end = auction.window, auction.window + auction.window_s
    if terms.seller.lower() != env.sender.lower() or terms.buyer.lower() != me.lower():
        return "bid_wrong_parties"
    if (terms.deliveryStart, terms.deliveryEnd, terms.expiry) != (start, end, end - 1):
        return "bid_wrong_window"
    if not min_trade_wh <= terms.quantityWh <= auction.quantity_wh:
        return "bid_wrong_quantity"
    if terms.unitPrice > auction.limit:
        return "bid_above_limit"
    if not signed_by(terms, domain, env.body["sig"], env.sender):
        return "bid_bad_signature"
    return Bid(env.sender, terms, env.body["sig"])


def choose(bids: list[Bid], need_wh: int, min_trade_wh: int) -> list[Bid]:
    """The bids to take: cheapest first (then the larger, then by seller address, so every run
    chooses alike), each one that still fits what is needed; one bid per seller."""
    taken: list[Bid] = []
    sellers: set[str] = set()
    left = need_wh
    for bid in sorted(bids, key=lambda b: (b.terms.unitPrice, -b.terms.quantityWh, b.seller.lower())):
        if left < min_trade_wh:
            break
        if bid.seller.lower() in sellers or bid.terms.quantityWh > left:
            continue
        taken.append(bid)
        sellers.add(bid.seller.lower())
        left -= bid.terms.quantityWh
    return taken


DECLINES_KEY = "stations:declines"


@dataclass
class DeclineBook:
    """Per buyer, our bids it confirmed and the ones it declined or left unanswered, by window; a
    buyer that left `free` more unconfirmed than confirmed within `memory_s` gets no bid from us."""

    free: int = DECLINES_FREE
    memory_s: int = DECLINE_MEMORY_S
    marks: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # buyer -> [(window, +1 | -1)]

    def record(self, buyer: str, window: int, confirmed: bool) -> None:
        """One bid of ours to `buyer` ended: confirmed (-1) or not (+1)."""
        self.marks.setdefault(buyer.lower(), []).append((window, -1 if confirmed else 1))

    def confirmed_late(self, buyer: str, window: int) -> None:
        """A bid we had counted unconfirmed (its `confirm` came after we stopped waiting) was confirmed."""
        marks = self.marks.get(buyer.lower(), [])
        if (window, 1) in marks:
            marks[marks.index((window, 1))] = (window, -1)

    def dumps(self) -> str:
        """The book as the journal keeps it (`DECLINES_KEY`), so a restart does not wipe a decliner's record."""
        return json.dumps(
            {k: [list(m) for m in v] for k, v in sorted(self.marks.items())}, separators=(",", ":")
        )

    @classmethod
    def loads(cls, text: str | None) -> DeclineBook:
        """A book from `dumps`; anything unreadable starts an empty book (the journal is ours, but a
        half-written or hand-edited value must not stop trading)."""
        book = cls()
        try:
            data = json.loads(text) if text else {}
            for buyer, marks in data.items():
                book.marks[str(buyer).lower()] = [(int(w), 1 if int(m) > 0 else -1) for w, m in marks]
        except (ValueError, TypeError, AttributeError):
            book.marks.clear()
        return book

    def may_bid(self, buyer: str, now: float) -> bool:
        """Whether `buyer`'s call may have a bid of ours; forgets what is older than `memory_s`."""
        key = buyer.lower()
        kept = [m for m in self.marks.get(key, []) if m[0] > now - self.memory_s]
        if kept:
            self.marks[key] = kept
        else:
            self.marks.pop(key, None)
        return sum(mark for _, mark in kept) < self.free
