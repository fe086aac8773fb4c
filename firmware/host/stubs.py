"""Type-check the device code against the MicroPython stubs of each port.

The esp32 and rp2 stub packages install the same module names, so each goes into its own
folder (`pip install --target .venv/mpy-stubs/<port>`), which `firmware/pyrightconfig.<port>.json`
uses as its typeshed and stub path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from firmware.host.maps_gen import REPO_ROOT

STUB_ROOT = REPO_ROOT / ".venv" / "mpy-stubs"
PORTS: dict[str, tuple[str, ...]] = {
    "esp32": ("micropython-esp32-stubs==1.29.0.post1", "micropython-stdlib-stubs==1.29.0.post2"),
    "rp2": ("micropython-rp2-stubs==1.29.0.post1", "micropython-stdlib-stubs==1.29.0.post2"),
}
BOARD_PORT = {"esp32": "esp32", "pico-w": "rp2"}
PYRIGHT = REPO_ROOT / "node_modules" / ".bin" / "pyright"


def pip_command(port: str, target: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--target",
        str(target),
        *PORTS[port],
    ]


def ensure_stubs(port: str, root: Path = STUB_ROOT) -> Path:
    """The stub folder for `port`, installed first if missing. Installs go to a fresh folder that is
    then renamed into place, so parallel test workers never see a half-installed one."""
    target = root / port
    marker = target / ".installed"
    want = "\n".join(PORTS[port])
    if marker.exists() and marker.read_text() == want:
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{port}-", dir=root))
    try:
        proc = subprocess.run(pip_command(port, tmp), capture_output=True, text=True)
        if proc.returncode != 0 or not (tmp / "machine.pyi").exists():
            raise RuntimeError(f"installing {' '.join(PORTS[port])} into {tmp} failed:\n{proc.stderr}")
        (tmp / ".installed").write_text(want)
        if marker.exists() and marker.read_text() == want:
            return target  # another worker finished first
        if target.exists():
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (marker.exists() and marker.read_text() == want):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def pyright_command(port: str, project: Path | None = None) -> list[str]:
    config = project or (REPO_ROOT / "firmware" / f"pyrightconfig.{port}.json")
    return [str(PYRIGHT), "-p", str(config)]


def typecheck(port: str, project: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run pyright on the device code for one port; returncode 0 means no errors."""
    ensure_stubs(port)
    return subprocess.run(pyright_command(port, project), capture_output=True, text=True, cwd=REPO_ROOT)
