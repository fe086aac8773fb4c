"""Thin CPython stand-ins for MicroPython's `machine`, `network`, `ntptime`, `micropython`, `time`,
`asyncio`, `gc` and `sys` as one virtual board sees them.

They carry no firmware logic: a UART is a real serial port (a pty, via pyserial) or any object with
pyserial's read/write/in_waiting; time follows the board's clock; WiFi and NTP can be switched off.
"""

from __future__ import annotations

import asyncio
import gc as _gc
import sys as _sys
import threading
import time as _time
import traceback
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import serial

from gridpact.core.clock import BoardTime, SteppedBoardTime

TICKS_PERIOD = 1 << 30
_TICKS_HALF = TICKS_PERIOD >> 1
RTC_POWER_ON = 946684800  # a fresh board's RTC reads 2000-01-01 00:00:00 UTC

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5


class SerialLike(Protocol):
    """What a UART needs from its far end (pyserial's Serial has all of it)."""

    @property
    def in_waiting(self) -> int: ...
    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes, /) -> int | None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class BoardReset(Exception):
    """machine.reset() was called: the virtual board reboots."""


@dataclass
class BoardState:
    """Everything the shims of one board share: its clock, radio, RTC, pins and reset cause."""

    clock: BoardTime
    platform: str  # "esp32" or "rp2"
    uart_device: str | SerialLike
    uid: bytes
    reset_cause: int = PWRON_RESET
    wifi_available: bool = True
    ntp_available: bool = True
    power_on: float = field(default_factory=_time.monotonic)
    rtc_offset: float | None = None  # world time minus board time once set; None: never set
    wdt_timeout_ms: int | None = None
    wdt_fed: float = 0.0  # board time of the last feed
    wdt_fed_real: float = 0.0  # host monotonic time of the last feed
    de_toggles: int = 0
    uarts: list[Any] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stepped: SteppedBoardTime | None = field(init=False, default=None)  # the clock, if a simulation steps it
    # the board's asyncio.open_connection when a simulation must see its socket writes (the rig's
    # virtual time sets it); None: the host's own
    open_connection: Callable[..., Awaitable[tuple[Any, Any]]] | None = None

    def __post_init__(self) -> None:
        self.stepped = self.clock if isinstance(self.clock, SteppedBoardTime) else None
        self.power_on = self.monotonic()

    def monotonic(self) -> float:
        """The board's own monotonic seconds on stepped time, else the host's."""
        return self.stepped.monotonic() if self.stepped is not None else _time.monotonic()

    def uptime(self) -> float:
        """Board seconds since power-on (on the board's clock)."""
        return (self.monotonic() - self.power_on) * self.clock.rate

    def rtc(self) -> float:
        if self.rtc_offset is None:
            return RTC_POWER_ON + self.uptime()
        return self.uptime() + self.rtc_offset

    def log(self, line: str) -> None:
        with self.lock:
            self.console.append(line)
            del self.console[:-2000]


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


def _ticks(seconds: float, scale: float) -> int:
    return int(seconds * scale + 1e-6) % TICKS_PERIOD  # 1e-6: 59.99999999 s is 60000 ms


def ticks_diff(a: int, b: int) -> int:
    return ((a - b + _TICKS_HALF) % TICKS_PERIOD) - _TICKS_HALF


def ticks_add(a: int, d: int) -> int:
    return (a + d) % TICKS_PERIOD


def make_time(st: BoardState) -> types.ModuleType:
    def sleep(s: float) -> None:
        if st.stepped is not None:  # stepped time: the clock just moves on
            st.stepped.sleep(s)
        else:
            _time.sleep(s / st.clock.rate)

    return _module(
        "time",
        ticks_ms=lambda: _ticks(st.uptime(), 1e3),
        ticks_us=lambda: _ticks(st.uptime(), 1e6),
        ticks_diff=ticks_diff,
        ticks_add=ticks_add,
        time=lambda: int(st.rtc()),
        time_ns=lambda: int(st.rtc() * 1e9),
        gmtime=lambda t=None: _time.gmtime(int(st.rtc()) if t is None else t)[:8],
        localtime=lambda t=None: _time.gmtime(int(st.rtc()) if t is None else t)[:8],
        sleep=sleep,
        sleep_ms=lambda ms: sleep(ms / 1e3),
        sleep_us=lambda us: sleep(us / 1e6),
    )


def make_asyncio(st: BoardState) -> types.ModuleType:
    """The real asyncio, with sleeps and timeouts on the board's clock and MicroPython's *_ms forms."""

    def sleep(s: float) -> Awaitable[None]:
        return asyncio.sleep(max(0.0, s) / st.clock.rate)

    def wait_for(aw: Awaitable[Any], timeout: float | None) -> Awaitable[Any]:
        return asyncio.wait_for(aw, None if timeout is None else timeout / st.clock.rate)

    mod = _module("asyncio")
    mod.__dict__.update({k: v for k, v in vars(asyncio).items() if not k.startswith("__")})
    mod.__dict__.update(
        sleep=sleep,
        sleep_ms=lambda ms: sleep(ms / 1e3),
        wait_for=wait_for,
        wait_for_ms=lambda aw, ms: wait_for(aw, ms / 1e3),
    )
    if st.open_connection is not None:  # stepped time: socket writes await a real reply
        mod.__dict__["open_connection"] = st.open_connection
    return mod


class _UART:
    def __init__(self, st: BoardState, uid: int, baudrate: int = 9600, bits: int = 8, parity: int | None = None,
                 stop: int = 1, **_kw: Any) -> None:  # fmt: skip
        self.id = uid
        if isinstance(st.uart_device, str):
            par = {None: serial.PARITY_NONE, 0: serial.PARITY_EVEN, 1: serial.PARITY_ODD}[parity]
            self.port: SerialLike = serial.Serial(
                st.uart_device, baudrate, bytesize=bits, parity=par, stopbits=stop, timeout=0, write_timeout=2
            )
        else:
            self.port = st.uart_device
        st.uarts.append(self)

    def any(self) -> int:
        return self.port.in_waiting

    def read(self, n: int | None = None) -> bytes | None:
        data = self.port.read(self.port.in_waiting if n is None else n)
        return data or None

    def readinto(self, buf: Any, n: int | None = None) -> int | None:
        data = self.port.read(len(buf) if n is None else n)
        buf[: len(data)] = data
        return len(data) or None

    def write(self, data: Any) -> int | None:
        return self.port.write(bytes(data))

    def flush(self) -> None:
        self.port.flush()

    def deinit(self) -> None:
        self.port.close()


class _Pin:
    OUT, IN, OPEN_DRAIN, PULL_UP, PULL_DOWN = 1, 0, 2, 1, 2

    def __init__(
        self, st: BoardState, pin_id: Any, mode: int = -1, pull: int = -1, value: int | None = None
    ) -> None:
        self.st = st
        self.id = pin_id
        self.v = value or 0

    def value(self, v: int | None = None) -> int | None:
        if v is None:
            return self.v
        if bool(v) != bool(self.v):
            self.st.de_toggles += 1
        self.v = 1 if v else 0
        return None

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)


def make_machine(st: BoardState) -> types.ModuleType:
    class Pin(_Pin):
        def __init__(self, pin_id: Any, mode: int = -1, pull: int = -1, value: int | None = None) -> None:
            super().__init__(st, pin_id, mode, pull, value)

    class UART(_UART):
        def __init__(self, uid: int, baudrate: int = 9600, **kw: Any) -> None:
            super().__init__(st, uid, baudrate, **kw)

    class WDT:
        def __init__(self, id: int = 0, timeout: int = 5000) -> None:
            st.wdt_timeout_ms = timeout
            self.feed()

        def feed(self) -> None:
            st.wdt_fed = st.uptime()
            st.wdt_fed_real = _time.monotonic()

    def reset() -> None:
        raise BoardReset()

    return _module(
        "machine", Pin=Pin, UART=UART, WDT=WDT, reset=reset, soft_reset=reset,
        reset_cause=lambda: st.reset_cause, unique_id=lambda: st.uid, freq=lambda *a: 240_000_000,
        PWRON_RESET=PWRON_RESET, HARD_RESET=HARD_RESET, WDT_RESET=WDT_RESET,
        DEEPSLEEP_RESET=DEEPSLEEP_RESET, SOFT_RESET=SOFT_RESET,
    )  # fmt: skip


def make_network(st: BoardState) -> types.ModuleType:
    class WLAN:
        def __init__(self, iface: int = 0) -> None:
            self._active = False
            self._joined = False

        def active(self, on: bool | None = None) -> bool:
            if on is not None:
                self._active = bool(on)
            return self._active

        def connect(self, ssid: str = "", key: str = "", **_kw: Any) -> None:
            self._joined = self._active

        def disconnect(self) -> None:
            self._joined = False

        def isconnected(self) -> bool:
            return self._active and self._joined and st.wifi_available

        def status(self, *a: Any) -> int:
            return 1010 if self.isconnected() else 1001

        def ifconfig(self, *a: Any) -> tuple[str, str, str, str]:
            return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    return _module("network", WLAN=WLAN, STA_IF=0, AP_IF=1)


def make_ntptime(st: BoardState) -> types.ModuleType:
    def settime() -> None:
        if not (st.wifi_available and st.ntp_available):
            raise OSError(110, "ETIMEDOUT")
        st.rtc_offset = st.clock.now() - st.uptime()

    def time_() -> int:
        if not (st.wifi_available and st.ntp_available):
            raise OSError(110, "ETIMEDOUT")
        return int(st.clock.now())

    return _module("ntptime", host="pool.ntp.org", timeout=1, settime=settime, time=time_)


def make_sys(st: BoardState) -> types.ModuleType:
    def print_exception(e: BaseException, file: Any = None) -> None:
        for line in traceback.format_exception(type(e), e, e.__traceback__):
            st.log(line.rstrip())

    impl = types.SimpleNamespace(name="micropython", version=(1, 27, 0))
    return _module(
        "sys", platform=st.platform, print_exception=print_exception, implementation=impl,
        maxsize=_sys.maxsize, byteorder="little", argv=[], path=[], modules={}, exit=_sys.exit,
        stdout=_sys.stdout, stderr=_sys.stderr,
    )  # fmt: skip


def make_micropython() -> types.ModuleType:
    def passthrough(f: Callable[..., Any]) -> Callable[..., Any]:
        return f

    return _module(
        "micropython", const=lambda x: x, native=passthrough, viper=passthrough,
        mem_info=lambda *a: None, opt_level=lambda *a: 0, alloc_emergency_exception_buf=lambda n: None,
    )  # fmt: skip


def make_gc() -> types.ModuleType:
    # mem_free has no CPython meaning: the virtual board reports 0 (the health topic says so).
    # collect() defragments MicroPython's heap; on CPython a young-generation pass is the nearest
    # thing, and a full pass (ms with a simulator's objects loaded) after every poll would dominate.
    return _module("gc", collect=lambda: _gc.collect(0), mem_free=lambda: 0, mem_alloc=lambda: 0, enable=_gc.enable,
                   disable=_gc.disable, threshold=lambda *a: -1)  # fmt: skip


def make_all(st: BoardState) -> dict[str, types.ModuleType]:
    """All shim modules for one board, keyed by the name the device code imports."""
    return {
        "time": make_time(st),
        "asyncio": make_asyncio(st),
        "machine": make_machine(st),
        "network": make_network(st),
        "ntptime": make_ntptime(st),
        "sys": make_sys(st),
        "micropython": make_micropython(),
        "gc": make_gc(),
    }
