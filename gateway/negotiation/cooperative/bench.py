"""`gridpact bench negotiation --case 2|3`: wall time, evaluations/s and battery steps/s.

"Battery steps" counts what a plain simulation of every lane would take
(|S| x w x |Q| x |T| per evaluation), so that backends are compared on the same work.
`--compare` also times the reference path on one batch and prints the largest difference.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from gateway.negotiation.cooperative import backends
from gateway.negotiation.cooperative.cases import START, case, net_demand_kwh
from gateway.negotiation.cooperative.contracts import ContractGrid
from gateway.negotiation.cooperative.evaluate import EvalBatch, reference
from gateway.negotiation.cooperative.scenarios import ScenarioModel, forecast, period_rng, scenarios
from gateway.negotiation.cooperative.simulation import Settings, run


def sample_batch(n_agents: int = 8, seed: int = 0, w: int = 96) -> EvalBatch:
    """A realistic batch: Case 2 agents at staggered times of day, half of them responders."""
    agents = (case(2) * ((n_agents + 8) // 9))[:n_agents]
    grid = ContractGrid.default(w)
    model = ScenarioModel()
    demand = np.empty((n_agents, model.n_scenarios, w))
    for i, a in enumerate(agents):
        nd = net_demand_kwh(a.profile, START + 3 * 3600.0 * i, w)
        point = forecast(nd, model, period_rng(seed, i, 0, 0))
        demand[i] = scenarios(point, model, period_rng(seed, i, 0, 1))
    sign = np.where(np.arange(n_agents) % 2 == 0, 1.0, -1.0)
    return EvalBatch(
        demand,
        np.array([a.x0 for a in agents]),
        tuple(a.battery for a in agents),
        np.array([a.lam1 for a in agents]),
        np.array([a.lam2 for a in agents]),
        sign[:, None] * grid.q[None, :],
        grid.tau,
    )


def cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes (user + system)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gridpact bench negotiation", description=__doc__)
    p.add_argument("--case", type=int, choices=[2, 3], required=True)
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--backend", choices=backends.BACKENDS, default="auto")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--compare", action="store_true", help="also time the reference path on one batch")
    p.add_argument("--seconds", type=float, default=2.0, help="ignored (the negotiation bench's option)")
    args = p.parse_args(argv)
    name, evaluator = backends.resolve(args.backend)
    if args.compare:
        batch = sample_batch()
        a = batch.shape[0]
        c0, t0 = time.process_time(), time.perf_counter()
        ref = reference(batch)
        c_ref, t_ref = time.process_time() - c0, time.perf_counter() - t0
        c0, t0 = time.process_time(), time.perf_counter()
        got = evaluator(batch)
        c_fast, t_fast = time.process_time() - c0, time.perf_counter() - t0
        print(
            f"one batch of {a} agents, per evaluation: reference {1000 * t_ref / a:.1f} ms wall "
            f"({1000 * c_ref / a:.1f} ms CPU), {name} {1000 * t_fast / a:.1f} ms wall "
            f"({1000 * c_fast / a:.1f} ms CPU); speed-up x{t_ref / t_fast:.1f} wall, "
            f"x{c_ref / max(c_fast, 1e-9):.1f} CPU; max |difference| {float(np.abs(ref - got).max()):.2e}"
        )
    cpu0 = cpu_seconds()
    result = run(case(args.case), Settings(days=args.days, backend=args.backend, workers=args.workers))
    cpu = cpu_seconds() - cpu0
    wall, ev = result.wall_seconds, result.eval_seconds
    print(
        f"case {args.case}: {len(result.names)} agents, {args.days:g} days, backend {result.backend}, "
        f"workers {args.workers}"
    )
    print(f"wall time {wall:.1f} s (contract-space evaluation {ev:.1f} s); CPU time {cpu:.1f} s")
    load = os.getloadavg()[0]
    print(
        f"load average at the end {load:.1f} on {os.cpu_count()} cores (wall figures assume an idle machine)"
    )
    print(f"evaluations {result.evaluations}: {result.evaluations / wall:.1f} evaluations/s (wall)")
    print(
        f"battery steps {result.battery_steps:.3e}: {result.battery_steps / wall:.3e} battery steps/s (wall)"
    )
    print(f"CPU per evaluation {1000 * cpu / max(result.evaluations, 1):.1f} ms")
    print(f"success rate {100 * result.success_rate:.1f} %")
    return 0
