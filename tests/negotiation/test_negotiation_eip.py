"""The eco-park agent: the shipped learned policy, its training, its file, and the held-out comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.negotiation import (
    EipContext,
    Negotiate,
    Policy,
    Provider,
    Wait,
    concession,
    default_policy_path,
    estimate_concession,
)
from gateway.negotiation.eip_learn import evaluate, train

ROOT = Path(__file__).resolve().parents[2]


def ctx(**kw: object) -> EipContext:
    base: dict[str, object] = {
        "balance": -100.0,
        "storage": 0.0,
        "capacity": 150.0,
        "steps_to_deadline": 6,
        "provider_buy": 80.0,
        "provider_sell": 20.0,
        "peer_available": True,
        "opponent_concession": None,
    }
    base.update(kw)
    return EipContext(**base)  # type: ignore[arg-type]


def test_learned_policy_beats_baselines_on_held_out_episodes() -> None:
    report = evaluate(Policy.load(default_policy_path()), episodes=1500)
    agents = report["agents"]
    learned = agents["learned"]["mean_profit"]
    fixed_best = next(v for k, v in agents.items() if k.startswith("fixed_best"))
    print(json.dumps(report, indent=1))
    assert learned > agents["fixed_table1"]["mean_profit"]
    assert learned > agents["provider_only"]["mean_profit"]
    assert learned > fixed_best["mean_profit"]


def test_policy_decisions_are_valid() -> None:
    policy = Policy.load(default_policy_path())
    assert policy.meta["episodes"] >= 10_000
    for seller in (True, False):
        for steps in (1, 3, 6):
            for opp in (None, 0.3, 1.0, 3.0):
                c = ctx(
                    balance=100.0 if seller else -100.0,
                    storage=100.0 if seller else 0.0,
                    steps_to_deadline=steps,
                    opponent_concession=opp,
                )
                d = policy.decide(c)
                assert isinstance(d, Wait | Provider | Negotiate)
                if isinstance(d, Negotiate):
                    assert 20.0 <= d.params.rp <= 80.0 and d.params.ip in (20.0, 80.0)
                    assert d.quantity == 100.0
                lone = policy.decide(
                    ctx(balance=c.balance, storage=c.storage, steps_to_deadline=steps, peer_available=False)
                )
                assert not isinstance(lone, Negotiate)  # nobody to negotiate with
    # A buyer alone at its deadline settles with the provider rather than pay the rush price.
    assert isinstance(policy.decide(ctx(steps_to_deadline=1, peer_available=False)), Provider)


def test_training_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    a, b = train(1500, 7, iterations=1, states=300), train(1500, 7, iterations=1, states=300)
    assert a.table == b.table and a.visited_states() > 10
    path = tmp_path / "p.json"
    a.save(path)
    again = Policy.load(path)
    assert again.table == a.table and again.meta == a.meta


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format="other"),
        lambda d: d.update(presets=[[0.5, 10, 1.0]]),
        lambda d: d["table"].update(B1nu0="dance"),
        lambda d: d.update(table=[1, 2]),
    ],
)
def test_bad_policy_files_are_clear_errors(tmp_path: Path, mutate: object) -> None:
    data = json.loads(default_policy_path().read_text())
    mutate(data)  # type: ignore[operator]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError):
        Policy.load(path)


def test_context_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        ctx(provider_buy=10.0)
    with pytest.raises(ValueError):
        ctx(balance=float("inf"))


def test_train_and_evaluate_cli(tmp_path: Path) -> None:
    out = tmp_path / "policy.json"
    cli = [sys.executable, "-m", "gridpact.cli", "negotiate"]
    subprocess.run(
        [
            *cli,
            "train",
            "--episodes",
            "800",
            "--seed",
            "3",
            "--iterations",
            "1",
            "--states",
            "200",
            "--out",
            str(out),
        ],
        check=True,
        cwd=ROOT,
    )
    res = subprocess.run(
        [*cli, "evaluate", "--policy", str(out), "--episodes", "100", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    report = json.loads(res.stdout)
    assert set(report["agents"]) >= {"learned", "fixed_table1", "provider_only"}
    bad = subprocess.run(
        [*cli, "evaluate", "--policy", str(tmp_path / "missing.json")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "cannot load policy" in bad.stderr


@pytest.mark.parametrize("cr", [0.3, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize(("ip", "rp", "dl"), [(80.0, 20.0, 20), (20.0, 80.0, 10), (0.1, 0.25, 15)])
def test_estimate_concession_recovers_eq1_rate(cr: float, ip: float, rp: float, dl: int) -> None:
    offers = [concession(ip, rp, dl, cr, t) for t in range(dl + 4)]  # runs past its deadline too
    est = estimate_concession(offers)
    assert est == pytest.approx(cr, rel=1e-6)
    assert estimate_concession(offers[:6]) == pytest.approx(cr, rel=1e-6)  # a session cut short


def test_estimate_concession_needs_movement() -> None:
    assert estimate_concession([50.0, 50.0, 50.0, 50.0]) is None
    assert estimate_concession([50.0, 40.0]) is None
    assert estimate_concession([50.0, float("nan"), 40.0]) is None
