"""Battery model (Eq. 1-2), Θ and ξ: golden vectors computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
from coop_oracle import literal_battery

from gateway.negotiation.cooperative.battery import BatteryArrays, BatterySpec, simulate, step, theta, xi

SPEC = BatterySpec(capacity_kwh=10.0, eta_charge=0.9, eta_discharge=0.9, degradation=0.001)
P = BatteryArrays.stack([SPEC])

# (state, demand) -> (next state, battery energy e, |residual|); xmin 2, xmax 9, eps 0.01 kWh
GOLDEN = [
    ((5.0, -1.0), (5.2825, 0.325, 0.675)),  # surplus, charge at the rate limit 1.3 kW x 0.25 h
    ((5.0, 2.0), (5.0 - 0.01 - 0.825 / 0.9, -0.825, 1.175)),  # deficit, discharge rate limit
    ((8.9, -1.0), (9.0, 0.11 / 0.9, 1.0 - 0.11 / 0.9)),  # clipped at 90 %
    ((2.0, 1.0), (2.0, 0.01 / 0.9, 1.0 + 0.01 / 0.9)),  # at 20 %: top-up against degradation
    ((2.5, 0.3), (2.5 - 0.01 - 0.3 / 0.9, -0.3, 0.0)),  # deficit fully covered
    ((5.0, 0.0), (4.99, 0.0, 0.0)),  # idle: degradation only
]


@pytest.mark.parametrize(("given", "want"), GOLDEN)
def test_coop_step_golden(given: tuple[float, float], want: tuple[float, float, float]) -> None:
    xn, e, r = step(np.array([given[0]]), np.array([given[1]]), P)
    assert np.allclose([xn[0], e[0], r[0]], want, atol=1e-12)


def test_coop_limits_hold_over_a_long_random_profile() -> None:
    rng = np.random.default_rng(1)
    d = rng.normal(0.0, 1.0, 2000)
    xs, es, res = simulate(5.0, d, SPEC)
    assert xs.min() >= SPEC.xmin - 1e-12 and xs.max() <= SPEC.xmax + 1e-12
    assert np.all(es <= SPEC.uc / 0.9 + 1e-12) and np.all(es >= -SPEC.ud - 1e-12)
    assert np.allclose(res, d + es)
    sum_pb, sum_res, x_end = literal_battery(5.0, list(d), SPEC)
    assert sum_pb == pytest.approx(es.sum(), abs=1e-9)
    assert sum_res == pytest.approx(np.abs(res).sum(), abs=1e-9)
    assert x_end == pytest.approx(xs[-1], abs=1e-12)


def test_coop_theta_closes_the_cycle() -> None:
    assert theta(np.array(5.0), np.array(4.0), P).item() == pytest.approx(1.0 / 0.9)
    assert theta(np.array(5.0), np.array(6.0), P).item() == pytest.approx(-0.9)


def test_coop_round_trip_losses_are_positive() -> None:
    """Charge then discharge the same energy: the flexibility criterion (Σ Pb + Θ) is a loss."""
    d = np.array([-1.0, -1.0, 1.0, 1.0])
    xs, es, _ = simulate(5.0, d, SPEC)
    loss = es.sum() + theta(np.array(xs[0]), np.array(xs[-1]), P).item()
    assert loss > 0


def test_coop_xi_orders_strategies_on_a_sunny_day() -> None:
    d = np.concatenate([np.full(8, 0.3), np.full(8, -0.3), np.full(8, 0.3)])
    s0 = xi(d, SPEC, 0.5, 0.5, 5.0, use_battery=False)
    s1 = xi(d, SPEC, 0.5, 0.5, 5.0)
    assert s0 == pytest.approx(-0.5 * 0.3 * 24)
    assert s1 > s0


@pytest.mark.parametrize(
    "kw",
    [{"capacity_kwh": 0.0}, {"soc_min": 0.9, "soc_max": 0.2}, {"eta_charge": 0.0}, {"degradation": -1.0}],
)
def test_coop_bad_battery_is_rejected(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="battery"):
        BatterySpec(**kw)
