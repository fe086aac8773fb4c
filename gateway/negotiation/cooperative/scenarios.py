"""Net-demand scenarios from the Gaussian process of Eq. 10-14 (Chakraborty, Baarslag and Kaisers, section 3.3).

The paper names two ingredients and no numbers: a Gaussian error for each lag l of the
planning horizon, and a Gaussian link between consecutive periods. We read that as a
stationary AR(1) process over the lag whose marginal standard deviation grows with the lag:

    d(0, s) = σ_0 · z_0
    d(l, s) = ρ · d(l-1, s) · σ_l/σ_(l-1) + sqrt(1 - ρ²) · σ_l · z_l,   σ_l = σ_w · (a + (1-a)·sqrt(l/w))

which is a Gaussian process with Var d(l) = σ_l² and corr(d(l-1), d(l)) = ρ. The forecast
("pseudo-prediction", end of section 3.3) is the real net demand plus one draw of the same
process; the |S| scenarios add further draws to the forecast (Eq. 10).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScenarioModel:
    """Parameters of the error process (kWh per period)."""

    sigma_w: float = 0.05
    rho: float = 0.8
    floor: float = 0.35
    n_scenarios: int = 100

    def __post_init__(self) -> None:
        if not (self.sigma_w >= 0 and -1 < self.rho < 1 and 0 <= self.floor <= 1 and self.n_scenarios >= 1):
            raise ValueError(f"scenario model out of range: {self}")

    def sigmas(self, w: int) -> np.ndarray:
        """Standard deviation per lag l = 0..w-1."""
        lag = np.arange(w, dtype=np.float64)
        return self.sigma_w * (self.floor + (1.0 - self.floor) * np.sqrt(lag / max(w - 1, 1)))

    def sample(self, rng: np.random.Generator, n: int, w: int) -> np.ndarray:
        """n draws of the error over a horizon of w periods, shape (n, w).

        With v = d/σ the recursion is the unit AR(1) v_l = ρ·v_(l-1) + sqrt(1-ρ²)·z_l, v_0 = z_0,
        i.e. v = z·Kᵀ with K[l, m] = ρ^(l-m)·(1 if m == 0 else sqrt(1-ρ²)): one matrix
        product instead of a loop over the lag.
        """
        z = rng.standard_normal((n, w))
        # einsum's own loop: no BLAS thread pool, which costs more than it saves at this size
        return np.einsum("nm,lm->nl", z, _ar1_kernel(self.rho, w)) * self.sigmas(w)[None, :]


@functools.lru_cache(maxsize=8)
def _ar1_kernel(rho: float, w: int) -> np.ndarray:
    lag = np.arange(w)
    diff = lag[:, None] - lag[None, :]
    k = np.where(diff >= 0, rho ** np.maximum(diff, 0), 0.0)
    k[:, 1:] *= np.sqrt(1.0 - rho**2)
    return k


def period_rng(seed: int, agent: int, t: int, stream: int) -> np.random.Generator:
    """Independent, reproducible stream per (run seed, agent, period, purpose)."""
    return np.random.default_rng([int(seed), int(agent), int(t), int(stream)])


def forecast(real: np.ndarray, model: ScenarioModel, rng: np.random.Generator) -> np.ndarray:
    """The agent's point forecast of its net demand over the window: real + one error draw."""
    return np.asarray(real, dtype=np.float64) + model.sample(rng, 1, real.size)[0]


def scenarios(point: np.ndarray, model: ScenarioModel, rng: np.random.Generator) -> np.ndarray:
    """|S| equiprobable net-demand scenarios around a point forecast (Eq. 10), shape (S, w)."""
    p = np.asarray(point, dtype=np.float64)
    return p[None, :] + model.sample(rng, model.n_scenarios, p.size)
