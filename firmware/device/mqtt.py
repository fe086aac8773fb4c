# mqtt.py: a small MQTT 3.1.1 client on asyncio that never blocks the device: every wait has a
# timeout, QoS 1 publishes are retransmitted (DUP) until PUBACK or give-up, and a dead link is
# noticed through keepalive. Packet encoding is pure and tested on both interpreters.
import asyncio
import time

from micropython import const

import transport

CONNACK = const(0x20)
PUBACK = const(0x40)
PINGRESP = const(0xD0)
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


def varlen(n):
    """MQTT remaining-length encoding (1..4 bytes)."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    return bytes((len(s) >> 8, len(s) & 0xFF)) + s


def connect_packet(client_id, keepalive, user=None, password=None, will_topic=None, will_msg=b"", clean=True):
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will_topic:
        flags |= 0x04 | 0x08 | 0x20  # will, will QoS 1, will retained
        payload += _str(will_topic) + _str(will_msg)
    if user:
        flags |= 0x80
        payload += _str(user)
        if password:
            flags |= 0x40
            payload += _str(password)
    var = b"\x00\x04MQTT\x04" + bytes((flags, keepalive >> 8, keepalive & 0xFF))
    body = var + payload
    return b"\x10" + varlen(len(body)) + body


def publish_header(topic, plen, qos, retain, dup, pid):
    """Fixed header, topic and packet id of a PUBLISH; the payload is written after it as is."""
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    t = _str(topic)
    rest = len(t) + plen + (2 if qos else 0)
    head = bytes((first,)) + varlen(rest) + t
    if qos:
        head += bytes((pid >> 8, pid & 0xFF))
    return head


async def read_packet(reader):
    """(first byte, body) of the next packet from the broker."""
    first = (await reader.readexactly(1))[0]
    n = 0
    shift = 0
    while True:
        b = (await reader.readexactly(1))[0]
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 21:
            raise ValueError("bad remaining length")
    body = await reader.readexactly(n) if n else b""
    return first, body


def backoff_ms(attempt, base_ms, cap_ms, rnd16):
    """Exponential backoff with jitter: a delay in [d/2, d], d = min(cap, base * 2**attempt)."""
    d = base_ms << min(attempt, 16)
    if d > cap_ms:
        d = cap_ms
    half = d >> 1
    return half + (rnd16 * (d - half)) // 65535


class Client:
    def __init__(self, client_id, host, port, ssl_ctx, user, password, keepalive_s, will_topic, ack_ms, retries):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.ssl = ssl_ctx
        self.user = user
        self.password = password
        self.keepalive = keepalive_s
        self.will_topic = will_topic
        self.will_msg = b"offline"  # the app sets its signed last will before each connect
        self.ack_ms = ack_ms
        self.retries = retries
        self.up = False
        self.pid = 0
        self.acked = 0
        self.ev = asyncio.Event()
        self.down = asyncio.Event()  # set when the link drops: the app's connection task reconnects
        self.lock = asyncio.Lock()
        self.r = None
        self.w = None
        self.tasks = []
        self.last_rx = 0
        self.last_tx = 0
        self.sent = 0
        self.resent = 0

    async def connect(self, timeout_ms):
        r, w = await transport.open(self.host, self.port, self.ssl, timeout_ms)
        self.r = r
        self.w = w
        try:
            w.write(connect_packet(self.client_id, self.keepalive, self.user, self.password, self.will_topic, self.will_msg))
            await w.drain()
            first, body = await asyncio.wait_for(read_packet(r), timeout_ms / 1000)
        except BaseException:
            self._close_stream()
            raise
        if first != CONNACK or len(body) != 2 or body[1] != 0:
            self._close_stream()
            raise OSError("CONNACK refused: %d" % (body[1] if len(body) == 2 else -1))
        self.up = True
        self.down.clear()
        self.last_rx = self.last_tx = time.ticks_ms()
        self.tasks = [asyncio.create_task(self._reader()), asyncio.create_task(self._pinger())]

    def _close_stream(self):
        w = self.w
        self.w = None
        if w is not None:
            try:
                w.close()
            except Exception:
                pass

    def drop(self):
        """Forget the connection (broker gone, WiFi gone, or a timeout): the app reconnects."""
        self.up = False
        self.down.set()
        self._close_stream()
        me = asyncio.current_task()
        for t in self.tasks:
            if t is not me:
                t.cancel()
        self.tasks = []
        self.ev.set()

    async def _reader(self):
        try:
            while self.up:
                first, body = await read_packet(self.r)
                self.last_rx = time.ticks_ms()
                if first & 0xF0 == PUBACK and len(body) == 2:
                    self.acked = (body[0] << 8) | body[1]
                    self.ev.set()
        except Exception:
            if self.up:
                self.drop()

    async def wait_down(self, ms):
        """Until the link drops or `ms` pass, whichever comes first."""
        try:
            await asyncio.wait_for(self.down.wait(), ms / 1000)
        except asyncio.TimeoutError:
            pass

    async def _pinger(self):
        ka = self.keepalive * 1000
        while self.up:
            # asleep until a ping falls due or the broker's silence grows too long (both only move later)
            now = time.ticks_ms()
            due = min(ka // 2 - time.ticks_diff(now, self.last_tx), ka + ka // 2 - time.ticks_diff(now, self.last_rx))
            await asyncio.sleep_ms(max(500, due + 1))
            now = time.ticks_ms()
            if time.ticks_diff(now, self.last_rx) > ka + ka // 2:
                self.drop()
                return
            w = self.w
            if w is not None and time.ticks_diff(now, self.last_tx) > ka // 2:
                try:
                    w.write(PINGREQ)
                    await w.drain()
                    self.last_tx = now
                except Exception:
                    self.drop()
                    return

    async def publish(self, topic, msg, retain=False, qos=1):
        """True once the broker has the message (PUBACK for QoS 1); False when the link failed."""
        async with self.lock:
            return await self._publish(topic, msg, retain, qos)

    async def _publish(self, topic, msg, retain, qos):
        if not self.up:
            return False
        if qos == 0:
            return await self._send(publish_header(topic, len(msg), 0, retain, False, 0), msg)
        self.pid = self.pid % 65535 + 1
        pid = self.pid
        for attempt in range(self.retries + 1):
            self.ev.clear()
            if not await self._send(publish_header(topic, len(msg), 1, retain, attempt > 0, pid), msg):
                return False
            if attempt:
                self.resent += 1
            if await self._await_ack(pid):
                self.sent += 1
                return True
            if not self.up:
                return False
        self.drop()
        return False

    async def _await_ack(self, pid):
        """Wait up to ack_ms for PUBACK(pid); a late PUBACK of an earlier message does not count."""
        start = time.ticks_ms()
        while self.up:
            left = self.ack_ms - time.ticks_diff(time.ticks_ms(), start)
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.ev.wait(), left / 1000)
            except asyncio.TimeoutError:
                return False
            if self.acked == pid:
                return True
            self.ev.clear()
        return False

    async def _send(self, head, msg):
        w = self.w
        if w is None:
            return False
        try:
            w.write(head)
            w.write(msg)
            await w.drain()
            self.last_tx = time.ticks_ms()
            return True
        except Exception:
            self.drop()
            return False

    async def disconnect(self):
        w = self.w
        if self.up and w is not None:
            try:
                w.write(DISCONNECT)
                await w.drain()
            except Exception:
                pass
        self.drop()
