# wasm_net.py: an in-memory MQTT 3.1.1 broker for the MicroPython (wasm) board, reached through
# the firmware's transport seam (transport.open). It answers CONNECT, PUBLISH (QoS 0/1), PINGREQ
# and DISCONNECT, records every PUBLISH, and can be taken down and brought back.
import asyncio


class _Reader:
    def __init__(self):
        self.buf = b""
        self.closed = False
        self.ev = asyncio.Event()

    def feed(self, data):
        self.buf += data
        self.ev.set()

    def close(self):
        self.closed = True
        self.ev.set()

    async def readexactly(self, n):
        while len(self.buf) < n:
            if self.closed:
                raise EOFError()
            self.ev.clear()
            await self.ev.wait()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class _Writer:
    def __init__(self, broker, reader):
        self.broker = broker
        self.reader = reader
        self.pending = b""
        self.closed = False

    def write(self, data):
        if self.closed:
            raise OSError(104)
        self.pending += bytes(data)
        self.broker.parse(self)

    async def drain(self):
        if self.closed:
            raise OSError(104)

    def close(self):
        self.closed = True
        self.reader.close()


class Broker:
    def __init__(self):
        self.is_up = True
        self.links = []
        self.published = []  # (topic, payload bytes, retain, dup)
        self.connects = 0
        self.connect_packets = []
        self.withhold_acks = 0  # PUBACKs to leave unsent (to test retransmission)
        self.silent = False  # answer nothing at all (a half-dead link)
        self.refuse = 0  # CONNACK return code to give (0: accepted)

    async def open(self, host, port, ssl_ctx, timeout_ms):
        if not self.is_up:
            raise OSError(111)
        r = _Reader()
        w = _Writer(self, r)
        self.links.append(w)
        return r, w

    def down(self):
        self.is_up = False
        for w in self.links:
            w.close()
        self.links = []

    def up(self):
        self.is_up = True

    def parse(self, w):
        while True:
            buf = w.pending
            if len(buf) < 2:
                return
            n = 0
            shift = 0
            i = 1
            while True:
                if i >= len(buf):
                    return
                b = buf[i]
                n |= (b & 0x7F) << shift
                i += 1
                if not b & 0x80:
                    break
                shift += 7
            if len(buf) < i + n:
                return
            first, body = buf[0], buf[i : i + n]
            w.pending = buf[i + n :]
            self.handle(w, first, body)

    def handle(self, w, first, body):
        kind = first & 0xF0
        if self.silent and kind != 0x10:
            return
        if kind == 0x10:
            self.connects += 1
            self.connect_packets.append(bytes((first,)) + body)
            w.reader.feed(bytes((0x20, 2, 0, self.refuse)))
        elif kind == 0x30:
            qos = (first >> 1) & 3
            tlen = (body[0] << 8) | body[1]
            topic = body[2 : 2 + tlen].decode()
            rest = body[2 + tlen :]
            if qos:
                pid, rest = rest[:2], rest[2:]
                if self.withhold_acks:
                    self.withhold_acks -= 1
                else:
                    w.reader.feed(b"\x40\x02" + pid)
            self.published.append((topic, rest, bool(first & 1), bool(first & 8)))
        elif kind == 0xC0:
            w.reader.feed(b"\xd0\x00")
        elif kind == 0xE0:
            w.close()
