"""The full-stack community: meters, nodes, MQTT, gateway ingest and the Market contract, with faults.

One run of 16 simulated hours with --faults (meter outages, a broker restart, an under-delivering
seller) on the real services; the checks are the report's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hil.community.endpoints import parse_broker_url, summer_start_after


def simulate(tmp_path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`gridpact simulate ARGS --out TMP_PATH` as its own process, the way a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "gridpact.cli", "simulate", *args, "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def simulated(tmp_path: Path, *args: str, timeout: float) -> dict[str, Any]:
    """The summary.json of a `simulate` run that must succeed (its output is the failure message)."""
    proc = simulate(tmp_path, *args, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return json.loads((tmp_path / "summary.json").read_text())


def assert_gateways_built_by_the_service(checks: str, households: int) -> None:
    """Every household's gateway came from gateway.service.build_runtime (its `gateway_info` gauge),
    and its own ingest counter accepted exactly the readings the nodes published."""
    built = re.search(
        r"gateways built by gateway\.service\.build_runtime: (\d+) of (\d+); .*?: (\d+)", checks
    )
    published = re.search(r"readings published (\d+)", checks)
    assert built is not None and published is not None, checks
    assert int(built.group(1)) == int(built.group(2)) == households, checks
    assert int(built.group(3)) == int(published.group(1)) > 0, checks


def test_summer_start_is_after_the_chain_head() -> None:
    assert summer_start_after(1_795_000_000) == 1_811_808_000  # 2026-11 -> 2027-06-01 00:00 UTC
    assert summer_start_after(1_780_000_000) == 1_780_272_000  # 2026-05-28 -> 2026-06-01


def test_broker_url_is_validated() -> None:
    assert parse_broker_url("mqtt://127.0.0.1:1884") == ("127.0.0.1", 1884)
    with pytest.raises(ValueError, match="mqtt://"):
        parse_broker_url("http://x")


def test_full_stack_with_faults(tmp_path: Path) -> None:
    summary = simulated(tmp_path, "--hours", "16", "--faults", "--nodes", "standin", timeout=240)
    layers = summary["layers"]
    assert layers["meters"].startswith("ran") and layers["mqtt"].startswith("ran")
    assert layers["gateways"].startswith("ran") and layers["chain"].startswith("ran")
    checks = "\n".join(summary["checks"])
    assert "PROBLEM" not in checks, checks
    assert "lost 0" in checks and "chain balances equal the simulation's ledger: True" in checks
    assert "each short one refunded: True" in checks
    short = re.search(r"under-delivering seller \S+ .*?(\d+) short", checks)
    assert short is not None and int(short.group(1)) > 0, "the tripped seller under-delivered nothing"
    events = {e["event"] for e in summary["events"]}
    assert {"meter outage", "broker restart", "under-delivering seller"} <= events
    c = summary["community"]
    assert (
        c["token_conservation"] and c["trades"] > 0 and c["refunds"] >= 1 and c["settlements"] == c["trades"]
    )
    assert "replayed after the broker outage 0" not in checks  # buffered readings came later, flagged
    assert_gateways_built_by_the_service(checks, 6)  # the default --households
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()


def test_full_stack_on_anvil_and_mosquitto(fresh_anvil: Any, mosquitto: Any, tmp_path: Path) -> None:
    """`--chain URL --broker URL`: an anvil of this test's own (the chain's clock is moved) and Mosquitto."""
    summary = simulated(
        tmp_path, "--hours", "12", "--chain", fresh_anvil.info.url, "--broker", mosquitto.info.url,
        "--strategy", "concession", "--agents", "engine", "--nodes", "standin", "--quiet", timeout=180,
    )  # fmt: skip
    assert summary["layers"]["chain"].startswith(f"ran: contracts.deploy on {fresh_anvil.info.url}")
    assert summary["layers"]["mqtt"] == f"ran: {mosquitto.info.url}"
    assert "chain balances equal the simulation's ledger: True" in summary["checks"]
    assert summary["community"]["trades"] > 0 and summary["config"]["strategy"] == "concession"


def test_unreachable_chain_is_a_clear_error(tmp_path: Path) -> None:
    from hil.services import free_port

    proc = simulate(tmp_path, "--hours", "2", "--chain", f"http://127.0.0.1:{free_port()}", timeout=60)
    assert (
        proc.returncode == 2 and "no Ethereum node answers" in proc.stderr and "Traceback" not in proc.stderr
    )


def test_default_run_is_the_whole_real_stack(tmp_path: Path) -> None:
    """With no options: the real firmware on every board and every household's own gateway trading."""
    summary = simulated(tmp_path, "--hours", "2", "--households", "3", "--quiet", timeout=240)
    layers = summary["layers"]
    assert layers["boards"].startswith("ran: the real firmware"), layers
    assert "gateway.trading.run_trading" in layers["gateways"], layers
    assert not [c for c in summary["checks"] if c.startswith("PROBLEM")], summary["checks"]
    assert summary["community"]["token_conservation"] is True
    assert (tmp_path / "report.html").exists()
