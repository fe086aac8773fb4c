"""Run code inside the real MicroPython interpreter (npm WebAssembly build), driven from Node."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hil.services import REPO_ROOT, ServiceUnavailable

RUNNER = Path(__file__).with_name("run.mjs")
WASM_PACKAGE = REPO_ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"


@dataclass
class MicroPythonResult:
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> MicroPythonResult:
        if self.returncode != 0:
            raise AssertionError(f"MicroPython failed ({self.returncode}):\n{self.stdout}\n{self.stderr}")
        return self


def run_micropython(
    code: str, libs: list[Path] | tuple[Path, ...] = (), timeout: float = 120, heap: int = 4 << 20
) -> MicroPythonResult:
    """Execute `code` in MicroPython with every .py under each of `libs` importable (copied to /lib)."""
    node = shutil.which("node")
    if node is None:
        raise ServiceUnavailable("node is not installed: MicroPython (wasm) runs under Node 20+")
    if not WASM_PACKAGE.exists():
        raise ServiceUnavailable(f"{WASM_PACKAGE} missing: run `npm ci` in {REPO_ROOT}")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
        script = f.name
    cmd = [node, str(RUNNER), "--heap", str(heap)]
    for lib in libs:
        cmd += ["--lib", str(lib)]
    try:
        proc = subprocess.run([*cmd, script], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    finally:
        Path(script).unlink(missing_ok=True)
    return MicroPythonResult(proc.returncode, proc.stdout, proc.stderr)
