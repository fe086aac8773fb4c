"""The community's households: a seeded mix of PV, PV+battery and plain consumers, and their power.

Power comes from `meter_sim.profiles` (the same household model the software meters serve) when
that package provides `parse_profile`; otherwise from the small seeded generator below. Which one
ran is recorded in the report (`profile_source`), never hidden.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

KINDS = ("pv", "pv+battery", "consumer")


@dataclass(frozen=True)
class HouseholdSpec:
    """One household: its name, kind, PV peak (kWp), battery size (kWh) and profile seed."""

    name: str
    kind: str
    pv_kwp: float
    battery_kwh: float
    seed: int

    @property
    def profile_spec(self) -> str:
        """The meter_sim profile string for this household (battery left to the simulator)."""
        return f"household:seed={self.seed},pv_kwp={self.pv_kwp:g}"


def make_community(n: int, seed: int) -> list[HouseholdSpec]:
    """N households cycling PV, PV+battery and consumer, sizes drawn from the seed."""
    if n < 2:
        raise ValueError("a community needs at least 2 households")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        pv = 0.0 if kind == "consumer" else round(float(rng.uniform(3.0, 8.0)), 1)
        bat = round(float(rng.uniform(5.0, 12.0)), 1) if kind == "pv+battery" else 0.0
        out.append(HouseholdSpec(f"h{i + 1:03d}", kind, pv, bat, int(seed * 1000 + i)))
    return out


def fallback_series(spec: HouseholdSpec, t0: float, n: int, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """A seeded household: base load with morning and evening peaks, PV as a clear-sky arc times clouds."""
    rng = np.random.default_rng(spec.seed)
    t = t0 + np.arange(n) * step_s
    hod = (t % 86400) / 3600.0
    day = ((t - t0) // 86400).astype(int)
    scale = rng.uniform(0.7, 1.4)
    load = 250 + 900 * np.exp(-(((hod - 7.5) / 1.2) ** 2)) + 1500 * np.exp(-(((hod - 19.0) / 2.0) ** 2))
    load = scale * load * rng.lognormal(0.0, 0.25, n)
    sun = np.clip(np.sin(np.pi * (hod - 6.0) / 14.0), 0, None) ** 1.5
    clouds = rng.uniform(0.45, 1.0, day.max() + 1)[day] * rng.uniform(0.8, 1.0, n)
    pv = spec.pv_kwp * 1000.0 * 0.85 * sun * clouds
    return load.astype(float), pv.astype(float)


def profile_source() -> str:
    """ "meter_sim" when `meter_sim.profiles.parse_profile` is importable, else "fallback"."""
    try:
        mod = importlib.import_module("meter_sim.profiles")
    except ImportError:
        return "fallback"
    return "meter_sim" if hasattr(mod, "parse_profile") else "fallback"


def community_power(
    specs: list[HouseholdSpec], t0: float, n: int, step_s: float, source: str | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(load_w, pv_w) arrays shaped (households, steps) and the profile source used."""
    source = source or profile_source()
    loads = np.empty((len(specs), n))
    pvs = np.empty((len(specs), n))
    parse = None
    if source == "meter_sim":
        parse = importlib.import_module("meter_sim.profiles").parse_profile
    for i, spec in enumerate(specs):
        if parse is not None:
            load, pv = parse(spec.profile_spec).series(t0, n, step_s)
        else:
            load, pv = fallback_series(spec, t0, n, step_s)
        loads[i] = np.asarray(load, dtype=float)
        pvs[i] = np.asarray(pv, dtype=float)
    return loads, pvs, source


def largest_pv_without_battery(specs: list[HouseholdSpec]) -> int:
    """The household most likely to sell at midday: the fault scenario trips its inverter."""
    candidates = [i for i, s in enumerate(specs) if s.kind == "pv"] or list(range(len(specs)))
    return max(candidates, key=lambda i: specs[i].pv_kwp)
