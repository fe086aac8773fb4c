"""Meter statement v1 (docs/wire/statement-v1.md): decode, encode and recover the signing meter.

The node signs sha256(statement) with its own secp256k1 device key; anyone (the household's
gateway, the counterparty, a keeper, the contract via ecrecover) recovers the signer's address and
compares it with the meter registered for that household. Written from the spec with struct and
coincurve (libsecp256k1) and eth_utils, independently of the firmware's encoder and signer, so each checks the other.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Sequence
from typing import NamedTuple

import coincurve
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

MAGIC = b"GPSTMTv1"
SIZE = 100
SIG_SIZE = 65
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_LAYOUT = struct.Struct(">8s32sQQQI32s")
_HEX_RE = re.compile(r"[0-9a-f]+")
MAX_MESSAGE = 1024


class StatementRejected(ValueError):
    """A statement or its signature that must not count as meter evidence; `reason` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Statement(NamedTuple):
    dev: str
    window_end: int
    import_wh: int
    export_wh: int
    readings: int
    readings_digest: bytes


def encode(st: Statement) -> bytes:
    """The 100 statement bytes (abi.encodePacked of the typed fields)."""
    dev = st.dev.encode()
    if not 0 < len(dev) <= 32:
        raise ValueError("device id must be 1..32 bytes")
    return _LAYOUT.pack(
        MAGIC, dev, st.window_end, st.import_wh, st.export_wh, st.readings, st.readings_digest
    )


def decode(raw: bytes) -> Statement:
    if len(raw) != SIZE:
        raise StatementRejected("size", f"{len(raw)} bytes, want {SIZE}")
    magic, dev, end, imp, exp, n, rdigest = _LAYOUT.unpack(raw)
    if magic != MAGIC:
        raise StatementRejected("magic", repr(magic))
    name = dev.rstrip(b"\0")
    if not name or b"\0" in name:
        raise StatementRejected("device", "empty or not zero-padded on the right")
    try:
        text = name.decode("ascii")
    except UnicodeDecodeError:
        raise StatementRejected("device", "not ASCII") from None
    return Statement(text, end, imp, exp, n, rdigest)


def digest(raw: bytes) -> bytes:
    """What the device key signs (the contract computes it with the sha256 precompile)."""
    return hashlib.sha256(raw).digest()


def recover_signer(raw: bytes, sig: bytes) -> str:
    """Checksummed address of the key that signed `raw`; high-s and v outside {27, 28} are refused,
    as the contract refuses them (ecrecover alone would accept the malleated twin)."""
    if len(sig) != SIG_SIZE:
        raise StatementRejected("signature", f"{len(sig)} bytes, want {SIG_SIZE}")
    r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    if v not in (27, 28):
        raise StatementRejected("signature", f"v={v}, want 27 or 28")
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2):
        raise StatementRejected("signature", "r or s out of range (high s is refused)")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(
            sig[:64] + bytes([v - 27]), digest(raw), hasher=None
        )
    except ValueError as e:  # r is not the x of a curve point
        raise StatementRejected("signature", str(e)) from None
    return address_of(pub.format(compressed=False)[1:])


def sign(raw: bytes, secret: bytes) -> bytes:
    """r || s || v of `raw` under a device key (low-s, RFC 6979): what a node publishes; for host-side
    meters (simulator, tests). The firmware has its own signer; the vectors pin both to libsecp256k1."""
    sig = coincurve.PrivateKey(secret).sign_recoverable(digest(raw), hasher=None)
    return sig[:64] + bytes([27 + sig[64]])


def to_compact(sig: bytes) -> tuple[bytes, bytes]:
    """EIP-2098 (r, vs) of a 65-byte r || s || v signature: the form `Market.settleByMeters` takes."""
    if len(sig) != SIG_SIZE or sig[64] not in (27, 28):
        raise StatementRejected("signature", "want 65 bytes r || s || v with v in {27, 28}")
    vs = int.from_bytes(sig[32:64], "big") | ((sig[64] - 27) << 255)
    return sig[:32], vs.to_bytes(32, "big")


def reading_args(raw: bytes, sig: bytes) -> tuple:
    """A signed statement as a window's reading (docs/wire/meter-settlement-v1.md): (importWh, exportWh,
    readings, readingsDigest, (r, vs))."""
    st = decode(raw)
    return (st.import_wh, st.export_wh, st.readings, st.readings_digest, to_compact(sig))


NO_READING: tuple = (0, 0, 0, bytes(32), (bytes(32), bytes(32)))
"""A window's start reading meaning: start from the statement the meter's previous window on chain ended with."""


def window_args(
    household: str, start: int, end: int, first: tuple[bytes, bytes] | None, last: tuple[bytes, bytes]
) -> tuple:
    """A window (household, device, start, end, start reading, end reading) for `settlement_batch` from signed statements at the window's start (None:
    chained on chain) and end, each (statement bytes, r || s || v); both must be one device's."""
    end_st = decode(last[0])
    if end_st.window_end != end or (first is not None and decode(first[0]).window_end != start):
        raise StatementRejected("time", "statements do not bound the window")
    if first is not None and decode(first[0]).dev != end_st.dev:
        raise StatementRejected("device", "start and end statements of different devices")
    start_args = NO_READING if first is None else reading_args(*first)
    return (household, device_word(end_st.dev), start, end, start_args, reading_args(*last))


NO_WINDOW = 2**32 - 1
"""A batch item's window index for "this side's statements are not in the call"."""

WINDOW_HEAD = 63  # household 20, device 32, start 5, end 5, start flag 1
READING_SIZE = 116  # importWh 8, exportWh 8, readings 4, readingsDigest 32, r 32, vs 32
ITEM_SIZE = 264  # the Terms' 8 EIP-712 words, sellerWindow 4, buyerWindow 4
OPEN_SIZE = 384  # the Terms' 8 EIP-712 words, the seller's and the buyer's (r, vs)


def settlement_batch(windows: Sequence[tuple], items: Sequence[tuple], opens: Sequence[tuple] = ()) -> bytes:
    """The packed argument of `Market.settleByMeters` (docs/wire/meter-settlement-v1.md).

    `windows` are `window_args` tuples, `items` (terms tuple, seller window, buyer window) and `opens`
    (terms tuple, seller's (r, vs), buyer's (r, vs)): a 2-byte window count, each window (household,
    device, start, end, 1 when a start statement follows, the end statement, the start statement), a
    2-byte item count, the items, then the agreements to open. A start reading with a zero signature
    (`NO_READING`) chains from the meter's last used window."""
    out = bytearray(len(windows).to_bytes(2, "big"))
    for household, device, start, end, first, last in windows:
        chained = bytes(first[4][0]) == bytes(32) and bytes(first[4][1]) == bytes(32)
        out += _address(household) + bytes(device) + start.to_bytes(5, "big") + end.to_bytes(5, "big")
        out += bytes([0 if chained else 1]) + _reading(last) + (b"" if chained else _reading(first))
    out += len(items).to_bytes(2, "big")
    for terms, seller_window, buyer_window in items:
        out += _terms_words(terms) + seller_window.to_bytes(4, "big") + buyer_window.to_bytes(4, "big")
    for terms, (seller_r, seller_vs), (buyer_r, buyer_vs) in opens:
        out += _terms_words(terms) + bytes(seller_r) + bytes(seller_vs) + bytes(buyer_r) + bytes(buyer_vs)
    return bytes(out)


class SettlementBatch(NamedTuple):
    """A parsed `settleByMeters` batch, in `settlement_batch`'s own argument shapes."""

    windows: list[tuple]
    items: list[tuple]
    opens: list[tuple]


def parse_settlement_batch(raw: bytes) -> SettlementBatch:
    """The inverse of `settlement_batch` (explorers, tests); ValueError where the contract would revert
    `MeterBatchMalformed`."""

    def take(n: int) -> bytes:
        nonlocal at
        if at + n > len(raw):
            raise ValueError(f"settlement batch cut short at byte {at}")
        at += n
        return raw[at - n : at]

    def number(n: int) -> int:
        return int.from_bytes(take(n), "big")

    def reading() -> tuple:
        return (number(8), number(8), number(4), take(32), (take(32), take(32)))

    def terms() -> tuple:
        words = [take(32) for _ in range(8)]
        seller, buyer = (to_checksum_address(w[12:]) for w in words[:2])
        return (seller, buyer, *(int.from_bytes(w, "big") for w in words[2:]))

    at = 0
    windows = []
    for _ in range(number(2)):
        if at + WINDOW_HEAD + READING_SIZE > len(raw):
            raise ValueError(f"window at byte {at} cut short")
        household, device, start, end = to_checksum_address(take(20)), take(32), number(5), number(5)
        has_start = number(1)
        if has_start > 1:
            raise ValueError(f"start flag {has_start} at byte {at - 1}")
        last = reading()
        first = reading() if has_start else NO_READING
        windows.append((household, device, start, end, first, last))
    n_items = number(2)
    if at + n_items * ITEM_SIZE > len(raw):
        raise ValueError(f"{n_items} items do not fit in the {len(raw) - at} bytes after byte {at}")
    items = [(terms(), number(4), number(4)) for _ in range(n_items)]
    if (len(raw) - at) % OPEN_SIZE:
        raise ValueError(f"{len(raw) - at} bytes after the items: not whole agreements to open")
    opens = [
        (terms(), (take(32), take(32)), (take(32), take(32))) for _ in range((len(raw) - at) // OPEN_SIZE)
    ]
    return SettlementBatch(windows, items, opens)


def _terms_words(terms: Sequence[str | int]) -> bytes:
    """Terms as the 8 words of its EIP-712 encoding (addresses left-padded, integers big-endian)."""
    words = [_address(f).rjust(32, b"\0") if isinstance(f, str) else f.to_bytes(32, "big") for f in terms]
    return b"".join(words)


def _reading(r: tuple) -> bytes:
    import_wh, export_wh, readings, digest_, (sig_r, sig_vs) = r
    raw = import_wh.to_bytes(8, "big") + export_wh.to_bytes(8, "big") + readings.to_bytes(4, "big")
    return raw + bytes(digest_) + bytes(sig_r) + bytes(sig_vs)


def _address(value: str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"not an address: {value!r}")
    return raw


def device_word(dev: str) -> bytes:
    """The statement's device field: the id in ASCII, zero-padded on the right to 32 bytes."""
    raw = dev.encode("ascii")
    if not 0 < len(raw) <= 32:
        raise ValueError("device id must be 1..32 bytes")
    return raw.ljust(32, b"\0")


def json_object(payload: bytes, limit: int) -> dict:
    """A versioned JSON object (`v` = 1) of at most `limit` bytes, or StatementRejected."""
    if len(payload) > limit:
        raise StatementRejected("size", f"message of {len(payload)} bytes")
    try:
        obj = json.loads(payload)
    except ValueError:
        raise StatementRejected("json", "not JSON") from None
    if not isinstance(obj, dict) or obj.get("v") != 1:
        raise StatementRejected("version", "want an object with v=1")
    return obj


def parse_pair(obj: object) -> tuple[Statement, bytes, bytes]:
    """`{"stmt": hex, "sig": hex}` -> (statement, its bytes, r||s||v); signer not checked yet."""
    if not isinstance(obj, dict):
        raise StatementRejected("json", "statement must be an object")
    raw_hex, sig_hex = obj.get("stmt"), obj.get("sig")
    if not isinstance(raw_hex, str) or not isinstance(sig_hex, str):
        raise StatementRejected("json", "stmt and sig must be hex strings")
    if not (_HEX_RE.fullmatch(raw_hex) and _HEX_RE.fullmatch(sig_hex)):
        raise StatementRejected("json", "stmt and sig must be lowercase hex")
    if len(raw_hex) % 2 or len(sig_hex) % 2:
        raise StatementRejected("json", "odd-length hex")
    raw, sig = bytes.fromhex(raw_hex), bytes.fromhex(sig_hex)
    return decode(raw), raw, sig


def parse_message(payload: bytes) -> tuple[Statement, bytes, bytes]:
    """The MQTT payload on .../statement -> (statement, its bytes, r||s||v); signer not checked yet."""
    return parse_pair(json_object(payload, MAX_MESSAGE))


def verify_message(payload: bytes, meter_address: str) -> Statement:
    """A statement signed by the registered meter `meter_address`, or StatementRejected."""
    st, raw, sig = parse_message(payload)
    signer = recover_signer(raw, sig)
    if signer.lower() != meter_address.lower():
        raise StatementRejected("signer", f"signed by {signer}, not the registered {meter_address}")
    return st


def address_of(public_key: bytes) -> str:
    """Ethereum address of a device's 64-byte public key (what the installer registers)."""
    if len(public_key) != 64:
        raise ValueError("public key must be 64 bytes (X || Y)")
    return to_checksum_address(keccak(public_key)[12:])


WINDOW_S = 3600
FUTURE_SLACK_S = 300


class StatementLedger:
    """Per meter, the last accepted statement: accepts only a registered signer's statements that
    move forward in time, never backwards in counters, end on an hour and not in the future.

    Who gains by lying: a replayed old statement (lower counters), a statement of another meter,
    or one dated ahead; each is a counted rejection with its reason, never an exception upward."""

    def __init__(self, meters: dict[str, str]) -> None:
        self.meters = {dev: addr.lower() for dev, addr in meters.items()}
        self.last: dict[str, Statement] = {}
        self.rejected: dict[str, int] = {}

    def accept(self, dev: str, payload: bytes, now: int) -> Statement | None:
        """The statement published on `dev`'s topic, or None (counted in `rejected`)."""
        try:
            return self.check(dev, payload, now)
        except StatementRejected as e:
            self.rejected[e.reason] = self.rejected.get(e.reason, 0) + 1
            return None

    def check(self, dev: str, payload: bytes, now: int) -> Statement:
        """The accepted statement, or StatementRejected with its reason (not counted here)."""
        address = self.meters.get(dev)
        if address is None:
            raise StatementRejected("unknown", f"no registered meter for {dev!r}")
        st = verify_message(payload, address)
        if st.dev != dev:
            raise StatementRejected("device", f"statement of {st.dev!r} on {dev!r}'s topic")
        if st.window_end % WINDOW_S or st.window_end > now + FUTURE_SLACK_S:
            raise StatementRejected("time", f"window end {st.window_end} unaligned or in the future")
        prev = self.last.get(dev)
        if prev is not None:
            if st.window_end <= prev.window_end:
                raise StatementRejected("replay", f"window end {st.window_end} <= {prev.window_end}")
            if st.import_wh < prev.import_wh or st.export_wh < prev.export_wh:
                raise StatementRejected("counter", "a counter went backwards")
        self.last[dev] = st
        return st
