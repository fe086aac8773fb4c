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


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gridpact bench firmware")
    p.add_argument("--polls", type=int, default=500, help="polls to run inside MicroPython (default 500)")
    args = p.parse_args(argv)
    res = run_micropython(SCRIPT.format(n=args.polls), libs=[DEVICE_DIR]).check()
    figures = dict(line.split() for line in res.stdout.strip().splitlines())
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
    return 0
