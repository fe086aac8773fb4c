# keccak.py: Keccak-256 (the pre-SHA-3 padding Ethereum uses) for the node's own address, which the
# installer reads off the console and registers on chain. MicroPython has sha256 only. Lanes are
# 64-bit Python ints (big integers on the board): slow, but run once per key, never per reading.
import binascii

from micropython import const

_M = const(0xFFFFFFFFFFFFFFFF)
_RATE = const(136)
_RC = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)  # fmt: skip
# rho offsets and pi destinations for lanes x + 5y
_ROT = (0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14)
_PI = tuple((y + 5 * ((2 * x + 3 * y) % 5)) for i in range(25) for x, y in ((i % 5, i // 5),))


def _f(a):
    """Keccak-f[1600] on 25 lanes, in place."""
    b = [0] * 25
    c = [0] * 5
    for rc in _RC:
        for x in range(5):
            c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20]
        for x in range(5):
            t = c[(x + 1) % 5]
            d = c[(x - 1) % 5] ^ (((t << 1) | (t >> 63)) & _M)
            for y in range(0, 25, 5):
                a[x + y] ^= d
        for i in range(25):
            r = _ROT[i]
            v = a[i]
            b[_PI[i]] = ((v << r) | (v >> (64 - r))) & _M if r else v
        for y in range(0, 25, 5):
            for x in range(5):
                a[x + y] = b[x + y] ^ (~b[(x + 1) % 5 + y] & b[(x + 2) % 5 + y] & _M)
        a[0] ^= rc


def keccak256(data):
    """Keccak-256 digest (32 bytes) of `data`."""
    a = [0] * 25
    block = bytearray(_RATE)
    pos = 0
    n = len(data)
    while True:
        take = min(_RATE, n - pos)
        for i in range(_RATE):
            block[i] = 0
        block[:take] = data[pos : pos + take]
        pos += take
        if take < _RATE:
            block[take] ^= 0x01
            block[_RATE - 1] ^= 0x80
        for i in range(_RATE // 8):
            a[i] ^= int.from_bytes(block[8 * i : 8 * i + 8], "little")
        _f(a)
        if take < _RATE:
            break
    out = bytearray(32)
    for i in range(4):
        out[8 * i : 8 * i + 8] = a[i].to_bytes(8, "little")
    return bytes(out)


def address(public_key):
    """EIP-55 checksummed Ethereum address of a 64-byte public key X || Y."""
    raw = keccak256(public_key)[12:]
    hexa = binascii.hexlify(raw).decode()
    h = keccak256(hexa.encode())
    out = "0x"
    for i, ch in enumerate(hexa):
        nib = (h[i // 2] >> (4 * (1 - i % 2))) & 15
        out += ch.upper() if ch in "abcdef" and nib >= 8 else ch
    return out
