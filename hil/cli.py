"""`gridpact hil`: run the HIL suite against a bench (rig file) or a virtual board.

    gridpact hil                                   # every virtual backend
    gridpact hil --board virtual-cpython
    gridpact hil --rig bench.toml                  # the board named in the rig file
    gridpact hil --rig bench.toml --soak           # include the 24 h soak (hardware only)
    gridpact hil --check-rig bench.toml            # validate a rig file and print it

Extra arguments after `--` go to pytest (e.g. `-- -k outage -x`).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

from hil.rig import BOARDS, RigError, load_rig
from hil.services import REPO_ROOT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gridpact hil", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--board", choices=BOARDS, help="backend (default: the rig file's board, else every virtual one)"
    )
    p.add_argument("--rig", type=Path, help="rig file (TOML), see hil/rig.example.toml")
    p.add_argument("--soak", action="store_true", help="also run the 24 h soak (hardware only)")
    p.add_argument("--check-rig", type=Path, metavar="FILE", help="validate a rig file, print it and exit")
    p.add_argument("--junit", type=Path, help="write a JUnit XML report here")
    return p


def pytest_command(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """The pytest command line this invocation runs (printed first, so a bench log shows it)."""
    cmd = [sys.executable, "-m", "pytest", str(REPO_ROOT / "hil" / "tests"), "-p", "no:cacheprovider", "-v"]
    board = args.board
    if args.rig is not None:
        cmd += ["--rig", str(args.rig)]
        board = board or load_rig(args.rig).board
    if board:
        cmd += ["--board", board]
    if not args.soak:
        cmd += ["-k", "not soak"]
    if args.junit:
        cmd += ["--junitxml", str(args.junit)]
    return cmd + extra


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    try:
        if args.check_rig is not None:
            rig = load_rig(args.check_rig)
            for name, value in dataclasses.asdict(rig).items():
                if name not in ("hmac_key_hex", "wifi_password", "extra"):
                    print(f"{name} = {value!r}")
            return 0
        cmd = pytest_command(args, extra)
    except RigError as exc:
        print(f"gridpact hil: {exc}", file=sys.stderr)
        return 2
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO_ROOT)
