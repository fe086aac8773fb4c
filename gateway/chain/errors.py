"""Chain failures made readable: revert data decoded by the contract's ABI, send errors classified.

anvil (JSON-RPC) reports a revert as web3's ContractCustomError/ContractLogicError carrying the
revert data as hex; the in-process EVM (eth-tester) raises TransactionFailed whose message holds
the raw bytes. Both end up here as one `RevertError(name, args)` so the gateway logs
`AgreementExpired(expiry=..., now=...)` instead of a hex blob, and can act on the error's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from contracts.errors import decode_revert_data, revert_data


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


PANIC_CODES: dict[int, str] = {
    0x01: "assert failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x32: "array index out of bounds",
    0x41: "out of memory",
}


def decode_revert(data: bytes, abi: list[dict]) -> RevertError:
    """Revert data decoded by the ABI's custom errors (`contracts.errors` does the decoding); pure."""
    info = decode_revert_data(data, abi)
    if info.name == "Panic":
        code = int(info.args[0])
        return RevertError("Panic", {"code": code, "meaning": PANIC_CODES.get(code, "?")}, data)
    if info.name == "unknown" and len(data) >= 4:
        return RevertError("unknown", {"selector": data[:4], "data": data[4:]}, data)
    if info.name == "unknown":
        return RevertError("unknown", {"data": data} if data else {}, data)
    if info.name == "undecodable":
        return RevertError("undecodable", {"data": data}, data)
    return RevertError(info.name, dict(zip(info.names, info.args, strict=True)), data)


def revert_data_of(exc: BaseException) -> bytes | None:
    """The raw revert bytes in a web3 or eth-tester exception, or None when it is no revert."""
    return revert_data(exc)


_PYEVM_NONCE_RE = re.compile(r"invalid transaction nonce: expected (\d+), but got (\d+)")


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
