"""The `gridpact` command: a thin dispatcher.

Each subcommand lives in its own component and is imported only when used, so that
`gridpact firmware build` does not pay for web3, and a broken component cannot break
the others' commands.
"""

from __future__ import annotations

import importlib
import sys
from typing import Protocol, cast


class Command(Protocol):
    """What every subcommand's module offers: `main(argv) -> exit status` (checked by the CLI tests)."""

    def main(self, argv: list[str]) -> int: ...


# subcommand -> (module with `main(argv) -> int`, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("hil.community.cli", "run a virtual community end to end and write a report"),
    "meter-sim": ("meter_sim.cli", "serve software Eastron meters over Modbus TCP/RTU"),
    "gateway": ("gateway.cli", "the household gateway service and its tools"),
    "firmware": ("firmware.host.cli", "build, deploy and monitor the meter-node firmware"),
    "contracts": ("contracts.cli", "compile and deploy the token and market contracts"),
    "negotiate": ("gateway.negotiation.cli", "run negotiations, train and evaluate strategies"),
    "study": ("hil.study.cli", "sweep the simulator on a Dask cluster; `study cooperative`: one big case"),
    "hil": ("hil.cli", "run the hardware-in-the-loop suite on a real or virtual board"),
    "dashboard": (
        "gateway.dashboard.community_server",
        "the community operator's dashboard and block explorer",
    ),
    "bench": ("benches", "measure speed and memory of each component"),
}


# top-level module -> the extra that installs it (pyproject.toml), for the one-line hint below
EXTRA_OF: dict[str, str] = {
    **dict.fromkeys(("matplotlib", "amqtt", "pymodbus", "serial", "eth_tester", "eth"), "sim"),
    **dict.fromkeys(
        (
            "starlette",
            "uvicorn",
            "jinja2",
            "itsdangerous",
            "multipart",
            "pwdlib",
            "argon2",
            "psycopg",
            "authlib",
            "joserfc",
            "httpx",
        ),
        "dashboard",
    ),
    **dict.fromkeys(("dask", "distributed"), "study"),
    "torch": "gpu",
    **dict.fromkeys(("pytest", "hypothesis", "playwright"), "dev"),
}


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The extra a missing third-party module comes with, or None (then the error is a bug, raised)."""
    return EXTRA_OF.get((error.name or "").split(".")[0])


def usage() -> str:
    lines = ["usage: gridpact <command> [args...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] == "--version":
        from gridpact import __version__

        print(__version__)
        return 0
    entry = SUBCOMMANDS.get(args[0])
    if entry is None:
        print(f"gridpact: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = cast(Command, importlib.import_module(entry[0]))  # by name: only the command used is loaded
        return int(module.main(args[1:]) or 0)
    except ModuleNotFoundError as e:  # a Pi's `pip install .` leaves the simulator's extras out
        extra = missing_extra(e)
        if extra is None:
            raise
        print(
            f"gridpact {args[0]}: needs {e.name}, which comes with the {extra!r} extra: "
            f"pip install 'gridpact[{extra}]'",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
