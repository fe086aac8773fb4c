"""Agents of Cases 1-3 (Tables 3-4) and where their household data come from.

Household load and PV come from meter_sim's profile generator (or a CSV through its
`csv:PATH` spec): one source of household data for the whole project.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gateway.negotiation.cooperative.agent import AgentSpec
from gateway.negotiation.cooperative.battery import BatterySpec

START = 1775433600.0  # 2026-04-06 00:00 UTC: a spring week with both surplus and deficit days
STEP_S = 900.0


def net_demand_kwh(profile: str, start: float, n: int, step_s: float = STEP_S) -> np.ndarray:
    """Net demand (load - PV) in kWh per period from a meter_sim profile spec."""
    from meter_sim.profiles import parse_profile

    load_w, pv_w = parse_profile(profile).series(start, n, step_s)
    return (np.asarray(load_w) - np.asarray(pv_w)) * (step_s / 3600.0) / 1000.0


def case1() -> list[AgentSpec]:
    """Table 3: two agents; rates 1.3 kW charge / 3.3 kW discharge, degradation 0.04 %."""
    return [
        AgentSpec(
            "A",
            "household:seed=11,pv_kwp=6",
            BatterySpec.round_trip(0.9, 0.0004, capacity_kwh=6.8),
            0.33,
            0.67,
            0.52,
        ),
        AgentSpec(
            "B",
            "household:seed=12,pv_kwp=3",
            BatterySpec.round_trip(0.8, 0.0004, capacity_kwh=7.0),
            0.71,
            0.29,
            0.50,
        ),
    ]


# Table 4: (aspiration quantile, λ1, λ2, round-trip efficiency, degradation share per period)
TABLE4: tuple[tuple[float, float, float, float, float], ...] = (
    (0.70, 0.33, 0.67, 0.90, 0.0004),
    (0.70, 0.67, 0.33, 0.90, 0.0004),
    (0.60, 0.33, 0.67, 0.85, 0.0002),
    (0.60, 0.67, 0.33, 0.80, 0.0002),
    (0.75, 0.33, 0.67, 0.90, 0.0002),
    (0.75, 0.67, 0.33, 0.90, 0.0004),
    (0.80, 0.33, 0.67, 0.85, 0.0004),
    (0.80, 0.67, 0.33, 0.80, 0.0002),
    (0.85, 0.33, 0.67, 0.75, 0.0002),
)
PV_KWP = (6.0, 5.0, 3.0, 6.5, 4.0, 3.5, 5.5, 4.5, 2.5)


def case2() -> list[AgentSpec]:
    """Table 4: nine agents, 7 kWh batteries, heterogeneous PV."""
    out = []
    for i, (quant, l1, l2, eff, deg) in enumerate(TABLE4):
        out.append(
            AgentSpec(
                str(i + 1),
                f"household:seed={i + 1},pv_kwp={PV_KWP[i]}",
                BatterySpec.round_trip(eff, deg, capacity_kwh=7.0),
                l1,
                l2,
                quant,
            )
        )
    return out


def case3(n: int = 100, seed: int = 0) -> list[AgentSpec]:
    """Case 2's agents copied to n with small variances of load and PV (section 5.3)."""
    base = case2()
    rng = np.random.default_rng([seed, 3])
    out = []
    for k in range(n):
        b = base[k % len(base)]
        i = k % len(base)
        scale = 1.0 + 0.05 * float(rng.standard_normal())
        pv = PV_KWP[i] * (1.0 + 0.05 * float(rng.standard_normal()))
        prof = f"household:seed={i + 1},pv_kwp={pv:.3f},scale={max(scale, 0.5):.3f}"
        out.append(replace(b, name=f"{k + 1}", profile=prof))
    return out


def case(number: int) -> list[AgentSpec]:
    """Agents of Case 1, 2 or 3."""
    if number == 1:
        return case1()
    if number == 2:
        return case2()
    if number == 3:
        return case3()
    raise ValueError(f"unknown case {number}: choose 1, 2 or 3")
