"""Forecast error on held-out days of a power series, next to naive baselines.

Rolling origin: at each origin in the test days the model is fitted on everything before it and
forecasts the horizon; MAE and RMSE are taken over all (origin, step) pairs, for the model, for
persistence (last value held) and for the seasonal naive (same time yesterday).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.forecast.model import SeasonalSmoother, persistence, seasonal_naive, slots_per_day


@dataclass(frozen=True)
class Score:
    name: str
    mae_w: float
    rmse_w: float


def evaluate(
    series: np.ndarray,
    start: int,
    step_s: int,
    test_days: int,
    horizon: int,
    alpha: float = 0.1,
    damping: float = 0.8,
    origin_every: int = 4,
) -> list[Score]:
    """Scores of the model and both baselines over the last `test_days` of `series`."""
    n_slots = slots_per_day(step_s)
    first = len(series) - test_days * n_slots
    if first < n_slots:
        raise ValueError("need at least one day of training data before the test days")
    errors: dict[str, list[np.ndarray]] = {"model": [], "persistence": [], "seasonal_naive": []}
    for origin in range(first, len(series) - horizon + 1, origin_every):
        train, actual = series[:origin], series[origin : origin + horizon]
        t = start + origin * step_s
        model = SeasonalSmoother(step_s, alpha, damping).fit(train, start)
        errors["model"].append(model.predict(t, horizon) - actual)
        errors["persistence"].append(persistence(train, horizon) - actual)
        errors["seasonal_naive"].append(seasonal_naive(train, step_s, horizon) - actual)
    scores = []
    for name, errs in errors.items():
        e = np.concatenate(errs)
        scores.append(Score(name, float(np.mean(np.abs(e))), float(np.sqrt(np.mean(e**2)))))
    return scores
