"""The rig file: what is on the bench (board, ports, broker, meter), parsed and validated.

One TOML file describes a real bench; the virtual backends need none (defaults below). Bad
files fail with the offending key named, like the gateway's config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridpact.core.config import ConfigError, load_toml

BOARDS = ("esp32", "pico-w", "virtual-cpython", "virtual-wasm")
HARDWARE_BOARDS = ("esp32", "pico-w")
RESET_LINES = ("none", "dtr", "rts", "mpremote")


class RigError(ConfigError):
    """A rig file value is missing or invalid; `key` names it (dotted), in the one config error style."""


@dataclass(frozen=True)
class Rig:
    """A bench (or the virtual one): board, its ports, the broker and the meter it polls."""

    board: str = "virtual-cpython"
    console_port: str | None = None
    rs485_port: str | None = None
    rs485_baud: int = 9600
    rs485_parity: str = "N"
    reset_line: str = "none"
    broker_host: str = "127.0.0.1"
    broker_port: int | None = None  # None: the rig starts its own Mosquitto on loopback
    meter_model: str = "sdm120"
    unit_id: int = 1
    device_id: str = "hil-node"
    hmac_key_hex: str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    poll_s: int = 1
    topic_prefix: str = "gridpact"
    wifi_ssid: str = ""
    wifi_password: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hardware(self) -> bool:
        return self.board in HARDWARE_BOARDS


def _get(table: dict[str, Any], section: str, key: str, kind: type, default: Any) -> Any:
    value = table.get(key, default)
    if value is None or isinstance(value, kind) or (kind is float and isinstance(value, int)):
        return float(value) if kind is float and value is not None else value
    raise RigError(f"{section}.{key}", f"expected {kind.__name__}, got {type(value).__name__}")


def parse_rig(data: dict[str, Any], board_override: str | None = None) -> Rig:
    """A validated Rig from the TOML tables [board], [rs485], [broker], [meter], [node]."""
    known = {"board", "rs485", "broker", "meter", "node", "wifi"}
    for section in data:
        if section not in known:
            raise RigError(section, f"unknown section (expected one of {sorted(known)})")
    b, r, br, m, n, w = (data.get(s, {}) for s in ("board", "rs485", "broker", "meter", "node", "wifi"))
    board = board_override or _get(b, "board", "type", str, "virtual-cpython")
    if board not in BOARDS:
        raise RigError("board.type", f"{board!r} is not one of {BOARDS}")
    rig = Rig(
        board=board,
        console_port=_get(b, "board", "console", str, None),
        reset_line=_get(b, "board", "reset", str, "none"),
        rs485_port=_get(r, "rs485", "port", str, None),
        rs485_baud=_get(r, "rs485", "baud", int, 9600),
        rs485_parity=_get(r, "rs485", "parity", str, "N"),
        broker_host=_get(br, "broker", "host", str, "127.0.0.1"),
        broker_port=_get(br, "broker", "port", int, None),
        meter_model=_get(m, "meter", "model", str, "sdm120"),
        unit_id=_get(m, "meter", "unit_id", int, 1),
        device_id=_get(n, "node", "device_id", str, "hil-node"),
        hmac_key_hex=_get(n, "node", "hmac_key_hex", str, Rig.hmac_key_hex),
        poll_s=_get(n, "node", "poll_s", int, 1),
        topic_prefix=_get(n, "node", "topic_prefix", str, "gridpact"),
        wifi_ssid=_get(w, "wifi", "ssid", str, ""),
        wifi_password=_get(w, "wifi", "password", str, ""),
    )
    checks = [
        (rig.reset_line in RESET_LINES, "board.reset", f"must be one of {RESET_LINES}"),
        (rig.rs485_baud in (1200, 2400, 4800, 9600, 19200, 38400), "rs485.baud", "not an Eastron baud rate"),
        (rig.rs485_parity in ("N", "E", "O"), "rs485.parity", "must be N, E or O"),
        (rig.meter_model in ("sdm120", "sdm630"), "meter.model", "must be sdm120 or sdm630"),
        (1 <= rig.unit_id <= 247, "meter.unit_id", "must be 1..247"),
        (
            re.fullmatch(r"[a-z0-9-]{1,32}", rig.device_id) is not None,
            "node.device_id",
            "must match [a-z0-9-]{1,32}",
        ),
        (
            re.fullmatch(r"[0-9a-f]{64}", rig.hmac_key_hex) is not None,
            "node.hmac_key_hex",
            "64 lowercase hex",
        ),
        (1 <= rig.poll_s <= 3600, "node.poll_s", "must be 1..3600 s"),
        (rig.broker_port is None or 1 <= rig.broker_port <= 65535, "broker.port", "must be 1..65535"),
    ]
    for ok, key, message in checks:
        if not ok:
            raise RigError(key, message)
    if rig.hardware:
        for key, value in (("board.console", rig.console_port), ("rs485.port", rig.rs485_port)):
            if not value:
                raise RigError(key, f"required for a real {rig.board} board")
        if not rig.wifi_ssid:
            raise RigError("wifi.ssid", "required for a real board (it reaches the broker over WiFi)")
        if rig.broker_host.startswith("127.") and rig.hardware:
            raise RigError(
                "broker.host", "a real board cannot reach loopback: use the bench host's LAN address"
            )
    return rig


def load_rig(path: Path | None, board_override: str | None = None) -> Rig:
    """The rig from a TOML file, or the virtual defaults when no file is given."""
    if path is None:
        return parse_rig({}, board_override)
    try:
        data = load_toml(path)
    except ConfigError as exc:
        raise RigError(exc.key, f"cannot read {path}: {exc.message}") from exc
    return parse_rig(data, board_override)
