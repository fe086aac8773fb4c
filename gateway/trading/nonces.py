"""The seller's ring of slot nonces: reuse the Market slots of closed agreements to save gas.

The Market keeps one storage slot per (seller, nonce). Writing a slot that held a closed
agreement costs ~17,000 gas less than a slot never used (non-zero to non-zero SSTORE), so a
seller hands out the lowest nonce of a small ring whose slot is free, and only when all are
busy a fresh random one (first-use gas, but never a failure). A slot is busy from the moment
our signature on terms with its nonce may exist until those terms are closed on chain or can no
longer be submitted (after their expiry). The journal is the source of truth, so a restart
recovers the ring from it; the chain's `slotOf(seller, nonce).free` is asked once per nonce per
run, which covers a journal restored from an older backup.

The ring sits at 2**63: the Market gives grid-provider trades the provider's own counter as the
seller's nonce (0, 1, 2, ...), which a ring at 0 would collide with (SlotBusy) for a while.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field

from gateway.chain.journal import AgreementRecord
from gateway.trading.entropy import SYSTEM, Entropy

RING_BASE = 1 << 63
FRESH_LOW = 1 << 40  # fresh nonces: [2**40, 2**63), above any provider counter, below the ring
MAX_NONCE = (1 << 64) - 1
DEFAULT_RING = 256
FOREIGN_RECHECK_S = 600.0  # a slot the chain says is busy (unknown to the journal) is skipped this long
MAX_CHAIN_CHECKS = 4  # per allocation; after that a fresh nonce


def slot_may_be_busy(rec: AgreementRecord, now: float) -> bool:
    """Whether our seller slot for this journaled agreement may still be occupied or claimable."""
    expiry = int(rec.terms["expiry"])
    if rec.state == "closed" and rec.note != "cancelled":
        return False  # settled or refunded: the slot takes new terms at once
    if rec.state in ("closed", "abandoned"):
        return now <= expiry  # cancelled or never submitted: claimable until the terms expire
    return True  # signing, signed, submitted, reported: open


def busy_nonces(records: Iterable[AgreementRecord], now: float) -> set[int]:
    """Nonces of our seller slots that new terms must not use now."""
    return {int(r.terms["nonce"]) for r in records if r.role == "seller" and slot_may_be_busy(r, now)}


def fresh_nonce(entropy: Entropy = SYSTEM) -> int:
    """A random nonce outside the ring and above any provider counter."""
    return FRESH_LOW + entropy.randbelow(RING_BASE - FRESH_LOW)


@dataclass
class NonceRing:
    """Lowest-free allocation over [base, base + size); reservations cover sessions not yet journaled."""

    size: int = DEFAULT_RING
    base: int = RING_BASE
    entropy: Entropy = SYSTEM  # where fresh nonces come from
    reserved: set[int] = field(default_factory=set)
    confirmed: set[int] = field(default_factory=set)  # seen free on chain during this run
    foreign: dict[int, float] = field(default_factory=dict)  # busy on chain, unknown to us: until when

    def __post_init__(self) -> None:
        if self.size < 1 or self.base + self.size - 1 > MAX_NONCE:
            raise ValueError(f"ring [{self.base}, {self.base}+{self.size}) does not fit uint64")

    def in_ring(self, nonce: int) -> bool:
        return self.base <= nonce < self.base + self.size

    def allocate(self, in_use: Collection[int], now: float) -> int:
        """Reserve and return the lowest free ring nonce, or a fresh one when the ring is full."""
        for i in range(self.size):
            nonce = self.base + i
            if nonce in self.reserved or nonce in in_use or self.foreign.get(nonce, -1.0) >= now:
                continue
            self.reserved.add(nonce)
            return nonce
        while True:
            nonce = fresh_nonce(self.entropy)
            if not self.in_ring(nonce) and nonce not in self.reserved and nonce not in in_use:
                self.reserved.add(nonce)
                return nonce

    def release(self, nonce: int | None) -> None:
        """End a reservation (session over); a journaled agreement keeps the slot busy by itself."""
        if nonce is not None:
            self.reserved.discard(nonce)

    def mark_foreign(self, nonce: int, now: float, for_s: float = FOREIGN_RECHECK_S) -> None:
        """The chain holds open terms on this slot that our journal does not know: skip it a while."""
        self.foreign[nonce] = now + for_s
        self.confirmed.discard(nonce)

    async def allocate_checked(
        self, in_use: Collection[int], now: float, slot_free: Callable[[int], Awaitable[bool | None]] | None
    ) -> int:
        """`allocate`, confirming a ring nonce with the chain the first time it is handed out this run.

        `slot_free(nonce)` answers the Market's `slotOf(me, nonce).free`, or None when the chain
        cannot say (then the journal's word stands: a wrong guess costs a SlotBusy, never funds).
        """
        for _ in range(MAX_CHAIN_CHECKS):
            nonce = self.allocate(in_use, now)
            if slot_free is None or not self.in_ring(nonce) or nonce in self.confirmed:
                return nonce
            try:
                free = await slot_free(nonce)
            except BaseException:
                self.release(nonce)
                raise
            if free is None:
                return nonce
            if free:
                self.confirmed.add(nonce)
                return nonce
            self.release(nonce)
            self.mark_foreign(nonce, now)
        self.foreign = {n: t for n, t in self.foreign.items() if t >= now}
        nonce = fresh_nonce(self.entropy)
        self.reserved.add(nonce)
        return nonce
