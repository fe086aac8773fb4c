# ringbuf.py: readings that could not be published wait here, in a preallocated file of
# fixed-size binary records, and a sequence counter that survives reboots.
#
# Record (80 bytes, big-endian): seq u32 | ts u32 | q u16 | boot u16 | model u8 | n u8 |
# 16 x float32 raw register pairs | CRC16 (Modbus polynomial, little-endian) over bytes 0..77.
# A reading with sequence number s lives in slot s % slots, so order is implicit and a full
# buffer overwrites its oldest reading (counted as a drop).
import os
import struct

from micropython import const

from modbus import crc16

REC = const(80)
_BODY = const(78)
_HDR = ">IIHHBB"
SEQ_BLOCK = const(360)  # sequence numbers reserved per flash write: one write per hour at 10 s polls


def pack(buf, seq, ts, q, boot, model, vals, n):
    """Fill one record in buf (REC bytes) from a reading."""
    struct.pack_into(_HDR, buf, 0, seq, ts, q, boot & 0xFFFF, model, n)
    buf[14:78] = vals[:64]
    c = crc16(buf, _BODY)
    buf[78] = c & 0xFF
    buf[79] = c >> 8


def unpack(buf):
    """(seq, ts, q, boot, model, n) of a record, or None when the slot is empty or corrupted."""
    if crc16(buf, _BODY) != buf[78] | (buf[79] << 8):
        return None
    h = struct.unpack_from(_HDR, buf, 0)
    if h[0] == 0 or h[5] > 16:
        return None
    return h


def read_int(path, default):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return default


def write_int(path, value):
    """Write-then-rename, so that a power cut leaves the old value or the new one, never neither."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(value))
    try:
        os.rename(tmp, path)
    except OSError:  # a filesystem whose rename does not replace (FAT)
        os.remove(path)
        os.rename(tmp, path)


def bump(path):
    """Add one to the counter in `path` (the boot count) and return the new value."""
    n = read_int(path, 0) + 1
    write_int(path, n)
    return n


class SeqCounter:
    """Strictly increasing across reboots: the file holds a limit no used number reaches, and
    is rewritten once per SEQ_BLOCK numbers. A reboot skips the rest of the block."""

    def __init__(self, path, floor):
        self.path = path
        start = read_int(path, 1)
        if start < floor:
            start = floor
        if start < 1:
            start = 1
        self.next = start
        self.limit = start + SEQ_BLOCK
        write_int(path, self.limit)

    def take(self):
        s = self.next
        self.next = s + 1
        if self.next >= self.limit:
            self.limit = self.next + SEQ_BLOCK
            write_int(self.path, self.limit)
        return s


class Ring:
    def __init__(self, path, slots):
        self.path = path
        self.slots = slots
        self.ack_path = path + ".ack"
        self.buf = bytearray(REC)
        self.drops = 0
        self.acked = read_int(self.ack_path, 0)
        self._unsaved = 0
        size = slots * REC
        try:
            ok = os.stat(path)[6] == size
        except OSError:
            ok = False
        if not ok:
            zero = bytearray(REC * 16)
            with open(path, "wb") as f:
                left = size
                while left:
                    k = min(left, len(zero))
                    f.write(zero if k == len(zero) else zero[:k])
                    left -= k
        self.f = open(path, "r+b")
        self._scan()

    def _scan(self):
        # boot: find what is still unpublished (seq > acked) and the highest seq ever stored
        self.count = 0
        self.lo = 0
        self.hi = 0
        self.max_seq = self.acked
        chunk = bytearray(REC * 16)
        mv = memoryview(chunk)
        self.f.seek(0)
        left = self.slots
        while left:
            k = min(left, 16)
            self.f.readinto(mv[: k * REC])
            for i in range(k):
                h = unpack(mv[i * REC : (i + 1) * REC])
                if h is None:
                    continue
                s = h[0]
                if s > self.max_seq:
                    self.max_seq = s
                if s > self.acked:
                    self.count += 1
                    if not self.lo or s < self.lo:
                        self.lo = s
                    if s > self.hi:
                        self.hi = s
            left -= k

    def _read(self, slot, into):
        self.f.seek(slot * REC)
        self.f.readinto(into)

    def append(self, rec):
        """Store one packed record; a pending record it overwrites is counted as dropped."""
        seq = struct.unpack_from(">I", rec, 0)[0]
        slot = seq % self.slots
        self._read(slot, self.buf)
        old = unpack(self.buf)
        if old is not None and old[0] > self.acked and old[0] != seq:
            self.drops += 1
            self.count -= 1
        self.f.seek(slot * REC)
        self.f.write(rec)
        self.f.flush()
        self.count += 1
        if not self.lo or seq < self.lo:
            self.lo = seq
        if seq > self.hi:
            self.hi = seq
        if seq > self.max_seq:
            self.max_seq = seq

    def peek(self, budget=64):
        """Load the oldest unpublished record into self.buf; returns its header, or None when
        there is none or `budget` slots were read without finding it (numbers skipped at a
        reboot, or overwritten when full): call again later."""
        while self.count > 0 and self.lo and self.lo <= self.hi:
            self._read(self.lo % self.slots, self.buf)
            h = unpack(self.buf)
            if h is not None and h[0] == self.lo:
                return h
            self.lo += 1
            budget -= 1
            if budget <= 0:
                return None
        self.count = 0
        self.lo = 0
        self.hi = 0
        return None

    def pop(self, seq):
        """The record `seq` (from peek) is published: forget it."""
        self.acked = seq
        self.lo = seq + 1
        self.count -= 1
        self._unsaved += 1
        if self.count <= 0:
            self.count = 0
            self.lo = 0
            self.hi = 0
        if self.count == 0 or self._unsaved >= 16:
            write_int(self.ack_path, self.acked)
            self._unsaved = 0

    def close(self):
        if self._unsaved:
            write_int(self.ack_path, self.acked)
            self._unsaved = 0
        self.f.close()
