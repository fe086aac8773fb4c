"""`gridpact meter-sim serve` as a process: ready line, real clients, SIGTERM, truth, faults, bad args."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from meter_sim.testing import PtyPair
from meter_sim.truth import read_truth

GRIDPACT = str(Path(sys.executable).with_name("gridpact"))


@contextmanager
def served(*args: str, lines: int = 1) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    proc = subprocess.Popen(
        [GRIDPACT, "meter-sim", "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ready = []
        for _ in range(lines):
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"meter-sim exited: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}")
            ready.append(line.strip())
        yield proc, ready
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def _float(regs: Sequence[int]) -> float:
    return struct.unpack(">f", struct.pack(">HH", *regs))[0]


def test_serve_tcp_speed_truth_faults_sigterm(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"at": 0, "fault": "exception", "duration_s": 60, "code": 4, "unit": 1}]))
    truth = tmp_path / "truth.jsonl"
    args = [
        "--model",
        "sdm120",
        "--unit-id",
        "1",
        "--tcp",
        "127.0.0.1:0",
        "--profile",
        "constant:load_w=2300,pv_w=0",
    ]
    args += ["--speed", "60", "--truth", str(truth), "--faults", str(faults), "--seed", "4"]
    with served(*args) as (proc, ready):
        assert ready[0].startswith("meter-sim ready tcp 127.0.0.1:") and ready[0].endswith(" units=1")
        port = int(ready[0].split()[3].rpartition(":")[2])
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert client.connect()
        rr = client.read_input_registers(0, count=2, device_id=1)
        assert rr.isError() and rr.exception_code == 4  # faults file: exception for the first minute
        time.sleep(1.5)  # 90 s of meter time at --speed 60
        rr = client.read_input_registers(12, count=2, device_id=1)
        assert not rr.isError() and _float(rr.registers) == 2300.0
        rr = client.read_input_registers(72, count=2, device_id=1)
        e_imp = _float(rr.registers)
        assert 2300.0 * 60 / 3.6e6 < e_imp < 2300.0 * 300 / 3.6e6
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    rows = read_truth(truth)
    assert len(rows) > 60 and rows[0]["faults"] == ["exception"] and rows[-1]["faults"] == []
    assert all(r["r"]["p1"] == 2300.0 for r in rows)
    assert [r["r"]["e_imp"] for r in rows] == sorted(r["r"]["e_imp"] for r in rows)


def test_serve_rtu_two_units_on_one_bus() -> None:
    with PtyPair() as pty:
        args = ["--rtu", pty.a, "--baud", "9600", "--parity", "E"]
        args += [
            "--meter",
            "sdm120@1:constant:load_w=100,pv_w=0",
            "--meter",
            "sdm630@2:constant:load_w=900,pv_w=0",
        ]
        with served(*args) as (proc, ready):
            assert ready == [f"meter-sim ready rtu {pty.a} units=2"]
            # a pty carries no parity bits, and Linux ptys refuse a second parity-E termios set
            # (EINVAL from pyserial), so the master side opens it without parity
            client = ModbusSerialClient(pty.b, baudrate=9600, parity="N", timeout=1, retries=0)
            assert client.connect()
            assert _float(client.read_input_registers(12, count=2, device_id=1).registers) == 100.0
            assert _float(client.read_input_registers(52, count=2, device_id=2).registers) == 900.0
            client.close()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0


def test_config_file_several_endpoints(tmp_path: Path) -> None:
    config = tmp_path / "farm.json"
    meters = [{"model": "sdm120", "unit_id": u, "profile": f"household:seed={u}"} for u in (1, 2)]
    config.write_text(json.dumps({"endpoints": [{"tcp": "127.0.0.1:0", "meters": meters}] * 2}))
    with served("--config", str(config), lines=2) as (_, ready):
        assert all(line.startswith("meter-sim ready tcp") and line.endswith("units=2") for line in ready)
        ports = {line.split()[3] for line in ready}
        assert len(ports) == 2


@pytest.mark.parametrize(
    "args",
    [
        ["--tcp", "127.0.0.1:0", "--profile", "bogus:x=1"],
        ["--tcp", "nohostport", "--profile", "constant:load_w=1"],
        ["--profile", "constant:load_w=1"],
        ["--tcp", "127.0.0.1:0"],
        ["--tcp", "127.0.0.1:0", "--profile", "constant:load_w=1", "--model", "sdm999"],
        ["--tcp", "127.0.0.1:0", "--profile", "constant:load_w=1", "--unit-id", "0"],
        ["--tcp", "127.0.0.1:0", "--meter", "sdm120:constant:load_w=1"],
        ["--tcp", "127.0.0.1:0", "--profile", "constant:load_w=1", "--faults", "/nonexistent.json"],
        ["--rtu", "/nonexistent/tty", "--profile", "constant:load_w=1"],
        ["--config", "/nonexistent.json"],
    ],
)
def test_bad_arguments_exit_2(args: list[str]) -> None:
    done = subprocess.run([GRIDPACT, "meter-sim", "serve", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("gridpact meter-sim:") and "Traceback" not in done.stderr


def test_profile_command_prints_csv() -> None:
    done = subprocess.run(
        [GRIDPACT, "meter-sim", "profile", "household:seed=7,pv_kwp=5,battery_kwh=7", "--hours", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[0] == "timestamp,load_w,pv_w,grid_w" and len(lines) == 9
