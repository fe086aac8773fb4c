"""The rig's broker: a Mosquitto the scenarios can stop and start.

Virtual boards use the loopback Mosquitto of `hil.services`. A real board reaches the broker
over WiFi, so on a bench Mosquitto listens on the bench host's LAN address from the rig file.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hil.rig import Rig
from hil.services import BrokerInfo, MosquittoBroker, ServiceUnavailable, find_mosquitto, wait_for_port


class BenchMosquitto:
    """Mosquitto on the bench host's LAN address (rig `broker.host`/`broker.port`); stop/start keep the port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._dir = Path(tempfile.mkdtemp(prefix="gridpact-bench-mosquitto-"))
        self._conf = self._dir / "mosquitto.conf"
        self._conf.write_text(
            f"listener {port} {host}\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n"
        )
        self._proc: subprocess.Popen | None = None

    @property
    def info(self) -> BrokerInfo:
        return BrokerInfo("mosquitto", self.host, self.port)

    def start(self) -> BrokerInfo:
        self._proc = subprocess.Popen([find_mosquitto(), "-c", str(self._conf)], stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.host, self.port, 10, self._proc)
        except ServiceUnavailable:
            self.stop()
            raise
        return self.info

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        self._proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def start_bench_broker(rig: Rig) -> MosquittoBroker | BenchMosquitto:
    """A started broker for this rig: loopback for virtual boards, the bench LAN for real ones."""
    if rig.hardware:
        bench = BenchMosquitto(rig.broker_host, rig.broker_port or 1883)
        bench.start()
        return bench
    broker = MosquittoBroker()
    broker.start()
    return broker
