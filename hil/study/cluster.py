"""The Dask side: a LocalCluster we own (and stop, to the last process) or a client of a real cluster.

Dask.distributed rather than Ray: the points and the cooperative's evaluations are numpy batch
functions, Dask ships them as plain pickled calls with a small pure-Python install (no object
store daemon, no raylet), and its Client is also a concurrent.futures Executor, so the
cooperative engine's existing process-pool seam takes it unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from types import FrameType
from typing import Any

import psutil
from distributed import Client, LocalCluster


@dataclass
class Cluster:
    """A connected client; `owned` pids are the processes we started (killed by id on the way out)."""

    client: Client
    address: str
    workers: int
    owned: list[int]

    def executor(self) -> Executor:
        """A concurrent.futures view of the cluster, for code written against process pools."""
        return self.client.get_executor()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the study like Ctrl-C: the same unwinding, the same clean-up."""
    old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _kill(pids: list[int]) -> None:
    """Kill what is left of our own processes, by id, and wait for them (bounded)."""
    procs = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            p.kill()
            procs.append(p)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(procs, timeout=1.0)


@contextlib.contextmanager
def connect(address: str | None = None, workers: int = 2, memory_limit: str = "auto") -> Iterator[Cluster]:
    """A cluster for the block: the one at `address`, or a local one of `workers` processes.

    A local cluster is closed on the way out with a short timeout, and any of its processes
    still alive after it is killed by id, so Ctrl-C leaves nothing behind within 2 s.
    """
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
    me = psutil.Process(os.getpid())
    before = {p.pid for p in me.children(recursive=True)}
    no_dashboard: dict[str, Any] = {"dashboard_address": None}  # documented; typed str in the stubs
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        **no_dashboard,
        memory_limit=memory_limit,
        silence_logs=logging.ERROR,
    )
    owned = [p.pid for p in me.children(recursive=True) if p.pid not in before]
    client = Client(cluster)
    try:
        yield Cluster(client, str(cluster.scheduler_address), workers, owned)
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=0.5)
        with contextlib.suppress(Exception):
            cluster.close(timeout=1)
        # anything of ours still alive (a worker stuck in a long numpy call): killed by id
        _kill(owned + [p.pid for p in me.children(recursive=True) if p.pid not in before])
