"""gridpact.core.battery: the one battery model; its float step agrees with its array step, and every user steps it."""

from __future__ import annotations

import numpy as np

from gridpact.core.battery import BatteryArrays, BatterySpec, step, step1
from meter_sim.profiles import Battery


def test_float_step_agrees_with_array_step() -> None:
    rng = np.random.default_rng(7)
    specs = [
        BatterySpec(
            capacity_kwh=float(rng.uniform(0.5, 12)),
            soc_min=0.1,
            soc_max=float(rng.uniform(0.5, 1.0)),
            charge_kw=float(rng.uniform(0.1, 5)),
            discharge_kw=float(rng.uniform(0.1, 5)),
            eta_charge=float(rng.uniform(0.8, 1.0)),
            eta_discharge=float(rng.uniform(0.8, 1.0)),
            degradation=float(rng.uniform(0, 0.004)),
        )
        for _ in range(64)
    ]
    p = BatteryArrays.stack(specs)
    x = np.array([rng.uniform(0, s.capacity_kwh) for s in specs])
    for _ in range(20):
        d = rng.uniform(-2, 2, len(specs))
        xn, e, _ = step(x, d, p)
        for i, s in enumerate(specs):
            x1, e1 = step1(x[i], d[i], s.xmin, s.xmax, s.uc, s.ud, s.eta_charge, s.eta_discharge, s.eps)
            assert abs(x1 - xn[i]) < 1e-12 and abs(e1 - e[i]) < 1e-12
        x = xn


def test_meter_battery_golden_vectors() -> None:
    # 10 kWh, 3 kW, half full: charge limited by power, discharge by power, then by the 10 % floor
    b = Battery(10.0, 3000.0)
    assert b.decide(5000.0, 60.0) == -3000.0 and b.decide(-1000.0, 60.0) == 1000.0
    b.soc_kwh = 1.0 + 0.5 / 0.95**0.5
    assert abs(b.decide(-5000.0, 3600.0) - 500.0) < 1e-9  # 0.5 kWh of cells above the floor, less the loss
    b.soc_kwh = 0.5  # below the floor after a long step: no top-up from the grid
    assert b.decide(-1000.0, 60.0) == 0.0
    b.soc_kwh = 10.0
    assert b.decide(2000.0, 60.0) == 0.0
