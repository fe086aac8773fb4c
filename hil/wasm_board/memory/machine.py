# machine.py for the MicroPython (wasm) board run in memory (network and ntptime: ../shims): a UART whose far end is a software meter that
# answers Modbus RTU read requests from `REGISTERS`, with switchable faults; inert Pin and WDT.
# Written for MicroPython; kept free of MicroPython-only calls so CPython tools can read it.
import struct

PWRON_RESET = 1  # the same reset causes as hil/wasm_board/shims/machine.py and MicroPython's ports
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
REGISTERS = {}  # register address -> float value (float32, two registers each)
FAULT = [None]  # None, "timeout", "crc" or "exception"
REQUESTS = []  # every request frame seen, as bytes


def _crc(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def reset_cause():
    return PWRON_RESET


def unique_id():
    return b"\x01\x02\x03\x04"


class Pin:
    OUT = 1
    IN = 0

    def __init__(self, pin_id, mode=-1, value=0):
        self.v = value

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
        return None


class WDT:
    def __init__(self, timeout=5000):
        self.fed = 0

    def feed(self):
        self.fed += 1


class UART:
    def __init__(self, uid, baudrate=9600, **kw):
        self.rx = b""

    def write(self, req):
        req = bytes(req)
        REQUESTS.append(req)
        if len(req) != 8 or _crc(req[:6]) != req[6] | (req[7] << 8):
            return len(req)
        unit, fc, addr, count = req[0], req[1], (req[2] << 8) | req[3], (req[4] << 8) | req[5]
        fault = FAULT[0]
        if fault == "timeout":
            return len(req)
        if fault == "exception":
            body = bytes((unit, fc | 0x80, 2))
        else:
            data = bytearray(2 * count)
            for a in range(addr, addr + count, 2):
                struct.pack_into(">f", data, 2 * (a - addr), REGISTERS.get(a, 0.0))
            body = bytes((unit, fc, 2 * count)) + bytes(data)
        c = _crc(body)
        if fault == "crc":
            c ^= 0x0101
        self.rx = body + bytes((c & 0xFF, c >> 8))
        return len(req)

    def flush(self):
        pass

    def any(self):
        return len(self.rx)

    def read(self, n=None):
        if not self.rx:
            return None
        n = len(self.rx) if n is None else n
        out, self.rx = self.rx[:n], self.rx[n:]
        return out

    def readinto(self, buf, n=None):
        data = self.read(len(buf) if n is None else n)
        if not data:
            return None
        buf[: len(data)] = data
        return len(data)
