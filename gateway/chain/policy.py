"""The sender's gas and fee policy, apart from `gateway.chain.sender` so a config reader needs no web3."""

from __future__ import annotations

from dataclasses import dataclass

GWEI = 10**9


@dataclass(frozen=True)
class SenderPolicy:
    """Gas and fee policy: estimate x margin, EIP-1559 fees capped so a spike cannot drain the key."""

    gas_margin: float = 1.25
    priority_fee_wei: int = 1 * GWEI
    max_fee_wei: int = 200 * GWEI
    receipt_timeout_s: float = 60.0
    poll_s: float = 0.1
