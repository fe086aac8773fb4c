"""Individual battery control: greedy self-consumption, vectorised over households (gridpact.core.battery's model).

The battery acts on its own household's net power only; peer-to-peer trades are virtual
(settled on metered energy), so the physical flows are the same with or without the market.
That is what makes "individual battery control" a fair baseline for the market's gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridpact.core.battery import (
    HOME_ROUND_TRIP,
    HOME_SOC_MAX,
    HOME_SOC_MIN,
    HOME_SOC_START,
    BatteryArrays,
    home_power_kw,
    step,
)


@dataclass(frozen=True)
class BatteryParams:
    """Per-household arrays: capacity (kWh), power limit (kW); one-way efficiency, SoC limits and start (None: the floor).

    `home(capacity)` gives the software meters' home battery (gridpact.core.battery), so the engine-only
    and the full-stack simulations run the same batteries."""

    capacity_kwh: np.ndarray
    power_kw: np.ndarray
    efficiency: float = 0.95
    soc_min: float = 0.10
    soc_max: float = 0.95
    soc_start: float | None = None

    @classmethod
    def home(cls, capacity_kwh: np.ndarray) -> BatteryParams:
        cap = np.asarray(capacity_kwh, dtype=np.float64)
        power = np.array([home_power_kw(float(c)) for c in cap])
        return cls(cap, power, HOME_ROUND_TRIP**0.5, HOME_SOC_MIN, HOME_SOC_MAX, HOME_SOC_START)


def grid_flows(
    load_w: np.ndarray,
    pv_w: np.ndarray,
    step_s: float,
    battery: BatteryParams | None,
    reserve: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid import and export energy (kWh) per household and step, and the SoC (kWh) after each step.

    Arrays are (households, steps). Without a battery the grid takes the whole net power. `reserve`
    (households, steps), kWh: the battery discharges no lower than this (nor than its floor); it is
    never charged from the grid to reach it. How a household keeps energy for a demand-response event.
    """
    net_kwh = (load_w - pv_w) * step_s / 3.6e6
    soc = np.zeros_like(net_kwh)
    if battery is None:
        return np.clip(net_kwh, 0, None), np.clip(-net_kwh, 0, None), soc
    cap = battery.capacity_kwh
    limit = battery.power_kw * step_s / 3600.0
    eff = np.full_like(cap, battery.efficiency, dtype=np.float64)
    p = BatteryArrays(
        cap * battery.soc_min, cap * battery.soc_max, limit, limit, eff, eff, np.zeros_like(eff)
    )
    start = battery.soc_min if battery.soc_start is None else battery.soc_start
    state = (cap * start).astype(np.float64)
    grid = np.empty_like(net_kwh)
    for k in range(net_kwh.shape[1]):
        pk = p
        if reserve is not None:
            floor = np.minimum(np.maximum(p.xmin, reserve[:, k]), np.maximum(state, p.xmin))
            pk = BatteryArrays(floor, p.xmax, p.uc, p.ud, p.etac, p.etad, p.eps)
        state, e, _ = step(state, net_kwh[:, k], pk)
        grid[:, k] = net_kwh[:, k] + e
        soc[:, k] = state
    return np.clip(grid, 0, None), np.clip(-grid, 0, None), soc
