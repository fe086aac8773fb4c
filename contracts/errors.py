"""Decode a revert into its error name and values, the same on anvil and on the in-process EVM.

web3 8 raises ContractCustomError / ContractLogicError (hex `data`) for JSON-RPC nodes, while
eth-tester raises TransactionFailed whose message embeds the raw revert bytes. The contract tests,
the deploy tools and the gateway's chain layer all need the custom error's name and values, so this
is the one place that knows both shapes and the ABI decoding (`gateway.chain.errors` builds its
`RevertError` from `decode_revert_data`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

_HEX_RE = re.compile(r"0x[0-9a-fA-F]{8,}")
_BYTES_RE = re.compile(r"b(['\"]).*\1", re.DOTALL)


@dataclass(frozen=True)
class RevertInfo:
    """A decoded revert: `name` is the custom error (or "Error"/"Panic"/"unknown"/"undecodable"),
    `args` its values (addresses checksummed), `names` the ABI's parameter names."""

    name: str
    args: tuple[Any, ...]
    data: bytes
    names: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.name}{self.args!r}"

    def __eq__(self, other: object) -> bool:  # names are presentation, not identity
        if not isinstance(other, RevertInfo):
            return NotImplemented
        return (self.name, self.args, self.data) == (other.name, other.args, other.data)

    def __hash__(self) -> int:
        return hash((self.name, self.args, self.data))


def _abi_type(param: dict[str, Any]) -> str:
    kind = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param.get("components", [])) + ")" + kind[5:]
    return kind


def _error_entries(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[str], list[str]]]:
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for item in abi:
        if item.get("type") != "error":
            continue
        inputs = item.get("inputs", [])
        types = [_abi_type(p) for p in inputs]
        names = [p.get("name") or f"arg{n}" for n, p in enumerate(inputs)]
        table[keccak(text=f"{item['name']}({','.join(types)})")[:4]] = (item["name"], types, names)
    return table


def error_selectors(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[str]]]:
    """4-byte selector -> (error name, argument types) for every `error` in an ABI."""
    return {sel: (name, types) for sel, (name, types, _) in _error_entries(abi).items()}


def decode_revert_data(data: bytes, abi: list[dict[str, Any]]) -> RevertInfo:
    """Decode revert bytes (selector + ABI-encoded values) by `abi`'s custom errors; pure, never raises."""
    if len(data) < 4:
        return RevertInfo("unknown", (), data)
    selector, body = data[:4], data[4:]
    try:
        if selector == ERROR_STRING_SELECTOR:
            return RevertInfo("Error", tuple(decode(["string"], body)), data, ("reason",))
        if selector == PANIC_SELECTOR:
            return RevertInfo("Panic", tuple(decode(["uint256"], body)), data, ("code",))
        known = _error_entries(abi).get(selector)
        if known is None:
            return RevertInfo("unknown", (), data)
        name, types, names = known
        values = decode(types, body)
    except Exception:  # malformed revert data is reported, not raised
        return RevertInfo("undecodable", (), data)
    args = tuple(to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True))
    return RevertInfo(name, args, data, tuple(names))


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert bytes carried by a web3 or eth-tester exception; None when it is no revert.

    Text is searched for bytes or hex only in messages that say they are reverts, so a send error
    that merely mentions an address is not mistaken for one."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    for arg in exc.args:
        if isinstance(arg, bytes):
            return arg
        if isinstance(arg, BaseException):
            inner = revert_data(arg)
            if inner is not None:
                return inner
    text = " ".join(str(a) for a in exc.args if a is not None) or str(exc)
    if type(exc).__name__ != "TransactionFailed" and "execution reverted" not in text:
        return None
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
        return ERROR_STRING_SELECTOR + abi_encode(["string"], [reason]) if reason else b""
    return None


def decode_revert(exc: BaseException, abi: list[dict[str, Any]]) -> RevertInfo:
    """Decode `exc` against `abi`'s custom errors; an exception without revert data gives
    Error(message) (or "unknown" when it has no message) rather than raising."""
    data = revert_data(exc)
    if data is None:
        message = str(exc)
        return RevertInfo("Error", (message,), b"") if message else RevertInfo("unknown", (), b"")
    return decode_revert_data(data, abi)
