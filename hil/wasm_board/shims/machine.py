# machine for the wasm virtual board: the UART is the runner's pty, pins and the watchdog are inert.
import binascii

import js  # type: ignore  # the MicroPython wasm FFI module

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
_CAUSES = {"power": PWRON_RESET, "hard": HARD_RESET, "watchdog": WDT_RESET, "soft": SOFT_RESET}


def reset_cause():
    return _CAUSES.get(str(js.globalThis.resetCause), PWRON_RESET)


def unique_id():
    return b"\x77\x61\x73\x6d\x00\x01"


def reset():
    raise SystemExit(0)


class Pin:
    OUT = 1
    IN = 0

    def __init__(self, n, mode=IN, value=0):
        self.n = n
        self.v = value

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v

    def on(self):
        self.v = 1

    def off(self):
        self.v = 0


class WDT:
    def __init__(self, timeout=5000):
        self.timeout = timeout

    def feed(self):
        pass


class UART:
    def __init__(self, uid, baudrate=9600, **kw):
        self.baudrate = baudrate

    def any(self):
        return js.globalThis.uartAny()

    def read(self, n=-1):
        k = self.any() if n is None or n < 0 else n
        data = js.globalThis.uartRead(k)
        return binascii.unhexlify(data) if data else None

    def readinto(self, buf, n=-1):
        n = len(buf) if n < 0 else min(n, len(buf))
        data = self.read(n)
        if not data:
            return None
        buf[: len(data)] = data
        return len(data)

    def write(self, b):
        return js.globalThis.uartWrite(binascii.hexlify(bytes(b)).decode())

    def flush(self):
        pass
