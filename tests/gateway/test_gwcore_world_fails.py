"""`gridpact gateway run` when the world around it fails, and the services the tests start.

Measured, not assumed: the CPU share from /proc while the meter broker is gone (the gateway must
back off quietly, one log line), and the time from SIGTERM to exit after a burst of readings.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from test_gwcore_ingest_broker import TOPIC, publish, signed

from gateway.ops.status import scrape
from hil.services import AnvilNode, MosquittoBroker
from meter_sim.testing import cpu_share
from tests.process_helpers import stop_and_time

GRIDPACT = str(Path(sys.executable).with_name("gridpact"))


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_gateway_backs_off_quietly_without_its_broker_and_stops_fast_after_a_burst(
    tmp_path: Path, gw_config: Callable[..., Path], gw_topic: Callable[[str], str]
) -> None:
    broker = MosquittoBroker()
    broker.start()
    config = gw_config(broker.port)
    port = int(config.read_text().split('listen = "127.0.0.1:')[1].split('"')[0])
    log_path = tmp_path / "gw.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([GRIDPACT, "gateway", "run", "--config", str(config)], stdout=log, stderr=log)
    try:
        _wait(
            lambda: scrape("127.0.0.1", port).get("gridpact_meter_broker_connected") == 1, 30, "the gateway"
        )
        n = 2000
        publish(
            broker.host, broker.port, [(TOPIC, signed(seq, 1000 + seq)) for seq in range(1, n + 1)], gw_topic
        )
        accepted = 'gridpact_ingest_accepted_total{kind="reading"}'
        _wait(lambda: scrape("127.0.0.1", port).get(accepted, 0) >= n, 60, "the burst")

        broker.stop()  # the meter broker vanishes
        _wait(
            lambda: scrape("127.0.0.1", port).get("gridpact_meter_broker_connected") == 0,
            10,
            "the disconnect",
        )
        time.sleep(1.0)
        share = cpu_share(proc.pid, 4.0)
        print(f"gateway with its meter broker gone: {share:.1%} CPU over 4 s")
        assert share < 0.05
        assert proc.poll() is None

        broker.start()  # back on the same port: the gateway reconnects by itself
        _wait(
            lambda: scrape("127.0.0.1", port).get("gridpact_meter_broker_connected") == 1, 90, "the reconnect"
        )
        publish(
            broker.host,
            broker.port,
            [(TOPIC, signed(seq, 1000 + seq)) for seq in range(n + 1, 2 * n)],
            gw_topic,
        )
        took = stop_and_time(proc, signal.SIGTERM)  # mid-burst, or just after it
        assert proc.returncode == 0
        print(f"gateway SIGTERM to exit after a burst of {2 * n} readings: {took:.2f} s")
        assert took < 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        broker.close()
    text = log_path.read_text()
    assert text.count("event=meter_broker.unreachable ") == 1, text[-3000:]
    assert "Traceback" not in text


def test_services_the_tests_start_stop_within_2_s_after_work() -> None:
    """Mosquitto after a burst and anvil after mining; hil/services.py's stop (SIGTERM, kill after
    5 s) is what every test relies on, so their own exit time is what must stay under 2 s."""
    broker = MosquittoBroker()
    broker.start()
    try:
        publish(broker.host, broker.port, [(f"load/{i % 50}", b"x" * 200) for i in range(5000)], lambda t: t)
        t0 = time.monotonic()
        broker.stop()
        mosquitto_s = time.monotonic() - t0
    finally:
        broker.close()
    node = AnvilNode()
    info = node.start()
    try:
        from web3 import Web3

        w3 = Web3(Web3.HTTPProvider(info.url))
        w3.provider.make_request("anvil_mine", [500])  # type: ignore[arg-type]
        t0 = time.monotonic()
        node.stop()
        anvil_s = time.monotonic() - t0
    finally:
        node.close()
    print(
        f"SIGTERM to exit: mosquitto {mosquitto_s:.2f} s after 5000 messages, anvil {anvil_s:.2f} s after 500 blocks"
    )
    assert mosquitto_s < 2.0 and anvil_s < 2.0
