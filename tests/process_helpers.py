"""Helpers of the tests that start real processes: their process tree, a timed stop by signal, and
the check that none of them outlives the test.

Read from /proc (the project runs on Linux), so the checks need no extra package and see zombies
(exited, waiting to be reaped) as gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import AnyStr

import pytest

PROC = Path("/proc")


def _cmdline(pid: int) -> str:
    """The command line of a live process (raises OSError once it is gone)."""
    return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid` (children, theirs, ...): pid -> command line."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # after the command name, which may hold ")"
        children.setdefault(ppid, []).append(int(entry.name))
    out: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        try:
            out[p] = _cmdline(p)
        except OSError:
            continue
        todo += children.get(p, [])
    return out


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it is dead)."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def survivors(pids: Iterable[int], within_s: float) -> list[int]:
    """The pids still alive after waiting up to `within_s` for them all to end."""
    deadline = time.monotonic() + within_s
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


def assert_no_survivors(pids: Iterable[int], within_s: float = 2.0) -> None:
    """Fail if any of `pids` is alive `within_s` from now; those are SIGKILLed first, so that even a
    failing test leaves nothing behind."""
    left: dict[int, str] = {}
    for p in survivors(pids, within_s):
        with contextlib.suppress(OSError):
            left[p] = _cmdline(p)
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    assert not left, f"still running {within_s:g} s later (now killed): {left}"


def stop_and_time(proc: subprocess.Popen[AnyStr], sig: int, timeout_s: float = 10.0) -> float:
    """Send `sig` and wait for the exit: the seconds from the signal to the exit (the status is then
    `proc.returncode`). A process still running `timeout_s` later is killed and the test fails.

    It only waits: a caller whose pipes nobody else reads drains them afterwards (`communicate`)."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)
        pytest.fail(f"{signal.Signals(sig).name}: still running {timeout_s:g} s later")
    return time.monotonic() - t0
