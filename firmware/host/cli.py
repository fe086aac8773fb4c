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


STAGING = ".deploy-new"  # on the board: the new firmware is copied here first, then swapped in
SWAPPED = "gridpact-deploy: swapped"


def swap_code(sizes: dict[str, int], stale: list[str]) -> str:
    """Device code run in one exec once everything is staged: check every staged file's size,
    then move them over the old ones and remove stale sources that would shadow the .mpy files.
    The whole program reaches the board before it runs, so a line that drops now cannot stop a
    swap halfway; one that drops while copying leaves the old files untouched."""
    return (
        f"import os\nS={STAGING!r}\nW={sizes!r}\n"
        "for n in W:\n"
        " if os.stat(S+'/'+n)[6]!=W[n]:\n"
        "  raise OSError('staged '+n+' is incomplete')\n"
        "for n in W:\n"
        " try:\n  os.remove(n)\n except OSError:\n  pass\n"
        " os.rename(S+'/'+n,n)\n"
        f"for n in {stale!r}:\n"
        " try:\n  os.remove(n)\n except OSError:\n  pass\n"
        "os.rmdir(S)\n"
        f"print({SWAPPED!r},len(W))"
    )


def stage_code() -> str:
    """Device code: an empty staging folder (what a failed deploy left there is removed)."""
    return (
        f"import os\nS={STAGING!r}\n"
        "try:\n for n in os.listdir(S):\n  os.remove(S+'/'+n)\n os.rmdir(S)\nexcept OSError:\n pass\n"
        "os.mkdir(S)"
    )


def deploy_commands(port: str, bundle: Path, config: Path) -> list[list[str]]:
    """Two mpremote 1.29 sessions (commands chained with `+`). The first copies the bundle and
    config.json into a staging folder on the board; only if all of it arrived does the second
    swap the files in (one exec, see `swap_code`) and hard-reset the board so main.py starts.
    A full or read-only filesystem or a dropped line therefore fails the first session and
    leaves the previous firmware as it was."""
    files = sorted(p for p in bundle.iterdir() if p.suffix == ".mpy" or p.name in SOURCE_ONLY)
    stale = [p.stem + ".py" for p in files if p.suffix == ".mpy"]
    sizes = {p.name: p.stat().st_size for p in files} | {"config.json": config.stat().st_size}
    return [
        [*MPREMOTE, "connect", port, "exec", stage_code(), "+", "fs", "cp", *map(str, files),
         f":{STAGING}/", "+", "fs", "cp", str(config), f":{STAGING}/config.json"],
        [*MPREMOTE, "connect", port, "exec", swap_code(sizes, stale), "+", "reset"],
    ]  # fmt: skip


def _deploy(cmds: list[list[str]], dry_run: bool) -> int:
    """Run the staging session, then the swap; say plainly what state the board is left in."""
    stage, swap = cmds
    print(shlex.join(stage), flush=True)
    print(shlex.join(swap), flush=True)
    if dry_run:
        return 0
    rc = subprocess.run(stage).returncode
    if rc != 0:
        print(
            f"gridpact firmware: deploy failed: copying to the board failed (mpremote exit {rc}); "
            "nothing was replaced, the board keeps its previous firmware",
            file=sys.stderr,
        )
        return 1
    proc = subprocess.run(swap, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0 or SWAPPED not in proc.stdout:
        print(
            f"gridpact firmware: deploy failed: the swap on the board did not confirm (mpremote exit "
            f"{proc.returncode}); check the board with `mpremote connect PORT fs ls`",
            file=sys.stderr,
        )
        return 1
    print("gridpact firmware: deployed; the board was reset and boots the new firmware")
    return 0


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
                return _deploy(deploy_commands(args.port, args.bundle, args.config), args.dry_run)
            with tempfile.TemporaryDirectory(prefix="gridpact-fw-") as tmp:
                bundle = build(args.board, Path(tmp) / "bundle")
                return _deploy(deploy_commands(args.port, bundle.out, args.config), args.dry_run)
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
