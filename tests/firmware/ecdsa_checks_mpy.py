# pyright: reportMissingImports=false, reportAttributeAccessIssue=false
# ruff: noqa: UP031  (MicroPython code: %-formatting is the idiom there)
# Checks of the device key and meter statement modules against docs/wire/golden/statement-v1.json,
# whose values come from coincurve/eth_keys. The tests run this same text under MicroPython (wasm)
# and under CPython (device namespace) and expect "ECDSA OK <count>". SV (JSON text) is prepended.
import binascii
import hashlib
import json

import ecdsa
import keccak
import statement

SV = json.loads(globals()["SV"])  # prepended by the test
count = 0


def check(cond, what):
    global count
    if not cond:
        raise AssertionError(what)
    count += 1


def h(s):
    return binascii.unhexlify(s)


def hx(b):
    return binascii.hexlify(b).decode()


def raises(fn, *args):
    try:
        fn(*args)
    except ValueError:
        return True
    return False


for v in SV["keccak"]:
    check(hx(keccak.keccak256(h(v["hex"]))) == v["keccak256"], "keccak256 of %d bytes" % (len(v["hex"]) // 2))

for k in SV["keys"]:
    pub = ecdsa.public_key(h(k["secret"]))
    check(hx(pub) == k["public"], "public key of " + k["secret"])
    check(keccak.address(pub) == k["address"], "address of " + k["secret"])

for v in SV["signatures"]:
    r, s, rv = ecdsa.sign(h(v["digest"]), h(v["secret"]))
    got = (hx(r.to_bytes(32, "big")), hx(s.to_bytes(32, "big")), rv)
    check(got == (v["r"], v["s"], v["v"]), "signature %s over %s: %s" % (v["secret"], v["digest"], got))

for v in SV["rfc6979"]:
    d = int.from_bytes(h(v["secret"]), "big")
    dg = hashlib.sha256(v["message"].encode()).digest()
    k = next(ecdsa.nonces(d, dg))
    check(hx(k.to_bytes(32, "big")) == v["k"], "RFC 6979 nonce for " + v["message"])
    if v["rs"]:
        check(hx(ecdsa.signature_bytes(ecdsa.sign(dg, h(v["secret"])))[:64]) == v["rs"], "published r||s")

for v in SV["statements"]:
    raw = statement.encode(v["dev"], v["window_end"], v["import_wh"], v["export_wh"], v["readings"],
                           h(v["readings_digest"]))  # fmt: skip
    check(hx(raw) == v["hex"], "statement bytes for " + v["dev"])
    dg = statement.digest(raw)
    check(hx(dg) == v["digest"], "statement digest")
    sig = ecdsa.sign(dg, h(v["secret"]))
    sig65 = ecdsa.signature_bytes(sig)
    check(hx(sig65) == v["r"] + v["s"] + "%02x" % v["v"], "statement signature")
    msg = statement.message(raw, sig65)
    check(json.loads(msg) == {"v": 1, "stmt": v["hex"], "sig": hx(sig65)}, "statement message")

w = statement.Window()
for body in SV["window"]["bodies"]:
    w.add(body.encode())
n, dg = w.close()
check(n == SV["window"]["readings"] and hx(dg) == SV["window"]["digest"], "window digest")
check(w.close() == (0, hashlib.sha256(b"").digest()), "window restarts empty")

key = h(SV["keys"][0]["secret"])
check(raises(ecdsa.sign, b"\x00" * 31, key), "short digest refused")
check(raises(ecdsa.check_key, b"\x00" * 32), "zero key refused")
check(raises(ecdsa.check_key, b"\xff" * 32), "key >= n refused")
check(raises(ecdsa.check_key, b"\x01" * 33), "long key refused")
check(raises(statement.encode, "", 0, 0, 0, 0, bytes(32)), "empty device refused")
check(raises(statement.encode, "a" * 33, 0, 0, 0, 0, bytes(32)), "long device refused")
check(raises(statement.encode, "d", -1, 0, 0, 0, bytes(32)), "negative time refused")
check(raises(statement.encode, "d", 0, 1 << 64, 0, 0, bytes(32)), "counter overflow refused")
check(raises(statement.encode, "d", 0, 0, 0, 1 << 32, bytes(32)), "readings overflow refused")
check(raises(statement.encode, "d", 0, 0, 0, 0, bytes(31)), "short digest refused")
print("ECDSA OK", count)
