"""CPU time by layer for `gridpact bench simulate`: which part of the stack the run spends itself on.

Every actor of the full-stack run has a thread (or process) of its own with a telling name: the
boards `vboard-*`, the amqtt broker `amqtt-broker`, the gateways' loop `gridpact-gateways` (each
household's ingest and trading tasks, as on the Pi one loop: booked to trading, which is most of
it), their store writers, their chain workers `gridpact-chain*`, and the anvil node a child
process. Linux keeps each thread's CPU time in
/proc/self/task/<tid>/stat, so a sampler reads those a few times a second and the bench sums them
by layer: exact CPU seconds, no profiler overhead. What no named thread ran is "other" (the driver,
the engine, the community's own chain calls, the report).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

LAYERS: tuple[str, ...] = ("firmware", "broker", "ingest", "trading", "chain", "other")
RULES = (
    ("vboard-", "firmware"),
    ("paho-mqtt-client-node-", "firmware"),  # the stand-in nodes (--nodes standin)
    ("amqtt", "broker"),
    ("paho-mqtt-client-gw-", "ingest"),  # the gateways' own paho threads before they ran on aiomqtt
    ("store-writer", "ingest"),
    ("gridpact-agents", "trading"),  # the trading loop before ingest joined it
    ("gridpact-gateways", "trading"),  # ingest (aiomqtt) and trading share each gateway's loop
    ("gridpact-chain", "chain"),
)
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def layer_of(thread_name: str) -> str:
    """The layer a thread's CPU time is booked to, by its name."""
    for prefix, layer in RULES:
        if thread_name.startswith(prefix):
            return layer
    return "other"


def cpu_ticks(stat_line: str) -> int:
    """utime + stime (clock ticks) from a /proc .../stat line (the name may hold spaces and ')')."""
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted from 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # the thread or process ended meanwhile
        return None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = _read(task / "children")
        if text:
            out += [int(c) for c in text.split()]
    return out


@dataclass
class LayerCpu:
    """Samples the CPU time of this process's threads and of its child processes, booked by layer."""

    every_s: float = 0.2
    threads: dict[int, tuple[str, int]] = field(default_factory=dict)  # tid -> (layer, ticks)
    children: dict[int, int] = field(default_factory=dict)  # pid -> ticks (anvil and its wrapper)
    base: dict[int, int] = field(default_factory=dict)  # tid -> ticks before the run (imports, setup)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        me = threading.get_native_id()
        for task in Path("/proc/self/task").glob("*"):
            tid = int(task.name)
            text = _read(task / "stat")
            if text is None or tid == me:
                continue
            layer = "other" if tid not in names else layer_of(names[tid])
            old = self.threads.get(tid)
            self.threads[tid] = (old[0] if old and old[0] != "other" else layer, cpu_ticks(text))
        todo = _children(os.getpid())
        while todo:
            pid = todo.pop()
            text = _read(Path(f"/proc/{pid}/stat"))
            if text is not None:
                self.children[pid] = max(self.children.get(pid, 0), cpu_ticks(text))
                todo += _children(pid)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def __enter__(self) -> LayerCpu:
        self.sample()
        self.base = {tid: ticks for tid, (_, ticks) in self.threads.items()}
        self._thread = threading.Thread(target=self._run, name="bench-layer-cpu", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self.sample()

    def seconds(self) -> dict[str, float]:
        """CPU seconds per layer since entering (the chain node's processes counted under chain)."""
        out: dict[str, float] = dict.fromkeys(LAYERS, 0.0)
        for tid, (layer, ticks) in self.threads.items():
            out[layer] += (ticks - self.base.get(tid, 0)) * TICK_S
        out["chain"] += sum(self.children.values()) * TICK_S
        return out
