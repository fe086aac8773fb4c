"""`gridpact bench simulate`: wall time and throughput of the default full-stack run, and engine-only runs.

Figures are printed, never asserted. For each community size the default `gridpact simulate`
(real firmware on virtual boards, the gateways' own agents, amqtt, anvil) is run and the bench
prints its wall time, simulated household-hours per wall second, readings, peer messages and
transactions per second, and the CPU seconds of each layer (hil/community/layers.py), with the
cost per item that bounds the run. Targets: 6 x 24 h < 30 s, 100 x 24 h < 5 min.
"""

from __future__ import annotations

import argparse
import resource
import time


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gridpact bench simulate", description=__doc__)
    p.add_argument(
        "--households",
        type=int,
        nargs="*",
        default=[6, 100],
        help="community sizes of the full-stack runs (gateways' agents, real firmware)",
    )
    p.add_argument("--hours", type=int, default=24)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--start-hour", type=int, default=0,
        help="the full-stack runs start this many hours after midnight (e.g. 8: sunny hours, trades)",
    )  # fmt: skip
    p.add_argument(
        "--faults",
        action="store_true",
        help="instead: the full-stack run with --faults (in-process negotiation), first size only",
    )
    p.add_argument("--engine-households", type=int, nargs="*", default=[100, 500])
    p.add_argument("--engine-days", type=int, default=7)
    p.add_argument("--skip-full-stack", action="store_true")
    p.add_argument(
        "--market", choices=("p2p", "stations"), default="p2p",
        help="the full-stack gateways' [agent] market: p2p (default, as `gridpact simulate`) or stations",
    )  # fmt: skip
    p.add_argument(
        "--clock", choices=("wall", "virtual"), default="virtual",
        help="the full-stack runs' clock (gridpact simulate --clock): virtual (default, as `gridpact simulate`) "
        "= one discrete-event loop; wall = threads paced in wall time",
    )  # fmt: skip
    args = p.parse_args(argv)

    from hil.community.engine import EngineConfig, run_engine
    from hil.community.strategies import STRATEGIES, engine_available
    from hil.community.summary import summarize

    names = ["concession", "engine"] if engine_available() else ["concession"]
    for name in names:
        for n in args.engine_households if name == "concession" else args.engine_households[:1]:
            t = time.perf_counter()
            r = run_engine(EngineConfig(households=n, hours=24 * args.engine_days), STRATEGIES[name])
            c = summarize(r)["community"]
            print(
                f"engine-only, strategy {name}, {n} households x {args.engine_days} days: "
                f"{time.perf_counter() - t:.2f} s ({c['trades']} trades, {c['settlements']} settlements)",
                flush=True,
            )
    if not args.skip_full_stack and args.faults:
        faults_run(args.households[0], args.hours)
    elif not args.skip_full_stack:
        for n in args.households:
            agents_run(n, args.hours, args.seed, args.clock, args.start_hour, args.market)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {rss_mb:.0f} MB")
    return 0


def faults_run(households: int, hours: int) -> None:
    """The full stack with --faults (broker restart, meter outage, PV trip; in-process negotiation)."""
    from hil.community.engine import EngineConfig
    from hil.community.fullstack import FullStackOptions, run_fullstack
    from hil.community.strategies import pick

    cfg = EngineConfig(households=households, hours=hours)
    cfg.strategy_name, strategy = pick("auto")
    t = time.perf_counter()
    _, summary = run_fullstack(cfg, FullStackOptions(faults=True), strategy)
    c = summary["community"]
    problems = [x for x in summary["checks"] if x.startswith("PROBLEM")]
    print(
        f"full stack with faults ({cfg.strategy_name}) {households} households x {hours} h: "
        f"{time.perf_counter() - t:.1f} s; {c['trades']} trades, {c['refunds']} refunds, "
        f"conservation {'OK' if c['token_conservation'] else 'VIOLATED'}, problems {len(problems)}",
        flush=True,
    )


def agents_run(
    households: int, hours: int, seed: int, clock: str = "wall", start_hour: int = 0, market: str = "p2p"
) -> None:
    """The default `gridpact simulate` at one size, with its throughput and CPU by layer."""
    import os

    from hil.community.agentrun import run_agents
    from hil.community.engine import EngineConfig
    from hil.community.fullstack import FullStackOptions
    from hil.community.layers import LayerCpu
    from hil.community.summary import summary_digest

    cfg = EngineConfig(households=households, hours=hours, seed=seed)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    loop_cpu: dict[str, float] = {}
    calls: dict[str, int] = {}
    cpu0 = time.process_time()
    with LayerCpu() as cpu:
        _, summary = run_agents(cfg, FullStackOptions(nodes="firmware", clock=clock, market=market),
                                start_hour=start_hour, cpu_out=loop_cpu, calls_out=calls)  # fmt: skip
    wall = time.perf_counter() - t
    c, work = summary["community"], summary["work"]
    problems = [x for x in summary["checks"] if x.startswith("PROBLEM")]
    hh_h = households * hours
    print(
        f"full stack (firmware nodes, gateway agents, --clock {clock}, market {market}) {households} households x {hours} h"
        f"{f' from hour {start_hour}' if start_hour else ''}: wall {wall:.1f} s "
        f"(load average {load:.2f} at start, {os.cpu_count()} CPUs); {hh_h / wall:.2f} household-hours/s; "
        f"readings {work['readings'] / wall:.0f}/s, peer messages {work['peer_messages'] / wall:.1f}/s, "
        f"transactions {work['transactions'] / wall:.1f}/s; {c['trades']} trades, {c['settlements']} "
        f"settlements ({summary['settlement']['from_meter_statements']} from the meters' signed statements), "
        f"{c['refunds']} refunds, gas on the agreements' path {summary['settlement']['gas_per_agreement']:,} per "
        f"agreement; conservation {'OK' if c['token_conservation'] else 'VIOLATED'}, "
        f"problems {len(problems)}",
        flush=True,
    )
    secs = cpu.seconds()
    if clock == "virtual":  # one thread: the loop booked its tasks' CPU by layer itself
        process = time.process_time() - cpu0
        secs = {k: loop_cpu.get(k, 0.0) for k in ("firmware", "broker", "ingest", "trading", "chain")}
        secs["other"] = max(0.0, process - sum(secs.values()))
    total = sum(secs.values())
    split = ", ".join(f"{k} {v:.1f} s ({100 * v / max(total, 1e-9):.0f} %)" for k, v in secs.items())
    print(f"  CPU by layer: {split}; total {total:.1f} CPU s in {wall:.1f} s wall")
    if calls:  # virtual clock: every JSON-RPC request of the run went through its middleware
        top = ", ".join(f"{m} {k}" for m, k in sorted(calls.items(), key=lambda x: -x[1]))
        print(f"  chain calls: {sum(calls.values())} ({top})")
    print(f"  summary digest (wall times left out): {summary_digest(summary)}")
    per = {
        "reading": (secs["firmware"] + secs["ingest"] + secs["broker"] / 2, work["readings"]),
        "peer message": (secs["trading"] + secs["broker"] / 2, work["peer_messages"]),
        "transaction": (secs["chain"], work["transactions"]),
    }
    floor = 0.0
    parts = []
    for name, (cpu_s, items) in per.items():
        if not items:  # none in this run (e.g. night hours: nothing to trade)
            parts.append(f"no {name}s")
            continue
        rate, cost = items / hh_h, cpu_s / items  # items per household-hour, CPU s per item
        floor += rate * cost
        parts.append(f"{rate:.1f} {name}s/household-hour x {1000 * cost:.2f} ms")
    print(
        f"  per item: {'; '.join(parts)}; = {floor:.2f} CPU s per household-hour before 'other' "
        f"({secs['other']:.1f} s), so at most {(os.cpu_count() or 1) / max(floor, 1e-9):.1f} household-hours/s "
        f"on {os.cpu_count()} CPUs with these per-item costs (run: {hh_h / wall:.2f})",
        flush=True,
    )
