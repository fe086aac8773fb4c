"""EIP-712 codecs and revert decoding: golden vectors, eth-account cross-checks and the contract's own digests."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.datatypes import PrivateKey
from eth_tester.exceptions import TransactionFailed
from eth_utils.crypto import keccak
from web3.exceptions import ContractCustomError

from contracts.errors import RevertInfo, decode_revert, error_selectors
from contracts.harness import Community
from gridpact.core.eip712 import (
    Domain,
    Loan,
    Terms,
    agreement_id,
    compact,
    loan_id,
    report_digest,
    sign_terms,
    terms_hash,
    typed_data,
)

SELLER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BUYER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
MARKET = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
TERMS = Terms(SELLER, BUYER, 1_500, 250_000_000_000_000_000, 1_800_000_000, 1_800_003_600, 42, 1_799_990_000)
DOMAIN = Domain(31337, MARKET)


def test_contracts_terms_digest_golden() -> None:
    """Golden vectors (cross-checked against eth-account and the contract below): gateways sign these bytes."""
    assert terms_hash(TERMS).hex() == "399b05d26b1a40492c4eb501a132943b6598737db4727d6a472587c4f090b8f0"
    assert (
        agreement_id(TERMS, DOMAIN).hex()
        == "bfc6d7daddfc07641066061f86e99f3ea830bb43e9ffa2695f2732fe5f44b4c3"
    )
    assert agreement_id(TERMS, Domain(31338, MARKET)) != agreement_id(TERMS, DOMAIN)


def test_contracts_digest_matches_eth_account() -> None:
    expected = encode_typed_data(full_message=typed_data(TERMS, DOMAIN))
    assert keccak(b"\x19" + expected.version + expected.header + expected.body) == agreement_id(TERMS, DOMAIN)
    key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
    signed = Account.sign_message(expected, key)
    r, vs = sign_terms(TERMS, DOMAIN, key)
    assert (r, vs) == compact(signed.v, signed.r, signed.s)
    assert Account.from_key(key).address == SELLER


def test_contracts_compact_signature_roundtrip() -> None:
    key = PrivateKey(b"\x07" * 32)
    digest = agreement_id(TERMS, DOMAIN)
    sig = key.sign_msg_hash(digest)
    r, vs = compact(sig.v, sig.r, sig.s)
    vs_int = int.from_bytes(vs, "big")
    s, parity = vs_int & ((1 << 255) - 1), vs_int >> 255
    assert (int.from_bytes(r, "big"), s, parity) == (sig.r, sig.s, sig.v)
    with pytest.raises(ValueError, match="canonical"):
        compact(29, 1, 1)
    with pytest.raises(ValueError, match="canonical"):
        compact(27, 1, 2**255)


def test_contracts_codec_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="quantityWh"):
        Terms(SELLER, BUYER, 2**64, 1, 0, 1, 0, 0)
    with pytest.raises(ValueError, match="expiry"):
        Terms(SELLER, BUYER, 1, 1, 0, 1, 0, 2**40)
    with pytest.raises(ValueError, match="collateral"):
        Loan(SELLER, BUYER, 1, 2**128, 0, 0, 0)
    with pytest.raises(ValueError, match="deliveredWh"):
        report_digest(b"\0" * 32, -1, DOMAIN)


def test_contracts_python_digests_match_contract(community: Community) -> None:
    m = community.market
    a, b, _ = community.households
    t = community.terms(a, b)
    assert m.functions.agreementId(t.as_tuple()).call() == agreement_id(t, community.domain)
    aid = agreement_id(t, community.domain)
    assert m.functions.reportDigest(aid, 777).call() == report_digest(aid, 777, community.domain)
    loan = community.loan(a, b, 100, 5, 3600)
    assert community.loans.functions.loanId(loan.as_tuple()).call() == loan_id(loan, community.loans_domain)
    domain = m.functions.eip712Domain().call()
    assert (domain[1], domain[2], domain[3], domain[4]) == (
        "gridpact Market",
        "1",
        community.w3.eth.chain_id,
        m.address,
    )


ABI = [
    {"type": "error", "name": "WrongStatus", "inputs": [{"name": "id", "type": "bytes32"}, {"name": "status", "type": "uint8"}]},
    {"type": "function", "name": "f", "inputs": []},
]  # fmt: skip


def test_contracts_decode_revert_both_exception_shapes() -> None:
    selector = keccak(text="WrongStatus(bytes32,uint8)")[:4]
    assert error_selectors(ABI) == {selector: ("WrongStatus", ["bytes32", "uint8"])}
    data = selector + b"\x01" * 32 + (3).to_bytes(32, "big")
    web3_style = ContractCustomError("0x" + data.hex(), data="0x" + data.hex())
    tester_style = TransactionFailed(f"execution reverted: {data!r}")
    for exc in (web3_style, tester_style):
        assert decode_revert(exc, ABI) == RevertInfo("WrongStatus", (b"\x01" * 32, 3), data)
    error_string = (
        bytes.fromhex("08c379a0") + (32).to_bytes(32, "big") + (2).to_bytes(32, "big") + b"no" + b"\0" * 30
    )
    assert decode_revert(TransactionFailed(f"execution reverted: {error_string!r}"), ABI).args == ("no",)
    panic = bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big")
    assert decode_revert(ContractCustomError("x", data="0x" + panic.hex()), ABI) == RevertInfo(
        "Panic", (0x11,), panic
    )
    assert decode_revert(ContractCustomError("x", data="0xdeadbeef"), ABI).name == "unknown"
    assert decode_revert(RuntimeError("out of gas"), ABI) == RevertInfo("Error", ("out of gas",), b"")
