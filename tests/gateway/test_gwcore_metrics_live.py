"""The metrics of a running `gridpact gateway run` process, checked by Prometheus's own promtool.

The gateway runs as users run it (its own process, a real Mosquitto); the scrape is fed to
`promtool check metrics`, which lints names, units, HELP escaping and types: any complaint fails.
Staleness is read on scrape: it turns 0 as soon as a reading arrives and back to 1 after
`storage.max_gap_s` of silence, without waiting for a minute-long housekeeping round.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_gwcore_ingest_broker import KEY, TOPIC, publish, signed

from gateway.ops.status import parse_samples
from gridpact.core.wire import encode_health, encode_status
from hil.services import MosquittoBroker

GRIDPACT = str(Path(sys.executable).with_name("gridpact"))


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (./tasks setup does)"
    return path


def _request(port: int, method: str, target: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, target)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def running_gateway(
    tmp_path: Path, mosquitto: MosquittoBroker, gw_config: Callable[..., Path]
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    config = gw_config(mosquitto.info.port, "\n[storage]\nmax_gap_s = 3\n")
    text = config.read_text()
    port = int(text.split('listen = "127.0.0.1:')[1].split('"')[0])
    log = (tmp_path / "gw.log").open("wb")
    proc = subprocess.Popen(
        [GRIDPACT, "gateway", "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    try:
        _wait(lambda: _samples(port).get("gridpact_meter_broker_connected") == 1, 30, "the gateway")
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    assert proc.returncode is not None


def _samples(port: int) -> dict[str, float]:
    try:
        return parse_samples(_request(port, "GET", "/metrics")[2].decode())
    except OSError:
        return {}


def test_live_scrape_passes_promtool_and_means_what_it_says(
    running_gateway: tuple[subprocess.Popen[bytes], int],
    gw_topic: Callable[[str], str],
    mosquitto: MosquittoBroker,
) -> None:
    proc, port = running_gateway
    before = _samples(port)
    assert "gridpact_forecast_next_step_watts" not in before  # no history: no forecast, not 0 W
    assert before["gridpact_meter_stale"] in (0, 1)

    health = encode_health(KEY, "node-01", 3, 1, 'wdt "hard"\\', 99, 2, 1, 0, 41000, "1.0\nrc")
    messages = [(TOPIC, signed(seq, 1000 + seq)) for seq in range(1, 4)]
    messages += [
        ("gridpact/meter/node-01/status", encode_status(KEY, "node-01", 3, 0, "online")),
        ("gridpact/meter/node-01/health", health),
    ]
    info = mosquitto.info
    publish(info.host, info.port, messages, gw_topic)
    _wait(lambda: _samples(port).get("gridpact_meter_stale") == 0, 3, "stale to read 0 after a reading")
    memory = 'gridpact_meter_node_free_memory_bytes{dev="node-01"}'
    # The health message travels on its own topic; the readings may be counted before it lands.
    _wait(lambda: memory in _samples(port), 3, "the node's health to be exported")
    samples = _samples(port)
    assert samples[memory] == 41000
    assert samples['gridpact_meter_node_uptime_seconds{dev="node-01"}'] == 99
    assert samples['gridpact_meter_node_boots_total{dev="node-01"}'] == 3
    assert samples['gridpact_meter_node_dropped_readings_total{dev="node-01"}'] == 1
    assert samples['gridpact_meter_node_errors_total{dev="node-01"}'] == 0
    assert samples['gridpact_meter_node_buffered_readings{dev="node-01"}'] == 2
    assert not any(name.startswith("gridpact_meter_health{") for name in samples)

    status, headers, body = _request(port, "GET", "/metrics?x=1")
    assert status == 200 and body.startswith(b"# HELP")
    check = subprocess.run([_promtool(), "check", "metrics"], input=body, capture_output=True, timeout=30)
    print(f"promtool check metrics on a live scrape: rc={check.returncode}, {len(body)} bytes")
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
        check.stdout.decode() + check.stderr.decode()
    )

    status, headers, body = _request(port, "HEAD", "/metrics")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert _request(port, "POST", "/metrics")[0] == 405
    assert _request(port, "GET", "/nope?x=1")[0] == 404

    silent = time.monotonic()  # max_gap_s = 3: stale within a scrape of the gap, not a minute later
    _wait(lambda: _samples(port).get("gridpact_meter_stale") == 1, 6, "stale to read 1 after the gap")
    print(f"stale read 1 after {time.monotonic() - silent:.1f} s of silence (max_gap_s = 3)")
    assert proc.poll() is None
