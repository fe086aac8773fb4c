"""The community's households: a seeded mix of PV, PV+battery and plain consumers, and their power.

Power comes from `meter_sim.profiles`, the same household model the software meters serve (one
household model for every simulation); the report records it (`profile_source`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meter_sim.profiles import parse_profile

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


def profile_source() -> str:
    """Where the households' power comes from (recorded in the report)."""
    return "meter_sim"


def community_power(
    specs: list[HouseholdSpec], t0: float, n: int, step_s: float, source: str | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(load_w, pv_w) arrays shaped (households, steps) and the profile source used."""
    source = source or profile_source()
    loads = np.empty((len(specs), n))
    pvs = np.empty((len(specs), n))
    if source != "meter_sim":
        raise ValueError(f"unknown profile source {source!r} (meter_sim)")
    for i, spec in enumerate(specs):
        load, pv = parse_profile(spec.profile_spec).series(t0, n, step_s)
        loads[i] = np.asarray(load, dtype=float)
        pvs[i] = np.asarray(pv, dtype=float)
    return loads, pvs, source


def largest_pv_without_battery(specs: list[HouseholdSpec]) -> int:
    """The household most likely to sell at midday: the fault scenario trips its inverter."""
    candidates = [i for i, s in enumerate(specs) if s.kind == "pv"] or list(range(len(specs)))
    return max(candidates, key=lambda i: specs[i].pv_kwp)
