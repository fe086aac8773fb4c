"""One bilateral negotiation from a scenario file: each issue negotiated on its own, as in Fig. 6.

The paper's case study agrees price and quantity at different steps (11 and 12), so issues are
independent sessions here; a package deal over several issues is `run_session` with a
multi-issue strategy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.negotiation.negotiator import Negotiator, run_session
from gateway.negotiation.strategy import StrategyConfigError, strategy_from_config
from gridpact.core.concession import AcceptanceRule

ROLES = ("seller", "buyer")


class ScenarioError(ValueError):
    """The scenario file is malformed; the message says where."""


def _side(scenario: Mapping[str, Any], role: str) -> Mapping[str, Any]:
    side = scenario.get(role)
    if not isinstance(side, Mapping) or not side:
        raise ScenarioError(f"scenario.{role}: must map issue names to {{ip, rp, dl, cr}}")
    return side


def run_scenario(scenario: Mapping[str, Any], rule: str | None = None) -> dict[str, Any]:
    """Negotiate every issue the two sides share; returns a JSON-able report per issue."""
    if not isinstance(scenario, Mapping):
        raise ScenarioError("scenario must be a JSON object")
    seller, buyer = _side(scenario, "seller"), _side(scenario, "buyer")
    if set(seller) != set(buyer):
        raise ScenarioError(f"seller issues {sorted(seller)} != buyer issues {sorted(buyer)}")
    try:
        chosen = AcceptanceRule.parse(rule or scenario.get("rule", "next"))
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
    first = scenario.get("first", "seller")
    if first not in ROLES:
        raise ScenarioError(f"scenario.first must be 'seller' or 'buyer', got {first!r}")
    second = "buyer" if first == "seller" else "seller"
    issues: dict[str, Any] = {}
    for issue in sorted(seller):
        try:
            sides = {
                role: Negotiator(strategy_from_config({issue: cfg[issue]}), chosen)
                for role, cfg in (("seller", seller), ("buyer", buyer))
            }
        except StrategyConfigError as exc:
            raise ScenarioError(f"issue {issue!r}: {exc}") from None
        result = run_session(sides[first], sides[second])
        names = {"initiator": first, "responder": second}
        issues[issue] = {
            "agreed": result.agreed,
            "step": result.step,
            "value": None if result.offer is None else result.offer[issue],
            "accepted_by": None if result.by is None else names[result.by],
            "reason": result.reason,
            "trace": [
                {
                    "step": e.step,
                    "by": names[e.by],
                    "action": e.response,
                    "value": None if e.offer is None else e.offer[issue],
                }
                for e in result.trace
            ],
        }
    return {"rule": chosen.value, "first": first, "issues": issues}


def format_report(report: Mapping[str, Any]) -> str:
    """Human-readable form of `run_scenario`'s report."""
    lines = [f"acceptance rule: {report['rule']}, first mover: {report['first']}"]
    for issue, res in report["issues"].items():
        if res["agreed"]:
            lines.append(
                f"{issue}: agreed at step {res['step']} on {res['value']:.2f} (accepted by {res['accepted_by']})"
            )
        else:
            lines.append(f"{issue}: no agreement ({res['reason']})")
        for e in res["trace"]:
            value = "-" if e["value"] is None else f"{e['value']:.2f}"
            lines.append(f"  step {e['step']:>3}  {e['by']:<6} {e['action']:<6} {value}")
    return "\n".join(lines)
