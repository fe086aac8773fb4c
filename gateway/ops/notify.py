"""sd_notify without libsystemd: READY, WATCHDOG and STOPPING over $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping


class Notifier:
    """Sends datagrams to the service manager; a no-op when not run under systemd."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        own = not pid or pid == str(os.getpid())
        self.watchdog_s: float | None = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and own else None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *states: str) -> bool:
        """Send `KEY=value` lines; False (never an exception) if the manager cannot be reached."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(states).encode(), self.address)
            return True
        except OSError:
            return False


async def watchdog_loop(notifier: Notifier, healthy: Callable[[], bool] = lambda: True) -> None:
    """Ping WATCHDOG=1 at half the interval while `healthy()`; a stuck loop stops the pings."""
    if notifier.watchdog_s is None:
        await asyncio.Event().wait()
        return
    interval = notifier.watchdog_s / 2
    while True:
        if healthy():
            notifier.send("WATCHDOG=1")
        await asyncio.sleep(interval)
