"""The rig's one MQTT subscriber (paho, in its own network thread), seeing what a gateway would see.

`MqttTap` records every message on its topics and lets a test wait for a condition on them;
`Subscriber` is a tap on one device's topics that also sorts them: verified readings, rejects,
status words, health, Home Assistant discovery. Both resubscribe after each reconnect, retrying
every RETRY_S while the broker is away. A node may still be back on a restarted broker first
(a loaded machine delays the tap's thread): `Subscriber` therefore keeps its session, and the
rig's broker keeps sessions across a restart, so the replayed readings wait for the tap.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hil.readings import BadReading, Reading, verify_reading

RETRY_S = 0.1  # between connection attempts while the broker is away


def status_word(payload: bytes) -> str:
    """`online`/`offline` of a signed status (docs/wire/control-v1.md), or its raw text; the rig
    records what the node said, the gateway's tests check the signature."""
    try:
        word = json.loads(payload).get("st")
    except (ValueError, AttributeError):
        word = None
    return word if isinstance(word, str) else payload.decode(errors="replace")


class MqttTap:
    """Every message on `topics` as (topic, payload, retained), in arrival order; subscribed (QoS 1)
    again after each reconnect. `subscribed` is set while the subscription stands."""

    def __init__(
        self, host: str, port: int, topics: list[str], client_id: str, keep_session: bool = False
    ) -> None:
        """`keep_session` asks the broker to keep this tap's session (clean session off): on a
        persistent broker, messages published while the tap is away are queued for it."""
        self.topics = topics
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self._cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not keep_session
        )
        self.client.reconnect_delay_set(0, 1)  # at once; _on_connect_fail paces the retries
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            self.close(clear_retained=False)
            raise RuntimeError(f"MQTT tap could not subscribe at {host}:{port}")

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        self.subscribed.clear()
        client.subscribe([(t, 1) for t in self.topics])

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        time.sleep(RETRY_S)  # in paho's network thread, which only retries meanwhile

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, codes: object, props: object
    ) -> None:
        self.subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        # cleared the moment the link drops, so that waiting on `subscribed` after a broker restart
        # really waits for the resubscription (not for the one before the outage)
        self.subscribed.clear()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            payload = bytes(msg.payload)
            self.messages.append((msg.topic, payload, bool(msg.retain)))
            self._take(msg.topic, payload)
            self._cond.notify_all()

    def _take(self, topic: str, payload: bytes) -> None:
        """What a subclass makes of each message, under the tap's lock; the tap only records it."""

    def on(self, suffix: str) -> list[bytes]:
        """Payloads received on topics ending with `suffix`, in arrival order (empty ones, which only
        clear a retained message, left out)."""
        with self._cond:
            return [p for t, p, _ in self.messages if t.endswith(suffix) and p]

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Block until predicate() holds (checked under the lock, at each message); fail with `what`
        after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
                self._cond.wait(min(left, 0.1))

    def close(self, clear_retained: bool = True) -> None:
        """Disconnect; first wipe the retained status/health/discovery messages seen, so that a
        shared broker does not show test nodes to later subscribers."""
        if clear_retained and self.client.is_connected():
            with self._cond:
                topics = {t for t, _, _ in self.messages if t.endswith(("/status", "/health", "/config"))}
            self.client.unsubscribe(self.topics)  # the broker handles it before the clears below
            infos = [self.client.publish(t, b"", qos=1, retain=True) for t in sorted(topics)]
            for info in infos:
                info.wait_for_publish(5)
        self.client.disconnect()  # before loop_stop, so the network thread ends at once
        self.client.loop_stop()


class Subscriber(MqttTap):
    """A tap on one device's topics: its readings (verified), rejects, status and health messages
    in arrival order, and its Home Assistant discovery configs by topic."""

    def __init__(self, host: str, port: int, device_id: str, key: bytes, prefix: str = "gridpact") -> None:
        self.device_id = device_id
        self.key = key
        self.base = f"{prefix}/meter/{device_id}"
        self.readings: list[Reading] = []
        self.rejected: list[tuple[bytes, str]] = []
        self.status: list[str] = []
        self.health: list[bytes] = []
        self.discovery: dict[str, bytes] = {}
        topics = [self.base + "/#", f"homeassistant/sensor/{device_id}/+/config"]
        # a kept session: the node may be back on the broker before this tap after a restart
        super().__init__(host, port, topics, f"hil-sub-{device_id}-{id(self)}", keep_session=True)

    def _take(self, topic: str, payload: bytes) -> None:
        kind = topic.rsplit("/", 1)[-1]
        if topic.startswith("homeassistant/"):
            self.discovery[topic] = payload
        elif kind == "reading":
            try:
                self.readings.append(verify_reading(payload, self.key))
            except BadReading as exc:
                self.rejected.append((payload, str(exc)))
        elif kind == "status":
            self.status.append(status_word(payload))
        elif kind == "health":
            self.health.append(payload)

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
        return self.snapshot()

    def snapshot(self) -> list[Reading]:
        with self._cond:
            return list(self.readings)
