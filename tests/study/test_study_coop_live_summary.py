"""`gridpact study cooperative-live`'s verdicts: effect sizes over seeds, learned against random selection.

The live runs themselves take minutes per seed (docs/negotiation-cooperative.md); the summary that turns
them into the paper's claims is a pure function, checked here on hand-made runs.
"""

from __future__ import annotations

from typing import Any

from hil.loans_live import passed, summarise


def run(seed: int, selection: str, rate: float, s2_over_s1: float) -> dict[str, Any]:
    agents = {
        name: {"s0": -10.0, "s1": -8.0, "s2": -8.0 + s2_over_s1, "loans": 1, "closed": 1} for name in "12"
    }
    return {"seed": seed, "selection": selection, "agents": agents, "sessions": 100, "loans": int(100 * rate),
            "success_rate": rate}  # fmt: skip


ENGINE = [{"seed": k, "agents": {n: {"s0": -10.0, "s1": -8.0, "s2": -7.5} for n in "12"}} for k in (0, 1)]


def test_learned_against_random_is_paired_by_seed() -> None:
    live = [run(0, "learned", 0.30, 0.2), run(0, "random", 0.20, 0.1),
            run(1, "learned", 0.25, 0.4), run(1, "random", 0.27, 0.0)]  # fmt: skip
    s = summarise(live, ENGINE)
    assert s["seeds"] == 2  # the effect of s2 is over the learned runs, as the gateways ship
    assert s["effect_s2_minus_s1"]["1"] == {"mean": 0.3, "sd": 0.1414, "min": 0.2}
    assert s["success_rate"]["learned"]["mean"] == 0.275 and s["success_rate"]["random"]["mean"] == 0.235
    assert s["success_learned_minus_random"] == {"mean": 0.04, "sd": 0.0849, "min": -0.02}
    assert s["learned_above_random"] and passed(s)


def test_random_ahead_or_s2_below_s1_fails_the_run() -> None:
    behind = summarise([run(0, "learned", 0.1, 0.2), run(0, "random", 0.3, 0.2)], ENGINE)
    assert not behind["learned_above_random"] and not passed(behind)
    worse = summarise([run(0, "learned", 0.3, -0.5)], ENGINE)
    assert "learned_above_random" not in worse  # one selection only: nothing to compare
    assert not worse["s2_at_least_s1_every_agent_every_seed"] and not passed(worse)
