"""`gridpact simulate`: run a virtual community and write its report.

`--engine-only` runs the households, the hourly market and the token accounting in-process
(research at scale). Without it, the full stack runs: software meters, meter nodes, MQTT, the
households' gateway ingest and the market contract, each layer reported as it ran.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from hil.community.engine import EngineConfig, PvTrip
from hil.community.households import largest_pv_without_battery, make_community
from hil.community.ledger import Ledger


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gridpact simulate", description=__doc__)
    p.add_argument("--households", type=int, default=6, help="number of households (default 6)")
    span = p.add_mutually_exclusive_group()
    span.add_argument("--hours", type=int, help="simulated hours (default 24)")
    span.add_argument("--days", type=int, help="simulated days")
    p.add_argument("--speed", type=float, default=0.0, help="simulated seconds per wall second (0: flat out)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("simulate-out"), help="report folder")
    p.add_argument("--engine-only", action="store_true", help="no MQTT, no chain: strategies at scale")
    p.add_argument("--faults", action="store_true", help="inject meter outages, a broker restart, a PV trip")
    p.add_argument("--broker", help="mqtt://HOST:PORT of an existing broker (default: embedded amqtt)")
    p.add_argument("--chain", help="http://HOST:PORT of an Ethereum node (default: in-process py-evm)")
    p.add_argument(
        "--strategy", default="auto", help="auto (the negotiation engine if present) | engine | concession"
    )
    p.add_argument(
        "--agents",
        choices=("engine", "gateway"),
        default=None,
        help="who negotiates in the full stack: gateway (each household's gateway.trading over MQTT, "
        "on its own key; the default) | engine (in process; the default with --faults)",
    )
    p.add_argument("--start-tokens", type=float, default=50.0, help="tokens minted per household")
    p.add_argument(
        "--nodes", choices=("standin", "firmware"), default="firmware",
        help="meter nodes: firmware (the real firmware on a virtual-time board; default) | standin (reference encoder)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print the community summary as JSON")
    return p


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The engine's config from parsed arguments (validated: clear errors, never a traceback)."""
    hours = args.days * 24 if args.days is not None else (args.hours if args.hours is not None else 24)
    if hours < 1 or hours > 24 * 366:
        raise ValueError(f"simulated span must be 1 hour .. 366 days, got {hours} h")
    if args.households < 2 or args.households > 10_000:
        raise ValueError(f"--households must be 2..10000, got {args.households}")
    if args.speed < 0:
        raise ValueError("--speed must be >= 0")
    trips: tuple[PvTrip, ...] = ()
    if args.faults and args.engine_only:
        # a midday inverter trip (the full stack picks, at the window, the household that sold most;
        # here a dry run without faults finds it)
        target = largest_pv_without_battery(make_community(args.households, args.seed))
        trips = (PvTrip(target, 9, min(hours, 13)),) if hours > 9 else (PvTrip(target, 0, hours),)
    return EngineConfig(
        households=args.households, hours=hours, seed=args.seed, speed=args.speed,
        start_tokens=args.start_tokens, pv_trips=trips,
    )  # fmt: skip


def busiest_seller_trip(cfg: EngineConfig, strategy: Any, default: PvTrip) -> PvTrip:
    """The trip window's biggest seller in a dry run without faults (so the trip really under-delivers)."""
    from dataclasses import replace

    from hil.community.engine import run_engine

    dry = run_engine(replace(cfg, pv_trips=(), speed=0.0), strategy)
    sold: dict[int, int] = {}
    for st in dry.settled:
        if default.start_hour <= st.hour < default.end_hour:
            sold[st.trade.seller] = sold.get(st.trade.seller, 0) + st.trade.wh
    if not sold:
        return default
    return PvTrip(max(sold, key=lambda h: (sold[h], -h)), default.start_hour, default.end_hour)


class Progress:
    """A one-line progress display on stderr (redrawn on a terminal, every 10 % otherwise)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self._last = -1

    def __call__(self, done: int, total: int, ledger: Ledger) -> None:
        if self.quiet:
            return
        pct = 100 * done // total
        line = (
            f"hour {done}/{total} [{'#' * (pct // 5):<20}] {pct:3d}% settled={ledger.settled} "
            f"refunds={ledger.refunds} escrow={ledger.escrowed() / ledger.unit:.3f} "
            f"wall={time.perf_counter() - self.t0:.1f}s"
        )
        if self.tty:
            print("\r" + line, end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif pct // 10 != self._last or done == total:
            self._last = pct // 10
            print(line, file=sys.stderr, flush=True)


def print_summary(summary: dict[str, Any], paths: dict[str, Path]) -> None:
    c = summary["community"]
    print(
        f"{c['households']} households, {c['hours']} h: {c['trades']} P2P trades, {c['p2p_kwh']} kWh, "
        f"{c['settlements']} settlements, {c['refunds']} refunds; "
        f"welfare +{c['welfare_gain_vs_grid_only']} vs grid-only, "
        f"+{c['welfare_gain_vs_battery_only']} vs own battery (tokens); "
        f"token conservation {'OK' if c['token_conservation'] else 'VIOLATED'}"
    )
    for name, state in summary["layers"].items():
        print(f"  layer {name}: {state}")
    for check in summary.get("checks", []):
        print(f"  check: {check}")
    print(f"wall time {summary['wall_s']:.1f} s; report {paths['html']}; summary {paths['json']}")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = engine_config(args)
    except ValueError as exc:
        print(f"gridpact simulate: {exc}", file=sys.stderr)
        return 2
    from hil.community.report import write_report
    from hil.community.strategies import pick

    try:
        cfg.strategy_name, strategy = pick(args.strategy)
    except ValueError as exc:
        print(f"gridpact simulate: {exc}", file=sys.stderr)
        return 2

    progress = Progress(args.quiet)
    if args.agents is None:
        # The gateways' own agents are the default; fault injection (broker restart, PV trip)
        # is wired for the in-process negotiation only, so --faults falls back to it.
        args.agents = "engine" if (args.faults or args.engine_only) else "gateway"
        if args.faults and not args.quiet:
            print(
                "gridpact simulate: --faults runs the in-process negotiation (--agents engine)",
                file=sys.stderr,
            )
    if args.engine_only and args.agents == "gateway":
        print("gridpact simulate: --agents gateway needs the full stack (not --engine-only)", file=sys.stderr)
        return 2
    if args.engine_only:
        from hil.community.engine import run_engine
        from hil.community.summary import summarize

        if cfg.pv_trips:
            cfg.pv_trips = (busiest_seller_trip(cfg, strategy, cfg.pv_trips[0]),)
        result = run_engine(cfg, strategy, progress=progress)
        summary = summarize(result)
        summary["checks"] = [f"token conservation every hour: {result.conserved_every_hour}"]
    else:
        from hil.community.fullstack import FullStackOptions, run_fullstack

        opts = FullStackOptions(
            broker_url=args.broker, chain_url=args.chain, faults=args.faults, nodes=args.nodes
        )
        try:
            if args.agents == "gateway":
                from hil.community.agentrun import run_agents

                cfg.strategy_name = "gateway agents"
                result, summary = run_agents(cfg, opts, progress=progress)
            else:
                result, summary = run_fullstack(cfg, opts, strategy, progress=progress)
        except ValueError as exc:
            print(f"gridpact simulate: {exc}", file=sys.stderr)
            return 2
    paths = write_report(result, summary, args.out)
    if args.json:
        print(json.dumps(summary["community"], indent=1))
    print_summary(summary, paths)
    if not summary["community"]["token_conservation"]:
        return 1
    return 3 if any(v.startswith("NOT RUN") for v in summary["layers"].values()) else 0
