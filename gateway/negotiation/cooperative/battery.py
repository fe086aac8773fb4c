"""Battery criteria of Chakraborty, Baarslag and Kaisers (Eq. 7, 8 and 16) over the greedy dispatch of Eq. 1-2.

The model itself (BatterySpec, step, simulate) is gridpact.core.battery, the one every simulation runs;
it is re-exported here for the study's modules.

All energies are kWh per period (Δt = 15 min by default). The demand `d` a battery sees is the
net demand after exchanges (Eq. 4 without the battery): d > 0 is a deficit, d < 0 a surplus.
The "naive battery scheduling" of the paper is the greedy rule: absorb surplus, cover deficit,
within the power and state-of-charge limits.

One step, with x the state of charge and εb the constant degradation:

    surplus: u = min(-d, Pc·Δt), raw = x - εb + ηc·u
    deficit: v = min(d, Pd·Δt),  raw = x - εb - v/ηd
    x' = clip(raw, xmin, xmax)
    y  = x' - x + εb                  (energy into the cells, degradation excluded)
    e  = y/ηc if y >= 0 else y·ηd      (battery power Pb·Δt on the household side, + = charge)
    res = d + e                        (Eq. 4: residual traded with the external market)

Clipping at the floor means the battery management tops the cells up against degradation
(booked as a charge). Between clips the state moves by the "free increment"
Δ(d) = raw - x, which does not depend on x: the fast path in `fast.py` relies on this.
"""

from __future__ import annotations

import numpy as np

from gridpact.core.battery import (
    BatteryArrays,
    BatterySpec,
    FloatArray,
    cell_to_grid,
    free_increment,
    simulate,
    step,
)

__all__ = [
    "BatteryArrays",
    "BatterySpec",
    "cell_to_grid",
    "free_increment",
    "simulate",
    "step",
    "theta",
    "xi",
]


def theta(x_start: FloatArray, x_end: FloatArray, p: BatteryArrays) -> FloatArray:
    """Θ of Eq. 7: household-side energy that brings the state back to where it started."""
    return cell_to_grid(x_start - x_end, p)


def xi(
    demand: FloatArray,
    spec: BatterySpec,
    lam1: float,
    lam2: float,
    x0: float,
    use_battery: bool = True,
) -> float:
    """Realised performance ξ of Eq. 16 (higher is better: the weighted criteria, negated).

    `demand` already holds the exchanges (s2) or not (s0, s1); without a battery (s0) the
    flexibility criterion is zero and the residual is the demand itself.
    """
    d = np.asarray(demand, dtype=np.float64)
    if not use_battery:
        return -lam2 * float(np.abs(d).sum())
    xs, es, res = simulate(x0, d, spec)
    p = BatteryArrays.stack([spec])
    th = float(theta(np.asarray(xs[0]), np.asarray(xs[-1]), p).reshape(()))
    return -(lam1 * (float(es.sum()) + th) + lam2 * float(np.abs(res).sum()))
