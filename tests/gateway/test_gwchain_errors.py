"""The chain layer's error reading: revert bytes decoded by the ABI (shared with contracts.errors)
and send failures classified, on the message shapes anvil, py-evm and requests really produce."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode
from eth_tester.exceptions import TransactionFailed
from eth_utils.crypto import keccak
from requests.exceptions import ConnectionError as RequestsConnectionError
from web3.exceptions import ContractCustomError, ContractLogicError

from contracts.errors import RevertInfo, decode_revert
from gateway.chain.errors import (
    ChainUnavailable,
    RevertError,
    SendOutcome,
    classify_send_error,
    revert_data_of,
)
from gateway.chain.errors import decode_revert as decode_for_gateway

ABI = [
    {
        "type": "error",
        "name": "TermsExpired",
        "inputs": [{"name": "expiry", "type": "uint40"}, {"name": "now", "type": "uint256"}],
    },
    {"type": "error", "name": "NotRegistered", "inputs": [{"name": "account", "type": "address"}]},
]
EXPIRED = keccak(text="TermsExpired(uint40,uint256)")[:4] + encode(["uint40", "uint256"], [100, 250])


def test_custom_error_values_are_named_for_the_gateway_and_positional_for_the_tests() -> None:
    assert decode_for_gateway(EXPIRED, ABI) == RevertError(
        "TermsExpired", {"expiry": 100, "now": 250}, EXPIRED
    )
    assert str(decode_for_gateway(EXPIRED, ABI)) == "reverted: TermsExpired(expiry=100, now=250)"
    exc = ContractCustomError("0x" + EXPIRED.hex(), data="0x" + EXPIRED.hex())
    assert decode_revert(exc, ABI) == RevertInfo("TermsExpired", (100, 250), EXPIRED)


def test_addresses_are_checksummed_and_panics_explained() -> None:
    who = "0x" + "ab" * 20
    data = keccak(text="NotRegistered(address)")[:4] + encode(["address"], [who])
    assert decode_for_gateway(data, ABI).values["account"] == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    panic = bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big")
    assert decode_for_gateway(panic, ABI).values == {
        "code": 0x11,
        "meaning": "arithmetic overflow or underflow",
    }


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"", "unknown"),
        (b"\x01\x02", "unknown"),
        (b"\xde\xad\xbe\xef", "unknown"),
        (EXPIRED[:20], "undecodable"),
    ],
)
def test_odd_revert_data_is_reported_not_raised(data: bytes, name: str) -> None:
    assert decode_for_gateway(data, ABI).name == name


def test_revert_bytes_are_found_in_both_nodes_exception_shapes() -> None:
    assert revert_data_of(TransactionFailed(f"execution reverted: {EXPIRED!r}")) == EXPIRED
    assert revert_data_of(ContractCustomError("x", data="0x" + EXPIRED.hex())) == EXPIRED
    reason = revert_data_of(ContractLogicError("execution reverted: not yours"))
    assert reason is not None and decode_for_gateway(reason, ABI).values == {"reason": "not yours"}


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (ValueError({"code": -32003, "message": "already known"}), SendOutcome.ALREADY_KNOWN),
        (ValueError("nonce too low: next nonce 5, tx nonce 3"), SendOutcome.NONCE_TOO_LOW),
        (ValueError("invalid transaction nonce: expected 4, but got 2"), SendOutcome.NONCE_TOO_LOW),
        (ValueError("invalid transaction nonce: expected 2, but got 4"), SendOutcome.OTHER),
        (ValueError("replacement transaction underpriced"), SendOutcome.UNDERPRICED),
        (RequestsConnectionError("refused"), SendOutcome.UNAVAILABLE),
        (ChainUnavailable("down"), SendOutcome.UNAVAILABLE),
        (TransactionFailed(f"execution reverted: {EXPIRED!r}"), SendOutcome.REVERT),
        # a message that only mentions an address is no revert
        (ValueError("insufficient funds for gas * price + value: address 0x" + "ab" * 20), SendOutcome.OTHER),
    ],
)
def test_send_failures_are_classified(exc: BaseException, outcome: SendOutcome) -> None:
    assert classify_send_error(exc) is outcome
