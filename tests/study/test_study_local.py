"""`gridpact study` on its own local cluster: SIGTERM/Ctrl-C stop it within 2 s with every
process gone, a restarted study skips the points done, and the summary is written."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest
from study_helpers import ROOT, VENV_BIN, marks_by_key, spawn, stop, wait_for

from hil.study import grid
from hil.study.summary import spread
from tests.process_helpers import assert_no_survivors, descendants, stop_and_time

SLOW = """
name = "slow"
seeds = { start = 1, count = 8 }
households = [500]
days = [16]  # points of several seconds: a loaded machine must not finish the study before the signal
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_within_2s_and_restart_skips_done_points(tmp_path: Path, sig: signal.Signals) -> None:
    study = tmp_path / "slow.toml"
    study.write_text(SLOW)
    out, marks = tmp_path / "out", tmp_path / "marks"
    cmd = [str(VENV_BIN / "gridpact"), "study", str(study), "--out", str(out), "--marks", str(marks)]
    run = spawn(cmd, tmp_path / "first.log")
    try:
        wait_for(lambda: marks.exists() and len(list(marks.iterdir())) >= 1, 60, "a point done")
        family = descendants(run.pid)
        assert len(family) >= 2, "the local cluster's worker processes"
        stopped_s = stop_and_time(run, sig)
        rc = run.returncode
    finally:
        stop(run)
    assert rc == 130, (tmp_path / "first.log").read_text()[-2000:]
    assert stopped_s < 2.0, f"took {stopped_s:.2f} s to stop"
    assert_no_survivors([*family, run.pid], within_s=0.5)
    first = marks_by_key(marks)
    assert 1 <= len(first) < 8
    # again: the points done are skipped, the rest run, nothing twice
    again = spawn(cmd, tmp_path / "second.log")
    try:
        assert again.wait(120) == 0, (tmp_path / "second.log").read_text()[-2000:]
    finally:
        stop(again)
    counts = marks_by_key(marks)
    # nothing computed twice; a worker killed after storing a row but before its mark leaves that point
    # stored and unmarked (the stored count below is the completeness check)
    assert all(n == 1 for n in counts.values()) and len(counts) >= 7, counts
    log = (tmp_path / "second.log").read_text()
    stored = len(list((out / "points").glob("*.json")))
    assert stored == 8 and f"{len(first)} skipped" in log, log
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 8
    assert (out / "summary.html").read_text().count("<img") >= 1


def test_example_study_writes_its_summary(tmp_path: Path) -> None:
    out = tmp_path / "example"
    run = spawn([str(VENV_BIN / "gridpact"), "study", str(ROOT / "docs/studies/example.toml"), "--out",
                 str(out), "--quiet"], tmp_path / "log")  # fmt: skip
    try:
        assert run.wait(120) == 0, (tmp_path / "log").read_text()
    finally:
        stop(run)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 24
    page = (out / "summary.html").read_text()
    # 3 metrics x 3 swept parameters (strategy, market, households), each with spread over seeds
    assert page.count("<img") == 9 and "welfare_gain_vs_grid_only against households" in page


def test_point_keys_are_stable_and_distinct() -> None:
    study = grid.parse({"seeds": [1, 2], "households": [6, 12], "strategies": ["concession", "engine"]})
    keys = [p.key for p in study.points]
    assert len(set(keys)) == 8
    # golden: the key of a point names its result file across versions and machines
    assert grid.parse({"seeds": [1]}).points[0].key == GOLDEN_KEY
    assert study.swept == ("strategy", "households")


GOLDEN_KEY = "5e00da444d419dea5278"


@pytest.mark.parametrize(
    "doc",
    [
        {"seeds": []},
        {"seeds": ["a"]},
        {"households": [1]},
        {"days": [0]},
        {"strategies": ["nope"]},
        {"mode": "cloud"},
        {"metrics": ["x"]},
        {"markets": {"m": {"feed_in": 0.5}}},  # feed-in above retail: no market
        {"markets": {"m": {"colour": 1}}},
        {"surprise": 1},
        {"seeds": {"start": 0, "count": 200_000}, "households": [2, 3]},
    ],
)
def test_bad_study_files_are_clear_errors(doc: dict) -> None:
    with pytest.raises(ValueError):
        grid.parse(doc)


def test_spread_groups_over_seeds() -> None:
    rows = [{"households": 6, "m": 1.0}, {"households": 6, "m": 3.0}, {"households": 12, "m": 5.0}]
    assert spread(rows, "households", "m") == [(6, [1.0, 3.0]), (12, [5.0])]
