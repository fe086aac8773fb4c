"""`gridpact contracts demand announce|status|reclaim`: the operator's demand-response events.

A thin adapter over DemandResponse.sol for the micro-grid operator (the Market's `operator()`):
`announce` approves the budget to the contract and announces the event (two transactions: the
contract pulls the budget it escrows); `reclaim` takes back what no claim is owed after the
deadline; `status` reads an event. Households claim from their gateways (`[demand_response]`).
Reverts are printed as the contract's custom error with its values.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from web3.logs import DISCARD

from contracts.build import load_artifact
from contracts.cliutil import action_parser

HOUR = 3600


def add_parser(sub: Any, add_key: Callable[[argparse.ArgumentParser, bool], None]) -> None:
    """Add the `demand` command and its actions to the `gridpact contracts` subparsers."""
    d = sub.add_parser("demand", help="demand-response events (DemandResponse contract; the operator's key)")
    acts = d.add_subparsers(dest="action", required=True)

    def action(name: str, helptext: str, signed: bool = True) -> argparse.ArgumentParser:
        return action_parser(acts, name, helptext, "demand", add_key, signed)

    p = action("announce", "escrow a budget and announce an event hour (the Market's operator)")
    p.add_argument(
        "--window", required=True, help="the event hour's start: Unix time or ISO 8601 with offset"
    )
    p.add_argument("--reward", type=int, required=True, help="token base units per kWh of metered cut")
    p.add_argument("--budget", type=int, required=True, help="token base units escrowed for all claims")
    p.add_argument("--claim-hours", type=int, default=24, help="claims close this long after the hour starts")
    p = action("reclaim", "after the claim deadline, take back what no claim is owed (the operator)")
    p.add_argument("id", type=int)
    p = action("status", "print an event: its hour, offer, baseline hours and what was claimed", signed=False)
    p.add_argument("id", type=int)


def unix_time(text: str) -> int:
    """Unix seconds from digits or an ISO 8601 time with its UTC offset (a bare local time is ambiguous)."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--window {text!r}: Unix time or ISO 8601 (2026-12-08T18:00+00:00)") from None
    if when.tzinfo is None:
        raise ValueError(f"--window {text!r}: give the UTC offset (+00:00), a local time is ambiguous")
    return int(when.timestamp())


def status_lines(dr: Any, eid: int) -> list[str]:
    start, claim_by, announced, reward, budget, total, reclaimed = dr.functions.eventOf(eid).call()
    baseline = [int(w) for w in dr.functions.baselineWindows(eid).call()]
    owed = dr.functions.owedTotal(reward, budget, total).call()
    return [
        f"event {eid}: hour {start}..{start + HOUR} (unix time), announced {announced}, claims until {claim_by}",
        f"offer     {reward} per kWh cut, budget {budget}",
        f"baseline  hours starting {', '.join(str(w) for w in baseline)}",
        f"claimed   {total} Wh, owed {owed}, remainder {'reclaimed' if reclaimed else budget - owed}",
    ]


def run(args: argparse.Namespace, w3: Any, key: str | None) -> int:
    """Carry out one action; returns the exit code."""
    from contracts.chain import Sender, explain

    abi = load_artifact("DemandResponse")["abi"]
    dr = w3.eth.contract(address=w3.to_checksum_address(args.demand), abi=abi)
    try:
        if args.action == "status":
            print("\n".join(status_lines(dr, args.id)))
            return 0
        if key is None:
            raise ValueError("a signing key is needed")
        sender = Sender(w3, key)
        if args.action == "reclaim":
            receipt = sender.transact(dr.functions.reclaim(args.id))
            ev = dr.events.BudgetReturned().process_receipt(receipt, errors=DISCARD)[0]["args"]
            print(f"reclaim: {ev['amount']} returned to {ev['to']}")
            return 0
        start = unix_time(args.window)
        token_abi = load_artifact("UtilityToken")["abi"]
        abi = abi + token_abi
        token = w3.eth.contract(address=dr.functions.token().call(), abi=token_abi)
        sender.transact(token.functions.approve(dr.address, args.budget))
        receipt = sender.transact(
            dr.functions.announce(start, args.reward, args.budget, start + args.claim_hours * HOUR)
        )
    except (
        Exception
    ) as exc:  # web3 and eth-tester raise many types: the contract's error says what went wrong
        print(f"gridpact contracts demand {args.action}: {explain(exc, abi)}", file=sys.stderr)
        return 1
    ev = dr.events.EventAnnounced().process_receipt(receipt, errors=DISCARD)[0]["args"]
    print(f"event {ev['id']}: hour {ev['windowStart']}, {ev['rewardPerKWh']} per kWh, budget {ev['budget']}, "
          f"claims until {ev['claimBy']}")  # fmt: skip
    print("\n".join(status_lines(dr, int(ev["id"]))[2:3]))
    return 0
