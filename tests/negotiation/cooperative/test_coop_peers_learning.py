"""Learned peer selection in the full simulation: it must beat random by a margin, not by noise.

A cooperative of eight households in which half have a large PV array and half none: loans
between a producer and a consumer agree more often than loans between two alike, so the
history of sessions carries something worth learning. Two fixed seeds, two days each.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.negotiation.cooperative.cases import AgentSpec, case2
from gateway.negotiation.cooperative.scenarios import ScenarioModel
from gateway.negotiation.cooperative.simulation import Settings, run


def _complementary() -> list[AgentSpec]:
    base = case2()[:8]
    return [
        replace(a, profile=f"household:seed={k + 1},pv_kwp={8.0 if k % 2 == 0 else 0.0}")
        for k, a in enumerate(base)
    ]


@pytest.mark.parametrize("seed", [0, 1])
def test_coop_peers_learned_selection_beats_random_in_the_simulation(seed: int) -> None:
    settings = Settings(
        days=2.0, scenario=ScenarioModel(n_scenarios=20), backend="numpy", workers=1, seed=seed
    )
    agents = _complementary()
    learned = run(agents, settings)
    rnd = run(agents, replace(settings, epsilon=1.0))
    assert len(learned.sessions) == len(rnd.sessions) == 4 * settings.periods
    assert learned.success_rate > rnd.success_rate + 0.02, (learned.success_rate, rnd.success_rate)
