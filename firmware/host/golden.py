"""Firmware golden vectors (docs/wire/golden/readings-v1-firmware.json).

Expected float texts come from Python's `decimal` on the exact float32 value, and request frames
from pymodbus' own RTU framer, so those two are independent of the firmware's code. The rest
(health, discovery, records, MQTT packets) pin down the firmware's bytes for the gateway and for
regressions; the tests check that MicroPython (wasm) and CPython both reproduce all of it.
"""

from __future__ import annotations

import json
import struct
import sys
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any

from firmware.host.devload import DeviceNamespace
from firmware.host.maps_gen import REPO_ROOT

VECTORS_PATH = REPO_ROOT / "docs" / "wire" / "golden" / "readings-v1-firmware.json"
GOLDEN_PATH = REPO_ROOT / "docs" / "wire" / "golden" / "readings-v1.json"
EXAMPLE_CONFIG = REPO_ROOT / "firmware" / "config.example.json"

F32_CASES: list[tuple[float, int]] = [
    (230.1, 2), (5.0, 3), (1127.5, 1), (0.98, 3), (50.01, 3), (1234.5, 3), (56.25, 3), (-300.0, 1),
    (0.0, 3), (-0.0, 1), (0.0005, 3), (-0.0005, 3), (0.00049, 3), (12345.678, 3), (99999.99, 3),
    (1e9, 1), (-1e6, 1), (1e-40, 3), (3.4e38, 0), (49.98, 3), (229.95, 2), (-0.97, 3), (16777217.0, 3),
]  # fmt: skip


def f32_text_reference(value: float, dec: int) -> str:
    """The documented float rule, computed with decimal: round the float32 half away from zero to
    `dec` places, drop trailing zeros, keep one decimal digit, no minus sign on zero."""
    exact = Decimal(struct.unpack(">f", struct.pack(">f", value))[0])
    with localcontext() as ctx:
        ctx.prec = 200
        q = exact.quantize(Decimal(1).scaleb(-dec), rounding=ROUND_HALF_UP)
        sign = "-" if q < 0 else ""
        text = f"{abs(q):f}"
    head, _, frac = text.partition(".")
    frac = frac.rstrip("0") or "0"
    return f"{sign}{head}.{frac}"


def pymodbus_request(unit: int, fc: int, addr: int, count: int) -> str:
    from pymodbus.framer import FramerRTU
    from pymodbus.pdu import DecodePDU
    from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest

    cls = ReadInputRegistersRequest if fc == 4 else ReadHoldingRegistersRequest
    return FramerRTU(DecodePDU(False)).buildFrame(cls(address=addr, count=count, dev_id=unit)).hex()


def device_namespace() -> DeviceNamespace:
    """Device modules on CPython with inert shims (no UART, no network): enough for pure code."""
    from firmware.host.shims import BoardState, make_all
    from gridpact.core.clock import SystemClock

    st = BoardState(clock=SystemClock(), platform="esp32", uart_device="/dev/null", uid=b"\x01\x02\x03\x04")
    return DeviceNamespace(make_all(st))


def build_vectors() -> dict[str, Any]:
    ns = device_namespace()
    payload, maps, ringbuf, mqtt = (ns.load(m) for m in ("payload", "maps", "ringbuf", "mqtt"))
    key = bytes.fromhex(json.loads(GOLDEN_PATH.read_text())["key_hex"])
    mac = payload.Hmac(key)
    readings = []
    raw = bytearray(64)
    for i, v in enumerate([230.4, 0.5, 115.2, 118.0, 0.977, 50.0, 4321.125, 0.0]):
        struct.pack_into(">f", raw, i * 4, v)
    nan = bytearray(raw)
    nan[4:8] = b"\x7f\xc0\x00\x00"
    for name, vals, q, n in (
        ("sdm120, clock not yet synced", raw, 0x001, 8),
        ("sdm120, current NaN left out (VALUE_INVALID)", nan, 0x020, 8),
        ("sdm120, CRC error, empty values", bytearray(64), 0x008, 0),
    ):
        keys = maps.MAPS["sdm120"][3]
        body = payload.reading(mac, "node-07", 1000 + len(readings), 1767225700, q, "sdm120", keys, vals, n)
        readings.append({"name": name, "dev": "node-07", "seq": 1000 + len(readings), "ts": 1767225700,
                         "q": q, "m": "sdm120", "n": n, "raw_hex": bytes(vals).hex(), "payload": body.decode()})  # fmt: skip
    rec = bytearray(ringbuf.REC)
    vals = bytearray(64)
    struct.pack_into(">f", vals, 0, 230.0)
    struct.pack_into(">f", vals, 24, 1.5)
    ringbuf.pack(rec, 70000, 1767225600, 0x81, 70001, 1, vals, 8)
    health_args = [["node-01", 1, 1, "power", 5, 0, 0, 0, 0, "0.1.0"],
                   ["node-01", 3, 4, "watchdog", 86400, 12, 0, 2, 81234, "0.1.0"]]  # fmt: skip
    status_args = [["node-01", 3, 0, "online"], ["node-01", 3, 0, "offline"], ["node-01", 3, 5, "online"]]
    discovery = []
    for model, index in (("sdm120", 0), ("sdm120", 4), ("sdm120", 6), ("sdm630", 9)):
        entry = maps.MAPS[model][3][index]
        discovery.append({"model": model, "index": index, "dev": "node-01", "prefix": "gridpact", "fw": "0.1.0",
                          "topic": payload.discovery_topic("node-01", entry[0]),
                          "payload": payload.discovery("gridpact", "node-01", model, "0.1.0", entry).decode()})  # fmt: skip
    connect_args = ["gridpact-node-01", 60, "u", "pw", "gridpact/meter/node-01/status", "offline"]
    publish_args = ["gridpact/meter/node-01/reading", 300, 1, False, True, 513]
    example = json.loads(EXAMPLE_CONFIG.read_text())
    bad: list[tuple[dict[str, Any], str]] = []
    for path, value, field in (
        (("device_id",), "Node_01", "device_id"), (("hmac_key",), "abc", "hmac_key"),
        (("meter", "model"), "sdm72", "meter.model"), (("meter", "baud"), 9601, "meter.baud"),
        (("broker", "port"), 0, "broker.port"), (("poll_s",), 0, "poll_s"), (("wifi", "ssid"), "", "wifi.ssid"),
        (("meter", "unit_id"), 248, "meter.unit_id"), (("broker", "tls"), "yes", "broker.tls"),
        (("colour",), "red", "colour"),
    ):  # fmt: skip
        cfg = json.loads(json.dumps(example))
        node = cfg
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
        bad.append((cfg, field))
    missing = json.loads(json.dumps(example))
    del missing["broker"]["host"]
    bad.append((missing, "broker.host"))
    return {
        "note": "Firmware vectors: see firmware/host/golden.py for how each group was made.",
        "float_rule": "round the float32 half away from zero to the unit's decimals, drop trailing zeros, "
        "keep one decimal digit, no sign on zero; decimals: V 2, A 3, W/VA/var 1, deg 2, Hz 3, kWh/kvarh 3, pf 3",
        "f32_text": [[struct.pack(">f", v).hex(), d, f32_text_reference(v, d)] for v, d in F32_CASES],
        "modbus_requests": [
            {"unit": u, "fc": fc, "addr": a, "count": c, "hex": pymodbus_request(u, fc, a, c)}
            for u, fc, a, c in (
                (1, 4, 0, 76),
                (2, 4, 0, 76),
                (247, 4, 0x0156, 4),
                (1, 3, 0x0012, 2),
                (17, 4, 0, 80),
            )
        ],
        "readings": readings,
        "record_hex": rec.hex(),
        "health": [{"args": a, "payload": payload.health(mac, *a).decode()} for a in health_args],
        "status": [{"args": a, "payload": payload.status(mac, *a).decode()} for a in status_args],
        "discovery": discovery,
        "discovery_units": [
            {
                "entry": list(e),
                "payload": payload.discovery("gridpact", "node-01", "sdm630", "0.1.0", e).decode(),
            }
            for e in (("e_q_kvarh", "kvarh", 0, "Reactive energy"), ("phi1", "deg", 0, "Phase 1 angle"))
        ],
        "health_discovery": [
            {
                "index": i,
                "topic": payload.discovery_topic("node-01", "health_" + item[0]),
                "payload": payload.health_discovery("gridpact", "node-01", "sdm120", "0.1.0", item).decode(),
            }
            for i, item in enumerate(payload.HEALTH_HA)
        ],
        "varlen": [[n, mqtt.varlen(n).hex()] for n in (0, 127, 128, 16383, 16384, 2097151, 2097152)],
        "mqtt": [
            {
                "kind": "connect",
                "args": connect_args,
                "hex": mqtt.connect_packet(*connect_args[:5], connect_args[5].encode()).hex(),
            },
            {"kind": "publish", "args": publish_args, "hex": mqtt.publish_header(*publish_args).hex()},
        ],
        "backoff": [
            [a, 500, 30000, r, mqtt.backoff_ms(a, 500, 30000, r)]
            for a in (0, 1, 5, 10)
            for r in (0, 32768, 65535)
        ],
        "config_ok": example,
        "config_bad": bad,
    }


def main(argv: list[str] | None = None) -> int:
    path = Path(argv[0]) if argv else VECTORS_PATH
    path.write_text(json.dumps(build_vectors(), indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
