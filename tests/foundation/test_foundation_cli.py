"""The `gridpact` dispatcher stays thin and every subcommand lives in its component."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from benches import HELP as BENCHES
from gridpact.cli import SUBCOMMANDS, main


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("simulate", "meter-sim", "gateway", "firmware", "contracts", "negotiate", "hil", "bench"):
        assert name in out


def test_unknown_command_fails_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_each_subcommand_lives_in_its_component(name: str) -> None:
    module = importlib.import_module(SUBCOMMANDS[name][0])
    assert callable(module.main)
    top = SUBCOMMANDS[name][0].split(".")[0]
    assert top in {"gridpact", "gateway", "meter_sim", "firmware", "contracts", "hil", "benches"}


@pytest.mark.parametrize("name", sorted(BENCHES))
def test_each_bench_answers_help(name: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gridpact.cli", "bench", name, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"gridpact bench {name}" in out.stdout


def test_console_script_is_installed() -> None:
    out = subprocess.run([sys.executable, "-m", "gridpact.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip()


def test_gateway_help_lists_its_trading_subcommands_and_refuses_unknown_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One argparse tree: `keystore` and `trade` (parsed by the trading CLI) are listed like the rest."""
    from gateway.cli import main as gateway_main

    with pytest.raises(SystemExit) as done:
        gateway_main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for name in ("keystore", "trade", "run", "check-config", "install-service", "status", "keygen"):
        assert name in out
    with pytest.raises(SystemExit) as done:
        gateway_main(["frobnicate"])
    assert done.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err
