"""`gridpact contracts admission propose|vote|execute|status|sync|grant`: admission of a household by vote.

A thin adapter over Admission.sol: each action is one signed transaction (or a read for `status`);
reverts are printed as the contract's custom error with its values.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from eth_utils.crypto import keccak
from web3.logs import DISCARD

from contracts.build import load_artifact
from contracts.cliutil import action_parser

STATES = ("none", "voting", "passed", "defeated", "expired", "executed", "cancelled")


def add_parser(sub: Any, add_key: Callable[[argparse.ArgumentParser, bool], None]) -> None:
    """Add the `admission` command and its actions to the `gridpact contracts` subparsers."""
    a = sub.add_parser("admission", help="admit a household by a vote of the members (Admission contract)")
    acts = a.add_subparsers(dest="action", required=True)

    def action(name: str, helptext: str, signed: bool = True) -> argparse.ArgumentParser:
        return action_parser(acts, name, helptext, "admission", add_key, signed)

    p = action("propose", "propose a candidate household (a registered member's key)")
    p.add_argument("candidate", help="the candidate gateway's address")
    p.add_argument("--meter-id", required=True, help="meter id: 0x + 64 hex digits, or text hashed to one")
    p.add_argument("--metadata", default="", help="metadata: 0x + 64 hex digits, or text hashed to one")
    p = action("vote", "vote on a proposal (a registered member's key, once)")
    p.add_argument("id", type=int)
    p.add_argument("choice", choices=("yes", "no"))
    p = action("execute", "register the candidate of a passed proposal (any key)")
    p.add_argument("id", type=int)
    p = action("cancel", "withdraw a proposal (its proposer or the community)")
    p.add_argument("id", type=int)
    p = action("sync", "bring the roll of members in line with the market (any key)")
    p.add_argument("accounts", nargs="+")
    p = action("status", "print a proposal's state and tally", signed=False)
    p.add_argument("id", type=int)
    action("grant", "grant the Admission contract the market's community role (the community's key)")


def bytes32_of(text: str) -> bytes:
    """A 32-byte word: given as 0x + 64 hex digits, or the keccak hash of the text."""
    if text.startswith("0x") and len(text) == 66:
        return bytes.fromhex(text[2:])
    return keccak(text=text) if text else bytes(32)


def status_lines(admission: Any, pid: int) -> list[str]:
    """A proposal's state, candidate, deadlines and tally as printable lines."""
    cand, proposer, meter, meta, ends, expires, quorum = admission.functions.proposal(pid).call()
    state = STATES[int(admission.functions.state(pid).call())]
    yes, no, members = admission.functions.tally(pid).call()
    return [
        f"proposal {pid}: {state}",
        f"candidate {cand}  proposed by {proposer}",
        f"meter id  0x{bytes(meter).hex()}  metadata 0x{bytes(meta).hex()}",
        f"votes     yes {yes}  no {no}  of {members} members  (quorum {quorum / 100:g} %)",
        f"voting ends {ends}  expires {expires} (unix time)",
    ]


def run(args: argparse.Namespace, w3: Any, key: str | None) -> int:
    """Carry out one admission action; returns the exit code."""
    from contracts.chain import Sender, explain

    abi = load_artifact("Admission")["abi"]
    admission = w3.eth.contract(address=w3.to_checksum_address(args.admission), abi=abi)
    fn = admission.functions
    try:
        if args.action == "status":
            print("\n".join(status_lines(admission, args.id)))
            return 0
        if key is None:
            raise ValueError("a signing key is needed")
        sender = Sender(w3, key)
        if args.action == "propose":
            call = fn.propose(
                w3.to_checksum_address(args.candidate), bytes32_of(args.meter_id), bytes32_of(args.metadata)
            )
        elif args.action == "vote":
            call = fn.vote(args.id, args.choice == "yes")
        elif args.action == "execute":
            call = fn.execute(args.id)
        elif args.action == "cancel":
            call = fn.cancel(args.id)
        elif args.action == "sync":
            call = fn.sync([w3.to_checksum_address(a) for a in args.accounts])
        else:  # grant
            market_abi = load_artifact("Market")["abi"]
            market = w3.eth.contract(address=fn.market().call(), abi=market_abi)
            abi = abi + market_abi
            call = market.functions.grantRole(keccak(text="COMMUNITY_ROLE"), admission.address)
        receipt = sender.transact(call)
    except (
        Exception
    ) as exc:  # web3 and eth-tester raise many types: the contract's error says what went wrong
        print(f"gridpact contracts admission {args.action}: {explain(exc, abi)}", file=sys.stderr)
        return 1
    if args.action == "propose":
        ev = admission.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)[0]["args"]
        print(f"proposal {ev['id']}: candidate {ev['candidate']}, voting ends {ev['votingEnds']}")
    else:
        print(f"{args.action}: ok (tx 0x{bytes(receipt['transactionHash']).hex()})")
    return 0
