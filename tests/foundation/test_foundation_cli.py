"""The `gridpact` dispatcher stays thin and every subcommand lives in its component."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from benches import HELP as BENCHES
from gridpact.cli import SUBCOMMANDS, main, missing_extra


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


def _without(module: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`gridpact ARGV` in a fresh interpreter where `module` cannot be imported (as on a Pi's install)."""
    code = f"import sys; sys.modules[{module!r}] = None\nfrom gridpact.cli import main\nraise SystemExit(main({argv!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_command_whose_extra_is_missing_names_the_extra_in_one_line(tmp_path: object) -> None:
    """`pip install .` (the Pi) leaves the simulator's extra out: `gridpact simulate` says which, exit 2."""
    out = _without("matplotlib", ["simulate", "--engine-only", "--hours", "1", "--households", "2",
                                  "--out", str(tmp_path), "--quiet"])  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "gridpact simulate: needs matplotlib, which comes with the 'sim' extra: pip install 'gridpact[sim]'"
    ]


def test_a_missing_module_of_no_extra_is_a_bug_and_is_raised() -> None:
    """Only the extras' modules get the hint: anything else missing is a real error, with its traceback."""
    out = _without("gateway.dashboard.community_server", ["dashboard", "--help"])
    assert out.returncode == 1
    assert "ModuleNotFoundError" in out.stderr


# the answers of the hand-kept table that pyproject.toml's extras replaced, and a few that must stay None
EXTRAS_OF_MODULES = {
    **dict.fromkeys(
        ("matplotlib", "matplotlib.pyplot", "amqtt", "pymodbus", "serial", "eth_tester", "eth"), "sim"
    ),
    **dict.fromkeys(
        (
            "starlette",
            "uvicorn",
            "jinja2",
            "itsdangerous",
            "multipart",
            "pwdlib",
            "argon2",
            "psycopg",
            "authlib",
            "joserfc",
            "httpx",
        ),
        "dashboard",
    ),
    **dict.fromkeys(("dask", "distributed"), "study"),
    "torch": "gpu",  # not installed here: found by its distribution's name
    **dict.fromkeys(("pytest", "hypothesis", "playwright"), "dev"),
    **dict.fromkeys(("numpy", "web3", "gateway", "no_such_module_anywhere", ""), None),
}


@pytest.mark.parametrize(("module", "extra"), EXTRAS_OF_MODULES.items())
def test_the_extra_of_a_module_comes_from_the_installed_metadata(module: str, extra: str | None) -> None:
    """pyproject.toml is the one list: a base dependency, gridpact's own code or an unknown module
    names no extra; httpx (dashboard and dev) names the smaller extra."""
    assert missing_extra(ModuleNotFoundError(name=module)) == extra


@pytest.mark.parametrize(
    ("module", "extra"),
    [("serial", "sim"), ("eth", "sim"), ("multipart", "dashboard"), ("argon2", "dashboard")],
)
def test_a_module_named_unlike_its_distribution_gets_its_hint_where_it_is_absent(
    module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a Pi without the extra nothing installed says `serial` is pyserial's: DIST_OF_MODULE does."""
    from importlib import metadata

    monkeypatch.setattr(metadata, "packages_distributions", dict)
    assert missing_extra(ModuleNotFoundError(name=module)) == extra
