"""Build cache and the `gridpact contracts build|deploy` commands, on anvil and the in-process EVM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from contracts import build
from contracts.cli import main as cli_main
from contracts.deploy import AdmissionRules, contracts_at, deploy_all
from hil.services import DEV_PRIVATE_KEYS, AnvilNode, in_process_web3

REPO = Path(__file__).resolve().parents[2]


def test_contracts_build_is_cached_and_complete() -> None:
    folder = build.build()
    stamp = (folder / "build-hash.txt").read_text().strip()
    assert stamp == build.source_hash()
    market = build.load_artifact("Market")
    assert market["bytecode"].startswith("0x") and len(market["bytecode"]) > 1000
    # EIP-170: the runtime must fit 24,576 bytes or no chain accepts it
    assert (len(market["deployedBytecode"]) - 2) // 2 <= 24_576
    names = {item.get("name") for item in market["abi"]}
    for fn in ("submitAgreements", "settleByMeters", "setMeter", "reclaim", "loanTransfer", "anchorReadings"):
        assert fn in names
    loans = build.load_artifact("MarketLoans")  # beside the market, same loan functions and arguments
    assert (len(loans["deployedBytecode"]) - 2) // 2 <= 24_576
    loan_fns = {item.get("name") for item in loans["abi"]}
    assert {
        "submitLoan",
        "cancelLoan",
        "reportReturn",
        "openLoanDispute",
        "resolveLoan",
        "expireLoan",
    } <= loan_fns
    mtime = (folder / "Market.json").stat().st_mtime_ns
    build.build()  # cache hit: nothing rewritten
    assert (folder / "Market.json").stat().st_mtime_ns == mtime
    with pytest.raises(KeyError, match="no contract 'Nope'"):
        build.load_artifact("Nope")


def test_contracts_compile_error_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "src"
    bad.mkdir()
    (bad / "Broken.sol").write_text("pragma solidity 0.8.30; contract Broken { function f() { } }")
    monkeypatch.setattr(build, "SOURCE_DIRS", (bad,))
    monkeypatch.setattr(build, "REPO_ROOT", tmp_path)
    with pytest.raises(build.CompileError, match=r"Broken\.sol"):
        build.compile_all()


def test_contracts_cli_build_lists_artifacts(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["build"]) == 0
    out = capsys.readouterr().out
    assert "Market" in out and "UtilityToken" in out


def test_contracts_cli_deploy_inprocess_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli_main(
            [
                "deploy",
                "--rpc",
                "inprocess",
                "--dev-key",
                "0",
                "--json",
                "--utility",
                "electricity",
                "--utility",
                "heat",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert set(result["markets"]) == {"electricity", "heat"}
    assert result["deployer"] == Account.from_key(DEV_PRIVATE_KEYS[0]).address
    assert cli_main(["deploy", "--rpc", "inprocess", "--dev-key", "99"]) == 1
    assert "--dev-key" in capsys.readouterr().err


def test_contracts_cli_deploy_anvil_with_keystore(anvil: AnvilNode, tmp_path: Path) -> None:
    """The installed `gridpact` command against a real node, the key from an encrypted keystore."""
    url = anvil.info.url
    assert url is not None
    keystore = tmp_path / "key.json"
    keystore.write_text(
        json.dumps(Account.encrypt(bytes.fromhex(DEV_PRIVATE_KEYS[3][2:]), "s3cret", iterations=2))
    )
    env = dict(os.environ, GRIDPACT_KEYSTORE_PASSWORD="s3cret")
    proc = subprocess.run(
        [sys.executable, "-m", "gridpact.cli", "contracts", "deploy", "--rpc", url, "--keystore", str(keystore), "--json"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(url))
    token, market = contracts_at(w3, result)
    assert market.functions.utility().call() == "electricity"
    assert market.functions.token().call() == token.address
    community = Account.from_key(DEV_PRIVATE_KEYS[3]).address
    assert market.functions.hasRole(market.functions.COMMUNITY_ROLE().call(), community).call()
    assert token.functions.hasRole(token.functions.MINTER_ROLE().call(), community).call()
    bad = subprocess.run(
        [sys.executable, "-m", "gridpact.cli", "contracts", "deploy", "--rpc", "http://127.0.0.1:9", "--dev-key", "0"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and "no JSON-RPC node" in bad.stderr


def test_contracts_deploy_all_roles_and_validation() -> None:
    w3: Any = in_process_web3()
    community = Account.from_key(DEV_PRIVATE_KEYS[5]).address
    result = deploy_all(w3, DEV_PRIVATE_KEYS[0], ("electricity", "gas"), community=community)
    token, market = contracts_at(w3, result, "gas")
    deployer = result["deployer"]
    assert market.functions.hasRole(market.functions.COMMUNITY_ROLE().call(), community).call()
    assert not market.functions.hasRole(market.functions.COMMUNITY_ROLE().call(), deployer).call()
    assert not token.functions.hasRole(token.functions.MINTER_ROLE().call(), deployer).call()
    # a deployer that is not the community cannot grant the Admission contract its role: the community does
    admission = result["admission"]["gas"]
    assert not market.functions.hasRole(market.functions.COMMUNITY_ROLE().call(), admission).call()
    with pytest.raises(ValueError, match="quorum_bps"):
        AdmissionRules(quorum_bps=0)
    with pytest.raises(ValueError, match="duplicate"):
        deploy_all(w3, DEV_PRIVATE_KEYS[0], ("heat", "heat"))
    with pytest.raises(ValueError, match="at least one"):
        deploy_all(w3, DEV_PRIVATE_KEYS[0], ())
