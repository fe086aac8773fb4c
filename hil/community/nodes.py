"""Meter nodes for the full-stack run: what reads each household's meter and publishes readings.

`StandInNode` is used while the firmware's virtual board cannot be driven from the simulator's
stepped clock: it reads the software meter's registers in process and publishes signed readings
in the wire format (docs/wire/reading-v1.md) with the gateway's reference encoder, buffering
while the broker is away and replaying flagged REPLAYED. The report names it as a stand-in.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hil.readings import MODBUS_TIMEOUT, REPLAYED

PUBLISHED_KEYS = ("u1", "i1", "p1", "s1", "pf1", "f", "e_imp", "e_exp")


def wire_values(registers: dict[str, float], units: dict[str, str]) -> dict[str, float]:
    """Register values under their wire names (`<key>_<unit>`, bare key when unitless), finite only."""
    out = {}
    for key in PUBLISHED_KEYS:
        value = registers.get(key)
        if value is None or not math.isfinite(value):
            continue
        out[f"{key}_{units[key]}" if units.get(key) else key] = round(float(value), 4)
    return out


class StandInNode:
    """Polls one software meter on the simulated clock and publishes to the community broker."""

    def __init__(
        self, meter: Any, dev: str, key: bytes, host: str, port: int, prefix: str = "gridpact"
    ) -> None:
        from gateway.ingest.wire import encode_reading

        self._encode = encode_reading
        self.meter = meter
        self.dev = dev
        self.key = key
        self.model = meter.rmap.model
        self.units = {r.key: r.unit for r in meter.rmap.inputs}
        self.topic = f"{prefix}/meter/{dev}/reading"
        self.seq = 0
        self.published = 0
        self.replayed = 0
        self.buffer: deque[tuple[int, int, int, dict[str, float]]] = deque(maxlen=100_000)
        self._connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"node-{dev}")
        self._client.reconnect_delay_set(0, 1)
        self._client.on_connect = lambda *a: self._connected.set()
        self._client.on_disconnect = lambda *a: self._connected.clear()
        self._client.will_set(f"{prefix}/meter/{dev}/status", b"offline", qos=1, retain=True)
        self._client.connect_async(host, port, keepalive=30)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> None:
        if not self._connected.wait(timeout):
            raise RuntimeError(f"node {self.dev} could not reach the broker in {timeout:.0f} s")

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self._client.is_connected()

    def poll(self, now: float) -> None:
        """One poll: a flagged empty reading on a meter fault, the meter's values otherwise."""
        self.seq += 1
        if self.meter.active("no_response", now) is not None:
            q, values = MODBUS_TIMEOUT, {}
        else:
            q, values = 0, wire_values(self.meter.registers(), self.units)
        self.buffer.append((self.seq, int(now), q, values))
        self.flush()

    def flush(self) -> None:
        """Publish buffered readings in order while connected; earlier ones go out flagged REPLAYED."""
        while self.buffer and self.connected:
            seq, ts, q, values = self.buffer[0]
            late = seq != self.seq
            payload = self._encode(
                self.key, self.dev, seq, ts, q | (REPLAYED if late else 0), self.model, values
            )
            info = self._client.publish(self.topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return
            self.buffer.popleft()
            self.published += 1
            self.replayed += late

    def close(self) -> None:
        self._client.disconnect()  # first, so the network thread ends at once
        self._client.loop_stop()
