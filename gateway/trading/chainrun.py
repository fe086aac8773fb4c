"""Running blocking chain work off the event loop, one call at a time, through node outages.

All chain work of a gateway goes through one worker thread, so nonces are taken in order. When
the node is down (ChainUnavailable) the call is retried with capped exponential backoff on the
gateway clock; the first failure is logged, then it stays quiet until the node answers again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway.chain.errors import ChainUnavailable, SendOutcome, classify_send_error
from gridpact.core.clock import Clock

log = logging.getLogger("gridpact.gateway.trading")
T = TypeVar("T")


class ChainRunner:
    """`await runner.call(fn, *args)`: fn runs in the chain thread; outages are waited out."""

    def __init__(
        self, clock: Clock, retry_max_s: float = 30.0, on_outage: Callable[[], None] | None = None
    ) -> None:
        self.clock = clock
        self.retry_max_s = retry_max_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridpact-chain")
        self._on_outage = on_outage or (lambda: None)
        self.down = False

    async def once(self, fn: Callable[..., T], *args: Any) -> T:
        """One attempt in the chain thread (ChainUnavailable propagates)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        backoff = 0.5
        while True:
            try:
                result = await self.once(fn, *args)
            except Exception as exc:
                if (
                    not isinstance(exc, ChainUnavailable)
                    and classify_send_error(exc) is not SendOutcome.UNAVAILABLE
                ):
                    raise
                if not self.down:
                    log.warning("event=chain_down error=%s", exc)
                    self.down = True
                self._on_outage()
                await self.clock.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            if self.down:
                log.info("event=chain_up")
                self.down = False
            return result

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
