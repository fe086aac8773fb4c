"""Peer protocol v1 codec: signed envelopes between gateways (docs/wire/peer-protocol-v1.md).

Pure functions only. Every message is an envelope signed with the sender's gateway key (EIP-191
personal message over a domain prefix and the canonical JSON of the envelope without `sig`), the
same key that signs on chain, so the community roster on the Market contract is also the list of
who may speak. Bodies carry integers and short strings only: canonical JSON of floats is not
portable, so prices are token base units per kWh and energy is integer Wh.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from gridpact.core.eip712 import TERMS_NAMES

VERSION = 1
DOMAIN_PREFIX = b"gridpact-peer-v1\n"
MAX_MESSAGE_BYTES = 8192

ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
ID_RE = re.compile(r"^[0-9a-f]{32}$")
HEX32_RE = re.compile(r"^0x[0-9a-f]{64}$")
SIG_RE = re.compile(r"^0x[0-9a-f]{130}$")
COMMUNITY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")

UINT = "uint"
STR = "str"
HEX32 = "hex32"
SIG = "sig"
SIDE = "side"
TERMS = "terms"
NONCE = "nonce"  # uint64: the seller's slot nonce
LOAN = "loan"  # the Market's EIP-712 `Loan` (the loan family, docs/wire/loan-protocol-v1.md)
ADDRESS = "address"

# message type -> body member -> kind; every member is required, no others allowed
BODY_SCHEMAS: dict[str, dict[str, str]] = {
    "offer": {"window": UINT, "window_s": UINT, "side": SIDE, "quantity_wh": UINT, "price": UINT},
    "propose": {"session": HEX32, "window": UINT, "window_s": UINT, "round": UINT, "quantity_wh": UINT,
                "price": UINT},
    "counter": {"session": HEX32, "round": UINT, "quantity_wh": UINT, "price": UINT, "nonce": NONCE},
    "accept": {"session": HEX32, "round": UINT, "terms": TERMS, "sig": SIG},
    "confirm": {"session": HEX32, "agreement": HEX32, "sig": SIG},
    "reject": {"session": HEX32, "reason": STR},
    # grid-station auctions (stations.py): a buyer's call for bids, a seller's signed bid
    "request": {"session": HEX32, "window": UINT, "window_s": UINT, "quantity_wh": UINT, "price": UINT},
    "bid": {"session": HEX32, "terms": TERMS, "sig": SIG},
}  # fmt: skip
DIRECT_TYPES = frozenset({"propose", "counter", "accept", "confirm", "reject", "bid"})
MAX_UINT = 2**256 - 1
# the Market's Terms field widths (contracts/INTERFACE.md): terms that do not fit are malformed
TERMS_BOUNDS = {"quantityWh": 2**64, "unitPrice": 2**128, "deliveryStart": 2**40, "deliveryEnd": 2**40,
                "nonce": 2**64, "expiry": 2**40}  # fmt: skip
LOAN_FIELDS = ("lender", "borrower", "quantityWh", "collateral", "returnBy", "nonce", "expiry")
LOAN_BOUNDS = {"quantityWh": 2**64, "collateral": 2**128, "returnBy": 2**40, "nonce": 2**64, "expiry": 2**40}


@dataclass(frozen=True)
class Family:
    """One message family on the peer broker: its topic level, signing prefix and body schemas.

    Families share the envelope and its checks; the signing prefix differs, so a message of one
    family can never be accepted as another's (docs/wire/loan-protocol-v1.md).
    """

    level: str
    prefix: bytes
    schemas: Mapping[str, Mapping[str, str]]
    direct: frozenset[str]


PEER_V1 = Family("v1", DOMAIN_PREFIX, BODY_SCHEMAS, DIRECT_TYPES)


class ProtocolError(ValueError):
    """A message that is not a valid v1 envelope; `reason` is the counter label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Envelope:
    """A decoded, schema-checked (not yet authenticated) message."""

    type: str
    sender: str
    to: str | None
    id: str
    ts: int
    community: str
    body: dict[str, Any]
    sig: str = field(default="", compare=False)

    def unsigned(self) -> dict[str, Any]:
        return {"v": VERSION, "type": self.type, "from": self.sender, "to": self.to, "id": self.id,
                "ts": self.ts, "community": self.community, "body": self.body}  # fmt: skip


def canonical(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, ASCII; what is signed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signing_payload(env: Envelope, family: Family = PEER_V1) -> bytes:
    return family.prefix + canonical(env.unsigned())


def sign_envelope(env: Envelope, account: LocalAccount, family: Family = PEER_V1) -> Envelope:
    """Return the envelope with `sig` set by the account, which must be the sender."""
    if account.address.lower() != env.sender.lower():
        raise ValueError("the signing account is not the envelope's sender")
    signed = account.sign_message(encode_defunct(primitive=signing_payload(env, family)))
    return Envelope(env.type, env.sender, env.to, env.id, env.ts, env.community, env.body,
                    "0x" + bytes(signed.signature).hex())  # fmt: skip


def recover_sender(env: Envelope, family: Family = PEER_V1) -> str:
    """The address that signed the envelope (checksummed); raises ProtocolError on a broken signature."""
    try:
        return Account.recover_message(
            encode_defunct(primitive=signing_payload(env, family)), signature=env.sig
        )
    except Exception as exc:
        raise ProtocolError("bad_signature", f"cannot recover signer: {type(exc).__name__}") from exc


def encode(env: Envelope) -> bytes:
    """Wire bytes of a signed envelope."""
    if not env.sig:
        raise ValueError("envelope is not signed")
    return canonical(env.unsigned() | {"sig": env.sig})


def decode(raw: bytes, family: Family = PEER_V1) -> Envelope:
    """Parse and schema-check wire bytes; raises ProtocolError(reason) and never anything else."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("malformed", f"not JSON: {type(exc).__name__}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("malformed", "not a JSON object")
    if obj.get("v") != VERSION or type(obj.get("v")) is not int:
        raise ProtocolError("wrong_version", f"v={obj.get('v')!r}")
    expected = {"v", "type", "from", "to", "id", "ts", "community", "body", "sig"}
    if set(obj) != expected:
        raise ProtocolError("malformed", f"members {sorted(set(obj) ^ expected)} wrong")
    kind = obj["type"]
    if not isinstance(kind, str) or kind not in family.schemas:
        raise ProtocolError("malformed", f"unknown type {str(kind)[:32]!r}")
    _need(isinstance(obj["from"], str) and ADDRESS_RE.match(obj["from"]) is not None, "from")
    to = obj["to"]
    if kind in family.direct:
        _need(isinstance(to, str) and ADDRESS_RE.match(to) is not None, "to")
    else:
        _need(to is None, "to")
    _need(isinstance(obj["id"], str) and ID_RE.match(obj["id"]) is not None, "id")
    _need(_is_uint(obj["ts"]) and obj["ts"] < 2**40, "ts")
    _need(isinstance(obj["community"], str) and COMMUNITY_RE.match(obj["community"]) is not None, "community")
    _need(isinstance(obj["sig"], str) and SIG_RE.match(obj["sig"]) is not None, "sig")
    body = obj["body"]
    _need(isinstance(body, dict), "body")
    check_body(kind, body, family)
    return Envelope(kind, obj["from"], to, obj["id"], obj["ts"], obj["community"], body, obj["sig"])


def _need(ok: bool, member: str) -> None:
    if not ok:
        raise ProtocolError("malformed", f"member {member!r} missing or of the wrong form")


def _is_uint(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_UINT


def check_body(kind: str, body: dict[str, Any], family: Family = PEER_V1) -> None:
    """Check a body against its schema (exact members, kinds); raises ProtocolError("malformed")."""
    schema = family.schemas[kind]
    if set(body) != set(schema):
        raise ProtocolError("malformed", f"{kind} body members {sorted(set(body) ^ set(schema))} wrong")
    for name, member_kind in schema.items():
        value = body[name]
        ok = {
            UINT: lambda v: _is_uint(v),
            STR: lambda v: isinstance(v, str) and len(v) <= 64,
            HEX32: lambda v: isinstance(v, str) and HEX32_RE.match(v) is not None,
            SIG: lambda v: isinstance(v, str) and SIG_RE.match(v) is not None,
            SIDE: lambda v: v in ("sell", "buy"),
            NONCE: lambda v: _is_uint(v) and v < 2**64,
            TERMS: _valid_terms,
            LOAN: _valid_loan,
            ADDRESS: lambda v: isinstance(v, str) and ADDRESS_RE.match(v) is not None,
        }[member_kind](value)
        _need(ok, f"body.{name}")


def _valid_terms(terms: Any) -> bool:
    if not isinstance(terms, dict) or set(terms) != set(TERMS_NAMES):
        return False
    for name in TERMS_NAMES:
        value = terms[name]
        if name in ("seller", "buyer"):
            if not (isinstance(value, str) and ADDRESS_RE.match(value)):
                return False
        elif not _is_uint(value) or value >= TERMS_BOUNDS[name]:
            return False
    return True


def _valid_loan(loan: Any) -> bool:
    if not isinstance(loan, dict) or set(loan) != set(LOAN_FIELDS):
        return False
    for name in LOAN_FIELDS:
        value = loan[name]
        if name in ("lender", "borrower"):
            if not (isinstance(value, str) and ADDRESS_RE.match(value)):
                return False
        elif not _is_uint(value) or value >= LOAN_BOUNDS[name]:
            return False
    return True
