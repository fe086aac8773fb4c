"""`gridpact negotiate cooperative` and `gridpact bench negotiation --case`: output and bad input."""

from __future__ import annotations

import json

import pytest

from gateway.negotiation.cooperative import bench, cli


def test_coop_cli_case1_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["--case", "1", "--days", "0.1", "--json", "--workers", "1", "--backend", "numpy"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["case"] == 1 and out["agents"] == ["A", "B"]
    assert out["sessions"] == 10 and 0 <= out["success_rate"] <= 1
    assert set(out["xi"]) == {"s0", "s1", "s2"} and out["backend"] == "numpy"


def test_coop_cli_paper_acceptance_rule_agrees_at_least_as_often(capsys: pytest.CaptureFixture[str]) -> None:
    """Dropping the no-exchange floor (the paper's Algorithm 5) can only widen the zone of agreement."""
    base = ["--case", "1", "--days", "0.25", "--json", "--workers", "1", "--backend", "numpy", "--risk", "0"]
    assert cli.main(base) == 0
    floor = json.loads(capsys.readouterr().out)
    assert cli.main([*base, "--no-reservation-floor", "--contexts", "1"]) == 0
    paper = json.loads(capsys.readouterr().out)
    assert paper["sessions"] == floor["sessions"] == 24
    assert paper["agreements"] > floor["agreements"]


def test_coop_cli_text_with_a_csv_household(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    csv = Path(str(tmp_path)) / "house.csv"
    rows = ["timestamp,load_w,pv_w"] + [
        f"{1775433600 + 900 * i},{400 + 50 * (i % 7)},{0}" for i in range(200)
    ]
    csv.write_text("\n".join(rows) + "\n")
    rc = cli.main(["--case", "1", "--days", "0.1", "--workers", "1", "--profile", f"csv:{csv}"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "Case 1: 2 agents, 10 sessions" in text and "utilitarian welfare" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--case", "4"],
        ["--case", "1", "--days", "0"],
        ["--case", "1", "--epsilon", "2"],
        ["--case", "1", "--risk", "-1"],
        ["--case", "1", "--contexts", "0"],
        ["--case", "1", "--backend", "gpu"],
        ["--case", "1", "--days", "0.1", "--profile", "household:bogus=1"],
        ["--case", "1", "--profile", "a", "--profile", "b", "--profile", "c"],
    ],
)
def test_coop_cli_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse
        rc = int(exc.code or 0)
    assert rc == 2
    assert capsys.readouterr().err


def test_coop_bench_prints_rates(capsys: pytest.CaptureFixture[str]) -> None:
    rc = bench.main(["--case", "2", "--days", "0.05", "--workers", "1", "--backend", "numpy"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "evaluations/s" in out and "battery steps/s" in out and "wall time" in out
