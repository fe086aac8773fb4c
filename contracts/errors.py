"""Decode a revert into (error name, arguments), the same on anvil and on the in-process EVM.

web3 8 raises ContractCustomError / ContractLogicError (hex `data`) for JSON-RPC nodes, while
eth-tester raises TransactionFailed whose message embeds the raw revert bytes. Tests and the
gateway both need the custom error's name and values, so this is the one place that knows both.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)


@dataclass(frozen=True)
class RevertInfo:
    """A decoded revert: `name` is the custom error (or "Error"/"Panic"/"unknown"), `args` its values
    (addresses checksummed)."""

    name: str
    args: tuple[Any, ...]
    data: bytes

    def __str__(self) -> str:
        return f"{self.name}{self.args!r}"


def _abi_type(param: dict[str, Any]) -> str:
    kind = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param.get("components", [])) + ")" + kind[5:]
    return kind


def error_selectors(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[str]]]:
    """4-byte selector -> (error name, argument types) for every `error` in an ABI."""
    table: dict[bytes, tuple[str, list[str]]] = {}
    for item in abi:
        if item.get("type") != "error":
            continue
        types = [_abi_type(p) for p in item.get("inputs", [])]
        table[keccak(text=f"{item['name']}({','.join(types)})")[:4]] = (item["name"], types)
    return table


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert bytes carried by a web3 or eth-tester exception, if any."""
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
        if isinstance(arg, str):
            found = re.search(r"(b(['\"]).*\2)\s*$", arg, re.DOTALL)
            if found:
                try:
                    value = ast.literal_eval(found.group(1))
                except (ValueError, SyntaxError):
                    continue
                if isinstance(value, bytes):
                    return value
            hexed = re.search(r"0x[0-9a-fA-F]{8,}", arg)
            if hexed:
                return bytes.fromhex(hexed.group(0)[2:])
    return None


def decode_revert(exc: BaseException, abi: list[dict[str, Any]]) -> RevertInfo:
    """Decode `exc` against `abi`'s custom errors; unknown data gives name "unknown" rather than raising."""
    data = revert_data(exc)
    if data is None:
        message = str(exc)
        return RevertInfo("Error", (message,), b"") if message else RevertInfo("unknown", (), b"")
    selector, body = data[:4], data[4:]
    if selector == _ERROR_STRING:
        return RevertInfo("Error", tuple(decode(["string"], body)), data)
    if selector == _PANIC:
        return RevertInfo("Panic", tuple(decode(["uint256"], body)), data)
    known = error_selectors(abi).get(selector)
    if known is None:
        return RevertInfo("unknown", (), data)
    name, types = known
    values = decode(types, body)
    args = tuple(to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True))
    return RevertInfo(name, args, data)
