"""Where a gateway's unpredictable numbers come from: message ids, session ids, fresh slot nonces.

A gateway takes them from `secrets` (`SystemEntropy`): nobody may guess the next session id or
fresh nonce. A simulation hands in a seeded source instead, so the same seed gives the same ids,
the same agreement ids and so the same order wherever ids break ties (the journal lists
agreements by window end, then id).
"""

from __future__ import annotations

import secrets
from typing import Protocol


class Entropy(Protocol):
    def token_hex(self, nbytes: int) -> str:
        """`nbytes` random bytes as hex."""
        ...

    def randbelow(self, n: int) -> int:
        """A random int in [0, n)."""
        ...


class SystemEntropy:
    """The operating system's randomness (`secrets`): what every gateway uses."""

    def token_hex(self, nbytes: int) -> str:
        return secrets.token_hex(nbytes)

    def randbelow(self, n: int) -> int:
        return secrets.randbelow(n)


SYSTEM = SystemEntropy()
