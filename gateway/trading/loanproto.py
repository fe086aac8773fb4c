"""Loan protocol v1: the energy-loan message family on the peer broker (docs/wire/loan-protocol-v1.md).

Pure functions only. The envelope, its canonical JSON and its checks are the peer protocol's
(`protocol.py`); the family differs in its topic level (`loan-v1`), its body schemas and its
signing prefix (`gridpact-loan-v1\\n`), so a loan message can never pass as a trading message
or the other way round. Offers name the contract (q, tau) from the lender's side: who lends,
how many Wh, and the return offset in periods; a `quantity_wh` of 0 is the paper's silence
(no offer left above the sender's threshold).
"""

from __future__ import annotations

import secrets
from typing import Any

from eth_account.signers.local import LocalAccount

from gateway.trading.protocol import (
    ADDRESS,
    HEX32,
    LOAN,
    SIG,
    STR,
    UINT,
    Envelope,
    Family,
    sign_envelope,
)
from gridpact.core.eip712 import Loan

LOAN_PREFIX = b"gridpact-loan-v1\n"
LOAN_SCHEMAS: dict[str, dict[str, str]] = {
    "loan_propose": {"session": HEX32, "period": UINT, "period_s": UINT, "round": UINT, "lender": ADDRESS,
                     "quantity_wh": UINT, "tau": UINT},
    "loan_counter": {"session": HEX32, "round": UINT, "lender": ADDRESS, "quantity_wh": UINT, "tau": UINT},
    "loan_accept": {"session": HEX32, "round": UINT, "loan": LOAN, "sig": SIG},
    "loan_confirm": {"session": HEX32, "loan_id": HEX32, "sig": SIG},
    "loan_reject": {"session": HEX32, "reason": STR},
    "loan_evidence": {"loan_id": HEX32, "lent_wh": UINT, "returned_wh": UINT},
}  # fmt: skip
LOAN_V1 = Family("loan-v1", LOAN_PREFIX, LOAN_SCHEMAS, frozenset(LOAN_SCHEMAS))


def message(
    kind: str,
    account: LocalAccount,
    to: str,
    community: str,
    ts: int,
    body: dict[str, Any],
    msg_id: str | None = None,
) -> Envelope:
    """A signed loan-family envelope from `account` to `to`."""
    env = Envelope(kind, account.address, to, msg_id or secrets.token_hex(16), int(ts), community, body)
    return sign_envelope(env, account, LOAN_V1)


def loan_from_dict(d: dict[str, Any]) -> Loan:
    """Loan terms from their wire/journal form (raises ValueError when out of range)."""
    from eth_utils.address import to_checksum_address

    return Loan(
        to_checksum_address(d["lender"]), to_checksum_address(d["borrower"]), int(d["quantityWh"]),
        int(d["collateral"]), int(d["returnBy"]), int(d["nonce"]), int(d["expiry"]),
    )  # fmt: skip
