"""`gridpact simulate --engine-only` end to end through the installed command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

GRIDPACT = [sys.executable, "-m", "gridpact.cli"]


def test_engine_only_writes_the_report(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*GRIDPACT, "simulate", "--engine-only", "--households", "9", "--hours", "30", "--seed", "2",
         "--out", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "hour 30/30" in proc.stderr  # the progress display
    assert "token conservation OK" in proc.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["community"]["households"] == 9 and summary["community"]["hours"] == 30
    assert summary["layers"]["engine"] == "ran: strategy engine" and summary["layers"]["chain"] == "not used"
    assert len(summary["households"]) == 9
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert not re.search(r'src="(?!data:)', html)  # self-contained: nothing fetched from elsewhere
    for png in ("energy", "costs", "tokens", "prices"):
        assert (tmp_path / f"{png}.png").read_bytes().startswith(b"\x89PNG")


def test_bad_arguments_give_a_clear_error(tmp_path: Path) -> None:
    for args in (["--households", "1"], ["--hours", "0"], ["--speed", "-1"]):
        proc = subprocess.run(
            [*GRIDPACT, "simulate", "--engine-only", "--out", str(tmp_path), *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2 and "gridpact simulate:" in proc.stderr and "Traceback" not in proc.stderr
