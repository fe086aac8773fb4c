"""Seasonal profile plus damped exponential smoothing of the residual.

A household's net demand repeats by time of day (cooking peaks, PV at noon) and drifts with
weather and season. The model keeps one value per slot of the day, a weighted mean over the days
of history in which a day `age` days old weighs (1 - alpha) ** age (recent days count more), and forecasts the profile plus the latest deviation from
it, decaying by `damping` per step: a cloudy morning makes the next hours cloudier, not next week.
Pure numpy; missing steps (NaN) are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gridpact.core.clock import TimeSource

DAY_S = 86400


class _History(Protocol):
    def net_power(self, start: int, steps: int, step_s: int) -> np.ndarray: ...


def slots_per_day(step_s: int) -> int:
    if step_s <= 0 or DAY_S % step_s:
        raise ValueError(f"step_s={step_s} must divide a day (86400 s)")
    return DAY_S // step_s


@dataclass
class SeasonalSmoother:
    """Fit on a series that starts at `start` (Unix s) with `step_s` spacing; predict any later steps."""

    step_s: int
    alpha: float = 0.1
    damping: float = 0.8
    profile: np.ndarray = field(default_factory=lambda: np.zeros(0))
    residual: float = 0.0
    end: int = 0
    observed: int = 0  # finite steps it was fitted on: 0 means its forecast is a guess of 0 W

    def fit(self, series: np.ndarray, start: int) -> SeasonalSmoother:
        n_slots = slots_per_day(self.step_s)
        values = np.asarray(series, dtype=np.float64)
        offset = (start // self.step_s) % n_slots
        slots = (offset + np.arange(len(values))) % n_slots
        finite = np.isfinite(values)
        mean = float(values[finite].mean()) if finite.any() else 0.0
        # one row per day, aligned on slot 0; a day `age` days old weighs (1 - alpha) ** age
        rows = -(-(offset + len(values)) // n_slots)
        grid = np.full(rows * n_slots, np.nan)
        grid[offset : offset + len(values)] = values
        grid = grid.reshape(rows, n_slots)
        weights = ((1 - self.alpha) ** np.arange(rows - 1, -1, -1))[:, None] * np.isfinite(grid)
        total = weights.sum(axis=0)
        weighted = np.where(np.isfinite(grid), grid, 0.0) * weights
        with np.errstate(invalid="ignore", divide="ignore"):
            self.profile = np.where(total > 0, weighted.sum(axis=0) / np.where(total > 0, total, 1), mean)
        residual = 0.0
        for i in np.flatnonzero(finite)[-n_slots // 4 :]:
            residual = 0.5 * residual + 0.5 * float(values[i] - self.profile[slots[i]])
        last = int(np.flatnonzero(finite)[-1]) if finite.any() else -1
        self.residual = residual
        self.end = start + (last + 1) * self.step_s
        self.observed = int(finite.sum())
        return self

    def predict(self, start: int, steps: int) -> np.ndarray:
        """Forecast for `steps` steps from `start` (at or after the end of the fitted data)."""
        if start % self.step_s:
            raise ValueError("start must be a multiple of step_s")
        n_slots = len(self.profile)
        idx = start // self.step_s + np.arange(steps)
        ahead = np.maximum(idx - self.end // self.step_s, 0)
        return self.profile[idx % n_slots] + self.residual * self.damping ** (ahead + 1)


def persistence(series: np.ndarray, steps: int) -> np.ndarray:
    """Naive baseline: the last observed value, held."""
    finite = series[np.isfinite(series)]
    return np.full(steps, float(finite[-1]) if len(finite) else 0.0)


def seasonal_naive(series: np.ndarray, step_s: int, steps: int) -> np.ndarray:
    """Naive baseline: the same slot one day earlier, for a forecast starting where `series` ends."""
    n_slots = slots_per_day(step_s)
    last_day = np.asarray(series[-n_slots:], dtype=np.float64)
    fill = float(np.nanmean(series)) if np.isfinite(series).any() else 0.0
    last_day = np.nan_to_num(last_day, nan=fill)
    return last_day[np.arange(steps) % len(last_day)]


REFRESH_STEPS = 4  # trailing steps re-read at each refit: they may have been incomplete before


class Forecaster:
    """Net demand over the planning horizon (seam with gateway-trade), refitted at most once a step.

    The history is read from the store once, then only its newest steps at each refit, so a month
    of 10-second readings is scanned once per start rather than every 15 minutes.
    """

    def __init__(
        self,
        history: _History,
        clock: TimeSource,
        history_days: int = 28,
        alpha: float = 0.1,
        damping: float = 0.8,
    ) -> None:
        self.history = history
        self.clock = clock
        self.history_days = history_days
        self.alpha = alpha
        self.damping = damping
        self._cache: tuple[int, int, SeasonalSmoother] | None = None
        self._series: dict[int, tuple[int, np.ndarray]] = {}  # step_s -> (start, net power per step)

    def series(self, start: int, end: int, step_s: int) -> np.ndarray:
        """Net power per step over [start, end), reusing what was read before."""
        n = (end - start) // step_s
        known = self._series.get(step_s)
        if known is None or known[0] > start or known[0] + len(known[1]) * step_s < start:
            values = self.history.net_power(start, n, step_s)
        else:
            old_start, old = known
            keep = max(0, min(len(old) - REFRESH_STEPS, n + (start - old_start) // step_s))
            kept = old[(start - old_start) // step_s : keep]
            fresh_start = start + len(kept) * step_s
            fresh = self.history.net_power(fresh_start, (end - fresh_start) // step_s, step_s)
            values = np.concatenate((kept, fresh))
        self._series[step_s] = (start, values)
        return values

    def model(self, step_s: int) -> SeasonalSmoother:
        """The model fitted on history up to the last whole step before now."""
        end = int(self.clock.now()) // step_s * step_s
        if self._cache and self._cache[:2] == (end, step_s):
            return self._cache[2]
        start = end - self.history_days * slots_per_day(step_s) * step_s
        model = SeasonalSmoother(step_s, self.alpha, self.damping).fit(self.series(start, end, step_s), start)
        self._cache = (end, step_s, model)
        return model

    def net_demand(self, start: int, steps: int, step_s: int) -> np.ndarray:
        """Mean net power (W, positive = demand from the grid) for each of `steps` steps from `start`."""
        if steps < 0:
            raise ValueError("steps must not be negative")
        aligned = start // step_s * step_s
        return self.model(step_s).predict(aligned, steps)

    def next_step(self, start: int, step_s: int) -> float | None:
        """The forecast for the step at `start`, or None when no history backs one."""
        model = self.model(step_s)
        if not model.observed:
            return None
        value = float(model.predict(start // step_s * step_s, 1)[0])
        return value if math.isfinite(value) else None
