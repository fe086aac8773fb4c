"""The community dashboard never closes its index's database under a running step (SQLite closed
while another thread runs a statement on the connection can crash the process on SIGTERM)."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from gateway.dashboard.community_server import IndexWork
from gateway.dashboard.index import ChainIndex


class SlowIndex:
    """Records when its step runs and when it is closed."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.stepping = threading.Event()

    def step(self) -> Any:
        self.log.append("step-start")
        self.stepping.set()
        time.sleep(0.3)
        self.log.append("step-end")
        return None

    def close(self) -> None:
        self.log.append("close")


def _stepping() -> tuple[SlowIndex, IndexWork, threading.Thread]:
    """An index whose step is running in another thread, as the dashboard's executor runs it."""
    index = SlowIndex()
    work = IndexWork(cast(ChainIndex, index))
    t = threading.Thread(target=work.step)
    t.start()
    assert index.stepping.wait(5)
    return index, work, t


def test_close_waits_for_the_running_step() -> None:
    index, work, t = _stepping()
    work.close(wait_s=5.0)
    t.join(5)
    assert index.log == ["step-start", "step-end", "close"]


def test_close_gives_up_on_a_step_that_outlasts_the_wait() -> None:
    index, work, t = _stepping()
    work.close(wait_s=0.01)  # the process is ending: leave the database to it rather than crash
    t.join(5)
    assert "close" not in index.log and index.log == ["step-start", "step-end"]
