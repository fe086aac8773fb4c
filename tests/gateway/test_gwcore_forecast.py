"""The net-demand forecaster: exact on clean seasonal data, better than naive baselines on
held-out meter_sim household days, and served through the seam from the store."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.forecast.evaluate import evaluate
from gateway.forecast.model import SeasonalSmoother, persistence, seasonal_naive, slots_per_day
from meter_sim.profiles import household_series

T0 = 1_767_225_600


def test_pure_daily_pattern_is_forecast_exactly() -> None:
    day = np.sin(np.linspace(0, 2 * np.pi, 96, endpoint=False)) * 1000
    series = np.tile(day, 10)
    model = SeasonalSmoother(900).fit(series, T0)
    assert np.allclose(model.predict(T0 + 10 * 86400, 96), day)


def test_missing_steps_are_skipped() -> None:
    day = np.arange(96, dtype=float)
    series = np.tile(day, 5)
    series[::7] = np.nan
    model = SeasonalSmoother(900).fit(series, T0)
    assert np.allclose(model.predict(T0 + 5 * 86400, 96), day)


def test_offset_start_is_aligned_by_time_of_day() -> None:
    day = np.arange(24, dtype=float)
    series = np.tile(day, 6)[5:]  # starts at 05:00
    model = SeasonalSmoother(3600).fit(series, T0 + 5 * 3600)
    assert np.allclose(model.predict(T0 + 6 * 86400, 24), day)


def test_recent_deviation_decays() -> None:
    series = np.zeros(96 * 7)
    series[-8:] = 500.0  # the last two hours ran 500 W above the profile
    model = SeasonalSmoother(900, damping=0.5).fit(series, T0)
    out = model.predict(T0 + 7 * 86400, 8)
    assert out[0] > 100 and out[-1] < out[0] / 10


def test_baselines() -> None:
    series = np.arange(192, dtype=float)
    assert np.all(persistence(series, 3) == 191)
    assert np.all(seasonal_naive(series, 900, 3) == [96, 97, 98])
    with pytest.raises(ValueError):
        slots_per_day(7)


def test_beats_naive_baselines_on_held_out_household_days() -> None:
    """meter_sim household with PV and battery: 16 days to learn from, 5 held out, 24 h horizon."""
    series = household_series("household:seed=7,pv_kwp=5,battery_kwh=7", T0, 21, 900)
    scores = {s.name: s for s in evaluate(series, T0, 900, test_days=5, horizon=96, origin_every=8)}
    model, naive, persist = scores["model"], scores["seasonal_naive"], scores["persistence"]
    assert model.mae_w < naive.mae_w and model.rmse_w < naive.rmse_w
    assert model.mae_w < 0.7 * persist.mae_w
