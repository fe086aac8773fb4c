"""`gridpact simulate --nodes firmware`: the real firmware on virtual boards in virtual time feeds the
gateways; the run's own checks (no lost reading, chain == ledger, conservation) must hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil.community.nodes import make_nodes


def test_simulate_with_firmware_nodes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gridpact.cli", "simulate", "--nodes", "firmware", "--agents", "engine", "--hours", "3",
         "--households", "3", "--quiet", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["layers"]["boards"].startswith("ran: the real firmware")
    checks = summary["checks"]
    assert not [c for c in checks if c.startswith("PROBLEM")], checks
    assert "readings published 543, lost 0, replayed after the broker outage 0" in checks  # 3 x 181
    assert "delivery windows not fully covered by verified readings: 0" in checks
    assert "chain balances equal the simulation's ledger: True" in checks
    assert summary["community"]["token_conservation"] is True


def test_unknown_node_kind_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="standin, firmware"):
        make_nodes("pty", [], [], [], "127.0.0.1", 1, tmp_path, 0.0, 60)


def test_cli_rejects_an_unknown_node_kind(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gridpact.cli", "simulate", "--nodes", "pty", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
