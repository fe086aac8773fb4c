"""Compile the Solidity sources with the pinned npm solc, cached by a hash of sources and settings.

Tests and tools call `load_artifact(name)`; it compiles only when a source, the compiler or a
setting changed, so a test run pays for solc (about 10 s in wasm) at most once. The cache key is
written next to the artifacts; parallel test workers serialise on a file lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
SOURCE_DIRS = (HERE / "src", HERE / "test")
ARTIFACTS = HERE / "artifacts"
SOLC_VERSION = "0.8.30"
SOLC_MODULE = REPO_ROOT / "node_modules" / "solc"
OZ_PACKAGE = REPO_ROOT / "node_modules" / "@openzeppelin" / "contracts" / "package.json"

# Prague: the latest fork both anvil 1.7 and py-evm 0.12.1b1 run (PUSH0, MCOPY, transient storage included).
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 100},
    "evmVersion": "prague",
    "viaIR": True,
    "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}

# Reads standard JSON on stdin, resolves imports relative to the repository root (after remapping).
_NODE_COMPILE = """
const fs = require('fs'); const path = require('path'); const solc = require(process.argv[2]);
if (!solc.version().startsWith(process.argv[1])) { console.error('solc ' + solc.version()); process.exit(3); }
const input = fs.readFileSync(0, 'utf8');
const root = process.cwd();
function findImports(p) {
  const full = path.resolve(root, p);
  if (!full.startsWith(root + path.sep)) return { error: 'outside repository: ' + p };
  try { return { contents: fs.readFileSync(full, 'utf8') }; } catch (e) { return { error: String(e) }; }
}
process.stdout.write(solc.compile(input, { import: findImports }));
"""


class CompileError(RuntimeError):
    """solc reported errors: the message carries them, formatted."""


def sources() -> dict[str, Path]:
    """Solidity sources by standard-JSON name (path relative to the repository root)."""
    found: dict[str, Path] = {}
    for folder in SOURCE_DIRS:
        for path in sorted(folder.glob("*.sol")):
            found[path.relative_to(REPO_ROOT).as_posix()] = path
    return found


def source_hash() -> str:
    """Hash of every input that changes the output: sources, settings, compiler and OpenZeppelin versions."""
    digest = hashlib.sha256()
    digest.update(json.dumps(SETTINGS, sort_keys=True).encode())
    digest.update(SOLC_VERSION.encode())
    digest.update(OZ_PACKAGE.read_bytes() if OZ_PACKAGE.exists() else b"no-openzeppelin")
    for name, path in sources().items():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def standard_input() -> dict[str, Any]:
    """The solc standard-JSON input for all sources."""
    return {
        "language": "Solidity",
        "sources": {name: {"content": path.read_text()} for name, path in sources().items()},
        "settings": SETTINGS,
    }


def run_solcjs(solc_input: dict[str, Any]) -> dict[str, Any]:
    """Run the pinned npm solc on a standard-JSON input; returns its standard-JSON output as solc wrote it.

    Imports resolve relative to the repository root (after remapping); errors in the output are left
    for the caller (`compile_all` raises on them, the solc shim for slither passes them on).
    """
    node = os.environ.get("NODE", "node")
    proc = subprocess.run(
        [node, "-e", _NODE_COMPILE, SOLC_VERSION, str(SOLC_MODULE)],
        input=json.dumps(solc_input),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise CompileError(f"solc (node) failed with code {proc.returncode}: {proc.stderr[-2000:]}")
    lines = [line for line in proc.stdout.splitlines() if not line.startswith(">>>")]
    return json.loads("\n".join(lines))


def compile_all() -> dict[str, dict[str, Any]]:
    """Run solc; return {contract name: {"abi", "bytecode", "deployedBytecode"}} for every contract."""
    output = run_solcjs(standard_input())
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    artifacts: dict[str, dict[str, Any]] = {}
    for source, contracts in output.get("contracts", {}).items():
        if not source.startswith("contracts/"):  # OpenZeppelin libraries are linked in, not deployed
            continue
        for name, data in contracts.items():
            code = data["evm"]["bytecode"]["object"]
            if not code:  # interfaces and abstract contracts
                continue
            artifacts[name] = {
                "abi": data["abi"],
                "bytecode": "0x" + code,
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
            }
    return artifacts


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def build(force: bool = False) -> Path:
    """Compile into contracts/artifacts/ unless the cache key matches; returns the artifacts folder."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    key = source_hash()
    stamp = ARTIFACTS / "build-hash.txt"
    with open(ARTIFACTS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and stamp.exists() and stamp.read_text().strip() == key:
            return ARTIFACTS
        for name, artifact in compile_all().items():
            _write_atomic(ARTIFACTS / f"{name}.json", json.dumps(artifact))
        _write_atomic(stamp, key + "\n")
    return ARTIFACTS


def load_artifact(name: str) -> dict[str, Any]:
    """{"abi": [...], "bytecode": "0x...", "deployedBytecode": "0x..."} of contract `name`, built on demand."""
    folder = build()
    path = folder / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.json"))
        raise KeyError(f"no contract {name!r}; built: {', '.join(known)}")
    return json.loads(path.read_text())
