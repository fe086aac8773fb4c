"""meter-sim when the world around it fails: its serial line vanishes, or it is stopped after a
long fast run. Measured, not assumed: CPU share from /proc and the time from SIGTERM to exit."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from meter_sim.server import reopen_delay_s
from meter_sim.testing import PtyPair, cpu_share
from tests.process_helpers import stop_and_time

GRIDPACT = str(Path(sys.executable).with_name("gridpact"))
PROFILE = "constant:load_w=2300,pv_w=0"


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [GRIDPACT, "meter-sim", "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline().strip()
    assert ready.startswith("meter-sim ready"), (ready, proc.wait(), proc.stderr and proc.stderr.read())
    return proc, ready


def _stderr(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None and proc.stdout is not None
    text = proc.stderr.read()
    proc.stderr.close()
    proc.stdout.close()
    return text


def test_backoff_golden() -> None:
    assert [reopen_delay_s(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_vanished_pty_is_reported_once_retried_idle_and_served_again(tmp_path: Path) -> None:
    bus = tmp_path / "bus"
    bus.mkdir()
    pair = PtyPair(bus).start()
    proc, _ = _start("--rtu", pair.a, "--profile", PROFILE)
    try:
        pair.close()  # socat exits: the pty's other end is gone
        time.sleep(0.5)
        share = cpu_share(proc.pid, 3.0)
        print(f"meter-sim with its pty gone: {share:.1%} CPU over 3 s")
        assert share < 0.05
        assert proc.poll() is None
        pair = PtyPair(bus).start()  # the line comes back under the same name
        client = ModbusSerialClient(pair.b, baudrate=9600, timeout=1, retries=0)
        assert client.connect()
        deadline, regs = time.monotonic() + 20, None
        while time.monotonic() < deadline:
            try:
                rr = client.read_input_registers(12, count=2, device_id=1)
            except ModbusIOException:  # not reopened yet: the backoff decides when
                time.sleep(0.2)
                continue
            if not rr.isError():
                regs = rr.registers
                break
        client.close()
        assert regs is not None, "meter-sim did not serve the line again"
        took = stop_and_time(proc, signal.SIGTERM)
        assert proc.returncode == 0
        print(f"SIGTERM to exit after the line came back: {took:.2f} s")
        assert took < 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pair.close()
    err = _stderr(proc)
    assert err.count("lost") == 1 and err.count("is back") == 1, err


def test_sigterm_ends_a_busy_fast_tcp_run_within_2_s(tmp_path: Path) -> None:
    """Polled hard at --speed 3600 with a truth file: the old per-tick wake-ups used half a core."""
    args = [
        "--tcp",
        "127.0.0.1:0",
        "--profile",
        PROFILE,
        "--speed",
        "3600",
        "--truth",
        str(tmp_path / "t.jsonl"),
    ]
    proc, ready = _start(*args)
    try:
        port = int(ready.split()[3].rpartition(":")[2])
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert client.connect()
        t_end, n = time.monotonic() + 3.0, 0
        while time.monotonic() < t_end:
            assert not client.read_input_registers(12, count=2, device_id=1).isError()
            n += 1
        client.close()
        idle = cpu_share(proc.pid, 2.0)
        print(f"--speed 3600 with truth: {n} requests in 3 s, then {idle:.1%} CPU idle")
        took = stop_and_time(proc, signal.SIGTERM)
        assert proc.returncode == 0
        print(f"SIGTERM to exit after a busy --speed 3600 run: {took:.2f} s")
        assert took < 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _stderr(proc)


def test_sigterm_after_an_idle_run_faster_than_its_physics(tmp_path: Path) -> None:
    """At --speed 2e6 the clock outruns the physics (~1 µs a tick): a stop used to run the whole
    backlog (millions of ticks, many seconds at full CPU) before exiting."""
    proc, _ = _start("--tcp", "127.0.0.1:0", "--profile", PROFILE, "--speed", "2000000")
    try:
        time.sleep(4.0)  # 8 million meter seconds: the old stop ran them all (about 3 s)
        took = stop_and_time(proc, signal.SIGTERM)
        assert proc.returncode == 0
        print(f"SIGTERM to exit after 4 s at --speed 2e6: {took:.2f} s")
        assert took < 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _stderr(proc)
