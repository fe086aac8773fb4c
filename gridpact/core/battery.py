"""The one battery model every simulation runs: greedy dispatch, after Chakraborty, Baarslag and Kaisers (Eq. 1-2).

A home battery run for self-consumption absorbs surplus and covers deficit within its power and
state-of-charge limits. The software meters (meter_sim's households), the community simulator's
engine (hil.community.battery) and the cooperative energy-loan study
(gateway.negotiation.cooperative) all step this model; only their parameters differ.

All energies are kWh per period. The demand `d` the battery sees is the household's net demand
(d > 0 a deficit, d < 0 a surplus). One step, with x the state of charge and εb the constant
degradation:

    surplus: u = min(-d, Pc·Δt), raw = x - εb + ηc·u
    deficit: v = min(d, Pd·Δt),  raw = x - εb - v/ηd
    x' = clip(raw, xmin, xmax)
    y  = x' - x + εb                  (energy into the cells, degradation excluded)
    e  = y/ηc if y >= 0 else y·ηd      (battery energy on the household side, + = charge)
    res = d + e                        (what the grid, or the market, sees)

Clipping at the floor means the battery management tops the cells up against degradation
(booked as a charge). Between clips the state moves by the "free increment"
Δ(d) = raw - x, which does not depend on x: the cooperative study's fast path relies on this.
`step` works on arrays (a batch of batteries); `step1` is the same step on plain floats, for a
single meter's battery stepped once a reading (a test checks that the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FloatArray = np.ndarray

# The home battery of a simulated household (the software meters and the community engine alike):
# 10 %..100 % of its capacity, 95 % round trip (half the loss each way), half full at the start,
# charging and discharging at half its capacity per hour, at most 5 kW.
HOME_SOC_MIN = 0.10
HOME_SOC_MAX = 1.0
HOME_ROUND_TRIP = 0.95
HOME_SOC_START = 0.5


def home_power_kw(capacity_kwh: float) -> float:
    """The power limit of a home battery of this size, both ways (kW)."""
    return min(capacity_kwh / 2.0, 5.0)


@dataclass(frozen=True)
class BatterySpec:
    """A residential battery: capacity, limits, rates, efficiencies and degradation."""

    capacity_kwh: float = 7.0
    soc_min: float = 0.2
    soc_max: float = 0.9
    charge_kw: float = 1.3
    discharge_kw: float = 3.3
    eta_charge: float = 0.9**0.5
    eta_discharge: float = 0.9**0.5
    degradation: float = 0.0004
    dt_h: float = 0.25

    def __post_init__(self) -> None:
        ok = (
            self.capacity_kwh > 0
            and 0.0 <= self.soc_min < self.soc_max <= 1.0
            and self.charge_kw >= 0
            and self.discharge_kw >= 0
            and 0 < self.eta_charge <= 1
            and 0 < self.eta_discharge <= 1
            and 0 <= self.degradation < 0.1
            and self.dt_h > 0
        )
        if not ok:
            raise ValueError(f"battery parameters out of range: {self}")

    @classmethod
    def round_trip(cls, efficiency: float, degradation: float, **kw: float) -> BatterySpec:
        """Tables 3-4 give one (round-trip) efficiency: split it evenly between charge and discharge."""
        eta = float(efficiency) ** 0.5
        return cls(eta_charge=eta, eta_discharge=eta, degradation=float(degradation), **kw)

    @property
    def xmin(self) -> float:
        return self.soc_min * self.capacity_kwh

    @property
    def xmax(self) -> float:
        return self.soc_max * self.capacity_kwh

    @property
    def uc(self) -> float:
        """Most energy accepted from the household in one period (kWh)."""
        return self.charge_kw * self.dt_h

    @property
    def ud(self) -> float:
        """Most energy delivered to the household in one period (kWh)."""
        return self.discharge_kw * self.dt_h

    @property
    def eps(self) -> float:
        """Degradation per period (kWh): the paper's εb, a share of the capacity."""
        return self.degradation * self.capacity_kwh


@dataclass(frozen=True)
class BatteryArrays:
    """Battery parameters as arrays broadcastable against a batch of lanes (leading axes)."""

    xmin: FloatArray
    xmax: FloatArray
    uc: FloatArray
    ud: FloatArray
    etac: FloatArray
    etad: FloatArray
    eps: FloatArray

    @classmethod
    def stack(cls, specs: list[BatterySpec], shape_tail: int = 0) -> BatteryArrays:
        """One value per battery, shaped (n, 1, ..., 1) with `shape_tail` trailing unit axes."""

        def col(values: list[float]) -> FloatArray:
            return np.asarray(values, dtype=np.float64).reshape((len(specs),) + (1,) * shape_tail)

        return cls(
            xmin=col([b.xmin for b in specs]),
            xmax=col([b.xmax for b in specs]),
            uc=col([b.uc for b in specs]),
            ud=col([b.ud for b in specs]),
            etac=col([b.eta_charge for b in specs]),
            etad=col([b.eta_discharge for b in specs]),
            eps=col([b.eps for b in specs]),
        )

    def index(self, idx: FloatArray) -> BatteryArrays:
        """Parameters gathered along the first axis (e.g. one row per lane)."""
        return BatteryArrays(*(np.asarray(getattr(self, f))[idx] for f in self.__dataclass_fields__))


def free_increment(d: FloatArray, p: BatteryArrays) -> FloatArray:
    """State change of an unclipped step for demand d (independent of the state)."""
    u = np.minimum(np.maximum(-d, 0.0), p.uc)
    v = np.minimum(np.maximum(d, 0.0), p.ud)
    return p.etac * u - v / p.etad - p.eps


def cell_to_grid(y: FloatArray, p: BatteryArrays) -> FloatArray:
    """Household-side battery energy for a change y of the cells (charging costs 1/ηc, discharge gives ηd)."""
    return np.where(y >= 0.0, y / p.etac, y * p.etad)


def step(x: FloatArray, d: FloatArray, p: BatteryArrays) -> tuple[FloatArray, FloatArray, FloatArray]:
    """One greedy battery period: (next state, battery energy e, |residual|)."""
    xn = np.clip(x + free_increment(d, p), p.xmin, p.xmax)
    e = cell_to_grid(xn - x + p.eps, p)
    return xn, e, np.abs(d + e)


def step1(
    x: float,
    d: float,
    xmin: float,
    xmax: float,
    uc: float,
    ud: float,
    etac: float,
    etad: float,
    eps: float = 0.0,
) -> tuple[float, float]:
    """`step` on plain floats for one battery: (next state, battery energy e, + = charge).

    Unclipped, e is the energy asked for to the letter (a power-limited charge is the limit exactly)."""
    if d < 0:
        e = min(-d, uc)
        raw = x - eps + etac * e
    else:
        e = -min(d, ud)
        raw = x - eps + e / etad
    if xmin <= raw <= xmax:
        return raw, e
    xn = min(max(raw, xmin), xmax)
    y = xn - x + eps
    return xn, (y / etac if y >= 0.0 else y * etad)


def simulate(x0: float, demand: FloatArray, spec: BatterySpec) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Greedy dispatch over a whole profile: (states len n+1, battery energy e, residual res)."""
    p = BatteryArrays.stack([spec])
    p1 = BatteryArrays(*(np.asarray(getattr(p, f)).reshape(()) for f in p.__dataclass_fields__))
    d = np.asarray(demand, dtype=np.float64)
    xs = np.empty(d.size + 1)
    es = np.empty(d.size)
    res = np.empty(d.size)
    xs[0] = x0
    for k in range(d.size):
        xn, e, _ = step(np.asarray(xs[k]), np.asarray(d[k]), p1)
        xs[k + 1], es[k] = float(xn), float(e)
        res[k] = d[k] + es[k]
    return xs, es, res
