# statement.py: the meter statement the node signs with its device key (docs/wire/statement-v1.md).
# A fixed 100-byte big-endian layout, the same bytes as Solidity's
#   abi.encodePacked(bytes8 magic, bytes32 device, uint64 windowEnd, uint64 importWh,
#                    uint64 exportWh, uint32 readings, bytes32 readingsDigest)
# so a contract rebuilds it from typed arguments, hashes it with the sha256 precompile and checks the
# signer with ecrecover. Pure functions and one small accumulator; no I/O.
import binascii
import hashlib
import struct

from micropython import const

MAGIC = b"GPSTMTv1"  # domain tag: these bytes are never a transaction or an EIP-191/712 message
SIZE = const(100)
_U64 = const(0xFFFFFFFFFFFFFFFF)


def encode(dev, window_end, import_wh, export_wh, readings, readings_digest):
    """The statement bytes; ValueError on a field that does not fit (never truncated silently)."""
    d = dev.encode() if isinstance(dev, str) else bytes(dev)
    if not 0 < len(d) <= 32:
        raise ValueError("device id must be 1..32 bytes")
    for v in (window_end, import_wh, export_wh):
        if not 0 <= v <= _U64:
            raise ValueError("counter out of uint64 range")
    if not 0 <= readings <= 0xFFFFFFFF:
        raise ValueError("readings out of uint32 range")
    if len(readings_digest) != 32:
        raise ValueError("readings digest must be 32 bytes")
    buf = bytearray(SIZE)
    buf[0:8] = MAGIC
    buf[8 : 8 + len(d)] = d
    struct.pack_into(">QQQI", buf, 40, window_end, import_wh, export_wh, readings)
    buf[68:100] = readings_digest
    return bytes(buf)


def digest(stmt):
    """What the device key signs: sha256 of the statement bytes (ecrecover takes any 32-byte hash)."""
    return hashlib.sha256(stmt).digest()


def message(stmt, sig65):
    """The MQTT payload on .../statement: JSON with the statement and r||s||v in hex."""
    return b'{"v":1,"stmt":"%s","sig":"%s"}' % (binascii.hexlify(stmt), binascii.hexlify(sig65))


class Window:
    """Running digest of one window's published reading bodies: sha256 over (u16 length || body)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.h = hashlib.sha256()
        self.n = 0
        self._len = bytearray(2)

    def add(self, body):
        struct.pack_into(">H", self._len, 0, len(body))
        self.h.update(self._len)
        self.h.update(body)
        self.n += 1

    def close(self):
        """(count, digest) of the window so far; starts the next window."""
        out = self.n, self.h.digest()
        self.reset()
        return out
