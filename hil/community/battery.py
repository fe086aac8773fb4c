"""Individual battery control: greedy self-consumption, vectorised over households.

The battery acts on its own household's net power only; peer-to-peer trades are virtual
(settled on metered energy), so the physical flows are the same with or without the market.
That is what makes "individual battery control" a fair baseline for the market's gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatteryParams:
    """Per-household arrays: capacity (kWh), power limit (kW), one-way efficiency, SoC limits."""

    capacity_kwh: np.ndarray
    power_kw: np.ndarray
    efficiency: float = 0.95
    soc_min: float = 0.10
    soc_max: float = 0.95


def grid_flows(
    load_w: np.ndarray, pv_w: np.ndarray, step_s: float, battery: BatteryParams | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid import and export energy (kWh) per household and step, and the SoC (kWh) after each step.

    Arrays are (households, steps). Without a battery the grid takes the whole net power.
    """
    net_kwh = (load_w - pv_w) * step_s / 3.6e6
    soc = np.zeros_like(net_kwh)
    if battery is None:
        return np.clip(net_kwh, 0, None), np.clip(-net_kwh, 0, None), soc
    cap = battery.capacity_kwh
    lo, hi = cap * battery.soc_min, cap * battery.soc_max
    step_limit = battery.power_kw * step_s / 3600.0
    eff = battery.efficiency
    state = lo.copy()
    grid = np.empty_like(net_kwh)
    for k in range(net_kwh.shape[1]):
        net = net_kwh[:, k]
        # surplus charges the battery (losses on the way in), deficit discharges it (losses on the way out)
        charge = np.minimum(np.minimum(np.clip(-net, 0, None), step_limit), (hi - state) / eff)
        discharge = np.minimum(np.minimum(np.clip(net, 0, None), step_limit), (state - lo) * eff)
        charge = np.clip(charge, 0, None)
        discharge = np.clip(discharge, 0, None)
        state = state + charge * eff - discharge / eff
        grid[:, k] = net + charge - discharge
        soc[:, k] = state
    return np.clip(grid, 0, None), np.clip(-grid, 0, None), soc
