"""A real `gridpact simulate` (full stack: anvil, gateways; on the virtual clock with the embedded broker, and on
the wall clock with a Mosquitto) stopped by SIGINT, SIGTERM, SIGKILL.

SIGINT and SIGTERM: gone within 2 s, exit 130 / 143, a partial report marked as such. All three:
no process it started survives it, checked by pid (the native anvil and Mosquitto die with it
through their parent-death signal even when it gets SIGKILL and cleans up nothing).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.process_helpers import assert_no_survivors, descendants, stop_and_time

GRIDPACT = [sys.executable, "-m", "gridpact.cli"]


# the default run (one virtual clock: embedded amqtt, anvil started for the run), and the wall-clock run
# with a Mosquitto of its own
RUNS = {"virtual": ([], ("anvil",)), "wall": (["--broker", "mosquitto"], ("anvil", "mosquitto"))}


def start_run(out: Path, clock: str = "wall") -> tuple[subprocess.Popen[str], dict[int, str]]:
    """The full-stack path (gateway agents, anvil started for the run) on `clock` (RUNS)."""
    extra, services = RUNS[clock]
    proc = subprocess.Popen(
        [*GRIDPACT, "simulate", "--households", "3", "--days", "2", *extra, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    kids: dict[int, str] = {}
    while time.monotonic() < deadline and proc.poll() is None:
        kids = descendants(proc.pid)
        if all(any(s in c for c in kids.values()) for s in services):
            break
        time.sleep(0.1)
    time.sleep(1.5)  # into the run: services up, gateways trading
    kids = descendants(proc.pid)
    if proc.poll() is not None or not kids:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the run did not get going (rc {proc.returncode}): {err[-2000:]}")
    return proc, kids


@pytest.mark.parametrize("clock", sorted(RUNS))
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_within_2s_with_a_partial_report(
    sig: int, code: int, clock: str, tmp_path: Path
) -> None:
    proc, kids = start_run(tmp_path, clock)
    took = stop_and_time(proc, sig)
    _, err = proc.communicate(timeout=10)
    name = signal.Signals(sig).name
    print(f"{name}: exit {proc.returncode} after {took:.2f} s; children {sorted(kids.values())}")
    assert_no_survivors(kids)
    assert proc.returncode == code, err[-2000:]
    assert took < 2.0, f"{name} took {took:.2f} s"
    assert "Traceback" not in err, err[-2000:]
    assert f"stopped by {name}" in err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["partial"] is True and summary["stopped_by"] == name
    assert summary["hours"] == 48 and summary["hours_done"] < 48
    assert "partial report" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("clock", sorted(RUNS))
def test_sigkill_leaves_no_process_behind(clock: str, tmp_path: Path) -> None:
    proc, kids = start_run(tmp_path, clock)
    assert any("anvil-linux" in c for c in kids.values()), kids  # the native binary, not the Node wrapper
    proc.kill()
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert_no_survivors(kids)


def test_a_normal_full_stack_run_prints_no_error_or_warning(tmp_path: Path) -> None:
    """A newcomer's first run: progress and summary only; the libraries' logs are in the log file."""
    proc = subprocess.run(
        [*GRIDPACT, "simulate", "--households", "3", "--hours", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    other = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("hour ")]
    assert not other, other
    assert "logs: " in proc.stdout and (tmp_path / "simulate.log").stat().st_size > 0
    assert "event=" in (tmp_path / "simulate.log").read_text()  # the gateways' own log lines went there


HANGING_CLEANUP = """
import sys, time
from pathlib import Path
from hil.community.cli import StopGuard
mark = Path(sys.argv[1])
guard = StopGuard(lambda: mark.write_text("partial"))
guard.install()
try:
    print("ready", flush=True)  # inside the try: the signal may come at once
    time.sleep(60)
finally:
    time.sleep(30)  # a clean-up that hangs: the watchdog must end the process anyway
"""


def test_watchdog_ends_a_hanging_cleanup_within_2s(tmp_path: Path) -> None:
    mark = tmp_path / "partial.txt"
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_CLEANUP, str(mark)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    took = stop_and_time(proc, signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 143, err
    assert took < 2.0, f"{took:.2f} s"
    assert mark.read_text() == "partial"
    assert "clean-up still running" in err


def test_the_second_finish_waits_until_the_partial_report_is_written() -> None:
    """The watchdog writing the report while the main thread finishes its clean-up: the main thread's
    `finish()` (then `os._exit`) must wait, or the process ends with the report half written."""
    import threading

    from hil.community.cli import StopGuard

    written: list[str] = []
    started = threading.Event()

    def slow_report() -> None:
        started.set()
        time.sleep(0.3)
        written.append("partial")

    guard = StopGuard(slow_report)
    watchdog = threading.Thread(target=guard.finish)
    watchdog.start()
    assert started.wait(5)
    assert guard.finish() is False  # the main thread: the report is the watchdog's
    assert written == ["partial"], "finish() returned while the report was still being written"
    watchdog.join(5)


def test_partial_report_files_are_replaced_whole(tmp_path: Path) -> None:
    from hil.community.report import write_partial_report

    paths = write_partial_report(tmp_path, [], 24, "SIGTERM", 1.0, {"seed": 1})
    assert json.loads(paths["json"].read_text())["partial"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "summary.json"]  # no .tmp left


@pytest.mark.parametrize("verbose", [False, True])
def test_logs_go_to_the_file_and_to_stderr_only_with_verbose(
    verbose: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from hil.community.cli import run_logging

    with run_logging(tmp_path, verbose) as path:
        logging.getLogger("gridpact.trading").warning("event=community_disconnected retry_s=0.5")
        logging.getLogger("mqtt").error("failed to receive on socket: [Errno 104]")
    text = path.read_text()
    assert "community_disconnected" in text and "Errno 104" in text
    err = capsys.readouterr().err
    assert ("community_disconnected" in err and "Errno 104" in err) if verbose else err == ""
