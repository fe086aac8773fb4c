# pyright: reportMissingImports=false, reportAttributeAccessIssue=false
# ruff: noqa: UP031  (MicroPython code: %-formatting is the idiom there)
# Checks of the firmware's pure modules, written in the subset both interpreters share. The tests
# run this same text under MicroPython (wasm) and under CPython (device namespace) and expect
# "PURE OK <count>". GOLDEN and VECTORS (JSON text) are prepended by the test.
import binascii
import json
import struct

import config
import maps
import meter
import modbus
import mqtt
import payload
import ringbuf

G = json.loads(globals()["GOLDEN"])  # prepended by the test
V = json.loads(globals()["VECTORS"])
count = 0


def check(cond, what):
    global count
    if not cond:
        raise AssertionError(what)
    count += 1


def pack_values(model, r):
    keys = maps.MAPS[model][3]
    vals = bytearray(64)
    n = 0
    for i in range(len(keys)):
        if keys[i][0] in r:
            struct.pack_into(">f", vals, i * 4, r[keys[i][0]])
            n = i + 1
    return keys, vals, (n if r else 0)


# --- CRC16 and request frames (pymodbus' bytes for the same reads)
check(modbus.crc16(b"123456789") == 0x4B37, "crc16 check value")
tx = bytearray(8)
for fr in V["modbus_requests"]:
    modbus.build_read(tx, fr["unit"], fr["fc"], fr["addr"], fr["count"])
    check(binascii.hexlify(tx).decode() == fr["hex"], "request frame %r" % fr)
for bad in ((0, 4, 0, 2), (1, 5, 0, 2), (1, 4, 0, 82), (1, 4, 0, 0)):
    try:
        modbus.build_read(tx, *bad)
        check(False, "build_read accepted %r" % (bad,))
    except ValueError:
        check(True, "")

# --- response classification
rx = bytearray(modbus.expected_len(2))
rx[0:7] = bytes((1, 4, 4, 0x43, 0x66, 0x19, 0x9A))
c = modbus.crc16(rx, 7)
rx[7] = c & 0xFF
rx[8] = c >> 8
check(modbus.check_response(rx, 9, 1, 4, 2) == (modbus.OK, 0), "good response")
check(modbus.check_response(rx, 9, 2, 4, 2)[0] == modbus.ERR_FRAME, "other unit")
check(modbus.check_response(rx, 0, 1, 4, 2)[0] == modbus.ERR_TIMEOUT, "nothing")
rx[4] ^= 0x01
check(modbus.check_response(rx, 9, 1, 4, 2)[0] == modbus.ERR_CRC, "crc error")
ex = bytearray((1, 0x84, 2, 0, 0))
c = modbus.crc16(ex, 3)
ex[3] = c & 0xFF
ex[4] = c >> 8
check(modbus.check_response(ex, 5, 1, 4, 2) == (modbus.ERR_EXCEPTION, 2), "exception frame")
check(modbus.gap_us(9600) == 4010 and modbus.gap_us(115200) == 1750, "3.5 character gap")

# --- float printing
b = bytearray(4)
for hexbits, dec, text in V["f32_text"]:
    b[:] = binascii.unhexlify(hexbits)
    check(
        meter.f32_text(b, 0, dec) == text, "f32_text %s %d -> %r" % (hexbits, dec, meter.f32_text(b, 0, dec))
    )

# --- HMAC-SHA256 (RFC 4231 case 2) and the golden readings, byte for byte
h = payload.Hmac(b"Jefe")
check(
    h.hexdigest(b"what do ya want ", b"for nothing?")
    == b"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    "rfc4231",
)
mac = payload.Hmac(binascii.unhexlify(G["key_hex"]))
for vec in G["vectors"]:
    if not vec["valid"]:
        continue
    p = json.loads(vec["payload"])
    keys, vals, n = pack_values(p["m"], p["r"])
    out = payload.reading(mac, p["dev"], p["seq"], p["ts"], p["q"], p["m"], keys, vals, n)
    check(out == vec["payload"].encode(), "golden %s:\n%s" % (vec["name"], out))
for vec in V["readings"]:
    keys, vals, n = pack_values(vec["m"], {})
    vals[:] = binascii.unhexlify(vec["raw_hex"])
    n = vec["n"]
    out = payload.reading(mac, vec["dev"], vec["seq"], vec["ts"], vec["q"], vec["m"], keys, vals, n)
    check(out == vec["payload"].encode(), "firmware reading %s:\n%s" % (vec["name"], out))

# --- health and Home Assistant discovery
for vec in V["health"]:
    a = vec["args"]
    check(payload.health(mac, *a) == vec["payload"].encode(), "health %r" % a)
for vec in V["status"]:
    a = vec["args"]
    check(payload.status(mac, *a) == vec["payload"].encode(), "status %r" % a)
for vec in V["discovery"]:
    entry = maps.MAPS[vec["model"]][3][vec["index"]]
    check(payload.discovery_topic(vec["dev"], entry[0]) == vec["topic"], "discovery topic")
    out = payload.discovery(vec["prefix"], vec["dev"], vec["model"], vec["fw"], entry)
    check(out == vec["payload"].encode(), "discovery %s" % out)
for vec in V["discovery_units"]:
    out = payload.discovery("gridpact", "node-01", "sdm630", "0.1.0", tuple(vec["entry"]))
    check(out == vec["payload"].encode(), "discovery %s" % out)
for vec in V["health_discovery"]:
    item = payload.HEALTH_HA[vec["index"]]
    check(payload.discovery_topic("node-01", "health_" + item[0]) == vec["topic"], "health topic")
    out = payload.health_discovery("gridpact", "node-01", "sdm120", "0.1.0", item)
    check(out == vec["payload"].encode(), "health discovery %s" % out)

# --- ring buffer records
rec = bytearray(ringbuf.REC)
keys, vals, n = pack_values("sdm120", {"u1_V": 230.0, "e_imp_kWh": 1.5})
ringbuf.pack(rec, 70000, 1767225600, 0x81, 70001, 1, vals, 8)
check(ringbuf.unpack(rec) == (70000, 1767225600, 0x81, 70001 & 0xFFFF, 1, 8), "record round trip")
check(bytes(rec[14:78]) == bytes(vals), "record values")
check(binascii.hexlify(rec).decode() == V["record_hex"], "record bytes")
rec[20] ^= 0x40
check(ringbuf.unpack(rec) is None, "corrupted record")
check(ringbuf.unpack(bytearray(ringbuf.REC)) is None, "empty slot")

# --- MQTT packets and backoff
for n_, hx in V["varlen"]:
    check(binascii.hexlify(mqtt.varlen(n_)).decode() == hx, "varlen %d" % n_)
for vec in V["mqtt"]:
    if vec["kind"] == "connect":
        a = vec["args"]
        out = mqtt.connect_packet(a[0], a[1], a[2], a[3], a[4], a[5].encode())
    else:
        a = vec["args"]
        out = mqtt.publish_header(a[0], a[1], a[2], a[3], a[4], a[5])
    check(binascii.hexlify(out).decode() == vec["hex"], "mqtt %s" % vec["kind"])
for att, base, cap, r, want in V["backoff"]:
    check(mqtt.backoff_ms(att, base, cap, r) == want, "backoff %r" % ((att, base, cap, r),))
for att in range(20):
    d = mqtt.backoff_ms(att, 500, 30000, 65535)
    check(250 <= mqtt.backoff_ms(att, 500, 30000, 0) <= d <= 30000, "backoff range")

# --- stuck registers and counter resets
t = meter.Tracker()
keys, vals, n = pack_values("sdm120", {"u1_V": 230.0, "f_Hz": 50.0, "e_imp_kWh": 10.0, "e_exp_kWh": 1.0})
qs = [t.assess(keys, vals, 8, 1234) for _ in range(6)]
check(qs[4] == 0 and qs[5] & meter.STUCK, "stuck after 6 identical polls %r" % qs)
struct.pack_into(">f", vals, 6 * 4, 9.5)
check(t.assess(keys, vals, 8, 99) & meter.COUNTER_RESET, "counter reset")
struct.pack_into(">f", vals, 0, float("nan"))
check(t.assess(keys, vals, 8, 98) & meter.VALUE_INVALID, "nan is invalid")
struct.pack_into(">f", vals, 0, 5000.0)
check(not meter.is_valid(vals, 0, "V"), "5 kV is implausible")

# --- configuration
cfg, errs = config.validate(V["config_ok"])
check(errs == [] and cfg["poll_s"] == 10 and cfg["meter"]["timeout_ms"] == 500, "example config %r" % errs)
for bad, field in V["config_bad"]:
    cfg, errs = config.validate(bad)
    check(any(e.startswith(field) for e in errs), "config %s not rejected: %r" % (field, errs))
check(config.validate([])[1] != [], "config not an object")

print("PURE OK", count)
