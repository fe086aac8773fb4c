# meter.py: turn the meter's raw registers into checked values and quality flags.
# Values stay as the meter's own float32 bits until they are printed, so that CPython and
# MicroPython (single-precision floats on ESP32/rp2) print exactly the same digits.
import struct

from micropython import const

TIME_UNSYNCED = const(0x001)
TIME_CORRECTED = const(0x002)
MODBUS_TIMEOUT = const(0x004)
MODBUS_CRC = const(0x008)
MODBUS_EXCEPTION = const(0x010)
VALUE_INVALID = const(0x020)
STUCK = const(0x040)
REPLAYED = const(0x080)
COUNTER_RESET = const(0x100)

MAX_VALUES = const(16)
STUCK_POLLS = const(6)

# unit -> (decimals printed, lowest plausible, highest plausible)
UNITS = {
    "V": (2, 0.0, 1000.0),
    "A": (3, -1000.0, 1000.0),
    "W": (1, -1000000.0, 1000000.0),
    "VA": (1, -1000000.0, 1000000.0),
    "var": (1, -1000000.0, 1000000.0),
    "deg": (2, -360.0, 360.0),
    "Hz": (3, 0.0, 100.0),
    "kWh": (3, 0.0, 1000000000.0),
    "kvarh": (3, 0.0, 1000000000.0),
    "": (3, -1.01, 1.01),
}
_POW10 = (1, 10, 100, 1000, 10000)


def f32_text(buf, off, dec):
    """Print the big-endian float32 at buf[off:off+4] rounded to `dec` decimals, half away from
    zero, computed exactly in integers; trailing zeros dropped but one decimal kept ("5.0").
    Returns None for NaN and infinities."""
    b0 = buf[off]
    b1 = buf[off + 1]
    exp = ((b0 & 0x7F) << 1) | (b1 >> 7)
    if exp == 255:
        return None
    man = ((b1 & 0x7F) << 16) | (buf[off + 2] << 8) | buf[off + 3]
    if exp:
        man |= 0x800000
        e = exp - 150
    else:
        e = -149
    n = man * _POW10[dec]
    if e >= 0:
        q = n << e
    else:
        q = (n + (1 << (-e - 1))) >> -e
    s = str(q)
    if dec:
        if len(s) <= dec:
            s = "0" * (dec + 1 - len(s)) + s
        head = s[:-dec]
        frac = s[-dec:].rstrip("0") or "0"
    else:
        head = s
        frac = "0"
    if b0 & 0x80 and q:
        return "-" + head + "." + frac
    return head + "." + frac


def is_valid(buf, off, unit):
    """A value is published only if it is finite and within the plausible range of its unit."""
    if (buf[off] & 0x7F) == 0x7F and buf[off + 1] & 0x80:
        return False  # NaN or infinite
    v = struct.unpack_from(">f", buf, off)[0]
    lim = UNITS.get(unit)
    if lim is None:
        return False
    return lim[1] <= v <= lim[2]


def extract(keys, data, vals):
    """Copy each key's two registers (float32, high word first) from the response data into vals."""
    i = 0
    for entry in keys:
        j = entry[2] * 2
        k = i * 4
        vals[k] = data[j]
        vals[k + 1] = data[j + 1]
        vals[k + 2] = data[j + 2]
        vals[k + 3] = data[j + 3]
        i += 1
    return i


class Tracker:
    """Flags that need history: stuck registers and energy counters that went backwards."""

    def __init__(self):
        self.last_sig = -1
        self.same = 0
        self.energy = [None] * MAX_VALUES

    def assess(self, keys, vals, n, sig):
        q = 0
        if sig == self.last_sig:
            self.same += 1
            if self.same >= STUCK_POLLS - 1:
                q |= STUCK
        else:
            self.same = 0
            self.last_sig = sig
        for i in range(n):
            unit = keys[i][1]
            if not is_valid(vals, i * 4, unit):
                q |= VALUE_INVALID
                continue
            if unit == "kWh":
                v = struct.unpack_from(">f", vals, i * 4)[0]
                last = self.energy[i]
                if last is not None and v < last:
                    q |= COUNTER_RESET
                self.energy[i] = v
        return q
