"""The grid provider's posted tariff in the simulated community (the type is gridpact.core.tariff's).

Prices are in tokens per kWh (1 token = 1 currency unit). The retail price is time-of-use so
that trading at different hours matters; feed-in is flat, as most feed-in tariffs are.
"""

from __future__ import annotations

from gridpact.core.tariff import Tariff

COMMUNITY_TARIFF = Tariff(feed_in=0.08, retail=0.30, peak=0.38, night=0.22)

__all__ = ["COMMUNITY_TARIFF", "Tariff"]
