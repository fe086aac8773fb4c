"""slither in the lint step: the triage gate (pure), the solc shim over npm solcjs, and the real slither
catching a planted bug through the shim (so the gate can fail)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from contracts import slither, solc_shim
from contracts.build import SETTINGS, SOLC_VERSION


def _element(kind: str, name: str, parent: dict[str, Any] | None = None) -> dict[str, Any]:
    fields = {"parent": parent} if parent else {}
    return {"type": kind, "name": name, "type_specific_fields": fields}


MARKET = _element("contract", "Market")
PAY = _element("function", "_pay", MARKET)
REPORT = {
    "success": True,
    "error": None,
    "results": {
        "detectors": [
            {"check": "reentrancy-eth", "impact": "High", "confidence": "Medium",
             "description": "Reentrancy in Market._pay\n\tmore", "elements": [PAY]},
            {"check": "uninitialized-local", "impact": "Medium", "confidence": "Medium",
             "description": "bad never initialized", "elements": [_element("variable", "bad", PAY)]},
            {"check": "timestamp", "impact": "Low", "confidence": "Medium", "description": "t",
             "elements": [_element("node", "block.timestamp > d", PAY)]},
        ]
    },
}  # fmt: skip


def test_slither_findings_located_by_contract_and_member() -> None:
    found = slither.parse_findings(REPORT)
    assert [(f.check, f.impact, f.location) for f in found] == [
        ("reentrancy-eth", "High", "Market._pay"),
        ("uninitialized-local", "Medium", "Market._pay.bad"),
        ("timestamp", "Low", "Market._pay"),  # a statement stands for its function
    ]
    assert found[0].summary == "Reentrancy in Market._pay"
    with pytest.raises(slither.SlitherError, match="boom"):
        slither.parse_findings({"success": False, "error": "boom"})


def test_slither_gate_fails_on_unexplained_high_or_medium_only() -> None:
    found = slither.parse_findings(REPORT)
    triage = slither.load_triage(
        {
            "findings": [
                {
                    "check": "uninitialized-local",
                    "location": "Market._pay.bad",
                    "reason": "zero is meant here",
                },
                {"check": "arbitrary-send-eth", "location": "Market.gone", "reason": "was fixed long ago"},
            ]
        }
    )
    v = slither.judge(found, triage)
    assert not v.ok
    assert [f.check for f in v.unexplained] == ["reentrancy-eth"]  # the low finding is counted, not gated
    assert [(f.check, e.reason) for f, e in v.explained] == [("uninitialized-local", "zero is meant here")]
    assert [e.location for e in v.stale] == ["Market.gone"]
    assert v.counts == {"High": 1, "Medium": 1, "Low": 1, "Informational": 0, "Optimization": 0}
    text = slither.format_verdict(v)
    assert "UNEXPLAINED High   reentrancy-eth at Market._pay" in text
    assert "high/medium: 2, explained 1, unexplained 1" in text
    triage.append(slither.TriageEntry("reentrancy-eth", "Market._pay", "checked: no external call"))
    assert slither.judge(found, triage).ok


def test_slither_triage_entries_need_a_written_reason() -> None:
    with pytest.raises(ValueError, match="written reason"):
        slither.load_triage({"findings": [{"check": "x", "location": "A.b", "reason": "ok"}]})
    repo = slither.load_triage(json.loads(slither.TRIAGE.read_text()))  # the shipped file is well formed
    assert repo and all(len(e.reason) > 40 for e in repo)


def test_solc_shim_answers_like_solc_with_build_settings(tmp_path: Path) -> None:
    out = io.StringIO()
    assert solc_shim.main(["--version"], stdout=out) == 0
    assert f"Version: {SOLC_VERSION}+" in out.getvalue()
    assert solc_shim.main(["--combined-json", "abi", "A.sol"]) == 2  # not crytic-compile's mode we use
    (tmp_path / "A.sol").write_text("contract A {}")
    asked = {
        "sources": {"A.sol": {"urls": ["A.sol"]}},
        "settings": {
            "optimizer": {"enabled": False},
            "viaIR": False,
            "outputSelection": {"*": {"": ["ast"]}},
        },
    }
    pinned = solc_shim.pinned_input(asked, tmp_path)
    assert pinned["sources"] == {"A.sol": {"content": "contract A {}"}}
    s = pinned["settings"]
    assert (s["viaIR"], s["optimizer"], s["evmVersion"]) == (
        True,
        SETTINGS["optimizer"],
        SETTINGS["evmVersion"],
    )
    assert s["outputSelection"] == {"*": {"": ["ast"]}}
    with pytest.raises(solc_shim.ShimError, match="outside"):
        solc_shim.pinned_input({"sources": {"x": {"urls": ["../../etc/passwd"]}}}, tmp_path)


def test_solc_shim_compiles_through_solcjs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """crytic-compile's request (sources by URL, AST and source maps wanted) gets them from the real solcjs."""
    (tmp_path / "A.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity 0.8.30;\ncontract A { uint x; }"
    )
    request = {
        "language": "Solidity",
        "sources": {"A.sol": {"urls": ["A.sol"]}},
        "settings": {"outputSelection": {"*": {"*": ["abi", "evm.bytecode"], "": ["ast"]}}},
    }
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert (
        solc_shim.main(
            ["--standard-json", "--allow-paths", str(tmp_path)], io.StringIO(json.dumps(request)), out
        )
        == 0
    )
    result = json.loads(out.getvalue())
    assert not [e for e in result.get("errors", []) if e["severity"] == "error"], result["errors"]
    assert result["sources"]["A.sol"]["ast"]["nodeType"] == "SourceUnit"
    assert result["contracts"]["A.sol"]["A"]["evm"]["bytecode"]["sourceMap"]
    bad = io.StringIO()
    assert (
        solc_shim.main(["--standard-json"], io.StringIO("{not json"), bad) == 0
    )  # solc's way: errors in JSON
    assert json.loads(bad.getvalue())["errors"][0]["severity"] == "error"


PLANTED = """// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;
contract Planted {
    address payable owner; // never set: every payout goes to address(0)
    function payout() external { owner.transfer(address(this).balance); }
    receive() external payable {}
}
"""


def test_slither_through_the_shim_catches_a_planted_bug(tmp_path: Path) -> None:
    """The real slither (.venv-slither, set up by ./tasks) on a contract with a known high finding."""
    (tmp_path / "Planted.sol").write_text(PLANTED)
    report = slither.run_slither(target=".", cwd=tmp_path, config=None, timeout_s=240)
    found = slither.parse_findings(report)
    v = slither.judge(found, [])
    assert ("uninitialized-state", "Planted.owner") in {(f.check, f.location) for f in v.unexplained}
    entry = slither.TriageEntry("uninitialized-state", "Planted.owner", "planted on purpose for this test")
    assert ("uninitialized-state", "Planted.owner") not in {
        (f.check, f.location) for f in slither.judge(found, [entry]).unexplained
    }
