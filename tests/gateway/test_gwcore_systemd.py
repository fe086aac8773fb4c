"""The shipped unit (systemd-analyze verify and security), install-service, and sd_notify/watchdog
against a fake NOTIFY_SOCKET: a real unix datagram socket read by the test."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.ops.install import render_unit, shipped_unit
from gateway.ops.notify import Notifier
from hil.services import MosquittoBroker

REPO = Path(__file__).resolve().parents[2]
GRIDPACT = REPO / ".venv" / "bin" / "gridpact"


def _unit_for_test(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart pointing at an executable that exists on this machine."""
    unit = tmp_path / "gridpact-gateway.service"
    unit.write_text(render_unit(str(GRIDPACT), "/etc/gridpact/gateway.toml"))
    return unit


def test_unit_passes_systemd_analyze_verify_silently(tmp_path: Path) -> None:
    unit = _unit_for_test(tmp_path)
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 0
    assert proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: an unknown key makes systemd-analyze talk."""
    unit = tmp_path / "gridpact-gateway.service"
    unit.write_text(render_unit(str(GRIDPACT), "/etc/x.toml").replace("[Service]", "[Service]\nNoSuchKey=1"))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert "NoSuchKey" in proc.stdout + proc.stderr


def test_unit_security_exposure_at_most_2(tmp_path: Path) -> None:
    unit = _unit_for_test(tmp_path)
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout[-500:] + proc.stderr
    assert float(match.group(1)) <= 2.0


def test_unit_has_the_operational_contract() -> None:
    text = shipped_unit()
    for line in (
        "Type=notify",
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=gridpact-gateway",
        "LoadCredential=meter-hmac-key:",
        "LoadCredential=gateway-key-pass:",
    ):
        assert line in text
    assert re.search(r"^WatchdogSec=\d+", text, re.M)


def test_install_service_writes_the_unit(tmp_path: Path) -> None:
    proc = subprocess.run(
        [GRIDPACT, "gateway", "install-service", "--unit-dir", str(tmp_path), "--no-reload",
         "--exec", "/opt/gridpact/bin/gridpact", "--config", "/etc/gridpact/gw.toml"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "gridpact-gateway.service").read_text()
    assert "ExecStart=/opt/gridpact/bin/gridpact gateway run --config /etc/gridpact/gw.toml\n" in text
    assert "systemctl enable --now gridpact-gateway.service" in proc.stdout
    ingest_only = subprocess.run(
        [GRIDPACT, "gateway", "install-service", "--print", "--no-trading", "--exec", "/usr/bin/gridpact"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "LoadCredential=meter-hmac-key:" in ingest_only.stdout
    assert "gateway-key-pass" not in ingest_only.stdout
    bad = subprocess.run(
        [GRIDPACT, "gateway", "install-service", "--print", "--exec", "relative/gridpact"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1 and "absolute path" in bad.stderr


def test_notifier_abstract_and_path_sockets(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
        assert notifier.watchdog_s == 2.0
        assert notifier.send("READY=1", "STATUS=ok")
        assert sock.recv(100) == b"READY=1\nSTATUS=ok"
    name = f"gridpact-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).send("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"
    assert not Notifier({}).send("READY=1")
    assert (
        Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}).watchdog_s is None
    )


def _datagrams(sock: socket.socket, until: Callable[[list[str]], bool], timeout: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(got):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got += sock.recv(4096).decode().split("\n")
        except TimeoutError:
            break
    return got


@contextmanager
def _gateway_run(config: Path, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """`gridpact gateway run` with its stderr piped (the log the test reads); killed if the test leaves it running."""
    proc = subprocess.Popen(
        [GRIDPACT, "gateway", "run", "--config", str(config)], stderr=subprocess.PIPE, text=True, **popen
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_service_notifies_ready_watchdog_and_stopping(
    tmp_path: Path, mosquitto: MosquittoBroker, gw_config: Callable[..., Path]
) -> None:
    config = gw_config(mosquitto.port)
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
        with _gateway_run(config, env=env, stdout=subprocess.PIPE) as proc:
            got = _datagrams(sock, lambda g: g.count("WATCHDOG=1") >= 3, 30)
            assert "READY=1" in got, got
            assert got.index("READY=1") < got.index("WATCHDOG=1") if "WATCHDOG=1" in got else True
            assert got.count("WATCHDOG=1") >= 3, got
            proc.send_signal(signal.SIGTERM)
            rest = _datagrams(sock, lambda g: "STOPPING=1" in g, 15)
            assert "STOPPING=1" in rest, rest
            _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "event=gateway.ready" in err and "event=gateway.stopping" in err
    for line in err.strip().splitlines():
        assert re.match(r"level=\w+ event=\S+", line), line


def test_a_stuck_service_stops_pinging(tmp_path: Path) -> None:
    """The watchdog pings come from the event loop: a blocked loop sends none (so systemd restarts it)."""
    import asyncio

    from gateway.ops.notify import watchdog_loop

    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        notifier = Notifier({"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})

        async def scenario() -> None:
            task = asyncio.create_task(watchdog_loop(notifier))
            await asyncio.sleep(0.5)  # pings at 0, 0.2 and 0.4 s
            time.sleep(1.5)  # the loop is blocked: a free loop would ping 7 more times
            task.cancel()

        asyncio.run(scenario())
        sock.settimeout(0.2)
        pings = []
        while True:
            try:
                pings.append(sock.recv(100))
            except TimeoutError:
                break
    assert 1 <= len(pings) <= 4


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_without_systemd(
    mosquitto: MosquittoBroker, gw_config: Callable[..., Path], sig: signal.Signals
) -> None:
    config = gw_config(mosquitto.port)
    with _gateway_run(config) as proc:
        deadline = time.monotonic() + 30
        db = config.parent / "state" / "readings.sqlite3"
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
