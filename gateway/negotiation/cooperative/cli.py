"""`gridpact negotiate cooperative --case 1|2|3`: reproduce the cases of Chakraborty, Baarslag and Kaisers.

On a Dask cluster: `gridpact study cooperative` (hil/study/coop.py) takes the same options.

Exit status: 0 when the run completed (and, for Case 2, its checks hold), 1 when a Case 2
check fails, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import Executor
from dataclasses import dataclass, replace

from gateway.negotiation.cooperative import report
from gateway.negotiation.cooperative.backends import BACKENDS, BackendError
from gateway.negotiation.cooperative.cases import START, AgentSpec, case
from gateway.negotiation.cooperative.simulation import Result, Settings, run

DEFAULT_DAYS = {1: 1.0, 2: 7.0, 3: 7.0}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gridpact negotiate cooperative", description=__doc__)
    p.add_argument("--case", type=int, choices=[1, 2, 3], required=True)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--days", type=float, help="simulated days (default: 1 for Case 1, 7 otherwise)")
    p.add_argument("--agents", type=int, help="Case 3 only: number of agents (default 100)")
    p.add_argument("--epsilon", type=float, default=0.1, help="exploration of peer selection")
    p.add_argument(
        "--risk", type=float, default=Settings.risk, help="risk aversion κ (0: the paper's plain EU)"
    )
    p.add_argument(
        "--reservation-floor",
        action=argparse.BooleanOptionalAction,
        default=Settings.floor,
        help="accept only loans better than no exchange (not in the paper)",
    )
    p.add_argument(
        "--contexts", type=int, default=Settings.contexts, help="peer statistics per block of the day"
    )
    p.add_argument("--no-random", action="store_true", help="skip the random peer selection run")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--start", type=float, default=START, help="Unix time of the first period")
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="SPEC",
        help="household data for agent 1, 2, ... in turn (meter_sim spec, e.g. csv:PATH)",
    )
    return p


@dataclass(frozen=True)
class Prepared:
    """A validated command line: the agents, the engine's settings, and what to print."""

    case: int
    days: float
    agents: list[AgentSpec]
    settings: Settings
    with_random: bool
    json: bool


def prepare(args: argparse.Namespace) -> Prepared | int:
    """The run the arguments ask for, or exit status 2 (the reason printed)."""
    days = DEFAULT_DAYS[args.case] if args.days is None else args.days
    if not (
        0 < days <= 366
        and 0 <= args.epsilon <= 1
        and args.workers >= 1
        and 0 <= args.risk < 100
        and 1 <= args.contexts <= 96
    ):
        print(
            "cooperative: need 0 < days <= 366, 0 <= epsilon <= 1, workers >= 1, 0 <= risk < 100,"
            " 1 <= contexts <= 96",
            file=sys.stderr,
        )
        return 2
    if args.agents is not None and not 2 <= args.agents <= 100_000:
        print("cooperative: need 2 <= agents <= 100000", file=sys.stderr)
        return 2
    agents = case(args.case)
    if args.case == 3 and args.agents is not None:
        from gateway.negotiation.cooperative.cases import case3

        agents = case3(args.agents, args.seed)
    if len(args.profile) > len(agents):
        print(f"cooperative: {len(args.profile)} profiles for {len(agents)} agents", file=sys.stderr)
        return 2
    for i, spec in enumerate(args.profile):
        agents[i] = replace(agents[i], profile=spec)
    settings = Settings(
        days=days,
        epsilon=args.epsilon,
        risk=args.risk,
        floor=args.reservation_floor,
        contexts=args.contexts,
        seed=args.seed,
        backend=args.backend,
        workers=args.workers,
        start=args.start,
    )
    return Prepared(args.case, days, agents, settings, args.case == 2 and not args.no_random, args.json)


def simulate(job: Prepared, executor: Executor | None = None) -> tuple[Result, Result | None]:
    """The run, and Case 2's random peer selection run; evaluations on `executor` when given."""
    result = run(job.agents, job.settings, executor)
    random_run = run(job.agents, replace(job.settings, epsilon=1.0), executor) if job.with_random else None
    return result, random_run


def finish(job: Prepared, result: Result, random_run: Result | None) -> int:
    """Print the report; the exit status."""
    found = report.checks(result, random_run) if job.case > 1 else []
    if job.json:
        out = report.summary(result)
        out["case"] = job.case
        out["days"] = job.days
        out["seed"] = job.settings.seed
        if random_run is not None:
            out["random_success_rate"] = round(random_run.success_rate, 6)
        out["checks"] = [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in found]
        print(json.dumps(out, indent=1))
    else:
        print(report.text(job.case, result, random_run, found))
    # Case 2's claims are what this command reproduces; Case 3 must run to the end (checks informative).
    return 0 if job.case != 2 or all(c.ok for c in found) else 1


def main(argv: list[str]) -> int:
    job = prepare(parser().parse_args(argv))
    if isinstance(job, int):
        return job
    try:
        result, random_run = simulate(job)
    except (BackendError, ValueError) as exc:
        print(f"cooperative: {exc}", file=sys.stderr)
        return 2
    return finish(job, result, random_run)
