"""Decode calls and events of any contract from its ABI: the explorer's one decoder, no hand-written layouts.

Selectors and topics are worked out from the ABI artifacts, so a new function, event or contract
(a settlement or loan contract split off the Market) is decoded as soon as its artifact is built.
Values come back JSON-ready: addresses checksummed, bytes as 0x-hex, structs as dicts with their
field names, integers as ints (the page prints big ones as strings). The one packed argument,
`Market.settleByMeters(batch)`, is expanded by its parser in the shared core (`expand_packed`), so its
terms, windows and signatures show like any other call's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils.abi import event_abi_to_log_topic, function_abi_to_4byte_selector
from eth_utils.address import to_checksum_address

from gridpact.core.eip712 import TERMS_NAMES
from gridpact.core.statement import parse_settlement_batch


@dataclass(frozen=True)
class Decoded:
    """A decoded call or event: its name, its contract's name, its arguments by name."""

    name: str
    contract: str
    args: dict[str, Any]


def abi_type(param: dict[str, Any]) -> str:
    """The canonical type string of an ABI parameter (tuples expanded, arrays kept)."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def json_value(param: dict[str, Any], value: Any) -> Any:
    """A decoded value made JSON-ready, structs named after their components."""
    kind = str(param["type"])
    if kind.endswith("]"):
        element = dict(param, type=kind[: kind.rindex("[")])
        return [json_value(element, v) for v in value]
    if kind == "tuple":
        return {
            c["name"] or str(i): json_value(c, v)
            for i, (c, v) in enumerate(zip(param["components"], value, strict=True))
        }
    if kind == "address":
        return to_checksum_address(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value


class AbiDecoder:
    """Calls by 4-byte selector and events by topic 0, over the ABIs of named contracts."""

    def __init__(self, abis: dict[str, list[dict[str, Any]]]) -> None:
        self._functions: dict[bytes, tuple[str, dict[str, Any]]] = {}
        self._events: dict[bytes, list[tuple[str, dict[str, Any]]]] = {}
        for contract, abi in abis.items():
            for entry in abi:
                if entry.get("type") == "function":
                    selector = bytes(function_abi_to_4byte_selector(entry))  # type: ignore[arg-type]
                    self._functions.setdefault(selector, (contract, entry))
                elif entry.get("type") == "event" and not entry.get("anonymous"):
                    topic = bytes(event_abi_to_log_topic(entry))  # type: ignore[arg-type]
                    self._events.setdefault(topic, []).append((contract, entry))

    def call(self, data: bytes) -> Decoded | None:
        """The function and arguments of a transaction's input; None for an unknown selector or bad data."""
        found = self._functions.get(bytes(data[:4]))
        if found is None:
            return None
        contract, fn = found
        inputs = fn.get("inputs", [])
        try:
            values = decode([abi_type(p) for p in inputs], bytes(data[4:]))
        except (DecodingError, ValueError, OverflowError):
            return None
        args = {
            p["name"] or str(i): json_value(p, v) for i, (p, v) in enumerate(zip(inputs, values, strict=True))
        }
        return Decoded(fn["name"], contract, expand_packed(fn["name"], args))

    def event(self, topics: list[bytes], data: bytes) -> Decoded | None:
        """The event of a log (indexed arguments from the topics, the rest from data); None if unknown."""
        if not topics:
            return None
        for contract, ev in self._events.get(bytes(topics[0]), []):
            inputs = ev.get("inputs", [])
            indexed = [p for p in inputs if p.get("indexed")]
            if len(indexed) != len(topics) - 1:
                continue
            plain = [p for p in inputs if not p.get("indexed")]
            try:
                plain_values = list(decode([abi_type(p) for p in plain], bytes(data)))
                topic_values = [
                    decode([abi_type(p)], bytes(t))[0] if _static(p) else bytes(t)
                    for p, t in zip(indexed, topics[1:], strict=True)
                ]
            except (DecodingError, ValueError, OverflowError):
                continue
            args: dict[str, Any] = {}
            for i, p in enumerate(inputs):
                value = topic_values.pop(0) if p.get("indexed") else plain_values.pop(0)
                args[p["name"] or str(i)] = (
                    json_value(p, value) if (not p.get("indexed") or _static(p)) else "0x" + value.hex()
                )
            return Decoded(ev["name"], contract, args)
        return None


def _static(param: dict[str, Any]) -> bool:
    """Whether an indexed parameter is stored as itself (value types) or as its hash (the rest)."""
    kind = str(param["type"])
    return not (kind in ("string", "bytes") or kind.startswith("tuple") or kind.endswith("]"))


def expand_packed(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """`settleByMeters(batch)` as named parts (docs/wire/meter-settlement-v1.md): `windows`, `items` (terms
    and window indexes, as a settlement's evidence) and the agreements it opens as `opens` with their
    `sellerSigs`/`buyerSigs`, the shape `submitAgreements` has; other calls, and a batch that does not
    parse (the chain refused it too), unchanged."""
    batch = args.get("batch")
    if name != "settleByMeters" or not isinstance(batch, str):
        return args
    try:
        parsed = parse_settlement_batch(bytes.fromhex(batch.removeprefix("0x")))
    except ValueError:
        return args

    def reading(r: tuple) -> dict[str, Any]:
        return {
            "importWh": r[0],
            "exportWh": r[1],
            "readings": r[2],
            "readingsDigest": _hex(r[3]),
            "sig": _sig(r[4]),
        }

    windows = [
        {"household": w[0], "device": _hex(w[1]), "start": w[2], "end": w[3],
         "from": None if w[4][4] == (bytes(32), bytes(32)) else reading(w[4]), "to": reading(w[5])}
        for w in parsed.windows
    ]  # fmt: skip
    items = [
        {"terms": dict(zip(TERMS_NAMES, t, strict=True)), "sellerWindow": s, "buyerWindow": b}
        for t, s, b in parsed.items
    ]
    return {
        "windows": windows,
        "items": items,
        "opens": [dict(zip(TERMS_NAMES, t, strict=True)) for t, _, _ in parsed.opens],
        "sellerSigs": [_sig(s) for _, s, _ in parsed.opens],
        "buyerSigs": [_sig(b) for _, _, b in parsed.opens],
    }


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _sig(sig: tuple[bytes, bytes]) -> dict[str, str]:
    return {"r": _hex(sig[0]), "vs": _hex(sig[1])}
