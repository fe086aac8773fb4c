"""`gridpact bench simulate`: wall time of the default full-stack run and of engine-only research runs.

Figures are printed, never asserted. Target (issue): 6 households, 24 simulated hours, full
stack, under 2 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gridpact bench simulate", description=__doc__)
    p.add_argument("--households", type=int, default=6)
    p.add_argument("--hours", type=int, default=24)
    p.add_argument("--faults", action="store_true", help="the full-stack run with --faults")
    p.add_argument("--engine-households", type=int, nargs="*", default=[100, 500])
    p.add_argument("--engine-days", type=int, default=7)
    p.add_argument("--skip-full-stack", action="store_true")
    args = p.parse_args(argv)

    from hil.community.engine import EngineConfig, run_engine
    from hil.community.report import write_report
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
    if not args.skip_full_stack:
        from hil.community.fullstack import FullStackOptions, run_fullstack
        from hil.community.strategies import pick

        cfg = EngineConfig(households=args.households, hours=args.hours)
        cfg.strategy_name, strategy = pick("auto")
        t = time.perf_counter()
        result, summary = run_fullstack(cfg, FullStackOptions(faults=args.faults), strategy)
        run_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            write_report(result, summary, Path(out))
            report_s = time.perf_counter() - t
        c = summary["community"]
        problems = [x for x in summary["checks"] if x.startswith("PROBLEM")]
        print(
            f"full stack ({cfg.strategy_name}) {args.households} households x {args.hours} h"
            f"{' with faults' if args.faults else ''}: "
            f"{run_s:.1f} s run + {report_s:.1f} s report (target < 120 s); {c['trades']} trades, "
            f"{c['refunds']} refunds, conservation {'OK' if c['token_conservation'] else 'VIOLATED'}, "
            f"problems {len(problems)}"
        )
        print(
            f"  chain: {summary.get('chain', {}).get('transactions')} transactions, {summary.get('chain', {}).get('gas_used')} gas"
        )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {rss_mb:.0f} MB")
    return 0
