"""The grid provider's posted tariffs: what every household can always fall back on.

Prices are in tokens per kWh (1 token = 1 currency unit). The retail price is time-of-use so
that trading at different hours matters; feed-in is flat, as most feed-in tariffs are.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tariff:
    """Retail (buy from the grid) by hour of day and a flat feed-in (sell to the grid) price."""

    day: float = 0.30
    peak: float = 0.38
    night: float = 0.22
    feed_in: float = 0.08
    peak_hours: tuple[int, int] = (17, 21)
    night_hours: tuple[int, int] = (23, 6)

    def retail(self, hour_of_day: int) -> float:
        """Retail price for an hour of the day (0-23, local = UTC in the simulation)."""
        h = hour_of_day % 24
        if self.peak_hours[0] <= h < self.peak_hours[1]:
            return self.peak
        n0, n1 = self.night_hours
        if h >= n0 or h < n1:
            return self.night
        return self.day

    def validate(self) -> Tariff:
        """A market only makes sense when buying from the grid costs more than selling to it."""
        if min(self.day, self.peak, self.night) <= self.feed_in or self.feed_in < 0:
            raise ValueError(f"retail prices must exceed the feed-in price >= 0: {self}")
        return self
