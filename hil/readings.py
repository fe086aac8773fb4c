"""The HIL suite's own oracle for reading payloads (docs/wire/reading-v1.md), independent of the gateway.

The tests judge the firmware by what arrives on the broker, so they verify the tag and parse
the payload themselves rather than trusting the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

# the quality flags are the wire format's constants (one place); the parsing below stays our own
from gridpact.core.wire import (  # noqa: F401 - re-exported for the rig's tests
    COUNTER_RESET,
    MODBUS_CRC,
    MODBUS_EXCEPTION,
    MODBUS_TIMEOUT,
    REPLAYED,
    STUCK,
    TIME_CORRECTED,
    TIME_UNSYNCED,
    VALUE_INVALID,
)

MODBUS_FAULTS = MODBUS_TIMEOUT | MODBUS_CRC | MODBUS_EXCEPTION

_TAIL = re.compile(rb',"mac":"([0-9a-f]{64})"\}$')


class BadReading(ValueError):
    """A payload that fails the wire format: wrong tag, malformed, wrong members."""


@dataclass(frozen=True)
class Reading:
    """One verified reading as published by a node."""

    dev: str
    seq: int
    ts: int
    q: int
    model: str
    values: dict[str, float]
    raw: bytes

    @property
    def has_values(self) -> bool:
        return bool(self.values)


def verify_reading(payload: bytes, key: bytes) -> Reading:
    """Check the HMAC over the exact bytes, then parse; raises BadReading on any defect."""
    m = _TAIL.search(payload)
    if m is None:
        raise BadReading("payload does not end with a mac member")
    body = payload[: m.start()] + b"}"
    expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(expected, m.group(1)):
        raise BadReading("bad tag")
    try:
        doc: dict[str, Any] = json.loads(payload)
    except ValueError as exc:
        raise BadReading(f"not JSON: {exc}") from exc
    if list(doc) != ["v", "dev", "seq", "ts", "q", "m", "r", "mac"] or doc["v"] != 1:
        raise BadReading(f"members out of order or wrong version: {list(doc)}")
    if not isinstance(doc["r"], dict) or not all(isinstance(v, int | float) for v in doc["r"].values()):
        raise BadReading("values must be numbers")
    return Reading(doc["dev"], int(doc["seq"]), int(doc["ts"]), int(doc["q"]), doc["m"], doc["r"], payload)
