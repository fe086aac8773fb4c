"""`gridpact negotiate ...`: one bilateral negotiation, the eco-park policy, the hourly market.

`gridpact negotiate cooperative ...` belongs to gateway.negotiation.cooperative and is imported
only when asked for, so that a problem there cannot break the other subcommands.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

USAGE = """usage: gridpact negotiate --scenario FILE [--json] [--rule next|current]
       gridpact negotiate train --episodes N --seed S --out FILE [--iterations K] [--states M]
       gridpact negotiate evaluate --policy FILE [--episodes N] [--seed S] [--json]
       gridpact negotiate market [--households N] [--hours H] [--seed S] [--json]
       gridpact negotiate cooperative --case 1|2|3 [...]
       gridpact negotiate cooperative-live [--seeds 0,1,2] [--hours H] [--period-s S] [--json]
       gridpact negotiate forecast-eval [--profile SPEC] [--days D] [--test-days T] [--step S] [--horizon H]"""


def _load_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SystemExit(f"gridpact negotiate: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"gridpact negotiate: {path} is not valid JSON: {exc}") from None


def _scenario(argv: list[str]) -> int:
    from gateway.negotiation.scenario import ScenarioError, format_report, run_scenario

    p = argparse.ArgumentParser(prog="gridpact negotiate", description="run one bilateral negotiation")
    p.add_argument("--scenario", required=True, help="JSON file with seller/buyer issue parameters")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--rule", choices=["next", "current"], default=None, help="acceptance rule (default: file)"
    )
    args = p.parse_args(argv)
    try:
        report = run_scenario(_load_json(args.scenario), args.rule)
    except ScenarioError as exc:
        print(f"gridpact negotiate: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _train(argv: list[str]) -> int:
    from gateway.negotiation.eip_learn import train

    p = argparse.ArgumentParser(prog="gridpact negotiate train", description="learn the eco-park policy")
    p.add_argument("--episodes", type=int, default=20000, help="Monte Carlo warm-start episodes")
    p.add_argument("--iterations", type=int, default=3, help="policy-improvement iterations")
    p.add_argument("--states", type=int, default=6000, help="sampled states per iteration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.episodes < 1 or args.iterations < 0 or args.states < 1:
        print(
            "gridpact negotiate train: need --episodes >= 1, --iterations >= 0, --states >= 1",
            file=sys.stderr,
        )
        return 2
    policy = train(args.episodes, args.seed, args.iterations, args.states)
    policy.save(Path(args.out))
    print(
        f"trained on {args.episodes} episodes (seed {args.seed}); {policy.visited_states()} states; -> {args.out}"
    )
    return 0


def _evaluate(argv: list[str]) -> int:
    from gateway.negotiation.eip_learn import Policy, evaluate, format_evaluation

    p = argparse.ArgumentParser(prog="gridpact negotiate evaluate", description="held-out profit comparison")
    p.add_argument("--policy", required=True)
    p.add_argument("--episodes", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1_000_000, help="held-out seeds start here")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        policy = Policy.load(Path(args.policy))
    except (OSError, ValueError) as exc:
        print(f"gridpact negotiate evaluate: cannot load policy: {exc}", file=sys.stderr)
        return 2
    report = evaluate(policy, args.episodes, args.seed)
    print(json.dumps(report, indent=2) if args.json else format_evaluation(report))
    return 0


def _market(argv: list[str]) -> int:
    from gateway.negotiation.market_sim import format_summary, simulate_market

    p = argparse.ArgumentParser(
        prog="gridpact negotiate market", description="hourly offer market simulation"
    )
    p.add_argument("--households", type=int, default=10)
    p.add_argument("--hours", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.households < 2 or args.hours < 1:
        print("gridpact negotiate market: need --households >= 2 and --hours >= 1", file=sys.stderr)
        return 2
    summary = simulate_market(args.households, args.hours, args.seed)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _forecast_eval(argv: list[str]) -> int:
    from gateway.forecast.evaluate import evaluate
    from meter_sim.profiles import household_series

    p = argparse.ArgumentParser(
        prog="gridpact negotiate forecast-eval",
        description="the gateway's forecast MAE/RMSE on held-out days of a simulated household, vs naive baselines",
    )
    p.add_argument("--profile", default="household:seed=7,pv_kwp=5,battery_kwh=7")
    p.add_argument("--days", type=int, default=35)
    p.add_argument("--test-days", type=int, default=7)
    p.add_argument("--step", type=int, default=900)
    p.add_argument("--horizon", type=int, default=96, help="steps ahead")
    p.add_argument("--start", type=int, default=1767225600)
    args = p.parse_args(argv)
    series = household_series(args.profile, args.start, args.days, args.step)
    print(
        f"profile={args.profile} days={args.days} test_days={args.test_days} step_s={args.step} horizon={args.horizon}"
    )
    for score in evaluate(series, args.start, args.step, args.test_days, args.horizon):
        print(f"{score.name:<15} MAE={score.mae_w:8.1f} W  RMSE={score.rmse_w:8.1f} W")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    head, rest = argv[0], argv[1:]
    if head == "cooperative":
        module = importlib.import_module("gateway.negotiation.cooperative.cli")
        return int(module.main(rest) or 0)
    if head == "cooperative-live":  # two live gateways (needs the dev tools: Mosquitto, anvil)
        module = importlib.import_module("hil.loans_live")
        return int(module.main(rest) or 0)
    commands = {"train": _train, "evaluate": _evaluate, "market": _market, "forecast-eval": _forecast_eval}
    if head in commands:
        return commands[head](rest)
    if head.startswith("--"):
        return _scenario(argv)
    print(f"gridpact negotiate: unknown subcommand {head!r}\n{USAGE}", file=sys.stderr)
    return 2
