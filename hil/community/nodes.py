"""Meter nodes for the full-stack run: what reads each household's meter and publishes readings.

`StandInNode` is used while the firmware's virtual board cannot be driven from the simulator's
stepped clock: it reads the software meter's registers in process and publishes signed readings
in the wire format (docs/wire/reading-v1.md) with the gateway's reference encoder, buffering
while the broker is away and replaying flagged REPLAYED. The report names it as a stand-in.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from pathlib import Path
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
        from gridpact.core.wire import encode_reading, encode_status

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
        will = encode_status(key, dev, 1, 0, "offline")  # signed as the firmware signs it (control-v1)
        self._client.will_set(f"{prefix}/meter/{dev}/status", will, qos=1, retain=True)
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


class MeterUart:
    """The board's RS-485 far end in process: meter_sim's registers answered over Modbus RTU at once
    (hil.wiring.RegisterUart), silent while the meter has a `no_response` fault."""

    def __init__(self, meter: Any, now: Any) -> None:
        from hil.wiring import RegisterUart

        self.meter, self.now = meter, now
        self._rtu = RegisterUart(meter.registers, meter.rmap.model)
        self.unanswered = 0

    @property
    def in_waiting(self) -> int:
        return self._rtu.in_waiting

    def read(self, size: int = 1) -> bytes:
        return self._rtu.read(size)

    def write(self, data: bytes, /) -> int:
        if self.meter.active("no_response", self.now()) is not None:
            self.unanswered += 1
            return len(data)
        return self._rtu.write(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def device_keys(seed: int, names: list[str]) -> list[bytes]:
    """Each household's meter node's secp256k1 device key, derived from the run's seed (reproducible runs):
    what an installer provisions as the node's `device.key` and registers on chain (`setMeter`)."""
    import hashlib

    from gridpact.core.statement import SECP256K1_N

    out = []
    for name in names:
        k = 0
        secret = hashlib.sha256(f"gridpact-sim-device-{seed}-{name}-{k}".encode()).digest()
        while not 0 < int.from_bytes(secret, "big") < SECP256K1_N:  # as the firmware's generate() retries
            k += 1
            secret = hashlib.sha256(f"gridpact-sim-device-{seed}-{name}-{k}".encode()).digest()
        out.append(secret)
    return out


def provision_device_key(flash: Path, secret: bytes | None) -> None:
    """The installer's step before first boot: 32 raw bytes as `device.key` on the node's flash
    (docs/firmware.md), so the firmware signs with the key registered on chain instead of making one."""
    if secret is None:
        return
    flash.mkdir(parents=True, exist_ok=True)
    (flash / "device.key").write_bytes(secret)


def firmware_config(
    dev: str, key: bytes, host: str, port: int, poll_s: int, prefix: str = "gridpact"
) -> dict[str, Any]:
    """The node's config.json: the shipped example with this household's identity, broker and topic prefix."""
    import json
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "firmware" / "config.example.json"
    cfg = json.loads(example.read_text())
    cfg.update(device_id=dev, hmac_key=key.hex(), poll_s=poll_s, health_s=300, ntp_hold_s=60, prefix=prefix)
    cfg["broker"].update(host=host, port=port, user="", password="", backoff_max_s=5)
    return cfg


class FirmwareNode:
    """The real firmware (firmware/device, unmodified) on a virtual board in virtual time.

    Board time is the simulated time: `poll(now)` runs the board to `now + SETTLE_S`, so the
    firmware's own poll timer fires at `now` and its reading is published (PUBACK over the real
    broker) before the call returns. Same interface as `StandInNode`.
    """

    SETTLE_S = 1.0  # board time past `now` that covers the Modbus read and the publish

    def __init__(
        self, meter: Any, dev: str, key: bytes, host: str, port: int, flash: Path, start: float,
        poll_s: int = 60, prefix: str = "gridpact", device_key: bytes | None = None,
    ) -> None:  # fmt: skip
        from hil.virtual_board import VirtualBoard
        from hil.virtual_time import VirtualTime

        if poll_s <= 2 * self.SETTLE_S:
            raise ValueError(f"poll_s must exceed {2 * self.SETTLE_S:g} s on a firmware node")
        self.dev = dev
        self.vt = VirtualTime(start)
        self.uart = MeterUart(meter, self.vt.now)
        cfg = firmware_config(dev, key, host, port, poll_s, prefix)
        provision_device_key(flash, device_key)
        self.board = VirtualBoard(cfg, self.uart, flash, clock=self.vt, name=dev)
        self.replayed = 0
        self._backlog = -1  # readings taken before the first broker connection (boot backlog)
        self._wrapped: Any = None
        self.board.start()

    def _app(self) -> Any:
        """The running App, its publish counted (replays after the boot backlog)."""
        app = self.board.app
        if app is not None and app is not self._wrapped:
            inner = app.publish_rec

            async def publish_rec(buf: Any, h: Any, replayed: bool) -> bool:
                ok = await inner(buf, h, replayed)
                if ok and replayed and h[0] > self._backlog >= 0:
                    self.replayed += 1
                return ok

            app.publish_rec = publish_rec
            self._wrapped = app
        return app

    @property
    def seq(self) -> int:
        """The last sequence number the firmware took."""
        app = self._app()
        return 0 if app is None else int(app.seq.next) - 1

    @property
    def connected(self) -> bool:
        app = self._app()
        return app is not None and bool(app.client.up)

    @property
    def buffer(self) -> range:
        """Readings waiting in the firmware (RAM queue and flash ring), as a sized object."""
        app = self._app()
        return range(0 if app is None else app.ring.count + app.ram_n)

    def _step_until(self, done: Any, timeout: float) -> bool:
        """Move board time on in small steps until `done()` (e.g. a reconnect after its backoff)."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            self.board.advance_to(self.vt.target + 0.5)
        return True

    def wait_connected(self, timeout: float) -> None:
        if not self._step_until(lambda: self.connected, timeout):
            raise RuntimeError(f"node {self.dev} could not reach the broker in {timeout:.0f} s")
        if self._backlog < 0:
            self._backlog = self.seq

    def poll(self, now: float) -> None:
        """Run the board to `now` (its poll timer fires there) and until that reading is out."""
        self._app()
        self.board.advance_to(now + self.SETTLE_S)

    def flush(self) -> None:
        """After an outage: let the firmware replay its flash backlog (board time moves on a little)."""
        self._step_until(lambda: not self.connected or not len(self.buffer), 30)

    def close(self) -> None:
        self.board.stop()


NODE_KINDS = ("standin", "firmware")


def make_nodes(
    kind: str, meters: list[Any], devs: list[str], keys: list[bytes], host: str, port: int,
    state: Path, start: float, poll_s: int, prefixes: list[str] | None = None,
    signing_keys: list[bytes] | None = None,
) -> tuple[list[Any], str]:  # fmt: skip
    """One node per household of the given kind (publishing under its household's topic prefix),
    and the report's line for the boards layer. `signing_keys`: each firmware node's provisioned
    device key (None: the firmware makes its own at first boot)."""
    prefixes = prefixes or ["gridpact"] * len(devs)
    if kind == "firmware":
        signing = (
            "; each signs its hourly meter statement with its provisioned device key" if signing_keys else ""
        )
        nodes: list[Any] = []
        secrets: list[bytes | None] = list(signing_keys) if signing_keys else [None] * len(devs)
        try:
            for m, d, k, p, sk in zip(meters, devs, keys, prefixes, secrets, strict=True):
                nodes.append(FirmwareNode(m, d, k, host, port, state / f"flash-{d}", start, poll_s, p, sk))
        except BaseException:
            for n in nodes:
                n.close()
            raise
        return nodes, (
            "ran: the real firmware (firmware/device, unmodified) on a virtual board per household in "
            f"virtual time (hil/virtual_time.py), polling its meter over in-process Modbus RTU "
            f"every {poll_s} simulated s{signing}"
        )
    if kind != "standin":
        raise ValueError(f"node kind must be one of {', '.join(NODE_KINDS)}, got {kind!r}")
    nodes = [
        StandInNode(m, d, k, host, port, p) for m, d, k, p in zip(meters, devs, keys, prefixes, strict=True)
    ]
    return nodes, (
        "stand-in: signed readings by gridpact.core.wire.encode_reading from the meter registers, "
        f"polled every {poll_s} simulated s on a stepped clock (--nodes firmware runs the real firmware)"
    )
