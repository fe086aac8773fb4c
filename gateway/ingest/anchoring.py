"""The hash of an hour's readings that is anchored on chain (seam with gateway-trade)."""

from __future__ import annotations

import hashlib

from eth_hash.auto import keccak


def batch_hash(payloads: list[bytes]) -> bytes:
    """keccak256 over the concatenated sha256 digests of the payloads, in order (32 bytes)."""
    return keccak(b"".join(hashlib.sha256(p).digest() for p in payloads))
