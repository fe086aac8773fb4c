"""`gridpact bench study`: how a study scales on Dask, printed.

Runs the same engine-only points (different seeds) on a local cluster of one worker process, then
of `--workers`, and prints the wall time of each, the speed-up between them, and the per-point
overhead of the engine: wall x workers / points minus the mean time inside the simulator, as a
share of that time. `--scale-households H --scale-days D` also times one large point in one
worker (the issue's 10,000 households x 30 days). `--coop-agents N --coop-days D` times the
cooperative engine's Case 3 scaled to N agents in one process, then with its evaluations on a
local cluster of `--workers`, checks both results are the same bit for bit, and extrapolates the
wall time per simulated period to `--coop-target-days` (7: the issue's 1,000 agents x 7 days).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from gateway.negotiation.cooperative.cases import START, case3
from gateway.negotiation.cooperative.simulation import Result, Settings, run
from gridpact.core.signals import sigterm_interrupts
from hil.study import grid
from hil.study.cluster import Cluster, connect
from hil.study.runner import run_study


def _run(study: grid.Study, workers: int) -> tuple[float, list[float]]:
    """(wall seconds including cluster start, the points' seconds inside the simulator)."""
    with tempfile.TemporaryDirectory(prefix="gridpact-bench-study-") as tmp:
        t0 = time.perf_counter()
        with connect(None, workers) as cluster:
            started = time.perf_counter() - t0
            outcome = run_study(study, Path(tmp), cluster)
        if outcome.failed:
            raise RuntimeError(f"points failed: {outcome.failed}")
        wall = outcome.wall_s
        print(
            f"  {workers} worker(s): {len(outcome.rows)} points in {wall:.1f} s (cluster start {started:.1f} s)"
        )
        return wall, [float(r["sim_s"]) for r in outcome.rows]


def _cpu_seconds() -> float:
    """CPU time of the process it runs in (a Dask worker: `client.run`)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _workers_cpu(cluster: Cluster) -> dict[str, float]:
    """Each worker's CPU seconds so far, by address."""
    out = cluster.client.run(_cpu_seconds)
    if not isinstance(out, dict):  # an asynchronous client would hand back an awaitable
        raise TypeError("a synchronous Dask client was expected")
    return {str(k): float(v) for k, v in out.items()}


def _coop(agents: int, days: float, start: float, workers: int, target_days: float) -> None:
    """Case 3 at `agents`: one process, then evaluations on `workers` Dask workers; same result."""
    specs = case3(agents, 0)
    settings = Settings(days=days, start=start, backend="numpy", workers=1)
    periods = settings.periods
    print(f"bench study: cooperative Case 3 at {agents} agents x {days:g} days ({periods} periods of 15 min)")
    t0 = time.perf_counter()
    one: Result = run(specs, settings)
    one_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    with connect(None, workers) as cluster:
        started = time.perf_counter() - t0
        cpu0 = _workers_cpu(cluster)
        t1 = time.perf_counter()
        many = run(
            specs, Settings(days=days, start=start, backend="numpy", workers=workers), cluster.executor()
        )
        many_wall = time.perf_counter() - t1
        cpu1 = _workers_cpu(cluster)
    busy = sum(cpu1[k] - cpu0[k] for k in cpu1) / many_wall
    same = one.fingerprint() == many.fingerprint()
    print(
        f"  one process: {one_wall:.1f} s ({one.eval_seconds:.1f} s evaluating), {one_wall / periods:.2f} s per period"
    )
    print(f"  {workers} Dask workers: {many_wall:.1f} s ({many.eval_seconds:.1f} s evaluating; cluster start "
          f"{started:.1f} s), {many_wall / periods:.2f} s per period: speed-up {one_wall / many_wall:.2f}x")  # fmt: skip
    print(f"  the workers computed {busy:.2f} cores' worth on average (of {workers}): the rest of the time "
          "they waited for the client's serial part or for a core the machine's other processes held")  # fmt: skip
    print(f"  same result bit for bit: {'yes' if same else 'NO'} (fingerprint {one.fingerprint()[:16]})")
    if target_days != days:
        scale = round(target_days * 96) / periods
        print(f"  extrapolated to {target_days:g} days ({round(target_days * 96)} periods, at these periods' "
              f"mean cost): one process {one_wall * scale / 3600:.2f} h, {workers} workers "
              f"{many_wall * scale / 3600:.2f} h")  # fmt: skip
    load = os.getloadavg()
    print(f"  load average (1, 5 min) at the end: {load[0]:.1f}, {load[1]:.1f} on {os.cpu_count()} cores "
          "(the speed-up needs the cores to itself)")  # fmt: skip
    if not same:
        raise RuntimeError("the cluster's result differs from one process")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gridpact bench study", description=__doc__)
    p.add_argument("--households", type=int, default=2000)
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--points", type=int, default=4, help="seeds of the same point")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scale-households", type=int, default=0, help="also time one point this large")
    p.add_argument("--scale-days", type=float, default=30.0)
    p.add_argument("--coop-agents", type=int, default=0, help="time cooperative Case 3 at this many agents")
    p.add_argument("--coop-days", type=float, default=7.0)
    p.add_argument("--coop-start-hour", type=float, default=0.0, help="hour of the first period (UTC)")
    p.add_argument("--coop-target-days", type=float, default=7.0, help="extrapolate the wall time to this")
    p.add_argument("--only-coop", action="store_true", help="skip the engine-only points")
    args = p.parse_args(argv)
    doc = {"name": "bench", "households": [args.households], "days": [args.days],
           "seeds": {"start": 1, "count": args.points}}  # fmt: skip
    study = grid.parse(doc)
    with sigterm_interrupts():
        if args.coop_agents:
            start = START + 3600.0 * args.coop_start_hour
            _coop(args.coop_agents, args.coop_days, start, args.workers, args.coop_target_days)
        if args.only_coop:
            return 0
        print(
            f"bench study: {args.points} engine-only points of {args.households} households x {args.days:g} days"
        )
        one_wall, sims = _run(study, 1)
        many_wall, _ = _run(study, args.workers)
        mean_sim = statistics.fmean(sims)
        overhead = one_wall / args.points - mean_sim
        print(f"  mean time inside the simulator per point: {mean_sim:.2f} s")
        print(f"  speed-up 1 -> {args.workers} workers: {one_wall / many_wall:.2f}x (target >= 1.7x for 2)")
        print(
            f"  per-point overhead (1 worker): {overhead:.3f} s = {100 * overhead / mean_sim:.1f} % of a point"
        )
        if args.scale_households:
            big = grid.parse(
                {"name": "scale", "households": [args.scale_households], "days": [args.scale_days]}
            )
            wall, sims = _run(big, 1)
            print(f"  one point of {args.scale_households} households x {args.scale_days:g} days: "
                  f"{sims[0]:.1f} s in the simulator, {wall:.1f} s on the cluster")  # fmt: skip
    return 0
