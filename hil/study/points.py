"""Running one point of a study: the simulator's public entries in, one table row out.

This is what a Dask worker executes. It is a plain function of the point (deterministic for a
seed), so a point run twice, on any worker, gives the same row.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from hil.study.grid import METRICS, Point


def engine_config(point: Point) -> Any:
    """The community engine's config for a point (the same EngineConfig `gridpact simulate` builds)."""
    from hil.community.engine import EngineConfig

    return EngineConfig(
        households=point.households,
        hours=point.hours,
        seed=point.seed,
        tariff=point.market.tariff,
        rounds=point.market.rounds,
        start_tokens=point.market.start_tokens,
        strategy_name=point.strategy,
    )


def simulate(point: Point) -> tuple[dict[str, Any], float]:
    """(community summary, seconds inside the simulator) for a point."""
    from hil.community.strategies import pick

    cfg = engine_config(point)
    _, strategy = pick(point.strategy)
    t0 = time.perf_counter()
    if point.mode == "engine":
        from hil.community.engine import run_engine
        from hil.community.summary import summarize

        summary = summarize(run_engine(cfg, strategy))
    else:
        from hil.community.fullstack import FullStackOptions, run_fullstack

        _, summary = run_fullstack(cfg, FullStackOptions(nodes="standin"), strategy)
    return summary["community"], time.perf_counter() - t0


def run_point(point: Point, marks: str | None = None, store: str | None = None) -> dict[str, Any]:
    """One row: the point's values, its metrics, and how long the simulator and the point took.

    `store` (the study's points folder, when workers share its filesystem): a row already there
    is returned without computing, and a computed row is written there before it is returned, so
    a point whose worker died after computing is not computed again.
    `marks` (a folder on a shared filesystem, for audits and tests) gets one file per
    computation of a point, so a test can count that every point ran exactly once.
    """
    path = Path(store, f"{point.key}.json") if store is not None else None
    if path is not None and (row := load_row(path)) is not None:
        return row
    started = time.perf_counter()
    community, sim_s = simulate(point)
    row = point.label() | {m: community[m] for m in METRICS}
    row["token_conservation"] = bool(community["token_conservation"])
    row["sim_s"] = round(sim_s, 4)
    row["point_s"] = round(time.perf_counter() - started, 4)
    if path is not None:  # the row before the mark: a worker killed between them never counts a point twice
        store_row(path, row)
    if marks is not None:
        Path(marks, f"{point.key}.{os.getpid()}.{uuid.uuid4().hex[:8]}").write_text("done\n")
    return row


def store_row(path: Path, row: dict[str, Any]) -> None:
    """Write a row atomically (a reader never sees half of it)."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(row, sort_keys=True) + "\n")
    tmp.replace(path)


def load_row(path: Path) -> dict[str, Any] | None:
    """A stored row, or None when the file is missing or torn (then the point runs again)."""
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) else None
