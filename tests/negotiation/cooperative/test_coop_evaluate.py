"""Fast and torch paths against the reference path and the literal Algorithm 3 oracle."""

from __future__ import annotations

import numpy as np
import pytest
from coop_oracle import calm_household_batch, literal_expected_utility

from gateway.negotiation.cooperative import fast
from gateway.negotiation.cooperative.battery import BatterySpec
from gateway.negotiation.cooperative.bench import sample_batch
from gateway.negotiation.cooperative.evaluate import EvalBatch, reference

TOL = 1e-9  # kWh-weighted utility; the paths differ only by float rounding


def small_batch(seed: int, w: int = 16, s: int = 4, nq: int = 5) -> EvalBatch:
    """Demands large against small batteries, so that lanes hit both bounds and the rate limits."""
    rng = np.random.default_rng(seed)
    specs = (
        BatterySpec(capacity_kwh=1.5, eta_charge=0.95, eta_discharge=0.9, degradation=0.002),
        BatterySpec(capacity_kwh=3.0, eta_charge=0.9, eta_discharge=0.85, degradation=0.0),
        BatterySpec(capacity_kwh=0.8, charge_kw=2.0, discharge_kw=2.0, degradation=0.004),
    )
    demand = rng.normal(0.0, 0.4, (3, s, w)) + np.sin(np.arange(w) / 2.0) * 0.3
    return EvalBatch(
        demand,
        np.array([0.5, 2.7, 0.16]),
        specs,
        np.array([0.3, 0.7, 0.5]),
        np.array([0.7, 0.3, 0.5]),
        np.linspace(-0.6, 0.6, nq)[None, :] * np.array([[1.0], [-1.0], [1.0]]),
        np.arange(1, w),
    )


@pytest.mark.parametrize("seed", range(6))
def test_coop_fast_and_reference_match_the_literal_oracle(seed: int) -> None:
    batch = small_batch(seed)
    ref = reference(batch)
    got = fast.evaluate(batch)
    a, _, _, nq, nt = batch.shape
    for i in range(a):
        scen = [list(row) for row in batch.demand[i]]
        b = batch.batteries[i]
        for iq in range(nq):
            for it in range(nt):
                want = literal_expected_utility(
                    scen,
                    float(batch.x0[i]),
                    b,
                    float(batch.lam1[i]),
                    float(batch.lam2[i]),
                    float(batch.q[i, iq]),
                    int(batch.tau[it]),
                )
                assert abs(ref[i, iq, it] - want) < TOL
                assert abs(got[i, iq, it] - want) < TOL


def test_coop_fast_matches_reference_at_full_size() -> None:
    """The paper's grid: |S| = 100, w = 96, |Q| = 15, |T| = 94, on real household data."""
    batch = sample_batch(2)
    assert batch.shape == (2, 100, 96, 15, 94)
    ref = reference(batch)
    got = fast.evaluate(batch)
    assert np.max(np.abs(ref - got)) < TOL
    # the space is not flat: contracts do change utilities
    assert np.ptp(got[0]) > 1e-3


def test_coop_fast_handles_a_return_at_the_last_period() -> None:
    batch = small_batch(9, w=8)
    assert int(batch.tau.max()) == 7
    assert np.max(np.abs(reference(batch) - fast.evaluate(batch))) < TOL


def test_coop_bad_batch_is_rejected() -> None:
    b = small_batch(0)
    with pytest.raises(ValueError, match="return offsets"):
        EvalBatch(b.demand, b.x0, b.batteries, b.lam1, b.lam2, b.q, np.array([0, 3]))
    with pytest.raises(ValueError, match="shapes"):
        EvalBatch(b.demand, b.x0[:2], b.batteries, b.lam1, b.lam2, b.q, b.tau)
    bad = b.demand.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        EvalBatch(bad, b.x0, b.batteries, b.lam1, b.lam2, b.q, b.tau)


def test_coop_risk_aversion_discounts_uncertain_loans_only() -> None:
    b = sample_batch(2)
    plain = fast.evaluate(b)
    risky = EvalBatch(b.demand, b.x0, b.batteries, b.lam1, b.lam2, b.q, b.tau, risk=1.0)
    got = fast.evaluate(risky)
    assert np.max(np.abs(got - reference(risky))) < TOL
    z = risky.zero_column()
    assert z == 7
    assert np.array_equal(got[:, z], plain[:, z])  # no exchange carries no exchange risk
    assert np.all(got <= plain + 1e-12) and np.any(got < plain - 1e-6)
    with pytest.raises(ValueError, match="risk"):
        EvalBatch(b.demand, b.x0, b.batteries, b.lam1, b.lam2, b.q, b.tau, risk=-1.0)


def test_coop_fast_matches_reference_when_the_battery_never_clips() -> None:
    """A calm household and a large battery: lanes run free for the whole window (long searches)."""
    batch = calm_household_batch()
    assert np.max(np.abs(reference(batch) - fast.evaluate(batch))) < TOL


def test_coop_fast_matches_the_oracle_when_lanes_sit_at_the_bounds() -> None:
    """Demands far beyond the rates: most lanes sit at a bound after the return (the table path)."""
    rng = np.random.default_rng(11)
    w, s = 12, 3
    spec = BatterySpec(capacity_kwh=1.0, charge_kw=4.0, discharge_kw=4.0, degradation=0.003)
    demand = rng.choice([-3.0, 3.0], (1, s, w)) + rng.normal(0.0, 0.05, (1, s, w))
    batch = EvalBatch(
        demand,
        np.array([0.9]),
        (spec,),
        np.array([0.6]),
        np.array([0.4]),
        np.array([[-0.5, 0.0, 0.5]]),
        np.arange(1, w),
    )
    got = fast.evaluate(batch)
    assert np.max(np.abs(reference(batch) - got)) < TOL
    for iq in range(3):
        for it in range(w - 1):
            want = literal_expected_utility(
                [list(row) for row in demand[0]],
                0.9,
                spec,
                0.6,
                0.4,
                float(batch.q[0, iq]),
                int(batch.tau[it]),
            )
            assert abs(got[0, iq, it] - want) < TOL
