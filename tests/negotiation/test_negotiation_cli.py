"""`gridpact negotiate` and `gridpact bench negotiation` dispatch: help, errors, lazy sub-packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "gateway" / "negotiation" / "scenarios" / "case_study.json"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridpact.cli", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_help_and_unknown_subcommand() -> None:
    ok = run("negotiate", "--help")
    assert ok.returncode == 0 and "--scenario FILE" in ok.stdout and "cooperative" in ok.stdout
    bad = run("negotiate", "haggle")
    assert bad.returncode == 2 and "unknown subcommand" in bad.stderr


def test_scenario_does_not_import_the_cooperative_engine() -> None:
    code = (
        "import sys\n"
        "from gateway.negotiation.cli import main\n"
        f"assert main(['--scenario', {str(CASE)!r}]) == 0\n"
        "from benches.negotiation import main as bench\n"
        "assert not any(m.startswith('gateway.negotiation.cooperative') for m in sys.modules), 'eager import'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "price: agreed at step 11 on 35.50" in out.stdout


def test_cooperative_subcommand_is_dispatched() -> None:
    out = run("negotiate", "cooperative", "--help")
    assert out.returncode == 0 and "gridpact negotiate cooperative" in out.stdout


def test_market_and_train_argument_errors() -> None:
    assert run("negotiate", "market", "--households", "1").returncode == 2
    assert run("negotiate", "train", "--episodes", "0", "--out", "/dev/null").returncode == 2
    assert run("bench", "negotiation", "--bogus").returncode == 2
