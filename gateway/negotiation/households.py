"""Household energy for the market and eco-park simulations: the one adapter to meter_sim.profiles."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from meter_sim.profiles import parse_profile

SUMMER_T0 = 1781654400.0  # 2026-06-17 00:00 UTC: a day with sun, so there is surplus to trade
PV_CHOICES_KWP = (0.0, 0.0, 3.0, 5.0, 8.0)


def household_spec(seed: int, index: int) -> str:
    """A deterministic mix of consumers and PV prosumers."""
    rng = np.random.default_rng([seed, index])
    pv = PV_CHOICES_KWP[int(rng.integers(len(PV_CHOICES_KWP)))]
    return f"household:seed={seed * 1000 + index},pv_kwp={pv}"


def hourly_net_kwh(spec: str, t0_unix: float, hours: int, per_hour: int = 4) -> NDArray[np.float64]:
    """Net energy per hour (kWh, + need / - surplus) from the profile sampled `per_hour` times an hour."""
    step = 3600.0 / per_hour
    load_w, pv_w = parse_profile(spec).series(t0_unix, hours * per_hour, step)
    net_w = (load_w - pv_w).reshape(hours, per_hour)
    return net_w.mean(axis=1) / 1000.0
