"""`gridpact gateway ...`: run the service, check its config, install the unit, show status.

Subcommands this module does not know (e.g. `keystore`, `trade`) go to the trading engineer's
`gateway.trade_cli:main(argv)`, imported only when used.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from gateway.errors import ConfigError

OWN = ("run", "check-config", "install-service", "status", "keygen", "dashboard-user")
TRADING = ("keystore", "trade")  # parsed by gateway/trade_cli.py; listed here so --help shows them


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gridpact gateway", description="the household gateway service and its tools"
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("keystore", help="the gateway's encrypted key: create, address", add_help=False)
    sub.add_parser("trade", help="trading journal and funds: status, deposit, export-abi", add_help=False)
    run = sub.add_parser("run", help="run the gateway service (systemd: Type=notify)")
    run.add_argument("--config", required=True, type=Path)
    check = sub.add_parser("check-config", help="validate a config file and print it (no secrets)")
    check.add_argument("--config", required=True, type=Path)
    inst = sub.add_parser("install-service", help="install the systemd unit")
    inst.add_argument("--unit-dir", type=Path, default=Path("/etc/systemd/system"))
    inst.add_argument(
        "--config", default="/etc/gridpact/gateway.toml", help="absolute config path for ExecStart"
    )
    inst.add_argument(
        "--exec", dest="executable", default=None, help="absolute path of gridpact (default: this one)"
    )
    inst.add_argument("--no-reload", action="store_true", help="do not run `systemctl daemon-reload`")
    inst.add_argument("--print", dest="print_only", action="store_true", help="print the unit, write nothing")
    inst.add_argument(
        "--no-trading", action="store_true", help="ingest-only: no keystore passphrase credential"
    )
    st = sub.add_parser("status", help="readings, node availability and the running service's counters")
    st.add_argument("--config", required=True, type=Path)
    kg = sub.add_parser("keygen", help="write a new random meter HMAC key (hex) to a file, mode 0600")
    kg.add_argument("--out", required=True, type=Path)
    kg.add_argument("--bytes", type=int, default=32)
    du = sub.add_parser("dashboard-user", help="add, remove or list dashboard accounts")
    du_sub = du.add_subparsers(dest="action", required=True)
    add = du_sub.add_parser("add", help="create or replace an account (password read from the terminal)")
    add.add_argument("name")
    add.add_argument("--role", choices=("household", "operator"), default="household")
    add.add_argument("--household", default=None, help="gateway id it may see (default: this gateway's)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument(
        "--no-password", action="store_true", help="sign-in only through [dashboard.oidc]'s identity provider"
    )
    add.add_argument("--config", required=True, type=Path)
    rm = du_sub.add_parser("remove", help="delete an account")
    rm.add_argument("name")
    rm.add_argument("--config", required=True, type=Path)
    ls = du_sub.add_parser("list", help="list accounts (names and roles, never hashes)")
    ls.add_argument("--config", required=True, type=Path)
    return p


def _dashboard_user(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.dashboard.auth import AccountStore, list_or_remove, read_new_password

    cfg = load_config(args.config)
    if cfg.dashboard is None:
        print("gridpact gateway dashboard-user: the config has no [dashboard] section", file=sys.stderr)
        return 2
    store = AccountStore(cfg.dashboard.accounts_path)
    try:
        done = list_or_remove(store, args.action, args.name if args.action != "list" else "")
        if done is not None:
            return done
        password = None if args.no_password else read_new_password(args.name, args.password_stdin)
        if password is None and not args.no_password:
            return 2
        account = store.add(args.name, args.role, args.household or cfg.gateway.id, password)
        print(f"account {account.name} ({account.role}, household {account.household}) saved")
        return 0
    finally:
        store.close()


async def _serve(cfg: object) -> int:
    from gateway.service import run_gateway

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await run_gateway(cfg)  # type: ignore[arg-type]
    except asyncio.CancelledError:
        return 0
    return 0


def _run(path: Path) -> int:
    from gateway.config import load_config
    from gateway.ops.logs import log_event, setup_logging

    cfg = load_config(path)
    setup_logging(cfg.gateway.log_level)
    try:
        return asyncio.run(_serve(cfg))
    except ConfigError:
        raise
    except Exception as exc:  # the root failed: log once, exit non-zero so systemd restarts us
        for leaf in _leaves(exc):
            log_event(logging.CRITICAL, "gateway.failed", error=repr(leaf)[:500])
        return 1


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, which is what a TaskGroup raises."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _check(path: Path) -> int:
    from gateway.config import load_config

    cfg = load_config(path)
    for section in ("gateway", "meter", "meter_broker", "storage", "forecast", "metrics"):
        print(f"[{section}] {getattr(cfg, section)}")
    print(f"[trading] {'configured' if cfg.trading is not None else 'absent (ingest-only gateway)'}")
    return 0


def _install(args: argparse.Namespace) -> int:
    from gateway.ops.install import find_executable, install, next_steps, render_unit

    executable = args.executable or find_executable()
    if args.print_only:
        print(render_unit(executable, args.config, trading=not args.no_trading), end="")
        return 0
    target = install(
        args.unit_dir, executable, args.config, reload=not args.no_reload, trading=not args.no_trading
    )
    print(next_steps(target, args.config, trading=not args.no_trading))
    return 0


def _status(path: Path) -> int:
    from gateway.config import load_config
    from gateway.ops.status import status_lines

    lines, healthy = status_lines(load_config(path))
    print("\n".join(lines))
    return 0 if healthy else 3


def _keygen(out: Path, nbytes: int) -> int:
    if not 16 <= nbytes <= 64:
        print("gridpact gateway keygen: --bytes must be 16..64", file=sys.stderr)
        return 2
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(nbytes) + "\n")
    print(f"wrote a {nbytes}-byte key to {out} (mode 0600); give the same key to the meter node")
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] in TRADING:
        from gateway import trade_cli as trading_cli

        return int(trading_cli.main(argv) or 0)
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "run":
            return _run(args.config)
        if args.cmd == "check-config":
            return _check(args.config)
        if args.cmd == "install-service":
            return _install(args)
        if args.cmd == "status":
            return _status(args.config)
        if args.cmd == "keygen":
            return _keygen(args.out, args.bytes)
        return _dashboard_user(args)
    except ConfigError as exc:
        print(f"gridpact gateway: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"gridpact gateway {args.cmd}: {exc}", file=sys.stderr)
        return 1
