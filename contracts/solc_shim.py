"""A native-looking `solc` over the pinned npm solcjs, for tools that need a `solc` executable (slither).

crytic-compile (slither's front end) asks `solc --version`, then, with `--solc-standard-json`, pipes a
standard-JSON input into `solc --standard-json --allow-paths DIR`. This answers exactly those two calls:
the version is the one contracts/build.py pins, and every compilation runs with build.py's settings
(optimizer, EVM version, viaIR, remappings), so the code analysed is the code deployed. Only the output
selection comes from the caller (slither needs the AST and source maps, which the build does not keep).
Sources given by URL are read here, relative to the working directory and only inside it.

`contracts/tools/solc-shim` is the executable wrapper; anything else it is asked exits 2 with the reason.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from contracts.build import SETTINGS, SOLC_VERSION, CompileError, run_solcjs

VERSION_TEXT = f"solc, the solidity compiler commandline interface\nVersion: {SOLC_VERSION}+solcjs.gridpact\n"
# settings the shim owns; the caller's outputSelection (and nothing else) is kept
PINNED_KEYS = ("optimizer", "evmVersion", "viaIR", "remappings")


class ShimError(ValueError):
    """A request the shim cannot answer the way solc would: the message says why."""


def _read_url_source(name: str, urls: list[str], root: Path) -> str:
    for url in urls:
        path = (root / url).resolve()
        if not path.is_relative_to(root):
            raise ShimError(f"source {name!r}: {url!r} lies outside {root}")
        if path.is_file():
            return path.read_text()
    raise ShimError(f"source {name!r}: none of {urls!r} exists")


def pinned_input(request: dict[str, Any], root: Path) -> dict[str, Any]:
    """The standard-JSON input to compile: the caller's sources and output selection, build.py's settings.

    Sources given by URL are read relative to `root` (imports still resolve in the repository).
    """
    root = root.resolve()
    if request.get("language", "Solidity") != "Solidity":
        raise ShimError(f"language {request.get('language')!r}: only Solidity")
    sources: dict[str, dict[str, str]] = {}
    for name, source in dict(request.get("sources") or {}).items():
        if "content" in source:
            sources[name] = {"content": str(source["content"])}
        else:
            sources[name] = {"content": _read_url_source(name, list(source.get("urls") or []), root)}
    if not sources:
        raise ShimError("no sources in the standard-JSON input")
    settings = {key: SETTINGS[key] for key in PINNED_KEYS}
    wanted = dict(request.get("settings") or {}).get("outputSelection")
    settings["outputSelection"] = wanted or SETTINGS["outputSelection"]
    return {"language": "Solidity", "sources": sources, "settings": settings}


def main(argv: list[str], stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """solc's command line, as far as crytic-compile uses it: `--version` and `--standard-json`."""
    if "--version" in argv:
        stdout.write(VERSION_TEXT)
        return 0
    if "--standard-json" not in argv:
        print(f"solc-shim: only --version and --standard-json are supported (got {argv!r})", file=sys.stderr)
        return 2
    try:
        solc_input = pinned_input(json.loads(stdin.read()), Path.cwd())
        output = run_solcjs(solc_input)
    except (ShimError, CompileError, json.JSONDecodeError) as exc:
        # solc answers a bad standard-JSON request with an error object on stdout, exit status 0
        output = {
            "errors": [{"severity": "error", "type": "JSONError", "formattedMessage": f"solc-shim: {exc}"}]
        }
    stdout.write(json.dumps(output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
