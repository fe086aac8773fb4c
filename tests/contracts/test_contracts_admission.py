"""Admission of a household by a vote of the members (Admission.sol), on anvil and py-evm."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from web3.logs import DISCARD

from contracts.chain import Sender
from contracts.deploy import AdmissionRules, contracts_at, deploy_all
from contracts.harness import Community, Household, advance_time, chain_revert, chain_snapshot

RULES = AdmissionRules()  # what deploy_all used: quorum 50 %, 3 days to vote, 7 days to execute
VOTING, PASSED, DEFEATED, EXPIRED, EXECUTED, CANCELLED = 1, 2, 3, 4, 5, 6
METER = keccak(text="meter-newcomer")
META = b"\x22" * 32


def newcomer(c: Community, salt: str = "newcomer") -> Household:
    """An unregistered key with gas money."""
    key = "0x" + keccak(text=f"gridpact-admission-{salt}").hex()
    c.admin.send({"to": Account.from_key(key).address, "value": 10**18, "gas": 21_000})
    return Household(key, Sender(c.w3, key))


def propose(c: Community, by: Household, candidate: Household) -> int:
    rcpt = by.sender.transact(c.admission.functions.propose(candidate.address, METER, META))
    return int(c.admission.events.ProposalCreated().process_receipt(rcpt, errors=DISCARD)[0]["args"]["id"])


def vote(c: Community, voter: Household, pid: int, approve: bool) -> Any:
    return voter.sender.transact(c.admission.functions.vote(pid, approve))


def state(c: Community, pid: int) -> int:
    return int(c.admission.functions.state(pid).call())


def test_contracts_household_refused_then_admitted_by_vote(community: Community, reverts) -> None:
    c = community
    a, b, h = c.households
    adm, m = c.admission, c.market
    n = newcomer(c)
    assert m.functions.hasRole(keccak(text="COMMUNITY_ROLE"), adm.address).call() is True
    assert (adm.functions.quorumBps().call(), adm.functions.votingPeriod().call()) == (5_000, 3 * 86_400)
    a.sender.transact(adm.functions.sync([a.address, b.address, h.address, n.address]))
    assert adm.functions.members().call() == 3  # the newcomer is not a member: sync leaves it off the roll
    reverts("NotMember", propose, c, n, n)  # nobody proposes itself from outside

    # refused: one yes out of three members is below the 50 % quorum
    first = propose(c, a, n)
    vote(c, a, first, True)
    reverts("WrongState", lambda: h.sender.transact(adm.functions.execute(first)))  # vote still open
    advance_time(c.w3, RULES.voting_period)
    assert state(c, first) == DEFEATED
    assert reverts("NotApproved", lambda: h.sender.transact(adm.functions.execute(first))) == (
        first, 1, 0, 3, 5_000
    )  # fmt: skip
    reverts("WrongState", vote, c, b, first, True)  # too late to vote
    # expired: even votes that would have passed cannot be used after the execution window
    second = propose(c, a, n)
    vote(c, a, second, True)
    vote(c, b, second, True)
    advance_time(c.w3, RULES.voting_period + RULES.execution_window)
    assert state(c, second) == EXPIRED
    assert reverts("WrongState", lambda: h.sender.transact(adm.functions.execute(second)))[1] == EXPIRED
    reverts("NotRegistered", lambda: n.sender.transact(m.functions.deposit(1)))

    # admitted: two yes and one no of three members
    third = propose(c, b, n)
    vote(c, a, third, True)
    vote(c, b, third, True)
    vote(c, h, third, False)
    assert adm.functions.tally(third).call() == [2, 1, 3]
    advance_time(c.w3, RULES.voting_period)
    assert state(c, third) == PASSED
    rcpt = n.sender.transact(adm.functions.execute(third))  # anyone executes, the candidate included
    ev = dict(adm.events.ProposalExecuted().process_receipt(rcpt, errors=DISCARD)[0]["args"])
    assert (ev["id"], ev["candidate"], ev["yes"], ev["no"], ev["members"]) == (third, n.address, 2, 1, 3)
    reg = m.events.ParticipantRegistered().process_receipt(rcpt, errors=DISCARD)[0]["args"]
    assert (reg["gateway"], reg["meterId"], reg["metadataHash"]) == (n.address, METER, META)
    assert m.functions.isParticipant(n.address).call() is True
    assert adm.functions.members().call() == 4 and state(c, third) == EXECUTED
    assert reverts("WrongState", lambda: a.sender.transact(adm.functions.execute(third)))[1] == EXECUTED
    reverts("AlreadyMember", propose, c, a, n)

    # the admitted household deposits and trades as any member
    c.fund(n, 10**20)
    assert c.free(n.address) == 10**20
    t = c.terms(n, a)
    c.admin.transact(m.functions.submitAgreement(t.as_tuple(), *c.sign(t, n, a)))
    assert c.status(t) == 1  # Active: its payment escrowed
    # and the community still removes it
    c.admin.transact(m.functions.remove(n.address))
    reverts("NotRegistered", lambda: n.sender.transact(m.functions.deposit(1)))


def test_contracts_admission_attacks(community: Community, reverts) -> None:
    c = community
    a, b, h = c.households
    adm, m = c.admission, c.market
    n, x = newcomer(c, "candidate"), newcomer(c, "outsider")
    x.sender.transact(adm.functions.sync([a.address, b.address, h.address]))  # anyone may sync the roll
    pid = propose(c, a, n)
    reverts("UnknownProposal", vote, c, a, pid + 1, True)
    reverts("NotMember", vote, c, x, pid, True)  # outsider
    reverts("SelfVote", vote, c, n, pid, True)  # the candidate, member or not
    vote(c, a, pid, True)
    assert reverts("AlreadyVoted", vote, c, a, pid, True) == (pid, a.address)
    reverts("AlreadyVoted", vote, c, a, pid, False)  # no changing sides either
    # a removed member can no longer vote, and its earlier yes stops counting
    vote(c, b, pid, True)
    vote(c, h, pid, False)
    c.admin.transact(m.functions.remove(b.address))
    reverts("NotMember", vote, c, b, pid, True)
    advance_time(c.w3, RULES.voting_period)
    assert adm.functions.tally(pid).call() == [1, 1, 3]
    assert state(c, pid) == DEFEATED
    # execute drops the removed voter from the roll, then judges 1 yes against 1 no of 2 members
    assert reverts("NotApproved", lambda: x.sender.transact(adm.functions.execute(pid))) == (
        pid,
        1,
        1,
        2,
        5_000,
    )
    x.sender.transact(adm.functions.sync([b.address]))  # the roll follows the market
    assert adm.functions.members().call() == 2 and state(c, pid) == DEFEATED

    # self-vote: a candidate that became a member by another way still may not vote on its own proposal
    c.admin.transact(m.functions.register(b.address, METER, META))  # b is back
    y = newcomer(c, "second")
    pid2 = propose(c, a, y)
    c.admin.transact(m.functions.register(y.address, METER, META))
    assert reverts("SelfVote", vote, c, y, pid2, True) == (pid2, y.address)
    vote(c, a, pid2, True)
    vote(c, b, pid2, True)
    advance_time(c.w3, RULES.voting_period)
    assert state(c, pid2) == PASSED
    # ... and the proposal that passed cannot register it a second time
    assert reverts("AlreadyMember", lambda: x.sender.transact(adm.functions.execute(pid2))) == (y.address,)

    # cancel: only the proposer or the community; then no vote and no execution
    z = newcomer(c, "third")
    pid3 = propose(c, a, z)
    reverts("NotCommunity", lambda: b.sender.transact(adm.functions.cancel(pid3)))
    a.sender.transact(adm.functions.cancel(pid3))
    assert state(c, pid3) == CANCELLED
    reverts("WrongState", vote, c, b, pid3, True)
    reverts("WrongState", lambda: a.sender.transact(adm.functions.cancel(pid3)))

    # rules: the community only, within bounds, for later proposals
    reverts("NotCommunity", lambda: a.sender.transact(adm.functions.setRules(1, 1, 1)))
    for bad in ((0, 1, 1), (10_001, 1, 1), (5_000, 0, 1), (5_000, 1, 0), (5_000, 91 * 86_400, 1)):
        reverts("InvalidRules", lambda bad=bad: c.admin.transact(adm.functions.setRules(*bad)))
    c.admin.transact(adm.functions.setRules(10_000, 600, 600))
    assert c.admission.functions.proposal(pid2).call()[6] == 5_000  # a running vote keeps its quorum


def test_contracts_admission_cli_on_anvil(anvil: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`gridpact contracts admission ...` end to end on a real node: refused, then admitted, with status."""
    from web3 import Web3

    from contracts import cli
    from hil.services import DEV_PRIVATE_KEYS

    w3 = Web3(Web3.HTTPProvider(anvil.info.url, request_kwargs={"timeout": 30}))
    snapshot = chain_snapshot(w3)
    try:
        addresses = deploy_all(w3, DEV_PRIVATE_KEYS[0], admission=AdmissionRules(6_000, 600, 600))
        _, market = contracts_at(w3, addresses)
        admin = Sender(w3, DEV_PRIVATE_KEYS[0])
        members = [Account.from_key(DEV_PRIVATE_KEYS[i]).address for i in (1, 2, 3)]
        for who in members:
            admin.transact(market.functions.register(who, keccak(text=who), bytes(32)))
        candidate = Account.from_key(DEV_PRIVATE_KEYS[4]).address
        common = ["--rpc", anvil.info.url, "--admission", addresses["admission"]["electricity"]]

        def gp(*argv: str) -> tuple[int, str]:
            rc = cli.main(["admission", argv[0], *common, *argv[1:]])
            out = capsys.readouterr()
            return rc, out.out + out.err

        assert gp("sync", *members, "--dev-key", "5")[0] == 0
        rc, out = gp("propose", candidate, "--meter-id", "meter-7", "--dev-key", "4")
        assert rc == 1 and "NotMember" in out  # the candidate cannot propose itself
        rc, out = gp("propose", candidate, "--meter-id", "meter-7", "--dev-key", "1")
        assert rc == 0 and out.startswith("proposal 1:")
        assert gp("vote", "1", "yes", "--dev-key", "1")[0] == 0
        assert gp("vote", "1", "yes", "--dev-key", "2")[0] == 0  # 2 of 3 members: 66.7 % >= 60 %
        rc, out = gp("vote", "1", "no", "--dev-key", "2")
        assert rc == 1 and "AlreadyVoted(1" in out
        rc, out = gp("vote", "1", "yes", "--dev-key", "4")
        assert rc == 1 and "SelfVote(1" in out
        rc, out = gp("execute", "1", "--dev-key", "5")
        assert rc == 1 and "WrongState(1, 1)" in out  # the vote is still open
        rc, out = gp("status", "1")
        assert rc == 0 and "proposal 1: voting" in out and "yes 2  no 0  of 3 members  (quorum 60 %)" in out
        advance_time(w3, 600)
        assert gp("execute", "1", "--dev-key", "5")[0] == 0
        rc, out = gp("status", "1")
        assert "proposal 1: executed" in out
        assert market.functions.participantInfo(candidate).call()[0] == keccak(text="meter-7")
        rc, out = gp("grant", "--dev-key", "1")
        assert rc == 1 and "AccessControlUnauthorizedAccount" in out  # only the community grants the role
    finally:
        chain_revert(w3, snapshot)


def test_contracts_admission_roll_sync_restores_the_quorum(community: Community, reverts) -> None:
    """The attacker proposes while members registered directly by the community are not on the roll, so its
    lone yes would be 100 % of the roll; an opponent syncing the roll during the vote restores the real bar."""
    c = community
    a, b, h = c.households
    adm = c.admission
    n = newcomer(c)
    pid = propose(c, a, n)
    vote(c, a, pid, True)
    assert adm.functions.members().call() == 1  # only the proposer, enrolled by acting
    h.sender.transact(adm.functions.sync([b.address, h.address]))  # silence would have let it pass
    advance_time(c.w3, RULES.voting_period)
    assert state(c, pid) == DEFEATED
    assert reverts("NotApproved", lambda: a.sender.transact(adm.functions.execute(pid))) == (
        pid,
        1,
        0,
        3,
        5_000,
    )
    # the community's own path that keeps the roll in step: register through Admission.admit
    reverts("NotCommunity", lambda: a.sender.transact(adm.functions.admit(n.address, METER, META)))
    c.admin.transact(adm.functions.admit(n.address, METER, META))
    assert c.market.functions.isParticipant(n.address).call() and adm.functions.members().call() == 4
    reverts("AlreadyRegistered", lambda: c.admin.transact(adm.functions.admit(n.address, METER, META)))
