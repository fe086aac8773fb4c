"""Fixtures of the gateway-core tests: a config file with its key on disk (names prefixed `gw_`)."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.services import PostgresServer, free_port

# This folder is named like the package: with only tests/ on sys.path, `import gateway` would find
# it as a namespace package and `gateway.trading` would resolve to tests/gateway/trading. The repo
# root first makes `gateway` the real package.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

GW_KEY = bytes(range(32))


def write_gateway_config(
    directory: Path, broker_port: int, extra: str = "", gateway_id: str = "house-07", prefix: str = "gridpact"
) -> Path:
    """A minimal ingest-only config in `directory`, its HMAC key in a file beside it."""
    (directory / "meter.key").write_text(GW_KEY.hex() + "\n")
    path = directory / "gateway.toml"
    path.write_text(
        f"""
[gateway]
id = "{gateway_id}"
state_dir = "state"
log_level = "debug"

[meter]
device_id = "node-01"
hmac_key_file = "meter.key"
topic_prefix = "{prefix}"

[meter_broker]
host = "127.0.0.1"
port = {broker_port}

[metrics]
listen = "127.0.0.1:{free_port()}"
{extra}
"""
    )
    return path


_prefixes = itertools.count()


@pytest.fixture
def gw_prefix() -> str:
    """A topic prefix of this test's own: the brokers are shared by a worker's tests, and retained
    messages other tests left under `gridpact/` would otherwise reach this test's gateway."""
    return f"t{os.getpid()}-{next(_prefixes)}"


@pytest.fixture
def gw_topic(gw_prefix: str) -> Callable[[str], str]:
    """Maps `gridpact/meter/...` to the same topic under this test's prefix."""
    return lambda topic: gw_prefix + topic.removeprefix("gridpact")


@pytest.fixture
def gw_config(tmp_path: Path, gw_prefix: str) -> Callable[..., Path]:
    """Call with the broker port (and optional extra TOML) to get a config file path; the gateway
    reads its meter under `gw_prefix`."""
    return lambda port, extra="", gateway_id="house-07": write_gateway_config(
        tmp_path, port, extra, gateway_id, gw_prefix
    )


class GatewayThread:
    """`run_gateway` on its own event loop in a thread, as the service runs it; stopped by cancellation."""

    def __init__(self, config_path: Path, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.env = env
        self.runtime: Any = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="gateway", daemon=True)

    def _main(self) -> None:
        from gateway.config import load_config
        from gateway.service import run_gateway

        async def root() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()  # type: ignore[assignment]
            started: asyncio.Future[Any] = self._loop.create_future()
            started.add_done_callback(lambda f: (setattr(self, "runtime", f.result()), self._ready.set()))
            await run_gateway(load_config(self.config_path, self.env), env=self.env, started=started)

        try:
            asyncio.run(root())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # reported to the test by `alive` and `stop`
            self.error = exc
        finally:
            self._ready.set()

    def start(self, timeout: float = 30) -> GatewayThread:
        self._thread.start()
        if not self._ready.wait(timeout) or self.runtime is None:
            raise RuntimeError(f"gateway did not start: {self.error!r}")
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def call(self, fn: Callable[[], Any], timeout: float = 10) -> Any:
        """Run `fn` on the gateway's loop (thread-safe reads of its state)."""
        assert self._loop is not None

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout)

    def counts(self) -> dict[tuple[str, ...], float]:
        """Accepted (kind,) and rejected (kind, reason) counts, read on the gateway's loop."""
        h = self.runtime.handler
        return self.call(
            lambda: {
                **{k: v for k, v in h.accepted.values.items()},
                **{k: v for k, v in h.rejected.values.items()},
            }
        )

    def wait_total(self, total: float, timeout: float = 30) -> dict[tuple[str, ...], float]:
        """Wait until accepted + rejected messages reach `total` and their batch is committed; the counts."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts()
            if sum(counts.values()) >= total or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        while self.call(lambda: self.runtime.handler.pending) and time.monotonic() < deadline:
            time.sleep(0.02)  # the service commits at most FLUSH_DELAY_S after the last message
        return counts

    def stop(self, timeout: float = 15) -> None:
        if self._loop is not None and self._task is not None and self.alive:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("gateway did not stop within the timeout")


@pytest.fixture
def gw_gateway() -> Iterator[Callable[..., GatewayThread]]:
    """Start gateways from config paths; all are stopped at teardown."""
    started: list[GatewayThread] = []

    def start(config_path: Path, env: dict[str, str] | None = None) -> GatewayThread:
        gw = GatewayThread(config_path, env).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for the session; gone (by its own pid) after it."""
    server = PostgresServer()
    server.start()
    pid = server.pid
    assert pid is not None
    try:
        yield server
    finally:
        server.close()
        assert not os.path.exists(f"/proc/{pid}"), "postgres outlived its test"


Where = Callable[[str], "Path | str"]


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    """A new index location by name: a SQLite file, or a fresh database on the test's PostgreSQL."""
    if request.param == "sqlite":
        return lambda name: tmp_path / f"{name}.sqlite3"
    server: PostgresServer = request.getfixturevalue("postgres")
    databases: dict[str, str] = {}

    def database(name: str) -> str:
        if name not in databases:
            databases[name] = server.create_database(f"{name}_{uuid.uuid4().hex[:12]}")
        return databases[name]

    return database
