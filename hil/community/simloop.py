"""One asyncio loop whose clock is the simulated clock: the discrete-event core of `--clock virtual`.

`SimLoop.time()` is seconds since the simulation's start. Its selector never waits for a timer in
wall time: when no callback is ready and no socket is readable (a zero-timeout select finds
nothing), it moves the clock to the next timer and returns at once. Every part of the community
(the firmware's boards, the amqtt broker, the gateways' ingest and trading) runs as a task of this
one loop in one thread, so what happens next depends only on the program, not on the host's speed.

In flight. Every socket here is loopback TCP between tasks of this one thread, so both ends of
every connection are registered with this selector. A zero-timeout select that finds nothing
readable is not enough: Linux may leave a loopback segment in its backlog for the softirq thread
on a loaded host (measured: 16 of 15,700 idle moments of a 3-household run had bytes arrive
within 2 ms afterwards). So before a jump the selector adds up, over its TCP sockets, the payload
bytes each has written and received (`TCP_INFO`: tcpi_bytes_sent + tcpi_notsent_bytes,
tcpi_bytes_received); while the sums differ some bytes are still between two of them, and it waits in real time for them (up
to SETTLE_WAIT_S, then it jumps anyway and counts it in `unsettled`). `run_in_executor` runs the
function inline (the gateways' chain calls on the in-process EVM, aiomqtt's connect), so no
thread's result can arrive later in an order the host decides. Nagle's algorithm would hold a
small write in the sender's queue until the peer's (delayed) ACK, up to 40 ms of real time later:
the selector sets TCP_NODELAY on every TCP socket it watches (paho does not set it).

Why not `looptime` or aiotools' `VirtualClock` (neither is installed): `looptime` is a pytest
plugin that patches a loop's time() and fast-forwards on idle, and `VirtualClock` patches
`loop.time` with a counter advanced by `asyncio.sleep`; neither knows about sockets or executor
work, which is what decides "idle" here. The 60-line selector below is what was needed.
"""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")
IDLE_WAIT_S = 0.05  # nothing scheduled at all: a short real wait (only a signal can end it)
SETTLE_WAIT_S = 0.05  # the longest real wait for bytes between two sockets before a jump
_INFO_LEN = 216  # struct tcp_info up to tcpi_bytes_retrans (Linux >= 4.19)


def tcp_bytes(sock: socket.socket) -> tuple[int, int]:
    """(payload bytes written: sent less retransmits plus not yet sent, payload bytes received)
    of a TCP socket (TCP_INFO)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _INFO_LEN)
    (received,) = struct.unpack_from("=Q", info, 128)
    (notsent,) = struct.unpack_from("=I", info, 144)
    sent, retrans = struct.unpack_from("=QQ", info, 200)
    return sent - retrans + notsent, received


class SimTime:
    """The simulated clock: `start` (Unix s) + `now` (s since start); moves only by jumps and sleeps."""

    def __init__(self, start: float) -> None:
        self.start = float(start)
        self.now = 0.0
        self.jumps = 0

    def unix(self) -> float:
        return self.start + self.now

    def jump(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        self.jumps += 1


class SimSelector(selectors.DefaultSelector):
    """Real I/O, but a wait for a timer is a jump of the simulated clock."""

    def __init__(self, clock: SimTime) -> None:
        super().__init__()
        self.clock = clock
        self.unsettled = 0  # jumps taken while bytes were still between sockets (after SETTLE_WAIT_S)
        self.settle_waits = 0  # real waits for bytes on their way
        self._tcp: dict[int, socket.socket] = {}  # fd -> a duplicate, to ask TCP_INFO

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().register(fileobj, events, data)
        try:
            dup = socket.socket(fileno=os.dup(key.fd))
        except OSError:
            return key
        if dup.family in (socket.AF_INET, socket.AF_INET6) and dup.type == socket.SOCK_STREAM:
            dup.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Nagle would hold writes back
            self._tcp[key.fd] = dup
        else:
            dup.close()
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = super().unregister(fileobj)
        dup = self._tcp.pop(key.fd, None)
        if dup is not None:
            dup.close()
        return key

    def close(self) -> None:
        for dup in self._tcp.values():
            dup.close()
        self._tcp.clear()
        super().close()

    def in_flight(self) -> bool:
        """Bytes sent by one of our TCP sockets that the other end has not received yet."""
        sent = received = 0
        for dup in self._tcp.values():
            try:
                s, r = tcp_bytes(dup)
            except OSError:
                continue
            sent += s
            received += r
        return sent != received

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if self.in_flight():
            self.settle_waits += 1
            deadline = time.monotonic() + SETTLE_WAIT_S
            while time.monotonic() < deadline:
                events = super().select(0.0005)
                if events:
                    return events
                if not self.in_flight():
                    break
            else:
                self.unsettled += 1
        if timeout is None:  # no timer anywhere: only the outside world (a signal) can move on
            return super().select(IDLE_WAIT_S)
        self.clock.jump(timeout)
        return []


def layer_of_task(name: str) -> str:
    """The layer a task's CPU time is booked to, by its name (a child task inherits its parent's).

    The simulator names a household's tasks `board-<dev>`, `ingest-<household>` and
    `trading-<household>`; the gateway names its own children `trading.settle`, `trading.keeper` ...
    """
    head = re.split(r"[-.]", name, maxsplit=1)[0]
    return {"board": "firmware", "ingest": "ingest", "trading": "trading", "chain": "chain"}.get(
        head, "broker"
    )


class SimLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time; executor work runs inline (see the module docstring).

    With `metering` on it also books CPU time (time.thread_time) per layer for `gridpact bench
    simulate` (off by default: two clock reads per callback cost a run about a tenth): each task
    step by its task's name (tasks created without a name inside a named task take its name, so
    the firmware's and aiomqtt's own tasks count for their household's board or gateway), inline
    executor work as "chain"; a socket callback registered with `add_reader`/`add_writer` (paho's,
    which aiomqtt registers through `call_soon_threadsafe` from the connecting task) as the layer
    of the task that asked for it; asyncio's stream transports (amqtt, the boards' sockets) and
    amqtt's unnamed tasks as "broker" or the rest ("other").
    """

    def __init__(self, start: float, metering: bool = False) -> None:
        self.sim = SimTime(start)
        super().__init__(SimSelector(self.sim))
        self.cpu: dict[str, float] = {}
        self.metering = metering
        self._inline = 0.0
        self._layers: dict[str, str] = {}  # task name -> layer (names repeat: each household's tasks)
        self._asked_by: str | None = None  # the layer of the task that scheduled the running callback

    def create_task(self, coro: Any, *, name: str | None = None, context: Any = None) -> asyncio.Task[Any]:
        if name is None:
            parent = asyncio.current_task(self)
            if parent is not None and layer_of_task(parent.get_name()) != "broker":
                name = parent.get_name()
        return super().create_task(coro, name=name, context=context)

    def _layer(self, task: asyncio.Task[Any]) -> str:
        name = task.get_name()
        layer = self._layers.get(name)
        if layer is None:
            layer = self._layers[name] = layer_of_task(name)
        return layer

    def _metered(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        owner = getattr(callback, "__self__", None)
        if not isinstance(owner, asyncio.Task):
            return callback
        return self._booked(self._layer(owner), callback)

    def _booked(self, layer: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        cpu = self.cpu

        def step(*args: Any) -> None:
            t, inline = time.thread_time(), self._inline
            try:
                callback(*args)
            finally:
                cpu[layer] = cpu.get(layer, 0.0) + time.thread_time() - t - (self._inline - inline)

        return step

    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> asyncio.Handle:
        if self.metering:
            callback = self._metered(callback)
        return super().call_soon(callback, *args, context=context)

    def call_soon_threadsafe(
        self, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        task = asyncio.current_task(self) if self.metering and self.is_running() else None
        if task is not None:
            layer, inner = self._layer(task), callback

            def asked(*a: Any) -> None:
                outer, self._asked_by = self._asked_by, layer
                try:
                    inner(*a)
                finally:
                    self._asked_by = outer

            callback = asked
        return super().call_soon_threadsafe(callback, *args, context=context)

    def _socket_callback(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        if not self.metering:
            return callback
        task = asyncio.current_task(self) if self.is_running() else None
        layer = self._layer(task) if task is not None else self._asked_by
        return callback if layer is None else self._booked(layer, callback)

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        super().add_reader(fd, self._socket_callback(callback), *args)

    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        super().add_writer(fd, self._socket_callback(callback), *args)

    def time(self) -> float:
        return self.sim.now

    def unix(self) -> float:
        """The simulated Unix time."""
        return self.sim.unix()

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        fut: asyncio.Future[T] = self.create_future()
        t = time.thread_time()
        try:
            fut.set_result(func(*args))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # delivered to the awaiting task, as an executor would
            fut.set_exception(exc)
        finally:
            dt = time.thread_time() - t
            self._inline += dt
            self.cpu["chain"] = self.cpu.get("chain", 0.0) + dt
        return fut


class LoopClock:
    """The gateways' clock (gridpact.core.clock.Clock) on a SimLoop: Unix now and asyncio.sleep."""

    def __init__(self, loop: SimLoop) -> None:
        self.loop = loop

    def now(self) -> float:
        return self.loop.unix()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class BoardClock:
    """A virtual board's clock (gridpact.core.clock.SteppedBoardTime) on a SimLoop.

    `monotonic()` is the loop's time, so the firmware's asyncio sleeps and timeouts run on the
    simulated clock; a blocking `time.sleep` on the board (nothing else can run meanwhile on a
    device) moves the simulated clock on for everyone.
    """

    rate = 1.0

    def __init__(self, loop: SimLoop) -> None:
        self.loop = loop

    def now(self) -> float:
        return self.loop.unix()

    def monotonic(self) -> float:
        return self.loop.time()

    def sleep(self, seconds: float) -> None:
        self.loop.sim.jump(seconds)
