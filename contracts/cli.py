"""`gridpact contracts build|deploy|slither|admission|demand`: compile the contracts, deploy them, analyse them
statically, admit households by vote, run demand-response events."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from contracts import admission_cli, demand_cli
from contracts.build import ARTIFACTS, CompileError, build
from contracts.deploy import DEFAULT_UTILITIES, deploy_all

PASSWORD_ENV = "GRIDPACT_KEYSTORE_PASSWORD"


def _add_key(parser: argparse.ArgumentParser, required: bool) -> None:
    """--keystore FILE | --dev-key N: the key that signs."""
    key = parser.add_mutually_exclusive_group(required=required)
    key.add_argument(
        "--keystore", type=Path, help=f"encrypted JSON keystore (password from ${PASSWORD_ENV} or prompt)"
    )
    key.add_argument(
        "--dev-key", type=int, metavar="N", help="anvil's well-known dev key N (local chains only)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridpact contracts", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="compile contracts/src into contracts/artifacts (cached)")
    b.add_argument("--force", action="store_true", help="recompile even if the cache is current")
    d = sub.add_parser("deploy", help="deploy the token and one market per utility")
    d.add_argument("--rpc", required=True, help="JSON-RPC URL, or 'inprocess' for a throwaway in-process EVM")
    _add_key(d, True)
    d.add_argument("--utility", action="append", help="utility name (repeatable; default: electricity)")
    d.add_argument(
        "--community", help="address that gets the admin/minter/community roles (default: deployer)"
    )
    d.add_argument("--json", action="store_true", help="print the addresses as JSON")
    s = sub.add_parser(
        "slither",
        help="static analysis of contracts/src; fails on a high or medium finding not explained in the triage file",
    )
    s.add_argument("--slither", type=Path, help="the slither executable (default: .venv-slither/bin/slither)")
    s.add_argument("--triage", type=Path, help="triage file (default: contracts/slither-triage.json)")
    s.add_argument("--report", type=Path, help="also write slither's JSON report here")
    s.add_argument("--all", action="store_true", help="also list the low and informational findings")
    admission_cli.add_parser(sub, _add_key)
    demand_cli.add_parser(sub, _add_key)
    return parser


def _slither(args: argparse.Namespace) -> int:
    from contracts import slither

    try:
        report = slither.run_slither(slither=args.slither or slither.SLITHER)
        if args.report:
            args.report.write_text(json.dumps(report, indent=1))
        verdict, findings = slither.check(report, args.triage or slither.TRIAGE)
    except (slither.SlitherError, ValueError, OSError) as exc:
        print(f"gridpact contracts slither: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: slither's process group is already gone
        print("gridpact contracts slither: interrupted", file=sys.stderr)
        return 130
    print(slither.format_verdict(verdict))
    if args.all:
        for f in findings:
            if f.impact not in slither.GATED:
                print(f"  {f.impact:<13} {f.check} at {f.location}")
    return 0 if verdict.ok else 1


def _private_key(args: argparse.Namespace) -> str:
    if args.dev_key is not None:
        from contracts.devchain import DEV_PRIVATE_KEYS

        if not 0 <= args.dev_key < len(DEV_PRIVATE_KEYS):
            raise ValueError(f"--dev-key must be 0..{len(DEV_PRIVATE_KEYS) - 1}")
        return DEV_PRIVATE_KEYS[args.dev_key]
    from eth_account import Account

    keystore = json.loads(args.keystore.read_text())
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = getpass.getpass(f"password for {args.keystore}: ")
    return "0x" + bytes(Account.decrypt(keystore, password)).hex()


def _web3(rpc: str):  # -> web3.Web3
    if rpc == "inprocess":
        from contracts.devchain import in_process_web3

        return in_process_web3()
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": 60}))
    if not w3.is_connected():
        raise ConnectionError(f"no JSON-RPC node answers at {rpc}")
    return w3


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "slither":
        return _slither(args)
    if args.command in ("admission", "demand"):
        try:
            w3 = _web3(args.rpc)
            key = _private_key(args) if args.action != "status" else None
        except (ValueError, ConnectionError, OSError) as exc:
            print(f"gridpact contracts {args.command}: {exc}", file=sys.stderr)
            return 1
        if args.command == "demand":
            return demand_cli.run(args, w3, key)
        return admission_cli.run(args, w3, key)
    if args.command == "build":
        try:
            folder = build(force=args.force)
        except CompileError as exc:
            print(f"gridpact contracts build: {exc}", file=sys.stderr)
            return 1
        for path in sorted(folder.glob("*.json")):
            size = (len(json.loads(path.read_text())["deployedBytecode"]) - 2) // 2
            print(f"{path.stem:<16} {size:>6} bytes runtime  ({path.relative_to(ARTIFACTS.parent.parent)})")
        return 0
    try:
        key = _private_key(args)
        w3 = _web3(args.rpc)
        result = deploy_all(w3, key, tuple(args.utility or DEFAULT_UTILITIES), community=args.community)
    except (ValueError, ConnectionError, OSError, CompileError) as exc:
        print(f"gridpact contracts deploy: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"token   {result['token']}")
        for name, address in result["markets"].items():
            print(f"market  {address}  ({name})")
        for name, address in result["admission"].items():
            print(f"admission {address}  ({name})")
        for name, address in result["demand"].items():
            print(f"demand  {address}  ({name}: [demand_response] contract)")
    return 0
