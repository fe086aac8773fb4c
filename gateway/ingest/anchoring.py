"""The hash of an hour's readings that is anchored on chain (the codec is gridpact.core.anchor)."""

from __future__ import annotations

from gridpact.core.anchor import batch_hash

__all__ = ["batch_hash"]
