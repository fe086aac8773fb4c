"""The trading agent's typed event seam: what a watcher (the household dashboard) learns of negotiations.

The agent calls `TradeObserver.trade_event` when a session opens, when a session message is sent
or received, and when a session ends (with its agreement id when one was made). Events carry only
what the agent already holds (no keys, no signatures), so an observer cannot change trading.
`TradeFeed` is the in-memory observer the gateway hands to both the agent and the dashboard: open
sessions and the last few finished ones, each with its offers and the own concession curve
(Eq. 1 of Kröhling et al., "Automated negotiation in eco-industrial parks") to draw them against.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Protocol, TypedDict

from gridpact.core.concession import ConcessionParams

SESSION_KINDS = frozenset({"propose", "counter", "accept", "confirm", "reject", "bid"})


@dataclass(frozen=True)
class SessionOpened:
    session: str
    peer: str
    role: str  # our role: "buyer" | "seller"
    window: int
    quantity_wh: int
    curve: ConcessionParams | None  # our price curve (None: a strategy that is not Eq. 1 on price)
    at: float


@dataclass(frozen=True)
class MessageSeen:
    session: str
    direction: str  # "sent" | "received"
    kind: str  # propose | counter | accept | confirm | reject
    round: int | None
    price: int | None
    quantity_wh: int | None
    at: float


@dataclass(frozen=True)
class SessionClosed:
    session: str
    agreement: str | None
    at: float


TradeEvent = SessionOpened | MessageSeen | SessionClosed


class TradeObserver(Protocol):
    def trade_event(self, event: TradeEvent) -> None: ...


def price_curve(strategy: object) -> ConcessionParams | None:
    """The price issue's Eq. 1 parameters of a negotiator's strategy, when it has one."""
    per_issue = getattr(strategy, "per_issue", None)
    issue = per_issue.get("price") if isinstance(per_issue, Mapping) else None
    params = getattr(issue, "params", None)
    return params if isinstance(params, ConcessionParams) else None


def opened(
    session: str, peer: str, role: str, window: int, quantity_wh: int, strategy: object, at: float
) -> SessionOpened:
    return SessionOpened(session, peer, role, window, quantity_wh, price_curve(strategy), at)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def message_event(direction: str, kind: str, body: dict[str, object], at: float) -> MessageSeen | None:
    """A session message as an event (None for non-session messages such as public offers)."""
    session = body.get("session")
    if kind not in SESSION_KINDS or not isinstance(session, str):
        return None
    price, quantity = _int(body.get("price")), _int(body.get("quantity_wh"))
    terms = body.get("terms")
    if kind in ("accept", "bid") and isinstance(terms, dict):  # the terms name the price accepted or bid
        price, quantity = _int(terms.get("unitPrice")), _int(terms.get("quantityWh"))
    return MessageSeen(session, direction, kind, _int(body.get("round")), price, quantity, at)


class OfferView(TypedDict):
    by: str  # "me" | "peer"
    kind: str
    round: int | None
    price: int | None
    quantity_wh: int | None
    at: float


class SessionView(TypedDict):
    id: str
    peer: str
    role: str
    window: int
    quantity_wh: int
    opened_at: float
    curve: dict[str, float] | None
    offers: list[OfferView]
    outcome: str  # "open" | "agreed" | "ended"
    agreement: str | None


# state: "waiting" | "negotiating"; with: the peers of the open sessions ("with" is a keyword, hence this form)
FeedView = TypedDict("FeedView", {"state": str, "with": list[str], "sessions": list[SessionView]})


@dataclass
class _Log:
    opened: SessionOpened
    messages: list[MessageSeen] = field(default_factory=list)
    closed: SessionClosed | None = None


class TradeFeed:
    """Open sessions and the last `keep` finished ones; `version` moves on every event.

    Events and views take a lock: the simulator's dashboard reads the feed from its own thread while
    the agent writes it on the trading loop (in a gateway both run on one loop; the lock is then free).
    """

    MAX_MESSAGES = 64  # a session has at most max_rounds x 2 messages; a bound against a chatty peer

    def __init__(self, keep: int = 6) -> None:
        self.keep = keep
        self.version = 0
        self._logs: OrderedDict[str, _Log] = OrderedDict()
        self._lock = threading.Lock()

    def trade_event(self, event: TradeEvent) -> None:
        with self._lock:
            self._record(event)

    def _record(self, event: TradeEvent) -> None:
        if isinstance(event, SessionOpened):
            self._logs[event.session] = _Log(event)
        else:
            log = self._logs.get(event.session)
            if log is None:
                return
            if isinstance(event, SessionClosed):
                log.closed = event
            elif len(log.messages) < self.MAX_MESSAGES:
                log.messages.append(event)
        self._trim()
        self.version += 1

    def _trim(self) -> None:
        finished = [k for k, log in self._logs.items() if log.closed is not None]
        for key in finished[: max(0, len(finished) - self.keep)]:
            del self._logs[key]

    def view(self) -> FeedView:
        """JSON-able: the agent's state (waiting or negotiating with whom) and every kept session."""
        with self._lock:
            return self._view()

    def _view(self) -> FeedView:
        sessions: list[SessionView] = []
        for log in reversed(self._logs.values()):
            o = log.opened
            closed = log.closed
            sessions.append({
                "id": o.session, "peer": o.peer, "role": o.role, "window": o.window,
                "quantity_wh": o.quantity_wh, "opened_at": o.at,
                "curve": None if o.curve is None else asdict(o.curve),
                "offers": [
                    {"by": "me" if m.direction == "sent" else "peer", "kind": m.kind, "round": m.round,
                     "price": m.price, "quantity_wh": m.quantity_wh, "at": m.at}
                    for m in log.messages
                ],
                "outcome": "open" if closed is None else ("agreed" if closed.agreement else "ended"),
                "agreement": None if closed is None else closed.agreement,
            })  # fmt: skip
        peers = sorted({s["peer"] for s in sessions if s["outcome"] == "open"})
        return {"state": "negotiating" if peers else "waiting", "with": peers, "sessions": sessions}
