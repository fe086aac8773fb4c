# modbus.py: Modbus RTU master for MicroPython (half-duplex RS-485, one transaction at a time).
# Pure frame helpers (crc16, build_read, check_response) are separate from the UART I/O so that
# they run, and are tested, under MicroPython (wasm) and CPython alike.
import asyncio
import time

from micropython import const

OK = const(0)
ERR_TIMEOUT = const(1)
ERR_CRC = const(2)
ERR_EXCEPTION = const(3)
ERR_FRAME = const(4)

FC_READ_HOLDING = const(3)
FC_READ_INPUT = const(4)
MAX_REGS = const(80)
_RX_MAX = const(165)  # 5 + 2 * MAX_REGS


def _make_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        t.append(c)
    return tuple(t)


_CRC_TABLE = _make_table()


def crc16(buf, n=-1):
    """Modbus CRC16 (poly 0xA001 reflected, init 0xFFFF) over buf[:n]."""
    if n < 0:
        n = len(buf)
    crc = 0xFFFF
    t = _CRC_TABLE
    for i in range(n):
        crc = (crc >> 8) ^ t[(crc ^ buf[i]) & 0xFF]
    return crc


def build_read(buf, unit, fc, addr, count):
    """Write a read-registers request (8 bytes) into buf; returns its length."""
    if not 1 <= unit <= 247:
        raise ValueError("unit id 1..247")
    if fc != FC_READ_INPUT and fc != FC_READ_HOLDING:
        raise ValueError("function 3 or 4")
    if not 1 <= count <= MAX_REGS or not 0 <= addr <= 0xFFFF:
        raise ValueError("1..80 registers")
    buf[0] = unit
    buf[1] = fc
    buf[2] = addr >> 8
    buf[3] = addr & 0xFF
    buf[4] = count >> 8
    buf[5] = count & 0xFF
    crc = crc16(buf, 6)
    buf[6] = crc & 0xFF
    buf[7] = crc >> 8
    return 8


def expected_len(count):
    return 5 + 2 * count


def check_response(buf, n, unit, fc, count):
    """Classify a received frame buf[:n]: (OK|ERR_*, exception code or 0). Data is buf[3:3+2*count]."""
    if n >= 5 and buf[0] == unit and buf[1] == (fc | 0x80):
        if crc16(buf, 3) != buf[3] | (buf[4] << 8):
            return ERR_CRC, 0
        return ERR_EXCEPTION, buf[2]
    if n == 0:
        return ERR_TIMEOUT, 0
    want = expected_len(count)
    if n < want:
        # a short frame: a corrupted header byte or a meter that stopped talking mid-frame
        if n >= 3 and crc16(buf, n - 2) == buf[n - 2] | (buf[n - 1] << 8):
            return ERR_FRAME, 0
        return (ERR_CRC if n >= 3 else ERR_TIMEOUT), 0
    if crc16(buf, want - 2) != buf[want - 2] | (buf[want - 1] << 8):
        return ERR_CRC, 0
    if buf[0] != unit or buf[1] != fc or buf[2] != 2 * count or n != want:
        return ERR_FRAME, 0
    return OK, 0


def gap_us(baud):
    """Silent interval between frames: 3.5 character times (11 bits each), 1750 us above 19200 baud."""
    if baud > 19200:
        return 1750
    return (35 * 11 * 1000000) // (10 * baud)


class Master:
    """One RS-485 bus, one outstanding request. Buffers are preallocated; no allocation per poll."""

    def __init__(self, uart, de_pin, baud, timeout_ms):
        self.uart = uart
        self.de = de_pin
        self.tx = bytearray(8)
        self.rx = bytearray(_RX_MAX)
        self.mv = memoryview(self.rx)
        self.n = 0
        self.timeout_ms = timeout_ms
        self.gap_us = gap_us(baud)
        self.char_us = (11 * 1000000) // baud
        self.last_us = time.ticks_us()
        if de_pin is not None:
            de_pin.value(0)

    async def _silence(self):
        # Inter-frame gap before we talk, counted from the last byte seen on the bus.
        wait = self.gap_us - time.ticks_diff(time.ticks_us(), self.last_us)
        if wait > 0:
            await asyncio.sleep_ms(wait // 1000 + 1)
        while self.uart.any():  # stale bytes from an earlier, late answer
            self.uart.read()

    async def read(self, unit, fc, addr, count):
        """Read registers; returns (OK|ERR_*, exc). On OK, self.mv[3:3+2*count] holds the data."""
        await self._silence()
        build_read(self.tx, unit, fc, addr, count)
        if self.de is not None:
            self.de.value(1)
        self.uart.write(self.tx)
        self.uart.flush()  # returns when the last stop bit has left the shift register
        if self.de is not None:
            self.de.value(0)
        want = expected_len(count)
        got = 0
        start = time.ticks_ms()
        last = start
        while got < want:
            k = self.uart.any()
            if k:
                k = self.uart.readinto(self.mv[got:], min(k, want - got)) or 0
                got += k
                last = time.ticks_ms()
                if got >= 5 and self.rx[1] == (fc | 0x80):
                    break  # exception frame: 5 bytes
                continue
            now = time.ticks_ms()
            if got == 0 and time.ticks_diff(now, start) > self.timeout_ms:
                break
            # a frame ends after 3.5 characters of silence; allow generous slack for USB/pty latency
            if got and time.ticks_diff(now, last) > 50 + self.gap_us // 1000:
                break
            await asyncio.sleep_ms(2)
        self.last_us = time.ticks_us()
        self.n = got
        return check_response(self.rx, got, unit, fc, count)
