"""The Dask side: a local cluster we own (and stop, to the last process) or a client of a real cluster.

Dask.distributed rather than Ray: the points and the cooperative's evaluations are numpy batch
functions, Dask ships them as plain pickled calls with a small pure-Python install (no object
store daemon, no raylet), and its Client is also a concurrent.futures Executor, so the
cooperative engine's existing process-pool seam takes it unchanged.

The local cluster is a scheduler in this process and `dask worker` processes started here by
id (no nannies): Ctrl-C or SIGTERM at any moment, even during start-up, kills exactly those
processes, and each dies with its parent (PR_SET_PDEATHSIG) should this process be killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from distributed import Client, LocalCluster

PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 120


@dataclass
class Cluster:
    """A connected client; `owned` are the worker processes we started (killed by id on the way out)."""

    client: Client
    address: str
    workers: int
    owned: list[subprocess.Popen[bytes]]

    def executor(self) -> Executor:
        """A concurrent.futures view of the cluster, for code written against process pools."""
        return self.client.get_executor()


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills it when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def start_worker(address: str, name: str, memory_limit: str = "auto") -> subprocess.Popen[bytes]:
    """One `dask worker` process (one thread, no nanny) for the scheduler at `address`."""
    args = [
        sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny",
        "--no-dashboard", "--host", "127.0.0.1", "--name", name, "--memory-limit", memory_limit,
        "--death-timeout", "30",
    ]  # fmt: skip
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )


def _kill(procs: list[subprocess.Popen[bytes]]) -> None:
    """Kill our worker processes by id and reap them."""
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(1.0)


@contextlib.contextmanager
def connect(address: str | None = None, workers: int = 2, memory_limit: str = "auto") -> Iterator[Cluster]:
    """A cluster for the block: the one at `address`, or a local one of `workers` processes."""
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if address is not None:
        client = Client(address, timeout="10s")
        try:
            n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
            yield Cluster(client, address, n, [])
        finally:
            client.close(timeout=2)
        return
    if workers < 1:
        raise ValueError("workers must be >= 1")
    no_dashboard: dict[str, Any] = {"dashboard_address": None}  # documented; typed str in the stubs
    owned: list[subprocess.Popen[bytes]] = []
    client: Client | None = None
    cluster = LocalCluster(
        n_workers=0,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        silence_logs=logging.ERROR,
        **no_dashboard,
    )
    try:
        where = str(cluster.scheduler_address)
        owned += [start_worker(where, f"local-{n}", memory_limit) for n in range(workers)]
        client = Client(cluster)
        client.wait_for_workers(workers, timeout=START_TIMEOUT_S)
        yield Cluster(client, where, workers, owned)
    finally:
        _kill(owned)  # first: a worker in a long numpy call would hold up a polite close
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=0.5)
        with contextlib.suppress(Exception):
            cluster.close(timeout=1)
