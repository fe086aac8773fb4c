"""`gridpact simulate`: run a virtual community and write its report.

`--engine-only` runs the households, the hourly market and the token accounting in-process
(research at scale). Without it, the full stack runs: software meters, meter nodes, MQTT, the
households' gateway ingest and the market contract, each layer reported as it ran.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
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
    p.add_argument(
        "--broker",
        help="mqtt://HOST:PORT of an existing broker, or `mosquitto` to start one for the run "
        "(default: embedded amqtt)",
    )
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
    p.add_argument(
        "--clock", choices=("wall", "virtual"), default=None,
        help="virtual (every part on one discrete-event loop, deterministic under --seed: gateway agents, "
        "firmware nodes, embedded amqtt, anvil; the default) | wall (threads paced in wall time; the default "
        "with --engine-only, --faults, --broker, --chain, --agents engine, --nodes standin or --dashboard)",
    )  # fmt: skip
    p.add_argument(
        "--dashboard", action="store_true",
        help="serve the community view and every household's view live on loopback while the run goes "
        "(and after it, until Ctrl-C); the addresses and a one-time sign-in are printed at start",
    )  # fmt: skip
    p.add_argument(
        "--dashboard-port", type=int, default=None, metavar="PORT",
        help="with --dashboard: the community view on PORT, the households' on PORT+1 (default: free ports)",
    )  # fmt: skip
    p.add_argument(
        "--market", choices=("p2p", "store", "stations", "demand_response", "loans", "all"), default="p2p",
        help="with --engine-only: also price the run's households and weather under a trading model of "
        "Ali et al. (store: a community store; stations: buyer requests, sellers' bids, a network fee) "
        "or the cooperative's energy loans (loans: battery plus loans bargained hour by hour) "
        "and compare it with the negotiated p2p market and own batteries only (all: every model); "
        "in the full stack, --market stations makes the gateways match by grid-station auctions",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also show the libraries' and agents' logs (always in OUT/simulate.log)",
    )
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
    """A one-line progress display on stderr (redrawn on a terminal, every 10 % otherwise).

    It also keeps each hour's figures, which are what a partial report shows after a stop.
    """

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self._last = -1
        self.total = 0
        self.hours: list[dict[str, Any]] = []

    def __call__(self, done: int, total: int, ledger: Ledger) -> None:
        self.total = total
        self.hours.append(
            {
                "hour": done,
                "settled": ledger.settled,
                "refunds": ledger.refunds,
                "tokens_in_escrow": ledger.escrowed() / ledger.unit,
                "balances": [b / ledger.unit for b in ledger.balance],
                "wall_s": round(time.perf_counter() - self.t0, 3),
            }
        )
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


LOG_NAME = "simulate.log"


@contextmanager
def run_logging(out: Path, verbose: bool) -> Iterator[Path]:
    """Every library's and agent's log lines go to OUT/simulate.log; to stderr too with --verbose.

    A normal run then shows only its progress and summary: a broker connection reset or an
    agent's retry is recorded for whoever looks, not shown to a newcomer who cannot act on it.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOG_NAME
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.FileHandler(path, mode="w", encoding="utf-8")]
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, threading.excepthook)
    for h in handlers:
        h.setFormatter(fmt)
    root.handlers[:] = handlers
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    log = logging.getLogger("gridpact.simulate")

    def thread_crash(info: threading.ExceptHookArgs) -> None:
        name = info.thread.name if info.thread is not None else "?"
        exc = (info.exc_type, info.exc_value, info.exc_traceback)
        log.error("thread %s ended with an exception", name, exc_info=exc)  # type: ignore[arg-type]

    threading.excepthook = thread_crash
    try:
        yield path
    finally:
        gc.collect()  # asyncio logs never-retrieved futures when they are collected: into the file too
        for h in handlers:
            h.close()
        root.handlers[:], root.level, threading.excepthook = saved
        logging.captureWarnings(False)


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM: raised in the main thread so every `finally` stops what it started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class StopGuard:
    """Turns SIGINT/SIGTERM into `Stopped` and guarantees the process is gone within `deadline_s`.

    The main thread cleans up (services stopped, partial report written) and exits 128 + signal;
    if that has not happened by the deadline, a watchdog writes the partial report itself and
    ends the process. Services started for the run die with it (hil.services: parent-death signal).
    """

    on_deadline: Callable[[], None]  # write what there is; called at most once
    deadline_s: float = 1.3
    signum: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _finished: bool = False
    report_written: bool = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum:  # a second signal while stopping: the watchdog already has a deadline
            return
        self.signum = signum
        threading.Thread(target=self._watchdog, name="stop-watchdog", daemon=True).start()
        raise Stopped(signum)

    def _watchdog(self) -> None:
        time.sleep(self.deadline_s)
        self.finish()
        print(
            f"gridpact simulate: clean-up still running {self.deadline_s} s after the signal; exiting now "
            "(the services started for the run end with this process)",
            file=sys.stderr,
            flush=True,
        )
        os._exit(128 + self.signum)

    def finish(self) -> bool:
        """Run `on_deadline` once (main thread or watchdog, whichever comes first). The other caller
        waits until it is done: the main thread's `os._exit` right after a `False` must not cut the
        watchdog's report half written (a 100-household run's clean-up outlasted the deadline, and its
        summary.json was left empty)."""
        with self._lock:
            if self._finished:
                return False
            self._finished = True
            if not self.report_written:
                self.on_deadline()
            return True


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
    for row in summary.get("markets", []):
        print(
            f"  market {row['model']:<12} cost {row['households_cost']:>10} operator {row['operator_account']:>8} "
            f"self-sufficiency {row['self_sufficiency']:.3f} peak {row['peak_import_kw']} kW "
            f"worse off {row['households_worse_off']}"
        )
    print(f"wall time {summary['wall_s']:.1f} s; report {paths['html']}; summary {paths['json']}")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = engine_config(args)
    except ValueError as exc:
        print(f"gridpact simulate: {exc}", file=sys.stderr)
        return 2
    progress = Progress(args.quiet)
    started = time.perf_counter()

    def write_partial() -> None:
        from hil.community.report import write_partial_report

        name = signal.Signals(guard.signum).name if guard.signum else "?"
        paths = write_partial_report(
            args.out,
            progress.hours,
            progress.total or cfg.hours,
            name,
            time.perf_counter() - started,
            vars(args),
            [spec.name for spec in make_community(cfg.households, cfg.seed)],
        )
        print(
            f"\ngridpact simulate: stopped by {name}; partial report {paths['html']}",
            file=sys.stderr,
            flush=True,
        )

    guard = StopGuard(write_partial)
    stopped = False
    held = False
    code = 1
    try:
        guard.install()
        with run_logging(args.out, args.verbose) as log_path, contextlib.ExitStack() as keep:
            code = run(args, cfg, progress, keep)
            guard.report_written = True  # a signal from here on must not replace it by a partial one
            if not args.quiet:
                print(f"logs: {log_path}" + ("" if args.verbose else " (--verbose shows them)"))
            if args.dashboard and code in (0, 1, 3):
                held = True
                hold_dashboard()
    except KeyboardInterrupt:  # Stopped, or a library's own KeyboardInterrupt after our SIGINT
        guard.signum = guard.signum or signal.SIGINT
        guard.finish()
        stopped = True
    if stopped:
        # Everything this run started is stopped and the partial report written. Interpreter
        # shutdown would still join library worker threads (seconds on a loaded machine, past
        # the 2 s promise, and beyond the watchdog's reach): leave now instead. A run whose report
        # was written and whose dashboard was then stopped ends with the run's own status.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if held else 128 + guard.signum)
    return code


def hold_dashboard() -> None:
    """After the report: keep the finished run's dashboard up until SIGINT/SIGTERM (which raise Stopped)."""
    print(
        "dashboard: the run is over; its final state stays served until Ctrl-C (or SIGTERM)",
        flush=True,
    )
    while True:
        time.sleep(3600)


def run(
    args: argparse.Namespace, cfg: EngineConfig, progress: Progress, keep: contextlib.ExitStack | None = None
) -> int:
    """The run itself, once the config is valid: returns the command's exit status.

    With --dashboard the run's services and dashboard are left on `keep` (the caller holds them up
    after the report and stops them on a signal).
    """
    from hil.community.report import write_report
    from hil.community.strategies import pick

    try:
        cfg.strategy_name, strategy = pick(args.strategy)
    except ValueError as exc:
        print(f"gridpact simulate: {exc}", file=sys.stderr)
        return 2

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
    # what only the wall clock runs (the virtual loop has no faults, outside services or in-process agents)
    wall_only = bool(args.engine_only or args.faults or args.broker or args.chain or args.agents != "gateway"
                     or args.nodes != "firmware")  # fmt: skip
    if args.clock is None:  # one discrete-event loop where every part can run on it
        args.clock = "wall" if wall_only or args.dashboard else "virtual"
    if args.clock == "virtual" and wall_only:
        print(
            "gridpact simulate: --clock virtual runs the gateway agents and firmware nodes on the embedded "
            "broker and an anvil of its own (no --engine-only, --faults, --broker, --chain, --agents engine, --nodes standin)",
            file=sys.stderr,
        )
        return 2
    live_stations = args.market == "stations" and args.agents == "gateway" and not args.engine_only
    if args.market != "p2p" and not args.engine_only and not live_stations:
        print(
            "gridpact simulate: --market store|demand_response|loans|all compares the models in the engine (add --engine-only); "
            "live gateways trade the p2p market or, with --market stations, grid-station auctions",
            file=sys.stderr,
        )
        return 2
    if args.dashboard and (args.engine_only or args.agents != "gateway" or args.clock != "wall"):
        print(
            "gridpact simulate: --dashboard serves the full stack's own gateways and chain: it needs "
            "--agents gateway and --clock wall (no --engine-only, --faults, --agents engine, --clock virtual)",
            file=sys.stderr,
        )
        return 2
    if args.dashboard_port is not None and not 1024 <= args.dashboard_port < 65535:
        print("gridpact simulate: --dashboard-port must be 1024..65534", file=sys.stderr)
        return 2
    if args.engine_only:
        from hil.community.engine import run_engine
        from hil.community.summary import summarize

        if cfg.pv_trips:
            cfg.pv_trips = (busiest_seller_trip(cfg, strategy, cfg.pv_trips[0]),)
        result = run_engine(cfg, strategy, progress=progress)
        summary = summarize(result)
        summary["checks"] = [f"token conservation every hour: {result.conserved_every_hour}"]
        if args.market != "p2p":
            from hil.community.models import MODELS, compare

            summary["markets"] = compare(result, MODELS if args.market == "all" else ("p2p", args.market))
    else:
        from hil.community.fullstack import FullStackOptions, run_fullstack
        from hil.services import MosquittoBroker

        mosquitto = MosquittoBroker() if args.broker == "mosquitto" else None
        broker_url = mosquitto.start().url if mosquitto is not None else args.broker
        held = args.dashboard and keep is not None  # the dashboard reads the broker until the hold ends
        if mosquitto is not None and held:
            assert keep is not None
            keep.callback(mosquitto.close)
        opts = FullStackOptions(
            broker_url=broker_url,
            chain_url=args.chain,
            faults=args.faults,
            nodes=args.nodes,
            clock=args.clock,
            market="stations" if live_stations else "p2p",
        )
        try:
            if args.agents == "gateway":
                from hil.community.agentrun import run_agents
                from hil.community.simdash import SimDashboard

                cfg.strategy_name = "gateway agents"
                dashboard = None
                if args.dashboard:
                    port = args.dashboard_port
                    dashboard = SimDashboard((port, port + 1) if port is not None else None)
                result, summary = run_agents(cfg, opts, progress=progress, dashboard=dashboard, keep=keep)
            else:
                result, summary = run_fullstack(cfg, opts, strategy, progress=progress)
        except ValueError as exc:
            print(f"gridpact simulate: {exc}", file=sys.stderr)
            return 2
        finally:
            if mosquitto is not None and not held:
                mosquitto.close()
    paths = write_report(result, summary, args.out)
    if args.json:
        print(json.dumps(summary["community"], indent=1))
    print_summary(summary, paths)
    if not summary["community"]["token_conservation"]:
        return 1
    return 3 if any(v.startswith("NOT RUN") for v in summary["layers"].values()) else 0
