"""Server push: one hub per dashboard process fans events out to every SSE viewer.

A watcher task (new verified reading, new chain events, a community broker message) publishes
each event once; each viewer awaits the hub, so the browser never polls. The hub keeps the last
`ring` events so a viewer that was busy while two arrived gets both, in order; a new viewer gets
the newest event at once. Viewers are bounded: the hub refuses a viewer over `max_viewers`.
Kinds named in `snapshots` carry a whole state (the community's aggregates, the agent's sessions):
only the newest of each is kept, so a big snapshot is held once, not `ring` times.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

KEEPALIVE_S = 15.0


class LiveHub:
    def __init__(
        self, max_viewers: int = 200, ring: int = 32, snapshots: frozenset[str] = frozenset()
    ) -> None:
        self.max_viewers = max_viewers
        self.snapshots = snapshots
        self.viewers = 0
        self.version = 0
        self.latest: Mapping[str, Any] | None = None
        self._events: deque[tuple[int, str, bytes]] = deque(maxlen=ring)
        self._changed = asyncio.Event()
        self.closed = False

    def publish(self, data: Mapping[str, Any], kind: str = "reading") -> None:
        """Hand `data` (an SSE event of type `kind`) to every viewer."""
        self.latest = data
        self.version += 1
        frame = f"event: {kind}\nid: {self.version}\ndata: {json.dumps(data)}\n\n".encode()
        if kind in self.snapshots:  # a newer state replaces the older one of its kind
            for old in [e for e in self._events if e[1] == kind]:
                self._events.remove(old)
        self._events.append((self.version, kind, frame))  # encoded once: every viewer sends the same bytes
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        """Wake every viewer so its stream ends (server shutdown)."""
        self.closed = True
        self._changed.set()

    def admit(self) -> bool:
        if self.viewers >= self.max_viewers:
            return False
        self.viewers += 1
        return True

    async def stream(self, kinds: frozenset[str] | None = None) -> AsyncIterator[bytes]:
        """SSE frames for one admitted viewer: the newest event at once, then every new one in order.

        `kinds` filters what this viewer may receive (a household viewer gets no operator-only kinds).
        """
        try:
            seen = self._events[-1][0] - 1 if self._events else 0
            while not self.closed:
                fresh = [e for e in self._events if e[0] > seen and (kinds is None or e[1] in kinds)]
                if self._events:
                    seen = max(seen, self._events[-1][0])
                if fresh:
                    for _version, _kind, frame in fresh:
                        yield frame
                    continue
                changed = self._changed
                try:
                    await asyncio.wait_for(changed.wait(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
        finally:
            self.viewers -= 1
