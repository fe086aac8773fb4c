"""Reading wire format v1 (docs/wire/reading-v1.md): verify, parse and sign.

Pure functions, no I/O: the tag is checked over the exact bytes before any JSON parsing, so a
forged payload never reaches the parser. The signer exists for tests, the bench and the simulator;
it is written from the spec, independently of the firmware's encoder.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from typing import Any, NamedTuple

MAC_MARKER = b',"mac":"'
MAX_PAYLOAD = 4096
MEMBER_ORDER = ("v", "dev", "seq", "ts", "q", "m", "r", "mac")
DEVICE_RE = re.compile(r"[a-z0-9-]{1,32}")
MODELS = frozenset({"sdm120", "sdm630"})
_TAG_RE = re.compile(rb"[0-9a-f]{64}")
_VALUE_KEY_RE = re.compile(r"[A-Za-z0-9_]{1,24}")
MAX_INT = 2**53

# Quality flags (q)
TIME_UNSYNCED = 0x001
TIME_CORRECTED = 0x002
MODBUS_TIMEOUT = 0x004
MODBUS_CRC = 0x008
MODBUS_EXCEPTION = 0x010
VALUE_INVALID = 0x020
STUCK = 0x040
REPLAYED = 0x080
COUNTER_RESET = 0x100


class Rejected(ValueError):
    """A payload the gateway refuses; `reason` is the counted label (forged, malformed, ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Reading(NamedTuple):
    """One verified reading; `raw` keeps the exact signed bytes for anchoring.

    A NamedTuple rather than a dataclass: ingest builds thousands per second on a Pi.
    """

    dev: str
    seq: int
    ts: int
    q: int
    model: str
    values: dict[str, float]
    raw: bytes

    @property
    def import_wh(self) -> int | None:
        """Import counter in Wh (None when the reading carries no counter)."""
        return _kwh_to_wh(self.values.get("e_imp_kWh"))

    @property
    def export_wh(self) -> int | None:
        return _kwh_to_wh(self.values.get("e_exp_kWh"))


def _kwh_to_wh(value: float | None) -> int | None:
    return None if value is None else round(value * 1000)


def split_tag(payload: bytes) -> tuple[bytes, bytes]:
    """(signed body, 32-byte tag), or Rejected("malformed") if the frame is not `...,"mac":"<hex>"}`."""
    hex_tag = _frame(payload)
    if not _TAG_RE.fullmatch(hex_tag):
        raise Rejected("malformed", "mac is not 64 lowercase hex digits")
    return payload[: len(payload) - 74] + b"}", bytes.fromhex(hex_tag.decode())


def _frame(payload: bytes) -> bytes:
    """The 64 bytes where the hex tag must be; Rejected("malformed") if the frame is wrong."""
    if len(payload) > MAX_PAYLOAD:
        raise Rejected("malformed", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    cut = len(payload) - 74
    if cut < 1 or payload[cut : cut + 8] != MAC_MARKER or payload[-2:] != b'"}':
        raise Rejected("malformed", "no mac member at the end")
    return payload[cut + 8 : -2]


def compute_tag(key: bytes, body: bytes) -> bytes:
    return hmac.digest(key, body, hashlib.sha256)


class TagChecker:
    """Checks tags under one device key; keyed once, so each check hashes only the payload."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def check(self, payload: bytes) -> bytes:
        """The signed body if the tag is right; Rejected("forged") or ("malformed") if not."""
        hex_tag = _frame(payload)
        body = payload[: len(payload) - 74] + b"}"
        mac = self._keyed.copy()
        mac.update(body)
        if not hmac.compare_digest(mac.hexdigest().encode(), hex_tag):
            if not _TAG_RE.fullmatch(hex_tag):
                raise Rejected("malformed", "mac is not 64 lowercase hex digits")
            raise Rejected("forged", "HMAC tag does not match")
        return body


def check_tag(key: bytes, payload: bytes) -> bytes:
    """The signed body if the tag is right; Rejected("forged") if not."""
    return TagChecker(key).check(payload)


def _no_constants(name: str) -> Any:
    raise Rejected("malformed", f"non-finite number {name}")


def _int_member(obj: dict[str, Any], key: str, low: int = 0, high: int = MAX_INT) -> int:
    value = obj[key]
    if type(value) is not int or not low <= value <= high:
        raise Rejected("malformed", f"{key!r} must be an integer in [{low}, {high}]")
    return value


def parse_body(payload: bytes) -> Reading:
    """Parse an already authenticated payload, checking every member's type and order."""
    try:
        obj = json.loads(payload, parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Rejected("malformed", f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or tuple(obj) != MEMBER_ORDER:
        raise Rejected("malformed", f"members must be exactly {','.join(MEMBER_ORDER)} in that order")
    if _int_member(obj, "v") != 1:
        raise Rejected("malformed", "unsupported version")
    dev = obj["dev"]
    if not isinstance(dev, str) or not DEVICE_RE.fullmatch(dev):
        raise Rejected("malformed", "'dev' must match [a-z0-9-]{1,32}")
    model = obj["m"]
    if model not in MODELS:
        raise Rejected("malformed", f"unknown meter model {model!r}")
    values = obj["r"]
    if not isinstance(values, dict):
        raise Rejected("malformed", "'r' must be an object")
    for key, value in values.items():
        if not _VALUE_KEY_RE.fullmatch(key):
            raise Rejected("malformed", f"bad value name {key[:32]!r}")
        if type(value) not in (int, float) or not math.isfinite(value):
            raise Rejected("malformed", f"value {key!r} must be a finite number")
    for counter in ("e_imp_kWh", "e_exp_kWh"):
        if counter in values and values[counter] < 0:
            raise Rejected("malformed", f"{counter} must not be negative")
    return Reading(
        dev=dev,
        seq=_int_member(obj, "seq"),
        ts=_int_member(obj, "ts", 0, 2**40),
        q=_int_member(obj, "q", 0, 0xFFFF),
        model=model,
        values={k: float(v) for k, v in values.items()},
        raw=payload,
    )


_NUM = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_CANONICAL = re.compile(
    rb'\{"v":1,"dev":"([a-z0-9-]{1,32})","seq":(0|[1-9][0-9]{0,15}),"ts":(0|[1-9][0-9]{0,12}),'
    rb'"q":(0|[1-9][0-9]{0,4}),"m":"(sdm120|sdm630)","r":\{((?:"[A-Za-z0-9_]{1,24}":'
    + _NUM
    + rb'(?:,"[A-Za-z0-9_]{1,24}":'
    + _NUM
    + rb")*)?)\}\}"
)

_PAIR = re.compile(rb'"([A-Za-z0-9_]{1,24})":([^,]+)')  # one member of an already matched "r"
_KEY_NAMES: dict[bytes, str] = {}  # decoded value names, reused across readings


def parse_canonical(body: bytes, raw: bytes) -> Reading | None:
    """Fast path for the exact compact form the firmware sends; None means "use `parse_body`".

    It accepts a subset of what `parse_body` accepts and yields the same Reading (a property test
    checks this), so anything unusual takes the slow, fully general path.
    """
    m = _CANONICAL.fullmatch(body)
    if m is None:
        return None
    dev, seq, ts, q, model, r = m.groups()
    seq_i, ts_i, q_i = int(seq), int(ts), int(q)
    if seq_i > MAX_INT or ts_i > 2**40 or q_i > 0xFFFF:
        return None
    values: dict[str, float] = {}
    for key, text in _PAIR.findall(r):  # the regex has checked the structure: no second parse
        name = _KEY_NAMES.get(key)
        if name is None:
            name = key.decode()
            if len(_KEY_NAMES) < 256:  # a firmware sends a handful of names; bounded all the same
                _KEY_NAMES[key] = name
        values[name] = float(text)
    for number in values.values():  # after the loop: a repeated name keeps its last value, as in JSON
        if number - number != 0.0:  # inf or nan: the general parser rejects it with a reason
            return None
    if values.get("e_imp_kWh", 0.0) < 0 or values.get("e_exp_kWh", 0.0) < 0:
        return None
    return Reading(dev.decode(), seq_i, ts_i, q_i, model.decode(), values, raw)


def verify(key: bytes, payload: bytes) -> Reading:
    """Authenticate then parse: the full receiver check except sequence numbers (stateful)."""
    body = check_tag(key, payload)
    return parse_canonical(body, payload) or parse_body(payload)


def _number(value: float) -> str:
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"cannot encode {value!r}")
    return json.dumps(float(value))


def encode_reading(
    key: bytes, dev: str, seq: int, ts: int, q: int, model: str, values: dict[str, float]
) -> bytes:
    """A signed reading in the exact member order, for tests, benches and the simulator."""
    r = ",".join(f"{json.dumps(k)}:{_number(v)}" for k, v in values.items())
    head = (
        f'{{"v":1,"dev":{json.dumps(dev)},"seq":{seq},"ts":{ts},"q":{q},"m":{json.dumps(model)},"r":{{{r}}}'
    )
    body = head.encode() + b"}"
    tag = compute_tag(key, body).hex()
    return head.encode() + MAC_MARKER + tag.encode() + b'"}'


# ---------------------------------------------------------------- control messages (docs/wire/control-v1.md)

STATUS_MEMBERS = ("v", "dev", "boot", "n", "st", "mac")
HEALTH_MEMBERS = ("v", "dev", "boot", "n", "reset", "up_s", "buf", "drop", "err", "mem", "fw", "mac")
HEALTH_NUMBERS = ("up_s", "buf", "drop", "err", "mem")
HEALTH_TEXTS = ("reset", "fw")
MAX_CONTROL = 1024


class Control(NamedTuple):
    """A verified status or health message of a meter node.

    `(boot, n)` orders a node's control messages: `boot` is its persistent boot count, `n` counts
    control messages within a boot, so the pair only grows over the node's life.
    """

    kind: str  # "status" or "health"
    dev: str
    boot: int
    n: int
    fields: dict[str, int | str]  # status: st; health: the numbers and texts

    @property
    def mark(self) -> tuple[int, int]:
        return (self.boot, self.n)


class ControlMarks(NamedTuple):
    """What a gateway remembers of a node's control messages, to refuse replays (stored).

    `online` is the mark of the newest session (an `online` and its last will share it), `ended`
    whether that session's `offline` came, `health` the newest health report's mark.
    """

    online: tuple[int, int] = (-1, -1)
    ended: bool = True
    health: tuple[int, int] = (-1, -1)


def parse_control(kind: str, checker: TagChecker, payload: bytes) -> Control:
    """Authenticate then parse a status or health payload; Rejected with the reason to count
    (`unsigned`: no mac member at all, e.g. a plain `offline`; `forged`; `malformed`)."""
    if len(payload) > MAX_CONTROL:
        raise Rejected("malformed", f"{kind} of {len(payload)} bytes exceeds {MAX_CONTROL}")
    if MAC_MARKER[1:] not in payload:
        raise Rejected("unsigned", f"{kind} without a mac member")
    checker.check(payload)
    try:
        obj = json.loads(payload, parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Rejected("malformed", f"not JSON: {exc}") from None
    members = STATUS_MEMBERS if kind == "status" else HEALTH_MEMBERS
    if not isinstance(obj, dict) or tuple(obj) != members:
        raise Rejected("malformed", f"members must be exactly {','.join(members)} in that order")
    if _int_member(obj, "v") != 1:
        raise Rejected("malformed", "unsupported version")
    dev = obj["dev"]
    if not isinstance(dev, str) or not DEVICE_RE.fullmatch(dev):
        raise Rejected("malformed", "'dev' must match [a-z0-9-]{1,32}")
    fields: dict[str, int | str] = {}
    if kind == "status":
        if obj["st"] not in ("online", "offline"):
            raise Rejected("malformed", "'st' must be online or offline")
        fields["st"] = obj["st"]
    else:
        for name in HEALTH_NUMBERS:
            fields[name] = _int_member(obj, name)
        for name in HEALTH_TEXTS:
            text = obj[name]
            if not isinstance(text, str) or len(text) > 64:
                raise Rejected("malformed", f"{name!r} must be a string of up to 64 characters")
            fields[name] = text
    return Control(kind, dev, _int_member(obj, "boot", 0, 2**32), _int_member(obj, "n", 0, 2**32), fields)


def control_marks(marks: ControlMarks, msg: Control) -> ControlMarks:
    """The marks after accepting `msg`, or Rejected("replayed").

    An `online` opens the session it names if that is newer than the last one, and repeats it
    while it has not ended (the retained copy, delivered again on each subscription); an
    `offline` (the node's last will, made when the session opened) ends the session it names if
    that is the current one or a newer one; a health report counts if it is not older than the
    newest. Anything else is an old message sent again: someone replaying it.
    """
    mark = msg.mark
    if msg.kind == "health":
        if mark < marks.health:
            raise Rejected("replayed", f"health {mark} older than {marks.health}")
        return marks._replace(health=mark)
    if msg.fields["st"] == "online":
        if mark > marks.online or (mark == marks.online and not marks.ended):
            return marks._replace(online=mark, ended=False)
        raise Rejected("replayed", f"online {mark}: session {marks.online} is newer or has ended")
    if mark < marks.online:
        raise Rejected("replayed", f"offline {mark} of a session older than {marks.online}")
    return marks._replace(online=mark, ended=True)


def _control(key: bytes, head: str) -> bytes:
    body = head.encode() + b"}"
    return head.encode() + MAC_MARKER + compute_tag(key, body).hex().encode() + b'"}'


def encode_status(key: bytes, dev: str, boot: int, n: int, st: str) -> bytes:
    """A signed status (`online`, or `offline` for the last will), as the firmware sends it."""
    return _control(key, f'{{"v":1,"dev":"{dev}","boot":{boot},"n":{n},"st":"{st}"')


def encode_health(
    key: bytes,
    dev: str,
    boot: int,
    n: int,
    reset: str,
    up_s: int,
    buf: int,
    drop: int,
    err: int,
    mem: int,
    fw: str,
) -> bytes:
    """A signed health report, as the firmware sends it."""
    return _control(
        key,
        f'{{"v":1,"dev":"{dev}","boot":{boot},"n":{n},"reset":{json.dumps(reset)},"up_s":{up_s},"buf":{buf},'
        f'"drop":{drop},"err":{err},"mem":{mem},"fw":{json.dumps(fw)}',
    )
