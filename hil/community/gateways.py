"""Each household's gateway ingest in the full-stack run: the gateway's own verifier, handler and store.

One MQTT connection per household (as each Raspberry Pi has), feeding `gateway.ingest`'s
IngestHandler, which verifies tags and sequence numbers and stores into a real ReadingStore.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class HouseholdGateway:
    """Subscribes to its household's node and keeps its verified readings."""

    def __init__(
        self, name: str, dev: str, key: bytes, state_dir: Path, host: str, port: int, now: Any
    ) -> None:
        from gateway.ingest.mqtt import IngestHandler
        from gateway.ingest.verifier import ReadingVerifier
        from gateway.ops.metrics import Metrics
        from gateway.storage import ReadingStore

        self.name, self.dev = name, dev
        self.store = ReadingStore(state_dir / f"{name}.sqlite3", dev)
        self.verifier = ReadingVerifier({dev: key}, self.store.last_seqs())
        self.metrics = Metrics()
        self.handler = IngestHandler("gridpact", self.store, self.verifier, self.metrics, now)
        self.outcomes: dict[str, int] = {}
        self.seqs: list[int] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{name}")
        self._client.reconnect_delay_set(0, 1)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *a: self._subscribed.clear()
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect_async(host, port, keepalive=30)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(f"gridpact/meter/{self.dev}/#", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            outcome = self.handler.handle(msg.topic, bytes(msg.payload))
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            if outcome == "accepted" and msg.topic.endswith("/reading"):
                self.seqs.append(self.verifier.last_seq[self.dev])

    def wait_subscribed(self, timeout: float) -> None:
        if not self._subscribed.wait(timeout):
            raise RuntimeError(f"gateway {self.name} could not subscribe in {timeout:.0f} s")

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def wait_seq(self, seq: int, timeout: float) -> bool:
        """Wait until the reading `seq` has been accepted; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.verifier.last_seq.get(self.dev, 0) >= seq:
                    self.handler.flush()
                    return True
            time.sleep(0.005)
        return False

    def energy(self, t0: int, t1: int) -> tuple[int, int, bool]:
        """(import Wh, export Wh, complete) in [t0, t1) from the verified counters."""
        with self._lock:
            self.handler.flush()
            d = self.store.energy_between(t0, t1)
        return d.import_wh, d.export_wh, d.complete

    def hour_batch(self, hour_start: int) -> list[bytes]:
        with self._lock:
            return self.store.hour_batch(hour_start)

    def close(self) -> None:
        self._client.disconnect()  # first, so the network thread ends at once
        self._client.loop_stop()
        self.store.close()
