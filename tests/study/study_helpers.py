"""Helpers of the study tests: processes started and stopped by id (their tree: tests.process_helpers)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def env() -> dict[str, str]:
    """This checkout first on the path of every child (the workers import hil.study from here)."""
    return os.environ | {"PYTHONPATH": str(ROOT)}


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env(), cwd=ROOT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate one process we started, by its id; kill it after 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_for(cond, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s} s waiting for {what}")
        time.sleep(0.05)


def marks_by_key(marks: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in marks.iterdir():
        key = f.name.split(".")[0]
        counts[key] = counts.get(key, 0) + 1
    return counts
