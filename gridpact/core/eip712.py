"""EIP-712 codecs of the Market: agreement terms, delivery reports and loans, and their signatures.

Pure functions, so gateways sign exactly what the contract verifies: the digests here are tested
against the contract's own `agreementId`/`reportDigest`/`loanId` and against eth-account's
independent `encode_typed_data`. Signatures go on chain in EIP-2098 compact form (r, vs).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

from eth_abi.abi import encode
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

DOMAIN_NAME = "gridpact Market"
DOMAIN_VERSION = "1"

TERMS_TYPE = (
    "Terms(address seller,address buyer,uint64 quantityWh,uint128 unitPrice,"
    "uint40 deliveryStart,uint40 deliveryEnd,uint64 nonce,uint40 expiry)"
)
REPORT_TYPE = "DeliveryReport(bytes32 agreementId,uint64 deliveredWh)"
LOAN_TYPE = (
    "Loan(address lender,address borrower,uint64 quantityWh,uint128 collateral,"
    "uint40 returnBy,uint64 nonce,uint40 expiry)"
)
_DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"

# (name, solidity type) per field, in signing order: also what eth-account's encoder is given.
TERMS_FIELDS: tuple[tuple[str, str], ...] = (
    ("seller", "address"), ("buyer", "address"), ("quantityWh", "uint64"), ("unitPrice", "uint128"),
    ("deliveryStart", "uint40"), ("deliveryEnd", "uint40"), ("nonce", "uint64"), ("expiry", "uint40"),
)  # fmt: skip
TERMS_NAMES: tuple[str, ...] = tuple(name for name, _ in TERMS_FIELDS)  # the wire and JSON order
LOAN_FIELDS: tuple[tuple[str, str], ...] = (
    ("lender", "address"), ("borrower", "address"), ("quantityWh", "uint64"), ("collateral", "uint128"),
    ("returnBy", "uint40"), ("nonce", "uint64"), ("expiry", "uint40"),
)  # fmt: skip

_BOUNDS = {"uint40": 2**40, "uint64": 2**64, "uint128": 2**128}


@dataclass(frozen=True)
class Domain:
    """The Market's EIP-712 domain: one per chain and market deployment."""

    chain_id: int
    market: str

    @classmethod
    def of(cls, w3, market: str) -> Domain:  # w3: web3.Web3
        """The domain of a deployed market, read from the chain it is on."""
        return cls(int(w3.eth.chain_id), to_checksum_address(market))

    def separator(self) -> bytes:
        return keccak(
            encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    keccak(text=_DOMAIN_TYPE),
                    keccak(text=DOMAIN_NAME),
                    keccak(text=DOMAIN_VERSION),
                    self.chain_id,
                    self.market,
                ],
            )
        )

    def as_dict(self) -> dict:
        return {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": self.chain_id,
                "verifyingContract": self.market}  # fmt: skip


def _check(values: tuple, spec: tuple[tuple[str, str], ...]) -> None:
    for value, (name, kind) in zip(values, spec, strict=True):
        if kind in _BOUNDS and not 0 <= int(value) < _BOUNDS[kind]:
            raise ValueError(f"{name}={value} does not fit {kind}")


@dataclass(frozen=True)
class Terms:
    """Agreed terms: energy in Wh, price in token base units per kWh, times in unix seconds."""

    seller: str
    buyer: str
    quantityWh: int
    unitPrice: int
    deliveryStart: int
    deliveryEnd: int
    nonce: int
    expiry: int

    def __post_init__(self) -> None:
        _check(astuple(self), TERMS_FIELDS)

    def as_tuple(self) -> tuple:
        """The ABI tuple web3 takes for a `Terms` argument."""
        return astuple(self)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Loan:
    """An energy loan: `quantityWh` now, returned by `returnBy`, secured by `collateral` token base units."""

    lender: str
    borrower: str
    quantityWh: int
    collateral: int
    returnBy: int
    nonce: int
    expiry: int

    def __post_init__(self) -> None:
        _check(astuple(self), LOAN_FIELDS)

    def as_tuple(self) -> tuple:
        return astuple(self)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _typed_digest(domain: Domain, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + domain.separator() + struct_hash)


def terms_hash(t: Terms) -> bytes:
    """hashStruct(Terms)."""
    return keccak(
        encode(["bytes32", *(k for _, k in TERMS_FIELDS)], [keccak(text=TERMS_TYPE), *t.as_tuple()])
    )


def agreement_id(t: Terms, domain: Domain) -> bytes:
    """The agreement id = the EIP-712 digest both parties sign."""
    return _typed_digest(domain, terms_hash(t))


def report_digest(agreement: bytes, delivered_wh: int, domain: Domain) -> bytes:
    """Digest of a DeliveryReport (what a gateway signs to report `delivered_wh` for `agreement`)."""
    if not 0 <= delivered_wh < 2**64:
        raise ValueError(f"deliveredWh={delivered_wh} does not fit uint64")
    struct = keccak(
        encode(["bytes32", "bytes32", "uint64"], [keccak(text=REPORT_TYPE), agreement, delivered_wh])
    )
    return _typed_digest(domain, struct)


def loan_id(loan: Loan, domain: Domain) -> bytes:
    """The loan id = the EIP-712 digest lender and borrower sign."""
    struct = keccak(
        encode(["bytes32", *(k for _, k in LOAN_FIELDS)], [keccak(text=LOAN_TYPE), *loan.as_tuple()])
    )
    return _typed_digest(domain, struct)


def compact(v: int, r: int, s: int) -> tuple[bytes, bytes]:
    """EIP-2098 (r, vs) from an ECDSA (v, r, s) with v in {27, 28} or {0, 1}."""
    parity = v - 27 if v >= 27 else v
    if parity not in (0, 1) or s >= 2**255:
        raise ValueError(f"not a canonical signature: v={v}")
    return r.to_bytes(32, "big"), ((parity << 255) | s).to_bytes(32, "big")


def sign_digest(digest: bytes, private_key: str | bytes) -> tuple[bytes, bytes]:
    """Sign a 32-byte EIP-712 digest; returns the compact (r, vs) the Market takes as `Sig`."""
    signed = Account.unsafe_sign_hash(digest, private_key)
    return compact(signed.v, signed.r, signed.s)


def sign_terms(t: Terms, domain: Domain, private_key: str | bytes) -> tuple[bytes, bytes]:
    """A party's signature of the terms."""
    return sign_digest(agreement_id(t, domain), private_key)


def sign_report(
    agreement: bytes, delivered_wh: int, domain: Domain, private_key: str | bytes
) -> tuple[bytes, bytes]:
    """A gateway's signed delivery report, carried by `settleBatch`."""
    return sign_digest(report_digest(agreement, delivered_wh, domain), private_key)


def sign_loan(loan: Loan, domain: Domain, private_key: str | bytes) -> tuple[bytes, bytes]:
    """A party's signature of the loan terms."""
    return sign_digest(loan_id(loan, domain), private_key)


NO_SIG: tuple[bytes, bytes] = (b"\0" * 32, b"\0" * 32)
"""Placeholder `Sig` in a SettleItem for a party that already reported on chain."""


def typed_data(t: Terms, domain: Domain) -> dict:
    """The full EIP-712 message for wallets and for eth-account's `encode_typed_data` (cross-check)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Terms": [{"name": n, "type": k} for n, k in TERMS_FIELDS],
        },
        "primaryType": "Terms",
        "domain": domain.as_dict(),
        "message": t.as_dict(),
    }
