"""The grid provider's tariff: what a household can always fall back on, per kWh.

One type for every part that prices energy against the grid: the negotiation engine's hourly
market (prices stay within [feed-in, retail]), the learned policy's context (the provider's buy
and sell prices) and the community simulator (time-of-use retail). Retail is flat unless `peak`
or `night` prices are given for their hours; feed-in is flat, as most feed-in tariffs are.
Construction does not check the prices (a posted tariff may be unusable and the agent only needs
to know that); `validate()` raises a clear ValueError, `usable` answers without raising.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tariff:
    """Feed-in (the grid buys at) and retail (the grid sells at), same unit per kWh."""

    feed_in: float
    retail: float
    peak: float | None = None
    night: float | None = None
    peak_hours: tuple[int, int] = (17, 21)
    night_hours: tuple[int, int] = (23, 6)

    def retail_at(self, hour_of_day: int) -> float:
        """Retail price for an hour of the day (0-23): peak or night price in their hours, else `retail`."""
        h = hour_of_day % 24
        if self.peak is not None and self.peak_hours[0] <= h < self.peak_hours[1]:
            return self.peak
        n0, n1 = self.night_hours
        if self.night is not None and (h >= n0 or h < n1):
            return self.night
        return self.retail

    @property
    def day(self) -> float:
        """The retail price outside the peak and night hours."""
        return self.retail

    def retails(self) -> tuple[float, ...]:
        """Every retail price the tariff can charge."""
        return tuple(p for p in (self.retail, self.peak, self.night) if p is not None)

    @property
    def usable(self) -> bool:
        """Finite prices, feed-in >= 0 and every retail price above it: only then is there a spread to trade in."""
        prices = (self.feed_in, *self.retails())
        return all(math.isfinite(p) for p in prices) and 0 <= self.feed_in < min(self.retails())

    def validate(self) -> Tariff:
        """This tariff, or a ValueError naming the prices when buying from the grid is not dearer than selling."""
        if not self.usable:
            raise ValueError(
                f"retail prices {self.retails()} must be finite and above the feed-in price "
                f"{self.feed_in} >= 0"
            )
        return self

    def clamp(self, price: float) -> float:
        """A price moved into [feed_in, retail]: no side does worse than with the grid."""
        return min(max(price, self.feed_in), self.retail)
