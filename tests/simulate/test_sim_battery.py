"""Individual battery control: energy balance, SoC limits, and no battery means the grid takes all."""

from __future__ import annotations

import numpy as np

from hil.community.battery import BatteryParams, grid_flows


def test_without_battery_the_grid_takes_the_net() -> None:
    load = np.array([[1000.0, 200.0, 0.0]])
    pv = np.array([[0.0, 1200.0, 500.0]])
    imp, exp, _ = grid_flows(load, pv, 3600, None)
    assert np.allclose(imp, [[1.0, 0.0, 0.0]]) and np.allclose(exp, [[0.0, 1.0, 0.5]])


def test_battery_shifts_surplus_to_the_evening_within_limits() -> None:
    load = np.array([[0.0, 0.0, 2000.0, 2000.0]] * 2)
    pv = np.array([[3000.0, 3000.0, 0.0, 0.0]] * 2)
    bat = BatteryParams(np.array([10.0, 0.0]), np.array([5.0, 0.0]), efficiency=0.95)
    imp, exp, soc = grid_flows(load, pv, 3600, bat)
    assert np.allclose(imp[1], [0, 0, 2, 2]) and np.allclose(exp[1], [3, 3, 0, 0])  # no battery
    assert exp[0].sum() < 6.0 and imp[0].sum() < 4.0
    assert (soc[0] >= 1.0 - 1e-9).all() and (soc[0] <= 9.5 + 1e-9).all()
    # energy balance: what came from the grid and PV went to the load, the battery and its losses
    stored = soc[0, -1] - 1.0
    losses = (6.0 - exp[0].sum()) - (4.0 - imp[0].sum()) - stored
    assert losses > 0 and losses < 0.15 * 6.0
