# ecdsa.py: secp256k1 ECDSA signing for the meter node (MicroPython has no public-key crypto).
# Big integers and hashlib.sha256 only. Deterministic nonces per RFC 6979 (HMAC-SHA256), low-s
# signatures and an Ethereum recovery id, so a contract checks them with ecrecover and the host with
# coincurve/eth_keys. Only the fixed base G is ever multiplied on the node: k*G uses Yao's method
# over a table of the 64 points 16^i*G (about 8 KB, built once, lazily), i.e. ~80 point additions
# and no doublings per signature. Not constant-time: see docs/firmware.md (device key).
import hashlib

from micropython import const

P = const(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F)
N = const(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141)
GX = const(0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798)
GY = const(0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)
_HALF_N = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0)
_WINDOWS = const(64)  # 4-bit digits of a 256-bit scalar

_table = None  # [x0, y0, x1, y1, ...]: affine 16^i * G, built on first use


def _double(x, y, z):
    """Jacobian doubling for a = 0 (dbl-2009-l); the point at infinity has z == 0."""
    if z == 0 or y == 0:
        return 0, 1, 0
    a = x * x % P
    b = y * y % P
    c = b * b % P
    d = (x + b) * (x + b) - a - c
    d = (d + d) % P
    e = 3 * a
    x3 = (e * e - d - d) % P
    return x3, (e * (d - x3) - 8 * c) % P, 2 * y * z % P


def _add_affine(x1, y1, z1, x2, y2):
    """Jacobian + affine (madd-2007-bl shape), falling back to doubling for equal points."""
    if z1 == 0:
        return x2, y2, 1
    zz = z1 * z1 % P
    h = (x2 * zz - x1) % P
    r = (y2 * zz % P * z1 - y1) % P
    if h == 0:
        return _double(x1, y1, z1) if r == 0 else (0, 1, 0)
    hh = h * h % P
    hhh = h * hh % P
    v = x1 * hh % P
    x3 = (r * r - hhh - v - v) % P
    return x3, (r * (v - x3) - y1 * hhh) % P, z1 * h % P


def _add(x1, y1, z1, x2, y2, z2):
    """Jacobian + Jacobian (add-1998-cmo-2 shape)."""
    if z1 == 0:
        return x2, y2, z2
    if z2 == 0:
        return x1, y1, z1
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    s1 = y1 * z2 % P * z2z2 % P
    h = (x2 * z1z1 - u1) % P
    r = (y2 * z1 % P * z1z1 - s1) % P
    if h == 0:
        return _double(x1, y1, z1) if r == 0 else (0, 1, 0)
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - v - v) % P
    return x3, (r * (v - x3) - s1 * hhh) % P, z1 * z2 % P * h % P


def _build_table():
    """16^i * G for i < 64, normalised to affine with one inversion (Montgomery's batch trick)."""
    jac = []
    x, y, z = GX, GY, 1
    for _ in range(_WINDOWS):
        jac.append((x, y, z))
        for _ in range(4):
            x, y, z = _double(x, y, z)
    prefix = [1] * (_WINDOWS + 1)
    for i in range(_WINDOWS):
        prefix[i + 1] = prefix[i] * jac[i][2] % P
    inv = pow(prefix[_WINDOWS], P - 2, P)
    table = [0] * (2 * _WINDOWS)
    for i in range(_WINDOWS - 1, -1, -1):
        x, y, z = jac[i]
        zi = inv * prefix[i] % P  # 1 / z_i
        inv = inv * z % P
        zi2 = zi * zi % P
        table[2 * i] = x * zi2 % P
        table[2 * i + 1] = y * zi2 % P * zi % P
    return table


def base_mul(k):
    """k*G as affine (x, y); Yao's method: B collects the table points whose digit >= j, A sums B."""
    global _table
    if _table is None:
        _table = _build_table()
    t = _table
    digits = bytearray(_WINDOWS)
    for i in range(_WINDOWS):
        digits[i] = (k >> (4 * i)) & 15
    ax, ay, az = 0, 1, 0
    bx, by, bz = 0, 1, 0
    for j in range(15, 0, -1):
        for i in range(_WINDOWS):
            if digits[i] == j:
                bx, by, bz = _add_affine(bx, by, bz, t[2 * i], t[2 * i + 1])
        if bz:
            ax, ay, az = _add(ax, ay, az, bx, by, bz)
    if az == 0:
        raise ValueError("point at infinity")
    zi = pow(az, P - 2, P)
    zi2 = zi * zi % P
    return ax * zi2 % P, ay * zi2 % P * zi % P


def _hmac(key, *parts):
    """HMAC-SHA256 (RFC 2104); MicroPython has no hmac module."""
    k = bytearray(64)
    k[:32] = key  # keys here are always 32 bytes
    for i in range(64):
        k[i] ^= 0x36
    inner = hashlib.sha256(k)
    for part in parts:
        inner.update(part)
    for i in range(64):
        k[i] ^= 0x36 ^ 0x5C
    outer = hashlib.sha256(k)
    outer.update(inner.digest())
    return outer.digest()


def _b32(v):
    return v.to_bytes(32, "big")


def _int(b):
    return int.from_bytes(b, "big")


def check_key(secret):
    """The scalar of a 32-byte private key; ValueError unless 0 < d < n."""
    if len(secret) != 32:
        raise ValueError("private key must be 32 bytes")
    d = _int(secret)
    if not 0 < d < N:
        raise ValueError("private key out of range")
    return d


def nonces(d, digest):
    """RFC 6979 section 3.2 candidates k for key d and a 32-byte digest (qlen = hlen = 256)."""
    x = _b32(d)
    h = _b32(_int(digest) % N)  # bits2octets
    v = b"\x01" * 32
    k = _hmac(b"\x00" * 32, v, b"\x00", x, h)
    v = _hmac(k, v)
    k = _hmac(k, v, b"\x01", x, h)
    v = _hmac(k, v)
    while True:
        v = _hmac(k, v)
        c = _int(v)
        if 0 < c < N:
            yield c
        k = _hmac(k, v, b"\x00")
        v = _hmac(k, v)


def sign(digest, secret):
    """Sign a 32-byte digest: (r, s, v) with s <= n/2 and v in {27, 28} as ecrecover takes it.

    The digest is signed as given (no EIP-191 prefix): the statement format's own magic separates
    domains. A nonce whose R.x >= n (probability ~2^-128) is skipped, keeping v ecrecover-compatible.
    """
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    d = check_key(secret)
    e = _int(digest)
    for k in nonces(d, digest):
        x, y = base_mul(k)
        if x >= N:
            continue
        r = x
        s = pow(k, N - 2, N) * (e + r * d) % N
        if s == 0:
            continue
        recid = y & 1
        if s > _HALF_N:
            s = N - s
            recid ^= 1
        return r, s, 27 + recid


def signature_bytes(sig):
    """r || s || v (65 bytes), the usual Ethereum layout."""
    r, s, v = sig
    return _b32(r) + _b32(s) + bytes((v,))


def public_key(secret):
    """The 64-byte uncompressed public key X || Y (no 0x04 prefix); its keccak gives the address."""
    x, y = base_mul(check_key(secret))
    return _b32(x) + _b32(y)


def generate(path, urandom=None):
    """The device key at `path`, made there first if absent; returns (secret, public key).

    Written to a temporary name and renamed, so a power cut never leaves half a key; a damaged key
    file raises rather than being replaced (the registered address would silently change)."""
    import os  # os.urandom: the board's hardware RNG (absent from the wasm build)

    try:
        with open(path, "rb") as f:
            secret = f.read()
        check_key(secret)
        return secret, public_key(secret)
    except OSError:
        pass
    draw = urandom or os.urandom
    while True:
        secret = draw(32)
        try:
            check_key(secret)
            break
        except ValueError:
            continue
    with open(path + ".new", "wb") as f:
        f.write(secret)
    os.rename(path + ".new", path)
    return secret, public_key(secret)
