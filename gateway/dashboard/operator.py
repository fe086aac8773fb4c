"""The community operator's actions: a form becomes a checked Market call, confirmed, then signed and sent.

Every action takes two POSTs, each with the session's CSRF token. The first (`parse_action`)
checks the form and answers a confirmation page: the call in words, the evidence, and what the
chain says it would do (an `eth_call` dry run from the operator's address, so a refused call is
seen before anything is signed). The confirmation carries a signed token binding the exact call
to this session for five minutes; the second POST sends it through the gateway's `TxSender`
(journal before broadcast) under the token's idempotency key, so a double click or a replayed
confirmation re-broadcasts the same transaction instead of signing a second one.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from itsdangerous import BadSignature, URLSafeTimedSerializer

from gridpact.core.eip712 import TERMS_NAMES

ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
BYTES32_RE = re.compile(r"^0x[0-9a-fA-F]{64}$")
CONFIRM_MAX_AGE_S = 300
UINT_MAX = {"uint16": 2**16 - 1, "uint32": 2**32 - 1, "uint64": 2**64 - 1, "uint96": 2**96 - 1,
            "uint128": 2**128 - 1}  # fmt: skip
KINDS = ("resolve", "register", "remove", "tariffs", "params", "operator", "network_fee")


class ActionError(ValueError):
    """A form that cannot become a call; the message says which field and why (shown to the operator)."""


@dataclass(frozen=True)
class Action:
    """One Market call the operator asked for: the function, its arguments, and the words for the page."""

    kind: str
    function: str
    args: tuple[Any, ...]
    summary: tuple[str, ...]
    fields: dict[str, str]


def _uint(form: dict[str, str], name: str, kind: str, low: int = 0) -> int:
    raw = form.get(name, "").strip().replace("_", "")
    if not raw.isdigit():
        raise ActionError(f"{name}: a whole number is needed")
    value = int(raw)
    if not low <= value <= UINT_MAX[kind]:
        raise ActionError(f"{name}: must be between {low} and {UINT_MAX[kind]}")
    return value


def _address(form: dict[str, str], name: str) -> str:
    raw = form.get(name, "").strip()
    if not ADDRESS_RE.match(raw):
        raise ActionError(f"{name}: a 0x address of 40 hex digits is needed")
    return to_checksum_address(raw)


def _bytes32(form: dict[str, str], name: str) -> bytes:
    """A 0x-hex bytes32, or any other text hashed with keccak-256 (a meter's serial number, say)."""
    raw = form.get(name, "").strip()
    if not raw:
        return b"\0" * 32
    if BYTES32_RE.match(raw):
        return bytes.fromhex(raw[2:])
    if len(raw) > 200:
        raise ActionError(f"{name}: at most 200 characters")
    return bytes(keccak(text=raw))


def parse_action(kind: str, form: dict[str, str], terms_of: dict[str, dict[str, Any]]) -> Action:
    """The call a form asks for; `terms_of` maps agreement ids in dispute to their terms (from the index)."""
    fields = {k: str(v)[:200] for k, v in form.items() if k not in ("csrf", "confirm")}
    if kind == "resolve":
        aid = form.get("agreement", "").strip().lower()
        terms = terms_of.get(aid)
        if terms is None:
            raise ActionError("agreement: not an agreement waiting for a ruling")
        delivered = _uint(form, "delivered_wh", "uint64")
        t = tuple(terms[k] for k in TERMS_NAMES)
        capped = min(delivered, int(terms["quantityWh"]))
        return Action(kind, "resolveDispute", (t, delivered),
                      (f"Rule agreement {aid}: {capped} Wh delivered of {terms['quantityWh']} Wh contracted.",
                       "The seller is paid for the delivered energy and the buyer refunded the rest, less the penalty."),
                      fields)  # fmt: skip
    if kind == "register":
        gateway = _address(form, "gateway")
        meter = _bytes32(form, "meter_id")
        meta = _bytes32(form, "metadata")
        if meter == b"\0" * 32:
            raise ActionError("meter_id: the household's meter id is needed")
        return Action(kind, "register", (gateway, meter, meta),
                      (f"Register gateway {gateway} with meter id 0x{meter.hex()}.",), fields)  # fmt: skip
    if kind == "remove":
        gateway = _address(form, "gateway")
        return Action(kind, "remove", (gateway,),
                      (f"Remove gateway {gateway}: it can no longer open agreements.",), fields)  # fmt: skip
    if kind == "tariffs":
        provider = _address(form, "provider")
        buy, sell = _uint(form, "buy_price", "uint128"), _uint(form, "sell_price", "uint128")
        return Action(kind, "setProvider", (provider, buy, sell),
                      (f"Provider {provider} buys at {buy} and sells at {sell} token base units per kWh (0: not offered).",),
                      fields)  # fmt: skip
    if kind == "params":
        rw, dw = _uint(form, "report_window", "uint32", 1), _uint(form, "dispute_window", "uint32", 1)
        tol, pen = _uint(form, "tolerance_bps", "uint16"), _uint(form, "penalty_bps", "uint16")
        if tol > 10_000 or pen > 10_000:
            raise ActionError("tolerance_bps and penalty_bps: at most 10000 (100 %)")
        return Action(kind, "setParams", (rw, dw, tol, pen),
                      (f"Report window {rw} s, dispute window {dw} s, tolerance {tol / 100:.2f} %, penalty {pen / 100:.2f} %.",),
                      fields)  # fmt: skip
    if kind == "operator":
        account = _address(form, "account")
        if int(account, 16) == 0:
            raise ActionError("account: the zero address cannot hold a balance")
        return Action(kind, "setOperator", (account,),
                      (f"Credit penalties, report gaps and network fees to {account} from now on.",
                       "What the previous account was credited stays its own."), fields)  # fmt: skip
    if kind == "network_fee":
        fee = _uint(form, "fee_per_kwh", "uint96")
        return Action(kind, "setNetworkFee", (fee,),
                      (f"Network fee {fee} token base units per kWh delivered between two households, out of the "
                       "seller's payout, to the operator's account.",
                       "It applies to every agreement settled from now on, including those already open."),
                      fields)  # fmt: skip
    raise ActionError(f"unknown action {kind[:32]!r}; one of {', '.join(KINDS)}")


class Confirmations:
    """Signed, short-lived confirmation tokens binding one action's form to one session."""

    def __init__(self, key: bytes) -> None:
        self._s = URLSafeTimedSerializer(key, salt="gridpact-operator-confirm")

    def issue(self, action: Action, session_csrf: str) -> str:
        return self._s.dumps([action.kind, action.fields, session_csrf, secrets.token_hex(8)])

    def read(self, token: str, session_csrf: str) -> tuple[str, dict[str, str], str]:
        """(kind, fields, token id) of a valid token of this session; ActionError otherwise."""
        try:
            data = self._s.loads(token, max_age=CONFIRM_MAX_AGE_S)
        except BadSignature:
            raise ActionError("the confirmation is invalid or older than five minutes: start again") from None
        if not (
            isinstance(data, list)
            and len(data) == 4
            and data[2] == session_csrf
            and isinstance(data[1], dict)
        ):
            raise ActionError("the confirmation belongs to another session: start again")
        return str(data[0]), {str(k): str(v) for k, v in data[1].items()}, str(data[3])
