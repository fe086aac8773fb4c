"""Net-demand forecasting from the household's own metered history."""

from gateway.forecast.model import Forecaster, SeasonalSmoother

__all__ = ["Forecaster", "SeasonalSmoother"]
