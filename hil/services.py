"""Real services on loopback: Mosquitto, the in-process amqtt broker, anvil and the in-process EVM.

Tests, the HIL rig and `gridpact simulate` all start their broker and chain node here, so
there is one way to get a real service and one loud failure when it cannot be had. Nothing
here is a fake: each launcher starts the real program and waits until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import os
import platform
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.devchain import DEV_PRIVATE_KEYS as DEV_PRIVATE_KEYS  # re-exported for the rigs and tests
from contracts.devchain import in_process_web3 as in_process_web3
from hil.pki import Pki

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = REPO_ROOT / "node_modules" / ".bin"


class ServiceUnavailable(RuntimeError):
    """A real service could not be started: a loud failure, never a reason to skip."""


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on loopback (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceUnavailable(f"process exited with code {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise ServiceUnavailable(f"nothing listens on {host}:{port} after {timeout:.0f} s")


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # resolved before any fork, so the child only calls it


def _die_with_parent(parent: int) -> None:
    """In the child before exec: SIGKILL it when the thread that started it dies.

    So a service never outlives its owner, even one killed with SIGKILL (no clean-up runs then).
    The signal follows the forking *thread*, so `spawn` forks from the main thread or from one
    daemon thread that lives as long as the process. If the owner died before this ran, exit now.
    """
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


_SpawnJob = tuple[list[str], dict[str, Any], "Future[subprocess.Popen]"]


class _Forker:
    """The one long-lived thread that forks services for callers on short-lived threads.

    A service started from a worker thread (`asyncio.to_thread`, an executor) would otherwise be
    killed by its parent-death signal the moment that worker thread ends.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_SpawnJob] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, args: list[str], kwargs: dict[str, Any]) -> subprocess.Popen:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="service-forker", daemon=True)
                self._thread.start()
        done: Future[subprocess.Popen] = Future()
        self._jobs.put((args, kwargs, done))
        return done.result()

    def _run(self) -> None:
        while True:
            args, kwargs, done = self._jobs.get()
            try:
                done.set_result(_popen_dying_with_us(args, kwargs))
            except BaseException as exc:  # handed to the caller, who raises it
                done.set_exception(exc)


def _popen_dying_with_us(args: list[str], kwargs: dict[str, Any]) -> subprocess.Popen:
    return subprocess.Popen(args, preexec_fn=functools.partial(_die_with_parent, os.getpid()), **kwargs)


_FORKER = _Forker()


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen:
    """`subprocess.Popen` for a service: it dies with this process (parent-death signal, Linux)."""
    if sys.platform != "linux":  # no prctl: the owner's clean-up is all there is
        return subprocess.Popen(args, **kwargs)
    if threading.current_thread() is threading.main_thread():
        return _popen_dying_with_us(args, kwargs)
    return _FORKER.popen(args, kwargs)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class _ProcessService(ABC):
    """Stop and restart of a service that is one child process: a restart comes back on the same port."""

    _proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """The running child's process id (None when stopped): for tests that check it is gone."""
        return self._proc.pid if self._proc is not None else None

    @abstractmethod
    def start(self) -> object:
        """Start the child process and wait until it serves."""

    def stop(self) -> None:
        """Terminate gracefully (a kill only after 5 s), so the service can write what it keeps."""
        if self._proc is not None:
            _stop(self._proc)
            self._proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


# ---------------------------------------------------------------- MQTT brokers


@dataclass
class BrokerInfo:
    """Where a running broker listens; `kind` is "mosquitto" or "amqtt"."""

    kind: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/bin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServiceUnavailable(
        "mosquitto is not installed: `sudo apt-get install -y mosquitto` "
        "(the README's test command does this for you)"
    )


@dataclass(frozen=True)
class Bridge:
    """A Mosquitto bridge from one broker to another: the link of two brokers of one community.

    Only `topics` cross, both ways at QoS 1; the session is kept on both sides (clean session
    off), so QoS 1 messages published while the link is down are queued and delivered when it
    returns. docs/bridging.md explains each line; `bridge_conf` writes them.
    """

    name: str
    address: str  # host:port of the remote broker
    topics: tuple[str, ...]
    restart_timeout: tuple[int, int] = (1, 2)  # seconds: first retry, cap (jittered backoff)
    keepalive_s: int = 20
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    remote_username: str | None = None  # its password is added by hand (docs/bridging.md), never here

    def __post_init__(self) -> None:
        if not self.topics or any(" " in t or not t for t in self.topics):
            raise ValueError("a bridge needs topic filters without spaces")
        if ":" not in self.address:
            raise ValueError(f"bridge address {self.address!r}: host:port")


def bridge_conf(bridge: Bridge) -> str:
    """The `connection` section of mosquitto.conf for a bridge (goes last in the file)."""
    base, cap = bridge.restart_timeout
    lines = [
        f"connection {bridge.name}",
        f"address {bridge.address}",
        f"remote_clientid {bridge.name}",
        *(f"topic {t} both 1" for t in bridge.topics),
        "cleansession false",
        "local_cleansession false",
        f"restart_timeout {base} {cap}",
        f"keepalive_interval {bridge.keepalive_s}",
        "try_private true",
        "bridge_protocol_version mqttv311",
        "notifications false",
    ]
    if bridge.cafile is not None:
        lines.append(f"bridge_cafile {bridge.cafile}")
    if bridge.certfile is not None and bridge.keyfile is not None:
        lines += [f"bridge_certfile {bridge.certfile}", f"bridge_keyfile {bridge.keyfile}"]
    if bridge.remote_username is not None:
        lines.append(f"remote_username {bridge.remote_username}")
    return "\n".join(lines) + "\n"


class MosquittoBroker(_ProcessService):
    """A real Mosquitto on a free loopback port, with a throwaway config; restartable on the same port."""

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        tls: Pki | None = None,
        client_certs: bool = False,
        bridges: tuple[Bridge, ...] = (),
        connections_logged: bool = False,
        persistent: bool = False,
    ) -> None:
        """`host` is loopback for tests; a bench passes its LAN address so a real board can reach it.
        With `tls` the listener speaks TLS only (and with `client_certs` requires a client certificate).
        `bridges` connect this broker to others (see `Bridge`). `connections_logged` adds Mosquitto's
        notices to `log()`: each client's id and what it asked for (`p2, c1, k30`: keepalive 30 s).
        `persistent` keeps sessions and their queued QoS 1 messages across a restart (saved on SIGTERM),
        as a household's broker does: a subscriber with a kept session then misses nothing published
        between the broker's return and its own reconnect."""
        self.binary = find_mosquitto()
        self.host = host
        self.port = port or free_port(host)
        self._dir = Path(tempfile.mkdtemp(prefix="gridpact-mosquitto-"))
        self._proc: subprocess.Popen | None = None
        conf = self._dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            # stay the user we are: a change of credentials would clear the parent-death signal
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            "allow_anonymous true\n"
            + (
                f"persistence true\npersistence_location {self._dir}/\n"
                if persistent
                else "persistence false\n"
            )
            + "max_queued_messages 100000\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
        )
        if tls is not None:
            with conf.open("a") as f:
                f.write(f"cafile {tls.ca}\ncertfile {tls.server_cert}\nkeyfile {tls.server_key}\n")
                f.write("require_certificate true\n" if client_certs else "")
        if bridges or connections_logged:
            with conf.open("a") as f:
                f.write("log_type notice\n")  # connects and drops (a bridge's too), for a test to read
        if bridges:
            with conf.open("a") as f:
                for bridge in bridges:
                    f.write(bridge_conf(bridge))
        self._conf = conf

    @property
    def info(self) -> BrokerInfo:
        return BrokerInfo("mosquitto", self.host, self.port)

    def start(self) -> BrokerInfo:
        log = open(self._dir / "mosquitto.log", "ab")  # noqa: SIM115 - owned by the process
        self._proc = spawn([self.binary, "-c", str(self._conf)], stdout=log, stderr=log)
        try:
            wait_for_port(self.host, self.port, 10, self._proc)
        except ServiceUnavailable as exc:
            raise ServiceUnavailable(f"mosquitto failed to start: {exc}; log: {self.log()}") from exc
        return self.info

    def log(self) -> str:
        path = self._dir / "mosquitto.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class TcpLink:
    """A TCP path on loopback to `target_port` that a test can cut and restore: a WAN link going down.

    Everything through it is relayed byte for byte. `cut` closes every connection and stops
    listening (a reconnect is refused) until `restore`, which listens again on the same port.
    """

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.connections = 0

    def start(self) -> int:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        with self._lock:
            self._listener = listener
        self._spawn(self._accept, listener)
        return self.port

    def _spawn(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name="tcp-link", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut or closed
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    server.close()
                    return
                self._socks += [client, server]
                self.connections += 1
            self._spawn(self._pump, client, server)
            self._spawn(self._pump, server, client)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):  # one side gone: the other learns at once
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection now and refuse new ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            socks, self._socks = self._socks, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept (Linux)
            listener.close()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self.cut()
        for t in self._threads:
            t.join(2)


class EmbeddedBroker:
    """amqtt (MQTT 3.1.1) running in its own thread and event loop: the embedded default broker."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: object | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()

    @property
    def info(self) -> BrokerInfo:
        return BrokerInfo("amqtt", "127.0.0.1", self.port)

    def _config(self) -> dict:
        return {
            "listeners": {
                "default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}", "max_connections": 1000}
            },
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

    def _run(self) -> None:
        from amqtt.broker import Broker

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            broker = Broker(self._config(), loop=loop)
            self._broker = broker
            loop.run_until_complete(broker.start())
        except BaseException as exc:  # reported to the caller of start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        # A stop must look like a broker going away: listener closed, every client dropped, so
        # that a restart on the same port works and clients see the outage.
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait_for(broker.shutdown(), 10))
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def start(self) -> BrokerInfo:
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(15) or self._error is not None:
            raise ServiceUnavailable(f"amqtt broker failed to start: {self._error!r}")
        wait_for_port("127.0.0.1", self.port, 10)
        return self.info

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None
        self._thread = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop()


def start_broker(kind: str) -> MosquittoBroker | EmbeddedBroker:
    broker: MosquittoBroker | EmbeddedBroker = MosquittoBroker() if kind == "mosquitto" else EmbeddedBroker()
    broker.start()
    return broker


# ---------------------------------------------------------------- chain nodes


@dataclass
class ChainInfo:
    """How to reach a chain: `url` for JSON-RPC nodes, None for the in-process EVM."""

    kind: str
    url: str | None
    chain_id: int
    private_keys: tuple[str, ...] = field(default=DEV_PRIVATE_KEYS)


_ANVIL_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def find_anvil() -> Path:
    """The native anvil binary from node_modules (not the Node wrapper in .bin).

    Started directly, anvil is our own child: a signal or the parent-death signal reaches it,
    where the wrapper would leave the native process behind as an orphan.
    """
    arch = _ANVIL_ARCH.get(platform.machine().lower(), platform.machine().lower())
    pkg = REPO_ROOT / "node_modules" / "@foundry-rs" / f"anvil-{sys.platform}-{arch}"
    for path in (pkg / "bin" / "anvil", pkg / "anvil"):
        if os.access(path, os.X_OK):
            return path
    if sys.platform != "linux" and os.access(NODE_BIN / "anvil", os.X_OK):
        return NODE_BIN / "anvil"  # elsewhere the wrapper (no parent-death signal there anyway)
    raise ServiceUnavailable(f"native anvil not found at {pkg}/bin/anvil: run `npm ci` in {REPO_ROOT}")


class AnvilNode(_ProcessService):
    """A real anvil (from node_modules) on a free loopback port; stoppable and restartable on that port.

    `stop` is graceful: anvil writes its state file, so a restart keeps the chain.
    """

    def __init__(
        self, port: int | None = None, chain_id: int = 31337, block_time: float | None = None
    ) -> None:
        self.binary = find_anvil()
        self.port = port or free_port()
        self.chain_id = chain_id
        self.block_time = block_time
        self._proc: subprocess.Popen | None = None
        self._state = Path(tempfile.mkdtemp(prefix="gridpact-anvil-")) / "state.json"

    @property
    def info(self) -> ChainInfo:
        return ChainInfo("anvil", f"http://127.0.0.1:{self.port}", self.chain_id)

    def start(self) -> ChainInfo:
        args = [
            str(self.binary), "--host", "127.0.0.1", "--port", str(self.port),
            "--chain-id", str(self.chain_id), "--accounts", str(len(DEV_PRIVATE_KEYS)),
            "--state", str(self._state), "--silent",
        ]  # fmt: skip
        if self.block_time:
            args += ["--block-time", str(self.block_time)]
        self._proc = spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port("127.0.0.1", self.port, 20, self._proc)
        except ServiceUnavailable as exc:
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
            raise ServiceUnavailable(f"anvil failed to start: {exc}: {err[-1000:]}") from exc
        return self.info

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._state.parent, ignore_errors=True)


@contextlib.contextmanager
def running(service: MosquittoBroker | EmbeddedBroker | AnvilNode) -> Iterator[object]:
    """Start a service, yield its info, stop it however the block ends."""
    try:
        yield service.start()
    finally:
        service.close()


# ---------------------------------------------------------------- PostgreSQL


def find_postgres_bin(root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The newest Debian PostgreSQL's bin folder (initdb, postgres); a loud failure when none is installed."""
    found = sorted(root.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise ServiceUnavailable("PostgreSQL is not installed: apt-get install -y postgresql")
    return found[-1].parent


class PostgresServer(_ProcessService):
    """A throwaway PostgreSQL cluster on a free loopback port, in a temporary folder.

    `initdb` and `postgres` refuse to run as root: as root they run as the unprivileged `postgres`
    user Debian's package creates (the process is still our child, so it dies with us and is
    stopped by its own id). Password authentication (SCRAM) even on loopback, as a real deployment.
    """

    USER = "gridpact"
    PASSWORD = "index-test-secret"

    def __init__(self, port: int | None = None) -> None:
        self.bin = find_postgres_bin()
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="gridpact-postgres-"))
        self._run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceUnavailable(
                    "running as root and no `postgres` user to run PostgreSQL as"
                ) from None
            self._run_as = "postgres"
            shutil.chown(self._dir, "postgres")
        self._data = self._dir / "data"
        pwfile = self._dir / "pw"
        pwfile.write_text(self.PASSWORD + "\n")
        if self._run_as:
            shutil.chown(pwfile, "postgres")
        done = subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self._data), "-U", self.USER, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync"],
            user=self._run_as, capture_output=True, text=True, timeout=120, cwd=self._dir,
        )  # fmt: skip
        pwfile.unlink()
        if done.returncode != 0:
            raise ServiceUnavailable(f"initdb failed ({done.returncode}): {done.stderr[-2000:]}")
        self._proc: subprocess.Popen | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.USER}:{self.PASSWORD}@127.0.0.1:{self.port}/{database}"

    def start(self) -> str:
        log = open(self._dir / "postgres.log", "ab")  # noqa: SIM115 - owned by the process
        if self._run_as:
            shutil.chown(self._dir / "postgres.log", "postgres")
        args = [str(self.bin / "postgres"), "-D", str(self._data), "-h", "127.0.0.1", "-p", str(self.port),
                "-k", str(self._dir), "-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=20"]  # fmt: skip
        self._proc = spawn(args, stdout=log, stderr=log, user=self._run_as, cwd=self._dir)
        try:
            wait_for_port("127.0.0.1", self.port, 30, self._proc)
            self._wait_ready()
        except ServiceUnavailable as exc:
            self.stop()
            raise ServiceUnavailable(f"postgres failed to start: {exc}; log: {self.log()}") from exc
        return self.url()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline or (self._proc is not None and self._proc.poll() is not None):
                    raise ServiceUnavailable(f"postgres does not accept connections: {exc}") from exc
                time.sleep(0.1)

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """A fast shutdown (SIGINT: clients disconnected, no wait for them), then a kill after 10 s."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None

    def log(self) -> str:
        path = self._dir / "postgres.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


# ---------------------------------------------------------------- OpenID Provider

OIDC_PROVIDER_SCRIPT = REPO_ROOT / "hil" / "oidc" / "provider.mjs"


def find_node() -> str:
    """Node.js (20+), which runs the npm toolchain; a loud failure when it is missing."""
    node = shutil.which("node")
    if node is None:
        raise ServiceUnavailable("Node.js is not installed: apt-get install -y nodejs npm")
    return node


class OidcProvider(_ProcessService):
    """A real OpenID Provider on loopback: panva's oidc-provider (from node_modules, pinned in
    package.json) run by hil/oidc/provider.mjs, with one confidential client whose secret is in a
    0600 file, and the package's own sign-in and consent pages (any login name is an account).

    `host` names the issuer: "localhost" by default, so the provider is another site than a
    dashboard on 127.0.0.1 and the browser treats the sign-in as the cross-site round trip it is
    in a real community. It listens on 127.0.0.1 either way.
    """

    def __init__(
        self, redirect_uri: str, client_id: str = "gridpact-dashboard", host: str = "localhost"
    ) -> None:
        if not (REPO_ROOT / "node_modules" / "oidc-provider" / "package.json").exists():
            raise ServiceUnavailable(f"oidc-provider is not in {REPO_ROOT}/node_modules: run `./tasks setup`")
        self.node = find_node()
        self.port = free_port()
        self.issuer = f"http://{host}:{self.port}"
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self._dir = Path(tempfile.mkdtemp(prefix="gridpact-oidc-"))
        self.secret_file = self._dir / "client-secret"
        self.secret_file.touch(mode=0o600)
        self.secret_file.write_text(os.urandom(24).hex() + "\n")
        self._proc: subprocess.Popen | None = None

    def start(self) -> str:
        """Start the provider and wait until its discovery document answers; the issuer URL."""
        log = open(self._dir / "provider.log", "ab")  # noqa: SIM115 - owned by the process
        args = [self.node, str(OIDC_PROVIDER_SCRIPT), "--port", str(self.port), "--issuer", self.issuer,
                "--client-id", self.client_id, "--secret-file", str(self.secret_file),
                "--redirect-uri", self.redirect_uri]  # fmt: skip
        self._proc = spawn(args, stdout=log, stderr=log, cwd=REPO_ROOT)
        try:
            self._wait_ready(30)
        except ServiceUnavailable as exc:
            self.stop()
            raise ServiceUnavailable(
                f"the OpenID Provider failed to start: {exc}; log: {self.log()}"
            ) from exc
        return self.issuer

    def _wait_ready(self, timeout: float) -> None:
        url = f"http://127.0.0.1:{self.port}/.well-known/openid-configuration"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if json.load(resp).get("issuer") == self.issuer:
                        return
            except (OSError, ValueError):
                pass
            if self._proc is not None and self._proc.poll() is not None:
                raise ServiceUnavailable(f"it exited with code {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"no discovery document at {url} after {timeout:.0f} s")
            time.sleep(0.1)

    def log(self) -> str:
        path = self._dir / "provider.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
