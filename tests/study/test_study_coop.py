"""`gridpact study cooperative`: the cooperative engine's evaluations on Dask give the one-process result.

Case 3 at 40 agents over three midday hours (agreements happen): the result's fingerprint (every
ξ and every session, bit for bit) on a local cluster and on a real scheduler with two worker
processes equals the single-process run's; SIGTERM stops it within 2 s with its workers gone.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from study_helpers import VENV_BIN, spawn, stop, wait_for

from gateway.negotiation.cooperative.cases import START, case3
from gateway.negotiation.cooperative.simulation import Settings, run
from hil.services import free_port, wait_for_port
from tests.process_helpers import assert_no_survivors, descendants, stop_and_time

MIDDAY = START + 10 * 3600
ARGS = ["--case", "3", "--agents", "40", "--days", "0.125", "--start", str(MIDDAY), "--json"]


@pytest.fixture(scope="module")
def one_process() -> dict[str, object]:
    """The same case in this process, no pool: the reference."""
    settings = Settings(days=0.125, start=MIDDAY, backend="numpy", workers=1)
    result = run(case3(40, 0), settings)
    assert sum(s.agreed for s in result.sessions) > 0, "pick hours where agents agree"
    return {"fingerprint": result.fingerprint(), "xi": {k: v.tolist() for k, v in result.xi.items()}}


def cooperative(tmp_path: Path, *extra: str) -> dict[str, object]:
    log = tmp_path / "coop.log"
    proc = spawn([str(VENV_BIN / "gridpact"), "study", "cooperative", *ARGS, *extra], log)
    try:
        rc = proc.wait(240)
    finally:
        stop(proc)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    return json.loads(text[text.index("{") :])


def test_local_cluster_equals_one_process(tmp_path: Path, one_process: dict[str, object]) -> None:
    out = cooperative(tmp_path, "--workers", "2")
    assert out["fingerprint"] == one_process["fingerprint"]
    assert out["backend"] == "numpy" and out["sessions"] == 40 // 2 * 12


def test_real_cluster_equals_one_process(tmp_path: Path, one_process: dict[str, object]) -> None:
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
        out = cooperative(tmp_path, "--cluster", address)
    finally:
        for p in reversed(procs):
            stop(p)
    assert_no_survivors([p.pid for p in procs], within_s=5.0)
    assert out["fingerprint"] == one_process["fingerprint"]
    assert out["xi"] == {k: [round(v, 6) for v in xs] for k, xs in one_process["xi"].items()}  # type: ignore[union-attr]


def test_sigterm_stops_within_2s_with_its_workers(tmp_path: Path) -> None:
    log = tmp_path / "coop.log"
    cmd = [
        str(VENV_BIN / "gridpact"),
        "study",
        "cooperative",
        "--case",
        "3",
        "--agents",
        "200",
        "--days",
        "1",
    ]
    proc = spawn(cmd, log)
    try:
        wait_for(lambda: "agents x 1 days on" in log.read_text(), 120, "the cluster up")
        time.sleep(1.0)  # into the evaluations
        family = descendants(proc.pid)
        assert len(family) >= 2, "the local cluster's worker processes"
        stopped_s = stop_and_time(proc, signal.SIGTERM)
        rc = proc.returncode
    finally:
        stop(proc)
    assert rc == 130, log.read_text()[-2000:]
    assert stopped_s < 2.0, f"took {stopped_s:.2f} s to stop"
    assert_no_survivors([*family, proc.pid], within_s=0.5)


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    from hil.study import cli

    assert cli.main(["cooperative", "--case", "3", "--agents", "1"]) == 2
    assert cli.main(["cooperative", "--case", "3", "--backend", "torch"]) == 2


def test_bench_prints_both_runs_and_the_same_result(capsys: pytest.CaptureFixture[str]) -> None:
    from benches import study

    rc = study.main(["--coop-agents", "12", "--coop-days", "0.03125", "--only-coop", "--workers", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "one process:" in out and "2 Dask workers:" in out and "speed-up" in out
    assert "same result bit for bit: yes" in out and "extrapolated to 7 days (672 periods" in out
