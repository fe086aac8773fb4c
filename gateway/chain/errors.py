"""Chain failures made readable: revert data decoded by the contract's ABI, send errors classified.

anvil (JSON-RPC) reports a revert as web3's ContractCustomError/ContractLogicError carrying the
revert data as hex; the in-process EVM (eth-tester) raises TransactionFailed whose message holds
the raw bytes. Both end up here as one `RevertError(name, args)` so the gateway logs
`AgreementExpired(expiry=..., now=...)` instead of a hex blob, and can act on the error's name.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)


class ChainError(RuntimeError):
    """Base of the chain layer's errors."""


class ChainUnavailable(ChainError):
    """The node does not answer (down, refused, timed out): transient, retried with backoff."""


@dataclass
class RevertError(ChainError):
    """A call or transaction reverted; `name` is the custom error (or "Error"/"Panic"/"unknown")."""

    name: str
    values: dict[str, Any]
    raw: bytes = b""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in self.values.items())
        return f"reverted: {self.name}({inner})"


def _short(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def _canonical_type(item: dict) -> str:
    kind = str(item["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in item.get("components", []))
        return f"({inner}){kind[5:]}"
    return kind


def error_selectors(abi: list[dict]) -> dict[bytes, dict]:
    """Map 4-byte selector -> ABI entry for every custom error of an ABI."""
    out: dict[bytes, dict] = {}
    for item in abi:
        if item.get("type") != "error":
            continue
        sig = f"{item['name']}({','.join(_canonical_type(i) for i in item.get('inputs', []))})"
        out[keccak(text=sig)[:4]] = item
    return out


PANIC_CODES: dict[int, str] = {
    0x01: "assert failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x32: "array index out of bounds",
    0x41: "out of memory",
}


def decode_revert(data: bytes, abi: list[dict]) -> RevertError:
    """Decode revert data (selector + ABI-encoded args) by the ABI's custom errors; pure."""
    if len(data) < 4:
        return RevertError("unknown", {"data": data} if data else {}, data)
    selector, body = data[:4], data[4:]
    try:
        if selector == ERROR_STRING_SELECTOR:
            return RevertError("Error", {"reason": abi_decode(["string"], body)[0]}, data)
        if selector == PANIC_SELECTOR:
            code = int(abi_decode(["uint256"], body)[0])
            return RevertError("Panic", {"code": code, "meaning": PANIC_CODES.get(code, "?")}, data)
        item = error_selectors(abi).get(selector)
        if item is not None:
            inputs = item.get("inputs", [])
            values = abi_decode([_canonical_type(i) for i in inputs], body)
            names = [i.get("name") or f"arg{n}" for n, i in enumerate(inputs)]
            return RevertError(str(item["name"]), dict(zip(names, values, strict=True)), data)
    except Exception:  # malformed revert data is reported, not raised
        return RevertError("undecodable", {"data": data}, data)
    return RevertError("unknown", {"selector": selector, "data": body}, data)


_HEX_RE = re.compile(r"0x[0-9a-fA-F]{8,}")
_PYEVM_NONCE_RE = re.compile(r"invalid transaction nonce: expected (\d+), but got (\d+)")
_BYTES_RE = re.compile(r"b(['\"]).*\1", re.DOTALL)


def revert_data_of(exc: BaseException) -> bytes | None:
    """The raw revert bytes in a web3 or eth-tester exception, or None when it is no revert."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    text = " ".join(str(a) for a in exc.args) if exc.args else str(exc)
    if type(exc).__name__ == "TransactionFailed" or "execution reverted" in text:
        match = _BYTES_RE.search(text)
        if match:
            try:
                value = ast.literal_eval(match.group(0))
            except (ValueError, SyntaxError):
                value = None
            if isinstance(value, bytes):
                return value
        hex_match = _HEX_RE.search(text)
        if hex_match:
            return bytes.fromhex(hex_match.group(0)[2:])
        if "execution reverted" in text:
            reason = text.split("execution reverted", 1)[1].lstrip(": ").strip()
            return ERROR_STRING_SELECTOR + _encode_string(reason) if reason else b""
    return None


def _encode_string(text: str) -> bytes:
    return abi_encode(["string"], [text])


class SendOutcome(Enum):
    """How a failed eth_sendRawTransaction is to be read."""

    ALREADY_KNOWN = "already_known"  # the node has it: success
    NONCE_TOO_LOW = "nonce_too_low"  # that nonce is used: ours if we journaled it, check receipt
    UNDERPRICED = "underpriced"  # replacement needs higher fees
    UNAVAILABLE = "unavailable"  # node down: retry later
    REVERT = "revert"
    OTHER = "other"


def classify_send_error(exc: BaseException) -> SendOutcome:
    """Classify a send failure by its type and message; pure, tested on real node messages."""
    if isinstance(exc, ChainUnavailable) or _is_connection_error(exc):
        return SendOutcome.UNAVAILABLE
    text = str(exc).lower()
    if "already known" in text or "already imported" in text or "known transaction" in text:
        return SendOutcome.ALREADY_KNOWN
    if "nonce too low" in text or "nonce is too low" in text or "oldnonce" in text:
        return SendOutcome.NONCE_TOO_LOW
    stale = _PYEVM_NONCE_RE.search(text)  # py-evm: "invalid transaction nonce: expected 1, but got 0"
    if stale and int(stale.group(2)) < int(stale.group(1)):
        return SendOutcome.NONCE_TOO_LOW
    if "underpriced" in text:
        return SendOutcome.UNDERPRICED
    if revert_data_of(exc) is not None:
        return SendOutcome.REVERT
    return SendOutcome.OTHER


def _is_connection_error(exc: BaseException) -> bool:
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout

    return isinstance(exc, (ConnectionError, TimeoutError, RequestsConnectionError, Timeout))
