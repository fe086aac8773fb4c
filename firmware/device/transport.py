# transport.py: the one place where the firmware opens a network stream. Everything above it
# (mqtt.py) only needs an object pair with readexactly()/write()/drain()/close(), so a test rig
# can replace open() to bridge the client to anything (see docs/firmware.md, "transport seam").
import asyncio


async def open(host, port, ssl_ctx, timeout_ms):
    """(reader, writer) to host:port, TLS when ssl_ctx is given; raises OSError/TimeoutError."""
    if ssl_ctx is None:
        coro = asyncio.open_connection(host, port)
    else:
        coro = asyncio.open_connection(host, port, ssl=ssl_ctx)
    return await asyncio.wait_for(coro, timeout_ms / 1000)
