"""The hourly anchor of a gateway's readings: one hash over the hour's signed payloads, in order.

The gateway puts it on chain (Market.anchorReadings) so a household can later prove which readings
it held; anyone holding the payloads recomputes it.
"""

from __future__ import annotations

import hashlib

from eth_hash.auto import keccak


def batch_hash(payloads: list[bytes]) -> bytes:
    """keccak256 over the concatenated sha256 digests of the payloads, in order (32 bytes)."""
    return keccak(b"".join(hashlib.sha256(p).digest() for p in payloads))
