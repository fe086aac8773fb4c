"""Virtual (discrete-event) time for a virtual board: board time moves only when the simulator says so.

A `VirtualTime` is the board's clock, a gridpact.core.clock.SteppedBoardTime (`now()`: the world's
Unix time, `monotonic()`: board seconds since `start`). `VirtualLoop` is an asyncio loop on that clock whose selector, whenever no callback
is ready and no I/O is ready or awaited, jumps the clock to the next timer, never past the target
set by `advance_to(t)`. There it reports itself idle and blocks on real I/O (MQTT to a real broker
keeps working) until a new target comes. After the board writes to a socket (MQTT expects an
answer to nearly every packet), the selector first waits up to `io_wait_s` real seconds for that
socket to answer, so that a broker round trip never looks like a virtual-time timeout. Only an
answer on the written socket ends the wait: the loop's own wake-ups (`advance_to`) or another
socket's bytes do not (they did, and on a loaded machine a PUBACK then came after the board's
virtual ack timeout and the firmware resent the reading).

    vt = VirtualTime(start=t0)
    board = VirtualBoard(cfg, uart, flash, clock=vt, broker=...)
    board.start(); board.advance_to(t0 + 60); ...
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import threading
import time
from collections.abc import Callable
from typing import Any

_EPS = 1e-6  # timers this close past the target still run (float rounding of ticks arithmetic)


class VirtualTime:
    """A board clock that stands still until `advance_to`; shared by the board's loop and the caller."""

    rate = 1.0  # sleeps and timeouts are in board seconds, which are virtual seconds

    def __init__(self, start: float, io_wait_s: float = 2.0) -> None:
        self.start = float(start)
        self.io_wait_s = float(io_wait_s)
        self.awaiting: set[int] = set()  # sockets (fds) the board wrote to and awaits an answer on
        self.jumps = 0  # how often the clock jumped to a timer (for benches and tests)
        self._now = 0.0
        self._target = 0.0
        self._gen = 0
        self._idle_gen = -1
        self._cv = threading.Condition()
        self.wake: Callable[[], None] = lambda: None  # set by the loop: wakes it from its select

    # -------------------------------------------------------------- clock side (any thread)
    def now(self) -> float:
        """The world's Unix time on this clock (what NTP answers)."""
        return self.start + self._now

    def monotonic(self) -> float:
        """Board seconds since `start`."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """A blocking sleep on the board: nothing else runs, so the clock just moves on."""
        self._now += max(0.0, seconds)

    @property
    def target(self) -> float:
        return self.start + self._target

    # -------------------------------------------------------------- controller side
    def advance_to(
        self, world_t: float, timeout: float = 30.0, alive: Callable[[], bool] = lambda: True
    ) -> None:
        """Run the board until every task waits on a timer later than `world_t` (or on I/O that did
        not come within io_wait_s); the clock then reads `world_t`. A target in the past is a no-op."""
        target = float(world_t) - self.start
        with self._cv:
            if target <= self._target:
                return
            self._target = target
            self._gen += 1
            gen = self._gen
        self.wake()
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._idle_gen < gen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"board did not reach t={world_t:.3f} within {timeout:.0f} s")
                if not alive():
                    raise RuntimeError(f"board stopped before t={world_t:.3f}")
                self._cv.wait(min(left, 0.05))

    # -------------------------------------------------------------- loop side
    def _jump(self, when: float) -> bool:
        """Move the clock to a timer due at board time `when` if that is within the target."""
        with self._cv:
            if when > self._target + _EPS:
                return False
            self._now = max(self._now, round(when, 6))
            self.jumps += 1
            return True

    def _settle(self) -> int:
        """Every task waits beyond the target: the clock reads the target; report idle."""
        with self._cv:
            self._now = max(self._now, self._target)
            self._idle_gen = self._gen
            self._cv.notify_all()
            return self._gen

    def _moved(self, gen: int) -> bool:
        with self._cv:
            return self._gen != gen


class VirtualSelector(selectors.DefaultSelector):
    """The loop's selector: real I/O, but the wait for timers is replaced by a clock jump."""

    def __init__(self, vt: VirtualTime) -> None:
        super().__init__()
        self.vt = vt

    def _answered(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, mask in events:
            if mask & selectors.EVENT_READ:
                self.vt.awaiting.discard(key.fd)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        vt = self.vt
        if timeout == 0:
            events = super().select(0)
            if events and vt.awaiting:
                self._answered(events)
            return events
        if vt.awaiting:  # an answer is on its way over a real socket: give it real time
            deadline = time.monotonic() + vt.io_wait_s
            while vt.awaiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    vt.awaiting.clear()  # no answer in io_wait_s: the board's own timeouts decide
                    break
                events = super().select(left)
                if events:
                    self._answered(events)
                    return events
        # no syscall per jump: I/O nobody awaits (a close, a wake-up) is served once idle below
        if timeout is not None and vt._jump(vt.monotonic() + timeout):
            return []
        gen = vt._settle()
        while True:  # idle: serve real I/O until the controller moves the target
            events = super().select(None)  # advance_to wakes it through the loop's self-pipe
            if events or vt._moved(gen):
                return events


class VirtualLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose `time()` is the board's virtual clock."""

    def __init__(self, vt: VirtualTime) -> None:
        super().__init__(VirtualSelector(vt))
        self.vt = vt
        vt.wake = self._wake

    def _wake(self) -> None:
        if not self.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: the board is off
                self.call_soon_threadsafe(lambda: None)

    def time(self) -> float:
        return self.vt.monotonic()


class ReplyWatch:
    """Wraps a StreamWriter: a write marks that the board now awaits an answer on this socket."""

    def __init__(self, writer: Any, vt: VirtualTime) -> None:
        self._w = writer
        self._vt = vt
        sock = writer.get_extra_info("socket")
        self._fd = -1 if sock is None else sock.fileno()

    def write(self, data: bytes) -> None:
        if self._fd >= 0:
            self._vt.awaiting.add(self._fd)
        self._w.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._w, name)


def open_connection_on(vt: VirtualTime) -> Callable[..., Any]:
    """asyncio.open_connection for the board's shim: its writer marks writes (see ReplyWatch)."""

    async def open_connection(*args: Any, **kw: Any) -> tuple[Any, Any]:
        reader, writer = await asyncio.open_connection(*args, **kw)
        return reader, ReplyWatch(writer, vt)

    return open_connection
