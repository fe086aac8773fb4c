"""`gridpact meter-sim`: serve software meters until SIGTERM/SIGINT; print profiles."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gridpact.core.clock import AcceleratedClock
from gridpact.core.config import ConfigError, get, reject_unknown, typed
from meter_sim.farm import MeterFarm
from meter_sim.faults import FaultError, load_timeline, parse_timeline
from meter_sim.inverter import Inverter
from meter_sim.maps import load_map
from meter_sim.profiles import ProfileError, parse_profile


class UsageError(ValueError):
    """Bad arguments or configuration: exit status 2 with the message."""


@dataclass
class MeterSpec:
    model: str
    unit_id: int
    profile: str
    name: str | None = None
    faults: str | None = None
    inverter_unit: int | None = None  # its household battery's inverter, on a TCP endpoint


@dataclass
class EndpointSpec:
    tcp: tuple[str, int] | None = None
    rtu: str | None = None
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    meters: list[MeterSpec] = field(default_factory=list)


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--tcp wants HOST:PORT, not {text!r}")
    return host, int(port)


def parse_meter_arg(text: str) -> MeterSpec:
    """`MODEL@UNIT:PROFILE`, e.g. `sdm630@2:household:seed=3,pv_kwp=5`."""
    head, sep, profile = text.partition(":")
    model, at, unit = head.partition("@")
    if not sep or not at or not unit.isdigit() or not profile:
        raise UsageError(f"--meter wants MODEL@UNIT:PROFILE, not {text!r}")
    return MeterSpec(model, int(unit), profile)


def parse_config(data: object) -> tuple[list[EndpointSpec], dict]:
    """A farm file: {"speed", "start", "seed", "tick_s", "truth", "faults", "endpoints": [...]}.

    Read with gridpact.core.config's typed reads: every error is a ConfigError naming the key."""
    if not isinstance(data, dict):
        raise ConfigError("<file>", "a JSON object with an 'endpoints' list")
    options_known = {"speed", "start", "seed", "tick_s", "truth", "faults"}
    reject_unknown("config", data, options_known | {"endpoints"})
    endpoints = []
    for n, e in enumerate(get(data, "config", "endpoints", list)):
        where = f"endpoints[{n}]"
        e = typed(where, e, dict)
        reject_unknown(where, e, {"tcp", "rtu", "baud", "parity", "stopbits", "meters"})
        tcp = get(e, where, "tcp", str, None)
        meters = []
        for i, m in enumerate(get(e, where, "meters", list)):
            mw = f"{where}.meters[{i}]"
            m = typed(mw, m, dict)
            reject_unknown(mw, m, {"model", "unit_id", "profile", "name", "faults", "inverter_unit"})
            meters.append(MeterSpec(get(m, mw, "model", str), get(m, mw, "unit_id", int), get(m, mw, "profile", str),
                                    get(m, mw, "name", str, None), get(m, mw, "faults", str, None),
                                    get(m, mw, "inverter_unit", int, None)))  # fmt: skip
        try:
            host_port = parse_hostport(tcp) if tcp is not None else None
        except UsageError as exc:
            raise ConfigError(f"{where}.tcp", str(exc)) from None
        spec = EndpointSpec(
            tcp=host_port,
            rtu=get(e, where, "rtu", str, None),
            baud=get(e, where, "baud", int, 9600),
            parity=get(e, where, "parity", str, "N"),
            stopbits=get(e, where, "stopbits", int, 1),
            meters=meters,
        )
        if (spec.tcp is None) == (spec.rtu is None):
            raise ConfigError(where, "give exactly one of tcp, rtu")
        if spec.rtu is not None and any(m.inverter_unit is not None for m in meters):
            raise ConfigError(where, "battery inverters are served on tcp endpoints only")
        endpoints.append(spec)
    options = {k: data[k] for k in options_known if k in data}
    return endpoints, options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridpact meter-sim", description="software Eastron meters")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve meters over Modbus TCP or RTU")
    s.add_argument("--model", default="sdm120")
    s.add_argument("--unit-id", type=int, default=1)
    s.add_argument("--tcp", help="HOST:PORT (port 0: a free one)")
    s.add_argument("--rtu", help="serial device, e.g. /dev/ttyUSB0 or a pty")
    s.add_argument("--baud", type=int, default=9600)
    s.add_argument("--parity", default="N", choices=["N", "E", "O"])
    s.add_argument("--stopbits", type=int, default=1, choices=[1, 2])
    s.add_argument("--profile", help="constant:..., household:..., csv:PATH")
    s.add_argument("--inverter-unit", type=int, help="serve the --profile household's battery inverter (tcp)")
    s.add_argument("--meter", action="append", default=[], help="MODEL@UNIT:PROFILE (repeatable)")
    s.add_argument("--config", help="farm JSON file (several endpoints)")
    s.add_argument("--speed", type=float, default=1.0)
    s.add_argument("--start", type=float, help="meter clock start, Unix seconds (default now)")
    s.add_argument("--tick", type=float, default=1.0, help="physics step, meter seconds")
    s.add_argument("--truth", help="write ground truth (JSON lines) here")
    s.add_argument("--faults", help="faults timeline (JSON)")
    s.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("profile", help="print a profile as CSV (timestamp,load_w,pv_w,grid_w)")
    p.add_argument("spec")
    p.add_argument("--start", type=float, default=1767225600.0)
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--step", type=float, default=900.0)
    return parser


def endpoints_from_args(args: argparse.Namespace) -> tuple[list[EndpointSpec], dict]:
    """The endpoints and options a `serve` command line asks for, checked."""
    if args.config:
        try:
            data = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError("<file>", f"cannot read {args.config}: {exc}") from None
        endpoints, options = parse_config(data)
    else:
        if (args.tcp is None) == (args.rtu is None):
            raise UsageError("give exactly one of --tcp HOST:PORT, --rtu DEVICE (or --config)")
        meters = [parse_meter_arg(m) for m in args.meter]
        if args.inverter_unit is not None and (not args.profile or args.tcp is None):
            raise UsageError("--inverter-unit needs --profile (with a battery) and --tcp")
        if args.profile:
            meters.insert(
                0, MeterSpec(args.model, args.unit_id, args.profile, inverter_unit=args.inverter_unit)
            )
        if not meters:
            raise UsageError("give --profile SPEC or at least one --meter MODEL@UNIT:PROFILE")
        tcp = parse_hostport(args.tcp) if args.tcp else None
        endpoints = [EndpointSpec(tcp, args.rtu, args.baud, args.parity, args.stopbits, meters)]
        options = {}
    merged = {"speed": args.speed, "start": args.start, "seed": args.seed, "tick_s": args.tick}
    merged.update({"truth": args.truth, "faults": args.faults})
    merged.update({k: v for k, v in options.items() if v is not None})
    for e in endpoints:
        for m in e.meters:
            load_map(m.model)
            parse_profile(m.profile)
            if not 1 <= m.unit_id <= 247:
                raise UsageError(f"unit id {m.unit_id} outside 1..247")
            if m.inverter_unit is not None:
                if parse_profile(m.profile).battery_kwh <= 0:
                    raise UsageError(f"meter {m.unit_id}: an inverter needs a profile with battery_kwh > 0")
                if not 1 <= m.inverter_unit <= 247 or m.inverter_unit == m.unit_id:
                    raise UsageError(f"inverter unit id {m.inverter_unit}: 1..247 and not the meter's own")
    return endpoints, merged


async def serve(endpoints: list[EndpointSpec], opts: dict, stop: asyncio.Event | None = None) -> int:
    """Start every endpoint, print the ready lines, run until SIGTERM/SIGINT (or `stop`)."""
    clock = AcceleratedClock(rate=float(opts["speed"]), start=opts.get("start"))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    timeline = load_timeline(opts["faults"], clock.now()) if opts.get("faults") else []
    farm = MeterFarm(clock, truth=opts.get("truth"), seed=int(opts["seed"]))
    try:
        for e in endpoints:
            meters, inverters = [], []
            for m in e.meters:
                own = load_timeline(m.faults, clock.now()) if m.faults else []
                faults = [f for unit, f in timeline + own if unit in (None, m.unit_id)]
                meter = farm.add_meter(
                    m.model, m.unit_id, m.profile, name=m.name, faults=faults, tick_s=opts["tick_s"]
                )
                meters.append(meter)
                if m.inverter_unit is not None:
                    inverters.append(Inverter(meter, m.inverter_unit))
            if e.tcp is not None:
                await farm.serve_tcp(e.tcp[0], e.tcp[1], meters, inverters)
            else:
                assert e.rtu is not None
                await farm.serve_rtu(e.rtu, meters, baud=e.baud, parity=e.parity, stopbits=e.stopbits)
        for endpoint in farm.endpoints:
            print(endpoint.ready_line, flush=True)
        await stop.wait()
    finally:
        await farm.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    return 0


def print_profile(spec: str, start: float, hours: float, step: float) -> int:
    from meter_sim.profiles import Household

    household = Household.from_spec(spec)
    n = int(hours * 3600 / step)
    load, pv = household.profile.series(start, n, step)
    grid = household.grid_series(start, n, step)
    print("timestamp,load_w,pv_w,grid_w")
    for i in range(n):
        print(f"{start + i * step:.0f},{load[i]:.1f},{pv[i]:.1f},{grid[i]:.1f}")
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "profile":
            return print_profile(args.spec, args.start, args.hours, args.step)
        endpoints, opts = endpoints_from_args(args)
        return asyncio.run(serve(endpoints, opts))
    except (UsageError, ProfileError, FaultError, ValueError, OSError) as exc:
        print(f"gridpact meter-sim: {exc}", file=sys.stderr)
        return 2


__all__ = ["main", "parse_timeline", "serve"]
