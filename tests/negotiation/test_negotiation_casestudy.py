"""The paper's case study (Kröhling et al., section 5, Table 1, Fig. 6) as golden vectors, library and CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.negotiation.scenario import ScenarioError, run_scenario

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "gateway" / "negotiation" / "scenarios" / "case_study.json"
ISSUE_EXAMPLE = {
    "seller": {"price": {"ip": 80, "rp": 20, "dl": 20, "cr": 2.0}},
    "buyer": {"price": {"ip": 20, "rp": 80, "dl": 20, "cr": 0.5}},
}
GRIDPACT = [sys.executable, "-m", "gridpact.cli"]


def test_price_agreed_at_step_11_near_35() -> None:
    price = run_scenario(ISSUE_EXAMPLE)["issues"]["price"]
    assert price["agreed"] is True
    assert price["step"] == 11
    assert price["value"] == pytest.approx(80 - 60 * math.sqrt(11 / 20), abs=1e-12)  # 35.5028...
    assert price["accepted_by"] == "buyer"
    # The trace: both offer every round 0..10, the seller offers at 11 and the buyer accepts.
    trace = price["trace"]
    assert len(trace) == 24
    assert [e["value"] for e in trace if e["by"] == "buyer" and e["action"] == "offer"][-1] == pytest.approx(
        35.0
    )
    assert trace[-1] == {"step": 11, "by": "buyer", "action": "accept", "value": price["value"]}


def test_quantity_agreed_at_step_12() -> None:
    report = run_scenario(json.loads(CASE.read_text()))
    qty = report["issues"]["quantity"]
    assert (qty["agreed"], qty["step"], qty["value"]) == (True, 12, 100.0)
    assert {e["value"] for e in qty["trace"] if e["by"] == "seller"} == {100.0}  # Prosumer 0 does not concede
    assert report["issues"]["price"]["step"] == 11


def test_current_rule_agrees_later() -> None:
    price = run_scenario(ISSUE_EXAMPLE, rule="current")["issues"]["price"]
    assert (price["step"], price["accepted_by"]) == (12, "seller")
    assert price["value"] == pytest.approx(38.15)


def test_buyer_first_changes_the_trace() -> None:
    price = run_scenario({**ISSUE_EXAMPLE, "first": "buyer"})["issues"]["price"]
    assert price["agreed"] and price["trace"][0] == {
        "step": 0,
        "by": "buyer",
        "action": "offer",
        "value": 20.0,
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"seller": {"price": {"ip": 80, "rp": 20, "dl": 20, "cr": 2.0}}},
        {**ISSUE_EXAMPLE, "buyer": {"quantity": {"ip": 1, "rp": 2, "dl": 3, "cr": 1}}},
        {**ISSUE_EXAMPLE, "buyer": {"price": {"ip": 20, "rp": 80, "dl": 20}}},
        {**ISSUE_EXAMPLE, "rule": "sometimes"},
        {**ISSUE_EXAMPLE, "seller": {"price": {"ip": 5, "rp": 5, "dl": 20, "cr": 1.0}}},
    ],
)
def test_bad_scenarios_are_clear_errors(bad: dict[str, object]) -> None:
    with pytest.raises(ScenarioError):
        run_scenario(bad)


def test_cli_json_reproduces_case_study() -> None:
    out = subprocess.run(
        [*GRIDPACT, "negotiate", "--scenario", str(CASE), "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    report = json.loads(out.stdout)
    assert report["issues"]["price"]["step"] == 11
    assert abs(report["issues"]["price"]["value"] - 35.0) < 1.0  # "about 35 tokens per m3"
    assert report["issues"]["quantity"]["step"] == 12


def test_cli_bad_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"seller": {}}')
    out = subprocess.run([*GRIDPACT, "negotiate", "--scenario", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "scenario.seller" in out.stderr
    bad.write_text("{not json")
    out = subprocess.run([*GRIDPACT, "negotiate", "--scenario", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "not valid JSON" in out.stderr


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 50) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
issue_like = st.fixed_dictionaries(
    {},
    optional={k: json_values for k in ("ip", "rp", "dl", "cr", "prefer")},
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "seller": st.dictionaries(st.sampled_from(["price", "quantity"]), issue_like, max_size=2),
                "buyer": st.dictionaries(st.sampled_from(["price", "quantity"]), issue_like, max_size=2),
            },
            optional={"rule": json_values, "first": json_values},
        ),
    )
)
def test_any_json_gives_a_report_or_a_scenario_error(data: object) -> None:
    try:
        report = run_scenario(data)  # type: ignore[arg-type]
    except ScenarioError:
        return
    assert set(report) == {"rule", "first", "issues"}
