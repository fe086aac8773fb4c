"""The cooperative over time: determinism, backends agree, loans repaid, the cases' claims on reduced sizes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gateway.negotiation.cooperative import report
from gateway.negotiation.cooperative.cases import case, case3
from gateway.negotiation.cooperative.scenarios import ScenarioModel
from gateway.negotiation.cooperative.simulation import Settings, run

SMALL = Settings(days=0.25, scenario=ScenarioModel(n_scenarios=10), backend="numpy")


def test_coop_case1_is_deterministic_and_repays_every_loan() -> None:
    a = run(case(1), SMALL)
    b = run(case(1), SMALL)
    assert [s.__dict__ for s in a.sessions] == [s.__dict__ for s in b.sessions]
    assert all(np.array_equal(a.xi[k], b.xi[k]) for k in ("s0", "s1", "s2"))
    periods = SMALL.periods
    assert len(a.sessions) == periods
    assert any(s.agreed for s in a.sessions)
    assert all(s.t + s.tau < periods for s in a.sessions if s.agreed)
    assert np.all(a.xi["s1"] > a.xi["s0"])


def test_coop_backends_give_the_same_run() -> None:
    agents = case(2)[:4]
    fast_run = run(agents, SMALL)
    ref_run = run(agents, replace(SMALL, backend="reference"))
    assert [(s.a, s.b, s.agreed, s.q, s.tau, s.round) for s in fast_run.sessions] == [
        (s.a, s.b, s.agreed, s.q, s.tau, s.round) for s in ref_run.sessions
    ]
    assert np.allclose(fast_run.xi["s2"], ref_run.xi["s2"], atol=1e-9)


def test_coop_two_workers_give_the_same_run() -> None:
    agents = case(2)[:4]
    one = run(agents, SMALL)
    two = run(agents, replace(SMALL, workers=2))
    assert [s.__dict__ for s in one.sessions] == [s.__dict__ for s in two.sessions]


def test_coop_case2_claims_on_a_reduced_run() -> None:
    """Two days, 20 scenarios: s2 dominates s1 for every agent, Nash welfare, learned beats random."""
    settings = Settings(days=2.0, scenario=ScenarioModel(n_scenarios=20), backend="numpy", workers=1)
    learned = run(case(2), settings)
    rnd = run(case(2), replace(settings, epsilon=1.0))
    found = report.checks(learned, rnd)
    assert [c.ok for c in found] == [True, True, True], [c.detail for c in found]


def test_coop_case3_agents_copy_case2_with_small_variances() -> None:
    agents = case3(100)
    assert len(agents) == 100 and len({a.profile for a in agents}) == 100
    assert agents[9].lam1 == agents[0].lam1 and agents[9].quantile == agents[0].quantile


def test_coop_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        run(case(1)[:1], SMALL)
    with pytest.raises(ValueError, match="backend"):
        run(case(1), replace(SMALL, backend="gpu"))
