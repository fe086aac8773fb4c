"""`gridpact hil`: the pytest command it builds and the rig check, without running the suite twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hil.cli import build_parser, pytest_command
from hil.services import REPO_ROOT

EXAMPLE = REPO_ROOT / "hil" / "rig.example.toml"


def test_command_for_a_bench_takes_the_board_from_the_rig_file() -> None:
    cmd = pytest_command(build_parser().parse_args(["--rig", str(EXAMPLE)]), ["-x"])
    assert cmd[cmd.index("--board") + 1] == "esp32" and cmd[cmd.index("--rig") + 1] == str(EXAMPLE)
    assert cmd[cmd.index("-k") + 1] == "not soak" and cmd[-1] == "-x"
    soak = pytest_command(build_parser().parse_args(["--rig", str(EXAMPLE), "--soak"]), [])
    assert "-k" not in soak


def test_command_without_a_rig_runs_the_virtual_backends() -> None:
    cmd = pytest_command(build_parser().parse_args([]), [])
    assert "--board" not in cmd and "--rig" not in cmd


def test_check_rig_prints_the_bench_and_rejects_bad_files(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "gridpact.cli", "hil", "--check-rig", str(EXAMPLE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0 and "board = 'esp32'" in ok.stdout and "hmac" not in ok.stdout
    bad = tmp_path / "rig.toml"
    bad.write_text("[meter]\nunit_id = 300\n")
    proc = subprocess.run(
        [sys.executable, "-m", "gridpact.cli", "hil", "--check-rig", str(bad)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "meter.unit_id" in proc.stderr and "Traceback" not in proc.stderr


def test_a_real_board_without_a_rig_file_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO_ROOT / "hil" / "tests"), "--board", "esp32", "--co", "-q"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 4 and "needs --rig FILE" in proc.stderr + proc.stdout
