"""A broker subscriber for the HIL suite: collects a node's readings, waits with explicit timeouts.

paho-mqtt in its own network thread, reconnecting fast (50 ms .. 0.5 s) so that after a broker
restart it is subscribed again before the node's backoff brings its replayed readings.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hil.readings import BadReading, Reading, verify_reading


def status_word(payload: bytes) -> str:
    """`online`/`offline` of a signed status (docs/wire/control-v1.md), or its raw text; the rig
    records what the node said, the gateway's tests check the signature."""
    try:
        word = json.loads(payload).get("st")
    except (ValueError, AttributeError):
        word = None
    return word if isinstance(word, str) else payload.decode(errors="replace")


class Subscriber:
    """Readings, rejects, status and health messages of one device, in arrival order."""

    def __init__(self, host: str, port: int, device_id: str, key: bytes, prefix: str = "gridpact") -> None:
        self.device_id = device_id
        self.key = key
        self.base = f"{prefix}/meter/{device_id}"
        self.readings: list[Reading] = []
        self.rejected: list[tuple[bytes, str]] = []
        self.status: list[str] = []
        self.health: list[bytes] = []
        self.discovery: dict[str, bytes] = {}  # Home Assistant discovery config per topic
        self._cond = threading.Condition()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hil-sub-{device_id}-{id(self)}")
        self._client.reconnect_delay_set(0, 1)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.connect_async(host, port, keepalive=10)
        self._client.loop_start()
        self.wait(lambda: self._client.is_connected(), 10, "the subscriber to connect to the broker")

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        client.subscribe(self.base + "/#", qos=1)
        client.subscribe(f"homeassistant/sensor/{self.device_id}/+/config", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            kind = msg.topic.rsplit("/", 1)[-1]
            if msg.topic.startswith("homeassistant/"):
                self.discovery[msg.topic] = bytes(msg.payload)
            elif kind == "reading":
                try:
                    self.readings.append(verify_reading(bytes(msg.payload), self.key))
                except BadReading as exc:
                    self.rejected.append((bytes(msg.payload), str(exc)))
            elif kind == "status":
                self.status.append(status_word(bytes(msg.payload)))
            elif kind == "health":
                self.health.append(bytes(msg.payload))
            self._cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Block until predicate() holds; fail with `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
                self._cond.wait(min(left, 0.1))

    def wait_reading(self, predicate: Callable[[Reading], bool], timeout: float, what: str) -> Reading:
        """The first reading (from now or already received) satisfying predicate."""
        found: list[Reading] = []

        def check() -> bool:
            found[:] = [r for r in self.readings if predicate(r)][:1]
            return bool(found)

        self.wait(check, timeout, what)
        return found[0]

    def wait_count(self, n: int, timeout: float) -> list[Reading]:
        self.wait(lambda: len(self.readings) >= n, timeout, f"{n} readings (have {len(self.readings)})")
        return list(self.readings)

    def snapshot(self) -> list[Reading]:
        with self._cond:
            return list(self.readings)

    def close(self) -> None:
        self._client.disconnect()  # first, so the network thread ends at once
        self._client.loop_stop()
