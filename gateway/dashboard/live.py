"""Server push: one hub per dashboard process fans the newest event out to every SSE viewer.

One watcher task notices a new verified reading (a cheap identity check of the handler's newest
reading, server side) and publishes it once; each viewer awaits the hub's event, so the browser
never polls. Viewers are bounded: the hub refuses a viewer over `max_viewers`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

KEEPALIVE_S = 15.0


class LiveHub:
    def __init__(self, max_viewers: int = 200) -> None:
        self.max_viewers = max_viewers
        self.viewers = 0
        self.version = 0
        self.latest: dict[str, Any] | None = None
        self._changed = asyncio.Event()
        self.closed = False

    def publish(self, data: dict[str, Any]) -> None:
        """Hand `data` to every viewer waiting now."""
        self.latest = data
        self.version += 1
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

    async def stream(self, kind: str = "reading") -> AsyncIterator[str]:
        """SSE frames for one admitted viewer: the latest event at once, then each new one."""
        try:
            seen = -1
            while not self.closed:
                if self.latest is not None and self.version != seen:
                    seen = self.version
                    yield f"event: {kind}\nid: {seen}\ndata: {json.dumps(self.latest)}\n\n"
                    continue
                changed = self._changed
                try:
                    await asyncio.wait_for(changed.wait(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
        finally:
            self.viewers -= 1
