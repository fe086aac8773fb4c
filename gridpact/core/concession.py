"""Time-dependent concession (Kröhling et al., Eq. 1) and a float-only bilateral runner.

`negotiate_issue` is the same protocol as `negotiator.run_session` for two single-issue
concession agents, without objects, so the eco-park simulation can run many thousands of
sessions per second; a property test keeps the two equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

TOLERANCE = 1e-9


class AcceptanceRule(Enum):
    """Which own offer the opponent's offer is compared with."""

    NEXT = "next"  # accept if at least as good as the offer I would make now
    CURRENT = "current"  # accept if at least as good as my last offer

    @classmethod
    def parse(cls, value: str | AcceptanceRule) -> AcceptanceRule:
        if isinstance(value, AcceptanceRule):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown acceptance rule {value!r}; use 'next' or 'current'") from None


@dataclass(frozen=True)
class ConcessionParams:
    """psi = (ip, rp, dl, cr) of Eq. 1: initial offer, reservation, deadline in rounds, concession rate."""

    ip: float
    rp: float
    dl: int
    cr: float

    def __post_init__(self) -> None:
        for name in ("ip", "rp", "cr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if isinstance(self.dl, bool) or not isinstance(self.dl, int) or self.dl < 1:
            raise ValueError(f"dl must be an integer >= 1 (rounds), got {self.dl!r}")
        if self.cr <= 0:
            raise ValueError(f"cr must be > 0, got {self.cr!r}")

    def offer(self, t: int) -> float:
        return concession(self.ip, self.rp, self.dl, self.cr, t)

    def to_dict(self) -> dict[str, Any]:
        return {"ip": self.ip, "rp": self.rp, "dl": self.dl, "cr": self.cr}


def concession(ip: float, rp: float, dl: int, cr: float, t: int | float) -> float:
    """Eq. 1: O_t = ip + (rp - ip) (t/dl)^(1/cr), with t clamped to [0, dl]."""
    frac = min(max(float(t), 0.0), float(dl)) / float(dl)
    return ip + (rp - ip) * frac ** (1.0 / cr)


def at_least_as_good(value: float, reference: float, prefer_high: bool) -> bool:
    """Whether `value` is at least as good as `reference` for an agent preferring high or low values."""
    slack = TOLERANCE * max(1.0, abs(reference))
    return value >= reference - slack if prefer_high else value <= reference + slack


@dataclass(frozen=True)
class IssueOutcome:
    """Result of one single-issue session: agreement, its round, value, and who accepted."""

    agreed: bool
    step: int | None
    value: float | None
    accepted_by: str | None  # "initiator" | "responder"
    rounds: int  # last round played


def negotiate_issue(
    initiator: ConcessionParams,
    responder: ConcessionParams,
    initiator_prefers_high: bool,
    rule: AcceptanceRule = AcceptanceRule.NEXT,
    max_rounds: int | None = None,
) -> IssueOutcome:
    """Alternating offers on one issue; round t: initiator moves, then responder (both use t in Eq. 1)."""
    last_round = max(initiator.dl, responder.dl) if max_rounds is None else max_rounds
    resp_high = not initiator_prefers_high
    last_i: float | None = None
    last_r: float | None = None
    for t in range(last_round + 1):
        if t > 0:
            if t > initiator.dl:
                return IssueOutcome(False, None, None, None, t)
            nxt = initiator.offer(t)
            ref = nxt if rule is AcceptanceRule.NEXT else last_i
            if (
                last_r is not None
                and ref is not None
                and at_least_as_good(last_r, ref, initiator_prefers_high)
            ):
                return IssueOutcome(True, t, last_r, "initiator", t)
            last_i = nxt
        else:
            last_i = initiator.offer(0)
        if t > responder.dl:
            return IssueOutcome(False, None, None, None, t)
        nxt = responder.offer(t)
        ref = nxt if rule is AcceptanceRule.NEXT else last_r
        if ref is not None and at_least_as_good(last_i, ref, resp_high):
            return IssueOutcome(True, t, last_i, "responder", t)
        last_r = nxt
    return IssueOutcome(False, None, None, None, last_round)


def negotiate_price(
    seller: ConcessionParams,
    buyer: ConcessionParams,
    rule: AcceptanceRule = AcceptanceRule.NEXT,
    seller_first: bool = True,
) -> IssueOutcome:
    """Price session between a seller (prefers high) and a buyer (prefers low)."""
    if seller_first:
        return negotiate_issue(seller, buyer, True, rule)
    return negotiate_issue(buyer, seller, False, rule)
