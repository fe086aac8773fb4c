"""Outcome spaces (single issue or multi-issue grids) and utility functions, kept apart from strategies.

Utilities are separate objects so that the same strategy can be run against different preferences
and the same preferences can judge offers from any strategy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gateway.negotiation.offers import Offer


@dataclass(frozen=True)
class Issue:
    """One negotiable dimension with a discrete grid low, low+step, ..., high."""

    name: str
    low: float
    high: float
    step: float

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an issue needs a name")
        if not all(math.isfinite(v) for v in (self.low, self.high, self.step)):
            raise ValueError(f"issue {self.name!r}: bounds and step must be finite")
        if self.high < self.low:
            raise ValueError(f"issue {self.name!r}: high {self.high} < low {self.low}")
        if self.step <= 0:
            raise ValueError(f"issue {self.name!r}: step must be > 0")

    def values(self) -> NDArray[np.float64]:
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return self.low + self.step * np.arange(count, dtype=np.float64)

    def contains(self, value: float) -> bool:
        return self.low - 1e-9 <= value <= self.high + 1e-9


@dataclass(frozen=True)
class OutcomeSpace:
    """The Cartesian grid of its issues' values, in row-major order (first issue slowest)."""

    issues: tuple[Issue, ...]

    def __post_init__(self) -> None:
        names = [i.name for i in self.issues]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"an outcome space needs distinct issues, got {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.issues)

    def grid(self) -> NDArray[np.float64]:
        """All outcomes as an (n, k) array, k = number of issues."""
        axes = np.meshgrid(*[i.values() for i in self.issues], indexing="ij")
        return np.stack([a.ravel() for a in axes], axis=1)

    @property
    def size(self) -> int:
        return int(np.prod([len(i.values()) for i in self.issues]))

    def offer_at(self, row: NDArray[np.float64]) -> Offer:
        return Offer.from_dict({n: float(v) for n, v in zip(self.names, row, strict=True)})

    def contains(self, offer: Offer) -> bool:
        return set(offer.issues) == set(self.names) and all(i.contains(offer[i.name]) for i in self.issues)


@dataclass(frozen=True)
class LinearUtility:
    """Utility in [0, 1] rising linearly from the worst to the best end of [low, high]."""

    low: float
    high: float
    prefer_high: bool

    def __call__(self, value: float) -> float:
        if self.high == self.low:
            return 1.0
        frac = (min(max(value, self.low), self.high) - self.low) / (self.high - self.low)
        return frac if self.prefer_high else 1.0 - frac

    def many(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.high == self.low:
            return np.ones_like(values)
        frac = (np.clip(values, self.low, self.high) - self.low) / (self.high - self.low)
        return frac if self.prefer_high else 1.0 - frac


@dataclass(frozen=True)
class AdditiveUtility:
    """Weighted sum of per-issue utilities; weights are normalised to sum to 1."""

    parts: Mapping[str, LinearUtility]
    weights: Mapping[str, float]

    def __post_init__(self) -> None:
        if set(self.parts) != set(self.weights):
            raise ValueError("weights and parts must name the same issues")
        if (
            any(w < 0 or not math.isfinite(w) for w in self.weights.values())
            or sum(self.weights.values()) <= 0
        ):
            raise ValueError("weights must be finite, >= 0 and not all zero")

    def _norm(self) -> dict[str, float]:
        total = sum(self.weights.values())
        return {k: w / total for k, w in self.weights.items()}

    def __call__(self, offer: Offer) -> float:
        return sum(w * self.parts[k](offer[k]) for k, w in self._norm().items())

    def over(self, space: OutcomeSpace) -> NDArray[np.float64]:
        """Utility of every outcome of `space` (same order as `space.grid()`)."""
        grid = space.grid()
        norm = self._norm()
        out = np.zeros(grid.shape[0])
        for col, name in enumerate(space.names):
            out += norm[name] * self.parts[name].many(grid[:, col])
        return out
