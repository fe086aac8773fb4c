# pyright: reportMissingImports=false, reportAttributeAccessIssue=false
# ruff: noqa: UP031  (MicroPython code: %-formatting is the idiom there)
# The flash ring buffer and the sequence counter on a real filesystem, in the subset both
# interpreters share. ROOT (a writable folder, with trailing slash) is prepended by the test.
import os

import ringbuf

ROOT = globals()["ROOT"]
count = 0


def check(cond, what):
    global count
    if not cond:
        raise AssertionError(what)
    count += 1


vals = bytearray(64)
rec = bytearray(ringbuf.REC)


def put(ring, seq, q=0):
    vals[0] = seq & 0xFF
    ringbuf.pack(rec, seq, 1767225600 + seq, q, 1, 0, vals, 8)
    ring.append(rec)


def drain(ring, limit=1000):
    out = []
    while limit and ring.count:
        h = ring.peek()
        if h is None:
            continue  # crossed part of a gap
        check(ring.buf[14] == h[0] & 0xFF, "values travel with the record")
        out.append(h[0])
        ring.pop(h[0])
        limit -= 1
    return out


# --- order, drops when full, and the preallocated file
r = ringbuf.Ring(ROOT + "ring.dat", 8)
check(os.stat(ROOT + "ring.dat")[6] == 8 * ringbuf.REC, "preallocated")
check(r.count == 0 and r.peek() is None, "empty at first")
for s in range(1, 6):
    put(r, s)
check(r.count == 5, "5 waiting")
check(drain(r) == [1, 2, 3, 4, 5], "oldest first")
for s in range(6, 18):
    put(r, s)
check(r.drops == 4 and r.count == 8, "12 into 8 slots: 4 dropped, got %d/%d" % (r.drops, r.count))
check(drain(r, 3) == [10, 11, 12], "the oldest left are 10..")
r.close()

# --- reboot: what was not published is found again, in order
r = ringbuf.Ring(ROOT + "ring.dat", 8)
check(r.count == 5 and r.lo == 13 and r.hi == 17, "after reboot %d %d %d" % (r.count, r.lo, r.hi))
check(r.max_seq == 17, "highest seq seen")
check(drain(r) == [13, 14, 15, 16, 17], "replay after reboot")
r.close()
r = ringbuf.Ring(ROOT + "ring.dat", 8)
check(r.count == 0 and r.acked == 17, "nothing left after a full drain")

# --- a reboot skips sequence numbers: gaps are stepped over
put(r, 20)
put(r, 400)
put(r, 401)
check(drain(r) == [20, 400, 401], "gaps skipped")
put(r, 410)
put(r, 420)
check(drain(r, 1) == [410], "before the gap")
check(r.peek(4) is None and r.count == 1, "a long gap is crossed a budget at a time")
check(drain(r) == [420], "after the gap")

# --- a corrupted record is skipped, not published
put(r, 430)
put(r, 431)
r.f.seek((430 % 8) * ringbuf.REC + 20)
r.f.write(b"\xff")
r.f.flush()
check(drain(r) == [431], "corrupted record skipped")
r.close()

# --- a wrong-size file is recreated empty
with open(ROOT + "odd.dat", "wb") as f:
    f.write(b"x" * 100)
r = ringbuf.Ring(ROOT + "odd.dat", 4)
check(os.stat(ROOT + "odd.dat")[6] == 4 * ringbuf.REC and r.count == 0, "recreated")
r.close()

# --- sequence numbers: strictly increasing across reboots, one write per block
c = ringbuf.SeqCounter(ROOT + "seq.dat", 1)
first = [c.take() for _ in range(3)]
check(first == [1, 2, 3], "starts at 1: %r" % first)
check(ringbuf.read_int(ROOT + "seq.dat", 0) == 1 + ringbuf.SEQ_BLOCK, "block reserved")
for _ in range(ringbuf.SEQ_BLOCK):
    last = c.take()
check(ringbuf.read_int(ROOT + "seq.dat", 0) > last, "next block reserved before use")
c2 = ringbuf.SeqCounter(ROOT + "seq.dat", 1)
check(c2.take() > last, "after reboot above every used number")
c3 = ringbuf.SeqCounter(ROOT + "seq.dat", 10**6)
check(c3.take() == 10**6, "floor from the ring buffer wins")
check(ringbuf.read_int(ROOT + "missing.dat", 7) == 7, "default when missing")

print("RING OK", count)
