"""A virtual meter node: the real firmware main loop (firmware/device) on CPython.

Only `machine`, `network`, `ntptime`, `time`, `asyncio`, `gc`, `sys` and `micropython` are
shimmed (firmware/host/shims.py); everything else is the device code as flashed. The UART is a
real serial device (a pty from socat, wired to meter_sim) or any pyserial-like object, MQTT goes
to a real broker over TCP, state files live in `state_dir` (the board's flash).

    board = VirtualBoard(config, "/tmp/pty/b", tmp_path, broker=("127.0.0.1", 1883))
    board.start(); ...; board.wifi_down(); ...; board.power_cycle(); ...; board.stop()
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from firmware.host.devload import DEVICE_DIR, DeviceNamespace
from firmware.host.shims import (
    PWRON_RESET,
    SOFT_RESET,
    WDT_RESET,
    BoardReset,
    BoardState,
    SerialLike,
    make_all,
)
from gridpact.core.clock import BoardTime, SystemClock
from hil.virtual_time import VirtualLoop, VirtualTime, open_connection_on

PLATFORMS = {"esp32": "esp32", "pico-w": "rp2"}


class VirtualBoard:
    """One ESP32 or Pico W running the firmware, started and stopped from Python (thread per board)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        uart_device: str | SerialLike,
        state_dir: Path,
        *,
        board: str = "esp32",
        clock: BoardTime | None = None,
        broker: tuple[str, int] | None = None,
        name: str | None = None,
        echo: bool = False,
        device_dir: Path = DEVICE_DIR,
    ) -> None:
        if board not in PLATFORMS:
            raise ValueError(f"board must be one of {sorted(PLATFORMS)}")
        self.config: dict[str, Any] = copy.deepcopy(dict(config))
        if broker is not None:
            self.config.setdefault("broker", {}).update(host=broker[0], port=int(broker[1]))
        self.uart_device = uart_device
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.platform = PLATFORMS[board]
        self.clock: BoardTime = clock or SystemClock()
        self.name = name or str(self.config.get("device_id", "board"))
        self.echo = echo
        self.device_dir = device_dir
        self.console: list[str] = []
        self.wifi_available = True
        self.ntp_available = True
        self.reboots = 0
        self.crash: BaseException | None = None
        self.app: Any = None
        self._state: BoardState | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._started = threading.Event()
        self._stopping = False
        self._wdt_thread: threading.Thread | None = None
        self._resetting = False
        self._wdt_quit = threading.Event()  # wakes the watchdog watcher at once on stop

    # ------------------------------------------------------------------ life cycle
    def start(self, reset_cause: int = PWRON_RESET, timeout: float = 10.0) -> None:
        """Power the board on: write config.json to its flash and run main (returns once booted)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already running")
        (self.state_dir / "config.json").write_text(json.dumps(self.config))
        uid = (self.name.encode() + b"\0" * 6)[:6]
        self._state = BoardState(
            clock=self.clock, platform=self.platform, uart_device=self.uart_device, uid=uid,
            reset_cause=reset_cause, wifi_available=self.wifi_available, ntp_available=self.ntp_available,
            open_connection=open_connection_on(self.clock) if isinstance(self.clock, VirtualTime) else None,
        )  # fmt: skip
        self._state.console = self.console
        self.app = None
        self.crash = None
        self._stopping = False
        self._wdt_quit = threading.Event()
        self._started.clear()
        self._thread = threading.Thread(target=self._run, name=f"vboard-{self.name}", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(
                f"{self.name} did not boot within {timeout} s:\n" + "\n".join(self.console[-20:])
            )
        if self.crash is not None:
            raise RuntimeError(f"{self.name} crashed at boot: {self.crash!r}")
        self._wdt_thread = threading.Thread(
            target=self._watch_wdt, name=f"vboard-wdt-{self.name}", daemon=True
        )
        self._wdt_thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cut the power: the main task is cancelled, ports closed; flash (state_dir) stays."""
        thread, loop, task = self._thread, self._loop, self._task
        self._stopping = True
        self._wdt_quit.set()
        if thread is None:
            return
        if loop is not None and task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"{self.name} did not stop within {timeout} s")
        if self._state is not None:
            for uart in self._state.uarts:
                uart.deinit()
            self._state.uarts.clear()
        if self._wdt_thread is not None and self._wdt_thread is not threading.current_thread():
            self._wdt_thread.join(2)
        self._thread = self._loop = self._task = self._wdt_thread = None

    def power_cycle(self, off_s: float = 0.0) -> None:
        self.stop()
        time.sleep(off_s)
        self.reboots += 1
        self.start(PWRON_RESET)

    def soft_reset(self) -> None:
        self.stop()
        self.reboots += 1
        self.start(SOFT_RESET)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ the outside world
    def wifi_down(self) -> None:
        self.wifi_available = False
        if self._state is not None:
            self._state.wifi_available = False

    def wifi_up(self) -> None:
        self.wifi_available = True
        if self._state is not None:
            self._state.wifi_available = True

    def ntp_down(self) -> None:
        self.ntp_available = False
        if self._state is not None:
            self._state.ntp_available = False

    def ntp_up(self) -> None:
        self.ntp_available = True
        if self._state is not None:
            self._state.ntp_available = True

    @property
    def de_toggles(self) -> int:
        """How often the RS-485 direction pin changed level (two per request)."""
        return self._state.de_toggles if self._state is not None else 0

    def stats(self) -> dict[str, Any]:
        """A snapshot of the firmware's counters (read from the running App object)."""
        a = self.app
        if a is None:
            return {"running": self.running}
        return {
            "running": self.running, "boot": a.boot, "reset": a.reset, "next_seq": a.seq.next,
            "polls": a.polls, "modbus_faults": a.faults, "errors": a.errors, "buffered": a.ring.count,
            "drops": a.ring.drops, "synced": a.synced, "mqtt_up": a.client.up, "published": a.client.sent,
            "resent": a.client.resent, "last_seq": a.last_seq,
        }  # fmt: skip

    def wait_until(self, pred: Callable[[], bool], timeout: float, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            if self.crash is not None:
                raise RuntimeError(f"{self.name} crashed: {self.crash!r}")
            time.sleep(0.02)
        raise TimeoutError(
            f"{self.name}: {what} not reached in {timeout} s; console tail:\n" + "\n".join(self.console[-15:])
        )

    # ------------------------------------------------------------------ internals
    def _print(self, *args: Any, sep: str = " ", end: str = "\n", **_kw: Any) -> None:
        line = sep.join(str(a) for a in args)
        if self._state is not None:
            self._state.log(line)
        if self.echo:
            print(f"[{self.name}] {line}", flush=True)

    def advance_to(self, world_t: float, timeout: float = 30.0) -> None:
        """Virtual time only: run the board until it waits beyond `world_t` (see virtual_time.py)."""
        if not isinstance(self.clock, VirtualTime):
            raise TypeError(f"{self.name}: advance_to needs a VirtualTime clock")
        self.clock.advance_to(world_t, timeout, alive=lambda: self.running or self._resetting)
        if self.crash is not None:
            raise RuntimeError(f"{self.name} crashed: {self.crash!r}")

    def _run(self) -> None:
        loop: asyncio.AbstractEventLoop
        loop = VirtualLoop(self.clock) if isinstance(self.clock, VirtualTime) else asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._amain())
        except BaseException as e:  # the board died: keep the reason for the caller
            self.crash = e
        finally:
            self._started.set()
            loop.close()

    async def _amain(self) -> None:
        assert self._state is not None
        ns = DeviceNamespace(make_all(self._state), self.device_dir, print_fn=self._print)
        app_mod = ns.load("app")
        node = app_mod.make(str(self.state_dir) + "/")
        if node is None:
            self._started.set()  # config errors are on the console, as on a real board
            return
        self.app = node
        self._task = asyncio.current_task()
        self._started.set()
        try:
            await node.main()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except BoardReset:
            self._state.log("machine.reset()")

    def _watch_wdt(self) -> None:
        st = self._state
        # on virtual time the board clock moves only inside advance_to, in jumps: a slower look is
        # as good and costs a tenth (many boards in one process, each with its own watcher)
        every_s = 0.5 if isinstance(self.clock, VirtualTime) else 0.05
        while st is not None and self.running and not self._stopping:
            if self._wdt_quit.wait(every_s):
                return
            # expired in board time AND in real time: on an accelerated clock a host stall (amplified
            # by the rate) must not reset a healthy board; a hung one still resets
            late = st.wdt_timeout_ms is not None and (st.uptime() - st.wdt_fed) * 1000 > st.wdt_timeout_ms
            # on virtual time board time moves only when told, so board time alone decides
            real_late = (time.monotonic() - st.wdt_fed_real) * 1000 > (st.wdt_timeout_ms or 0)
            if late and (real_late or isinstance(self.clock, VirtualTime)):
                st.log("watchdog expired: reset")
                self._resetting = True
                threading.Thread(target=self._wdt_reset, daemon=True).start()
                return

    def _wdt_reset(self) -> None:
        try:
            self.stop()
            self.reboots += 1
            self.start(WDT_RESET)
        finally:
            self._resetting = False
