"""Serving a dashboard app inside a process's own TaskGroup: uvicorn without its own signal handling.

The process's root task owns SIGTERM/SIGINT; cancelling `serve_app` stops uvicorn at once (open SSE
streams are ended by `on_stop`, which closes the hub) so the process still stops within 2 s. Both
views use it; it lives apart from the household view so the community process does not import that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import uvicorn
from starlette.applications import Starlette


class _EmbeddedServer(uvicorn.Server):
    """uvicorn.Server that leaves signals to the process that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_app(
    app: Starlette,
    host: str,
    port: int,
    started: asyncio.Event | None = None,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Serve `app` until cancelled; `on_stop` runs first on the way out (ends open streams)."""
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, log_level="warning", lifespan="off", access_log=False,
        timeout_graceful_shutdown=1, server_header=False, ws="none",
    )  # fmt: skip
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(), name="dashboard-uvicorn")
    try:
        while not server.started:
            if task.done():
                await task  # raises the bind error
                raise OSError(f"dashboard server on {host}:{port} stopped at start")
            await asyncio.sleep(0.02)
        if started is not None:
            started.set()
        await task
    finally:
        if on_stop is not None:
            on_stop()
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 2)
