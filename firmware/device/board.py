# board.py: everything that differs between ESP32 and Raspberry Pi Pico W, and every use of
# machine/network/ntptime. The rest of the firmware talks to the hardware only through here.
import gc
import sys
import time

import machine
import network

ESP32 = sys.platform == "esp32"
NAME = "esp32" if ESP32 else "pico-w"

# default UART id and pins: (uart, tx, rx, de)
if ESP32:
    DEFAULT_PINS = (2, 17, 16, 4)
else:
    DEFAULT_PINS = (0, 0, 1, 2)
WDT_MS = 8000  # below the rp2 maximum of 8388 ms
HAS_TLS = True  # both ports ship mbedTLS; a port without it would say False here

# MicroPython ports count time from 2000-01-01 or from 1970-01-01; readings use Unix time.
_EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0

_RESETS = (
    ("PWRON_RESET", "power"),
    ("HARD_RESET", "hard"),
    ("WDT_RESET", "watchdog"),
    ("DEEPSLEEP_RESET", "deepsleep"),
    ("SOFT_RESET", "soft"),
)


def unix_time():
    return int(time.time()) + _EPOCH  # an int on every port (the wasm port returns a float)


def reset_cause():
    """Last reset cause as a word for the health topic."""
    c = machine.reset_cause()
    for attr, name in _RESETS:
        if getattr(machine, attr, None) == c:
            return name
    return "other"


def unique_hex():
    return "".join(["%02x" % b for b in machine.unique_id()])


def mem_free():
    return gc.mem_free()


def log(msg):
    print("[gridpact]", msg)


def log_exception(e):
    print("[gridpact] error:", repr(e))
    sys.print_exception(e)


def _pin(cfg_value, default):
    return default if cfg_value < 0 else cfg_value


def open_uart(cfg):
    """The meter's UART and the RS-485 direction pin (None when the transceiver switches itself)."""
    p = cfg["pins"]
    m = cfg["meter"]
    uid = _pin(p["uart"], DEFAULT_PINS[0])
    tx = _pin(p["tx"], DEFAULT_PINS[1])
    rx = _pin(p["rx"], DEFAULT_PINS[2])
    parity = {"N": None, "E": 0, "O": 1}[m["parity"]]
    if ESP32:
        uart = machine.UART(uid, baudrate=m["baud"], bits=8, parity=parity, stop=1, tx=tx, rx=rx, timeout=0, rxbuf=512)
    else:
        uart = machine.UART(
            uid, baudrate=m["baud"], bits=8, parity=parity, stop=1, tx=machine.Pin(tx), rx=machine.Pin(rx), timeout=0, rxbuf=512
        )
    de_no = _pin(p["de"], DEFAULT_PINS[3])
    de = machine.Pin(de_no, machine.Pin.OUT, value=0)
    return uart, de


def watchdog():
    return machine.WDT(timeout=WDT_MS)


_wlan = None


def wifi_start(ssid, password):
    """Ask the radio to (re)join; returns at once, wifi_ok() tells when it has."""
    global _wlan
    if _wlan is None:
        _wlan = network.WLAN(network.STA_IF)
        _wlan.active(True)
    if not _wlan.isconnected():
        try:
            _wlan.connect(ssid, password)
        except OSError as e:  # ESP32: "Wifi Internal Error" while a join is still under way
            log("wifi: %r" % (e,))


def wifi_ok():
    return _wlan is not None and _wlan.isconnected()


def ntp_sync(host):
    """Set the RTC from NTP; raises OSError when no answer came (ntptime waits 1 s at most)."""
    import ntptime

    ntptime.host = host
    ntptime.settime()


def tls_context(ca_path):
    """TLS client context; verifies the broker when a CA file is configured."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_path:
        ctx.load_verify_locations(cafile=ca_path)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        if hasattr(ctx, "check_hostname"):  # CPython (virtual board) insists on this first
            setattr(ctx, "check_hostname", False)
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def rand16():
    import random

    return random.getrandbits(16)


def urandom(n):
    """n bytes from the hardware RNG (both ports' os.urandom); raises where there is none (wasm)."""
    import os

    return os.urandom(n)
