"""Offers and responses: the only things that cross the wire between two negotiators.

Kept as small frozen dataclasses with a dict form so that the gateway can sign and send them
as JSON without knowing anything about strategies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class OfferError(ValueError):
    """An offer or response could not be built from the given data."""


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OfferError(f"issue {name!r}: value must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise OfferError(f"issue {name!r}: value must be finite, got {value!r}")
    return out


@dataclass(frozen=True)
class Offer:
    """One outcome: a value per issue, kept as sorted pairs so that it is hashable."""

    items: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, **values: float) -> Offer:
        """`Offer.of(price=35.5, quantity=100)`."""
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Offer:
        """Build from `{"price": 35.5, ...}`; raises OfferError on bad input."""
        if not isinstance(data, Mapping) or not data:
            raise OfferError(f"an offer must be a non-empty mapping of issue -> number, got {data!r}")
        pairs: list[tuple[str, float]] = []
        for key, value in data.items():
            if not isinstance(key, str) or not key:
                raise OfferError(f"issue names must be non-empty strings, got {key!r}")
            pairs.append((key, _finite(key, value)))
        return cls(tuple(sorted(pairs)))

    def to_dict(self) -> dict[str, float]:
        return dict(self.items)

    def __getitem__(self, issue: str) -> float:
        for key, value in self.items:
            if key == issue:
                return value
        raise KeyError(issue)

    def get(self, issue: str) -> float | None:
        try:
            return self[issue]
        except KeyError:
            return None

    @property
    def issues(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.items)

    @property
    def price(self) -> float:
        return self["price"]

    @property
    def quantity(self) -> float:
        return self["quantity"]


@dataclass(frozen=True)
class Accept:
    """Accept the opponent's offer as it stands: the session ends with an agreement."""

    offer: Offer

    def to_dict(self) -> dict[str, Any]:
        return {"type": "accept", "offer": self.offer.to_dict()}


@dataclass(frozen=True)
class Counter:
    """Decline and propose `offer` instead."""

    offer: Offer

    def to_dict(self) -> dict[str, Any]:
        return {"type": "counter", "offer": self.offer.to_dict()}


@dataclass(frozen=True)
class Reject:
    """Walk away (deadline passed, bad offer): the session ends without agreement."""

    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": "reject", "reason": self.reason}


Response = Accept | Counter | Reject


def response_from_dict(data: Mapping[str, Any]) -> Response:
    """Inverse of `.to_dict()` for the three kinds; raises OfferError on bad input."""
    if not isinstance(data, Mapping):
        raise OfferError(f"a response must be a mapping, got {data!r}")
    kind = data.get("type")
    if kind == "accept":
        return Accept(Offer.from_dict(data.get("offer", {})))
    if kind == "counter":
        return Counter(Offer.from_dict(data.get("offer", {})))
    if kind == "reject":
        reason = data.get("reason", "")
        if not isinstance(reason, str):
            raise OfferError(f"reject reason must be a string, got {reason!r}")
        return Reject(reason)
    raise OfferError(f"unknown response type {kind!r}")
