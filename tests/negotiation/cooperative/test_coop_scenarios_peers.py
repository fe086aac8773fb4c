"""Gaussian-process scenarios (Eq. 10-14) and ε-greedy peer selection (section 4.2)."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.negotiation.cooperative.peers import PeerSelector
from gateway.negotiation.cooperative.scenarios import ScenarioModel, forecast, period_rng, scenarios


def test_coop_scenarios_shape_and_determinism() -> None:
    m = ScenarioModel()
    point = np.linspace(-1, 1, 96)
    a = scenarios(point, m, period_rng(1, 2, 3, 1))
    b = scenarios(point, m, period_rng(1, 2, 3, 1))
    assert a.shape == (100, 96) and np.array_equal(a, b)
    assert not np.array_equal(a, scenarios(point, m, period_rng(1, 2, 4, 1)))
    f = forecast(point, m, period_rng(0, 0, 0, 0))
    assert f.shape == (96,) and not np.array_equal(f, point)


def test_coop_error_process_has_the_stated_moments() -> None:
    m = ScenarioModel(sigma_w=0.1, rho=0.8)
    d = m.sample(np.random.default_rng(5), 20000, 48)
    sd = d.std(axis=0)
    assert np.allclose(sd, m.sigmas(48), rtol=0.05)
    assert sd[-1] > 2 * sd[0]  # uncertainty grows with the lag
    corr = np.corrcoef(d[:, 30], d[:, 31])[0, 1]
    assert corr == pytest.approx(0.8, abs=0.03)


def test_coop_bad_scenario_model_is_rejected() -> None:
    with pytest.raises(ValueError, match="scenario"):
        ScenarioModel(rho=1.0)


def test_coop_pairs_are_disjoint_and_cover_all_but_one() -> None:
    sel = PeerSelector(9, 0.1, np.random.default_rng(0))
    pairs = sel.pairs()
    flat = [i for p in pairs for i in p]
    assert len(pairs) == 4 and len(set(flat)) == 8


def test_coop_greedy_selection_exploits_the_best_peer() -> None:
    """Agent 0 learns that peer 2 gives the outcomes closest to Nash and then picks it."""
    sel = PeerSelector(4, 0.0, np.random.default_rng(1))
    assert np.allclose(sel.score(0)[1:], 0.5) and np.isinf(sel.score(0)[0])
    for _ in range(200):
        for i, j in sel.pairs():
            sel.update(i, j, 0.1 if {i, j} == {0, 2} else 1.0)
    counts = sel.count[0, 0]
    assert counts[2] > counts[1] + counts[3]


def test_coop_random_selection_spreads_over_peers() -> None:
    sel = PeerSelector(4, 1.0, np.random.default_rng(2))
    for _ in range(300):
        for i, j in sel.pairs():
            sel.update(i, j, 0.1 if {i, j} == {0, 2} else 1.0)
    assert sel.count[0, 0, 1] > 50 and sel.count[0, 0, 3] > 50


def test_coop_bad_selector_is_rejected() -> None:
    with pytest.raises(ValueError, match="peer"):
        PeerSelector(1, 0.1, np.random.default_rng(0))
