"""Physical faults for the full-stack run, injected into the software meters' household model."""

from __future__ import annotations

import numpy as np

from meter_sim.profiles import Profile


class TrippedProfile(Profile):
    """A household whose PV inverter is off in given [start, end) windows: it under-delivers what it sold."""

    def __init__(self, inner: Profile, windows: list[tuple[float, float]]) -> None:
        self.inner = inner
        self.windows = windows
        self.spec = inner.spec
        self.seed = inner.seed
        self.battery_kwh = inner.battery_kwh
        self.battery_kw = inner.battery_kw

    def at_times(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        load, pv = self.inner.at_times(t)
        pv = np.array(pv, dtype=np.float64, copy=True)
        for start, end in self.windows:
            pv[(t >= start) & (t < end)] = 0.0
        return load, pv
