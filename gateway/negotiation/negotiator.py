"""The bilateral alternating-offers mechanism, stepped from outside one message at a time.

A `Negotiator` holds a strategy, an acceptance rule and its own last offer; the gateway calls
`first_offer` / `respond` as signed messages arrive. `run_session` is the in-process driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.negotiation.offers import Accept, Counter, Offer, OfferError, Reject, Response
from gateway.negotiation.strategy import Strategy
from gridpact.core.concession import AcceptanceRule


class Negotiator:
    """One side of a bilateral session. Round t: the initiator moves, then the responder."""

    def __init__(self, strategy: Strategy, rule: AcceptanceRule | str = AcceptanceRule.NEXT) -> None:
        self.strategy = strategy
        self.rule = AcceptanceRule.parse(rule)
        self.last_offer: Offer | None = None

    @property
    def deadline(self) -> int:
        return self.strategy.deadline

    def first_offer(self, t: int = 0) -> Offer:
        """The opening offer of the initiator."""
        self.last_offer = self.strategy.offer(t)
        return self.last_offer

    def respond(self, opponent_offer: Offer, t: int) -> Response:
        """Accept, counter or reject the opponent's offer received in round t; never raises on bad input."""
        if t > self.deadline:
            return Reject("deadline")
        if not isinstance(opponent_offer, Offer):
            return Reject(f"not an offer: {opponent_offer!r}")
        problem = self.strategy.problem(opponent_offer)
        if problem is not None:
            return Reject(problem)
        nxt = self.strategy.offer(t)
        reference = nxt if self.rule is AcceptanceRule.NEXT else self.last_offer
        if reference is not None and self.strategy.acceptable(opponent_offer, reference):
            return Accept(opponent_offer)
        self.last_offer = nxt
        return Counter(nxt)

    def state(self) -> dict[str, Any]:
        """JSON-able state, so a gateway can persist an open session."""
        return {
            "rule": self.rule.value,
            "last_offer": None if self.last_offer is None else self.last_offer.to_dict(),
        }

    @classmethod
    def restore(cls, strategy: Strategy, state: dict[str, Any]) -> Negotiator:
        neg = cls(strategy, AcceptanceRule.parse(state.get("rule", "next")))
        last = state.get("last_offer")
        if last is not None:
            try:
                neg.last_offer = Offer.from_dict(last)
            except OfferError as exc:
                raise ValueError(f"bad negotiator state: {exc}") from None
        return neg


@dataclass(frozen=True)
class TraceEntry:
    """One message of a session."""

    step: int
    by: str  # "initiator" | "responder"
    offer: Offer | None  # the offer made (counter/opening), or the accepted offer
    response: str  # "offer" | "accept" | "reject"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "by": self.by,
            "offer": None if self.offer is None else self.offer.to_dict(),
            "response": self.response,
        }


@dataclass
class SessionResult:
    """Outcome of a whole session."""

    agreed: bool
    step: int | None
    offer: Offer | None
    by: str | None
    trace: list[TraceEntry] = field(default_factory=list)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "agreed": self.agreed,
            "step": self.step,
            "offer": None if self.offer is None else self.offer.to_dict(),
            "accepted_by": self.by,
            "reason": self.reason,
            "trace": [e.to_dict() for e in self.trace],
        }


def run_session(initiator: Negotiator, responder: Negotiator, max_rounds: int | None = None) -> SessionResult:
    """Drive both negotiators in-process until agreement, rejection or `max_rounds` (default: both deadlines)."""
    last_round = max(initiator.deadline, responder.deadline) if max_rounds is None else max_rounds
    trace: list[TraceEntry] = []
    current = initiator.first_offer(0)
    trace.append(TraceEntry(0, "initiator", current, "offer"))
    turn = [("responder", responder, 0)]
    for t in range(1, last_round + 2):
        turn.append(("initiator", initiator, t))
        turn.append(("responder", responder, t))
    for who, neg, t in turn:
        if t > last_round:
            break
        reply = neg.respond(current, t)
        if isinstance(reply, Accept):
            trace.append(TraceEntry(t, who, reply.offer, "accept"))
            return SessionResult(True, t, reply.offer, who, trace)
        if isinstance(reply, Reject):
            trace.append(TraceEntry(t, who, None, "reject"))
            return SessionResult(False, None, None, None, trace, reply.reason)
        current = reply.offer
        trace.append(TraceEntry(t, who, current, "offer"))
    return SessionResult(False, None, None, None, trace, "deadline" if max_rounds is None else "max_rounds")
