"""The `gridpact` command: a thin dispatcher.

Each subcommand lives in its own component and is imported only when used, so that
`gridpact firmware build` does not pay for web3, and a broken component cannot break
the others' commands.
"""

from __future__ import annotations

import functools
import importlib
import re
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


DIST = "gridpact"
# a requirement in the installed metadata: `name[extras]==1.0; extra == "sim"`
REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?[^;]*(?:;(.*))?")
EXTRA_MARKER = re.compile(r"""\bextra\s*==\s*["']([^"']+)["']""")


def normal_name(name: str) -> str:
    """A distribution's or extra's name as packaging compares them (`Jinja2`, `jinja_2` -> `jinja2`)."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


# import name -> distribution, where they differ, for modules of an extra that may be absent (then the
# installed metadata cannot say which distribution a module comes from); which extra is pyproject's to say
DIST_OF_MODULE: dict[str, str] = {
    "serial": "pyserial",
    "eth": "py-evm",
    "multipart": "python-multipart",
    "argon2": "argon2-cffi",
}


@functools.cache
def extra_of_distribution() -> dict[str, str]:
    """Distribution (normalised) -> the extra that installs it with the least else.

    Read from the installed gridpact's metadata, i.e. pyproject.toml's optional dependencies, which
    stay the one list. A distribution in several extras (httpx: dashboard and dev) gets the smallest
    one, counting what an extra includes (`gridpact[sim]` in dev)."""
    from importlib import metadata

    try:
        requires = metadata.requires(DIST) or []
    except metadata.PackageNotFoundError:  # a source tree never installed: no hints
        return {}
    named: dict[str, list[str]] = {}  # extra -> distributions it names, in pyproject's order
    included: dict[str, set[str]] = {}  # extra -> the extras of gridpact it names
    for line in requires:
        req = REQUIREMENT.fullmatch(line)
        marker = EXTRA_MARKER.search(req[3] or "") if req else None
        if req is None or marker is None:
            continue  # a base dependency: installed with gridpact itself, never the hint
        extra, dist = normal_name(marker[1]), normal_name(req[1])
        if dist == DIST:
            included.setdefault(extra, set()).update(
                normal_name(e) for e in (req[2] or "").split(",") if e.strip()
            )
        else:
            named.setdefault(extra, []).append(dist)

    def installs(extra: str, seen: frozenset[str]) -> set[str]:
        dists = set(named.get(extra, []))
        for inner in included.get(extra, set()) - seen:
            dists |= installs(inner, seen | {inner})
        return dists

    size = {extra: len(installs(extra, frozenset({extra}))) for extra in named}
    out: dict[str, str] = {}
    for extra in sorted(named, key=size.__getitem__):
        for dist in named[extra]:
            out.setdefault(dist, extra)
    return out


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The extra a missing third-party module comes with, or None (then the error is a bug, raised).

    The module's distributions come from what is installed (`serial` -> pyserial); a module whose
    distribution is not installed (torch, or any extra's module on a Pi) is looked up by its own name,
    or by `DIST_OF_MODULE` where the two differ."""
    from importlib import metadata

    module = (error.name or "").split(".")[0]
    if not module:
        return None
    extras = extra_of_distribution()
    guesses = [*metadata.packages_distributions().get(module, []), DIST_OF_MODULE.get(module, module)]
    for dist in guesses:
        extra = extras.get(normal_name(dist))
        if extra is not None:
            return extra
    return None


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
