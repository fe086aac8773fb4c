# The firmware's transport seam (docs/firmware.md) bridged to Node's TCP: reader/writer objects
# with readexactly/write/drain/close, moving bytes as hex through the runner's globals.
import asyncio
import binascii

import js  # type: ignore  # the MicroPython wasm FFI module


class Reader:
    def __init__(self, sid):
        self.sid = sid
        self.buf = b""

    async def readexactly(self, n):
        while len(self.buf) < n:
            data = js.globalThis.tcpRead(self.sid, 4096)
            if data is None:
                raise OSError(104)  # ECONNRESET: the broker went away
            if data:
                self.buf += binascii.unhexlify(data)
            else:
                await asyncio.sleep(0.002)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class Writer:
    def __init__(self, sid):
        self.sid = sid

    def write(self, b):
        if js.globalThis.tcpWrite(self.sid, binascii.hexlify(bytes(b)).decode()) < 0:
            raise OSError(32)  # EPIPE

    async def drain(self):
        await asyncio.sleep(0)

    def close(self):
        js.globalThis.tcpClose(self.sid)

    async def wait_closed(self):
        pass


async def open(host, port, ssl_ctx, timeout_ms):
    if ssl_ctx is not None:
        raise OSError(95)  # no TLS on the wasm board
    try:
        sid = await js.globalThis.tcpOpen(host, port, timeout_ms)
    except Exception as e:
        raise OSError(111) from e  # ECONNREFUSED / timeout
    return Reader(sid), Writer(sid)
