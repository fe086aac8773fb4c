"""`gridpact study` on a real multi-process Dask cluster: a scheduler and two workers on loopback.

One worker is SIGKILLed mid-study; the study still completes, every point computed exactly once
(counted by the marks each computation leaves), and every process the test started is gone.
"""

from __future__ import annotations

import csv
import signal
import subprocess
from pathlib import Path

from study_helpers import VENV_BIN, marks_by_key, spawn, stop, wait_for

from hil.services import free_port, wait_for_port
from tests.process_helpers import assert_no_survivors

STUDY = """
name = "cluster"
seeds = { start = 1, count = 6 }
households = [300, 400]
days = [3]
"""


def test_worker_killed_mid_study_every_point_done_once(tmp_path: Path) -> None:
    study = tmp_path / "cluster.toml"
    study.write_text(STUDY)
    out, marks = tmp_path / "out", tmp_path / "marks"
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(VENV_BIN / "dask")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(spawn([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                            "--no-dashboard"], tmp_path / "scheduler.log"))  # fmt: skip
        wait_for_port("127.0.0.1", port, 30, procs[0])
        for n in range(2):
            procs.append(spawn([dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                "--host", "127.0.0.1", "--name", f"w{n}"], tmp_path / f"worker{n}.log"))  # fmt: skip
        run = spawn([str(VENV_BIN / "gridpact"), "study", str(study), "--cluster", address, "--out", str(out),
                     "--marks", str(marks), "--shared-fs"], tmp_path / "study.log")  # fmt: skip
        procs.append(run)
        # mid-study: some points done, most not
        wait_for(lambda: marks.exists() and len(list(marks.iterdir())) >= 2, 60, "two points done")
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait(5)
        done_at_kill = len(list(marks.iterdir()))
        assert done_at_kill < 12, "the study ended before the kill: make points longer"
        assert run.wait(60) == 0, (tmp_path / "study.log").read_text()[-3000:]
        counts = marks_by_key(marks)
        rows = list(csv.DictReader((out / "results.csv").open()))
        assert len(rows) == 12 and {r["key"] for r in rows} == set(counts)
        assert all(n == 1 for n in counts.values()), counts  # every point computed exactly once
        assert all(r["token_conservation"] == "True" for r in rows)
        assert "12/12 points done" in (tmp_path / "study.log").read_text()
    finally:
        for p in reversed(procs):
            stop(p)
    assert_no_survivors([p.pid for p in procs], within_s=5.0)
