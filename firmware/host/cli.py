"""`gridpact firmware build|deploy|monitor|typecheck`: host tools for the meter node."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from firmware.host.build import BOARDS, SOURCE_ONLY, BuildError, build
from firmware.host.golden import device_namespace

MPREMOTE = [sys.executable, "-m", "mpremote"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gridpact firmware", description="build, deploy and monitor the meter node"
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="compile the device code into an mpy bundle")
    b.add_argument("--board", required=True, choices=sorted(BOARDS))
    b.add_argument("--out", type=Path, help="output folder (default: build/firmware-<board>)")
    d = sub.add_parser(
        "deploy", help="copy a bundle and config.json to a board through mpremote, then reset it"
    )
    d.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB0")
    d.add_argument("--board", required=True, choices=sorted(BOARDS))
    d.add_argument("--config", required=True, type=Path, help="the node's config.json")
    d.add_argument("--bundle", type=Path, help="a folder from `build` (default: build now)")
    d.add_argument("--dry-run", action="store_true", help="print the mpremote command lines only")
    m = sub.add_parser("monitor", help="show the node's console (does not interrupt the firmware)")
    m.add_argument("--port", required=True)
    m.add_argument("--dry-run", action="store_true")
    t = sub.add_parser("typecheck", help="pyright the device code against the MicroPython stubs")
    t.add_argument("--board", choices=sorted(BOARDS), action="append", help="default: both")
    return p


def check_config(path: Path) -> list[str]:
    """The device's own validator, run on the host before anything is copied."""
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        return [f"{path}: cannot be read ({e.strerror})"]
    except ValueError as e:
        return [f"{path}: not valid JSON ({e})"]
    _cfg, errors = device_namespace().load("config").validate(raw)
    return list(errors)


def deploy_commands(port: str, bundle: Path, config: Path) -> list[list[str]]:
    """One mpremote 1.29 session (commands chained with `+`): remove stale sources that would shadow
    the .mpy files, copy the bundle and config.json, hard-reset so that main.py starts."""
    files = sorted(p for p in bundle.iterdir() if p.suffix == ".mpy" or p.name in SOURCE_ONLY)
    stale = [p.stem + ".py" for p in files if p.suffix == ".mpy"]
    cleanup = f"import os\nfor f in {stale!r}:\n try:\n  os.remove(f)\n except OSError:\n  pass"
    return [
        [*MPREMOTE, "connect", port, "exec", cleanup, "+", "fs", "cp", *map(str, files), ":", "+",
         "fs", "cp", str(config), ":config.json", "+", "reset"],
    ]  # fmt: skip


def monitor_command(port: str) -> list[str]:
    return [*MPREMOTE, "connect", port, "resume", "repl"]


def _run(cmds: list[list[str]], dry_run: bool) -> int:
    for cmd in cmds:
        print(shlex.join(cmd), flush=True)
        if not dry_run:
            rc = subprocess.run(cmd).returncode
            if rc != 0:
                print(f"gridpact firmware: mpremote failed (exit {rc})", file=sys.stderr)
                return rc
    return 0


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        if args.cmd == "build":
            out = args.out or Path("build") / f"firmware-{args.board}"
            bundle = build(args.board, out)
            print(f"built {len(bundle.files)} files for {args.board} in {out}")
            return 0
        if args.cmd == "deploy":
            errors = check_config(args.config)
            if errors:
                for e in errors:
                    print(f"config error: {e}", file=sys.stderr)
                return 2
            if args.bundle is not None:
                if not (args.bundle / "manifest.json").exists():
                    print(
                        f"gridpact firmware: {args.bundle} is not a bundle (no manifest.json)",
                        file=sys.stderr,
                    )
                    return 2
                board = json.loads((args.bundle / "manifest.json").read_text())["board"]
                if board != args.board:
                    print(f"gridpact firmware: bundle is for {board}, not {args.board}", file=sys.stderr)
                    return 2
                return _run(deploy_commands(args.port, args.bundle, args.config), args.dry_run)
            with tempfile.TemporaryDirectory(prefix="gridpact-fw-") as tmp:
                bundle = build(args.board, Path(tmp) / "bundle")
                return _run(deploy_commands(args.port, bundle.out, args.config), args.dry_run)
        if args.cmd == "monitor":
            return _run([monitor_command(args.port)], args.dry_run)
        if args.cmd == "typecheck":
            from firmware.host.stubs import BOARD_PORT, typecheck

            rc = 0
            for board in args.board or sorted(BOARDS):
                proc = typecheck(BOARD_PORT[board])
                print(
                    f"{board}: {proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr}"
                )
                if proc.returncode != 0:
                    print(proc.stdout)
                    rc = 1
            return rc
    except BuildError as e:
        print(f"gridpact firmware: {e}", file=sys.stderr)
        return 1
    return 2
