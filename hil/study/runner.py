"""Running a study on a cluster: submit the points not done yet, store each row as it arrives.

Each finished point is written to `OUT/points/KEY.json` (atomically) by this process, the
client, so workers need no shared filesystem and a restarted study skips what is on disk.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from distributed import as_completed

from hil.study.cluster import Cluster
from hil.study.grid import Point, Study
from hil.study.points import load_row, run_point, store_row


class Progress:
    """One line across the whole study: redrawn in place on a terminal, every 10 % otherwise."""

    def __init__(self, total: int, skipped: int, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.total, self.skipped, self.quiet = total, skipped, quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()
        self._last = -1

    def __call__(self, done: int, failed: int) -> None:
        if self.quiet:
            return
        pct = 100 * done // max(self.total, 1)
        ran = done - self.skipped
        wall = time.perf_counter() - self.t0
        eta = wall / ran * (self.total - done) if ran > 0 else 0.0
        line = (
            f"points {done}/{self.total} [{'#' * (pct // 5):<20}] {pct:3d}% "
            f"skipped={self.skipped} failed={failed} wall={wall:.1f}s eta={eta:.0f}s"
        )
        if self.tty:
            end = "\n" if done + failed >= self.total else ""
            print("\r" + line, end=end, file=self.stream, flush=True)
        elif pct // 10 != self._last or done + failed >= self.total:
            self._last = pct // 10
            print(line, file=self.stream, flush=True)


@dataclass
class Outcome:
    """What a study run did: rows of all points done (now or before), what ran, what failed."""

    rows: list[dict[str, Any]]
    ran: int
    skipped: int
    failed: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


def result_path(out: Path, point: Point) -> Path:
    return out / "points" / f"{point.key}.json"


def run_study(
    study: Study,
    out: Path,
    cluster: Cluster,
    marks: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    shared: bool = True,
) -> Outcome:
    """Run every point of `study` not yet stored under `out`, on the cluster, and gather all rows.

    `shared`: the workers see `out` at the same path (a local cluster, or a shared filesystem):
    each worker then stores its row itself, and a point rerun after its worker was lost finds
    the row instead of computing it again.
    """
    t0 = time.perf_counter()
    (out / "points").mkdir(parents=True, exist_ok=True)
    unique: dict[str, Point] = {p.key: p for p in study.points}
    rows: dict[str, dict[str, Any]] = {}
    for key, point in unique.items():
        row = load_row(result_path(out, point))
        if row is not None:
            rows[key] = row
    skipped = len(rows)
    todo = [p for k, p in unique.items() if k not in rows]
    mark_dir = str(marks) if marks is not None else None
    store = str(out / "points") if shared else None
    pending = {}
    for p in todo:
        fut = cluster.client.submit(run_point, p, mark_dir, store, key=f"gridpact-point-{p.key}", pure=False)
        pending[fut.key] = (fut, p)
    failed: dict[str, str] = {}
    if progress is not None:
        progress(len(rows), 0)
    try:
        for fut in as_completed([f for f, _ in pending.values()]):
            _, point = pending.pop(fut.key)
            try:
                row = fut.result()
            except Exception as exc:
                failed[point.key] = f"{type(exc).__name__}: {exc}"
            else:
                store_row(result_path(out, point), row)
                rows[point.key] = row
            # let go of the result on its worker: a worker lost later must not recompute it
            fut.release()
            if progress is not None:
                progress(len(rows), len(failed))
    finally:
        # an interrupted study leaves nothing queued on a shared cluster
        cluster.client.cancel([f for f, _ in pending.values()])
    ordered = [rows[p.key] for p in unique.values() if p.key in rows]
    return Outcome(ordered, len(todo) - len(failed), skipped, failed, time.perf_counter() - t0)
