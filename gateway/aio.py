"""asyncio helpers every broker adapter of the gateway needs (ingest, trading, Home Assistant)."""

from __future__ import annotations

import asyncio


def raise_if_cancel_was_swallowed() -> None:
    """Re-raise a cancellation that a library swallowed.

    aiomqtt awaits CONNACK and SUBACK with `asyncio.wait_for`, which on Python 3.11 returns the
    result instead of raising when a cancel arrives as the ack does. A task stopped just as it
    connects would then run on, and its TaskGroup (the whole gateway, on SIGTERM) would never
    finish. Call this after each such await.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
