"""The community roster: who may speak on the community broker.

Built from the Market's `ParticipantRegistered` / `ParticipantRemoved` events (the community
registers each household's gateway key on chain), plus addresses trusted in the config. The
inbox asks `roster.allows(address)` for every message, so the lookup is an in-memory set; the
chain is read by `refresh` (chain thread), incrementally from the last block seen.
"""

from __future__ import annotations

from collections.abc import Iterable

from eth_utils.address import to_checksum_address

from gateway.chain.market import Market


class Roster:
    def __init__(self, market: Market | None, static: Iterable[str] = ()) -> None:
        self.market = market
        self.static = {a.lower() for a in static}
        self.registered: set[str] = set()
        self.next_block = 0

    def allows(self, address: str) -> bool:
        key = address.lower()
        return key in self.static or key in self.registered

    def refresh(self) -> int:
        """Apply registration events since the last refresh (blocking); returns the roster size."""
        if self.market is None:
            return len(self.static)
        w3 = self.market.w3
        latest = int(w3.eth.block_number)
        if latest < self.next_block:
            return len(self.registered | self.static)
        events = self.market.contract.events
        changes: list[tuple[int, int, str, bool]] = []
        for event, added in ((events.ParticipantRegistered, True), (events.ParticipantRemoved, False)):
            for log in event().get_logs(from_block=self.next_block, to_block=latest):
                changes.append((int(log["blockNumber"]), int(log["logIndex"]), log["args"]["gateway"], added))
        for _, _, gateway, added in sorted(changes):
            (self.registered.add if added else self.registered.discard)(to_checksum_address(gateway).lower())
        self.next_block = latest + 1
        return len(self.registered | self.static)
