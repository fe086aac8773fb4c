"""Demand response events paid on meter evidence (DemandResponse.sol), on anvil and py-evm.

The operator (the Market's `operator()`, the community here) announces "reduce your import in the hour
starting W, R base units per kWh of reduction against your baseline" and escrows a budget; households
claim with their meters' real device-signed statements (gridpact.core.statement) for the event hour
and the three baseline hours the contract fixed; after the claim deadline each withdraws and the
operator takes back the rest. Every scenario ends by checking that the contract holds at least what it
still owes (unpaid claims and un-reclaimed remainders). The attackers: an outsider, a household with
a forged, replayed, hand-picked, re-labelled or malleated statement, a second claim, a
neighbour's meter key registered as one's own, an operator
announcing or reclaiming out of turn, and calls out of time; each refusal names its custom error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from web3 import Web3
from web3.logs import DISCARD

from contracts import cli
from contracts.chain import Sender
from contracts.deploy import contracts_at, demand_at, deploy_all
from contracts.errors import decode_revert
from contracts.harness import EMPTY_DIGEST, Community, Household, advance_time, chain_revert, chain_snapshot
from gridpact.core import demand, statement
from hil.services import DEV_PRIVATE_KEYS

HOUR, DAY = 3_600, 86_400
REWARD = 200_000_000_000_000_000  # 0.2 token per kWh
BUDGET = 10**18  # 1 token
METER_BASE = 1_000_000  # a meter's import counter (Wh) long before the event


class Event:
    """An announced event as the tests need it: id, hour, deadline, and the windows its evidence covers."""

    def __init__(self, dr: Any, eid: int) -> None:
        self.id = eid
        self.window_start, self.claim_by, self.announced_at, *_ = dr.functions.eventOf(eid).call()
        self.ends = demand.evidence_windows(self.window_start, self.announced_at)


def contract(c: Community) -> Any:
    dr = demand_at(c.w3, c.addresses)
    assert dr.functions.market().call() == c.market.address
    assert dr.functions.token().call() == c.token.address
    return dr


def refused(c: Community, dr: Any, name: str, fn: Callable[[], Any]) -> tuple:
    """Call fn; require a revert with the custom error `name`; return its values."""
    try:
        fn()
    except Exception as exc:  # web3 and eth-tester raise different types: decode_revert handles both
        info = decode_revert(exc, dr.abi + c.token.abi)
        assert info.name == name, f"expected {name}, got {info} from {exc!r}"
        return info.args
    raise AssertionError(f"expected revert {name}, call succeeded")


def outsider(c: Community) -> Household:
    """An unregistered key with gas money."""
    key = "0x" + keccak(text="gridpact-demand-outsider").hex()
    c.admin.send({"to": Account.from_key(key).address, "value": 10**18, "gas": 21_000})
    return Household(key, Sender(c.w3, key))


def announce(
    c: Community,
    dr: Any,
    budget: int = BUDGET,
    reward: int = REWARD,
    lead: int = 2 * HOUR,
    claim_for: int = 4 * HOUR,
) -> Event:
    """The operator funds and announces an event whose hour starts on the first full hour `lead` from now."""
    c.admin.transact(c.token.functions.mint(c.admin.address, budget))
    c.admin.transact(c.token.functions.approve(dr.address, budget))
    start = (c.now() + lead) // HOUR * HOUR
    rcpt = c.admin.transact(dr.functions.announce(start, reward, budget, start + claim_for))
    ev = dr.events.EventAnnounced().process_receipt(rcpt, errors=DISCARD)[0]["args"]
    e = Event(dr, int(ev["id"]))
    assert (ev["windowStart"], ev["rewardPerKWh"], ev["budget"], ev["claimBy"]) == (
        start,
        reward,
        budget,
        e.claim_by,
    )
    assert ev["firstBaselineStart"] == e.ends[2]
    return e


def signed(
    hh: Household, end: int, import_wh: int, secret: bytes = b"", dev: str = ""
) -> tuple[bytes, bytes]:
    """A statement of `hh`'s meter for the window ending `end` (or another key's / device's), signed."""
    raw = statement.encode(statement.Statement(dev or hh.device, end, import_wh, 4_321, 12, EMPTY_DIGEST))
    return raw, statement.sign(raw, secret or hh.meter_secret)


def pairs(
    hh: Household, ends: tuple[int, ...], actual: int, baseline: tuple[int, ...]
) -> list[tuple[bytes, bytes]]:
    """The 8 signed statements of a claim: `actual` Wh imported in the event hour, `baseline` in each
    baseline hour (the meter's counter grows with time, so older hours have lower counters)."""
    out = []
    for w, delta in enumerate((actual, *baseline)):
        start_wh = METER_BASE + 100_000 * (len(baseline) - w)
        out += [signed(hh, ends[2 * w], start_wh), signed(hh, ends[2 * w + 1], start_wh + delta)]
    return out


def claim(hh: Household, dr: Any, e: Event, evidence: bytes) -> Any:
    return hh.sender.transact(dr.functions.claim(e.id, evidence))


def check_balance_covers_debts(c: Community, dr: Any) -> int:
    """The contract's balance >= what it still owes: each unpaid claim's payout at the event's figures and
    each un-reclaimed remainder (gridpact.core.demand's mirror). Returns the dust (balance less debts)."""
    owed = 0
    for eid in range(1, dr.functions.eventCount().call() + 1):
        _, _, _, reward, budget, total, reclaimed = dr.functions.eventOf(eid).call()
        if not reclaimed:
            owed += budget - demand.owed_total(reward, budget, total)
        for log in dr.events.ReductionClaimed().get_logs(from_block=0, argument_filters={"id": eid}):
            reduction, paid = dr.functions.claimOf(eid, log["args"]["household"]).call()
            if not paid:
                owed += demand.payout(reward, budget, total, reduction)
    held = int(c.token.functions.balanceOf(dr.address).call())
    assert held >= owed, (held, owed)
    return held - owed


def test_demand_response_pays_the_reduction_and_returns_the_rest(community: Community) -> None:
    c = community
    a = c.households[0]
    dr = contract(c)
    c.set_meter(a)
    assert c.market.functions.operator().call() == c.admin.address  # the community is the operator here
    e = announce(c, dr)
    assert e.announced_at < e.window_start <= e.announced_at + 2 * HOUR
    assert dr.functions.baselineWindows(e.id).call() == list(
        demand.baseline_windows(e.window_start, e.announced_at)
    )
    assert e.ends[2] == e.window_start - DAY  # announced 1-2 hours ahead: yesterday's hour had ended
    assert int(c.token.functions.balanceOf(dr.address).call()) == BUDGET
    baseline = (1_250, 900, 1_510)
    evidence = demand.claim_evidence(pairs(a, e.ends, 400, baseline))
    assert len(evidence) == demand.EVIDENCE_SIZE == dr.functions.EVIDENCE_SIZE().call()
    refused(c, dr, "TooEarly", lambda: claim(a, dr, e, evidence))  # the hour has not ended
    advance_time(c.w3, e.window_start + HOUR + 60 - c.now())

    rcpt = claim(a, dr, e, evidence)
    ev = dr.events.ReductionClaimed().process_receipt(rcpt, errors=DISCARD)[0]["args"]
    reduction = demand.reduction_wh(400, baseline)
    assert (ev["id"], ev["household"], ev["baselineWh"], ev["actualWh"], ev["reductionWh"]) == (
        e.id, a.address, 1_220, 400, reduction
    )  # fmt: skip
    assert reduction == 820 and dr.functions.claimOf(e.id, a.address).call() == [820, False]
    assert refused(c, dr, "AlreadyClaimed", lambda: claim(a, dr, e, evidence)) == (e.id, a.address)
    assert (
        refused(c, dr, "TooEarly", lambda: a.sender.transact(dr.functions.withdraw(e.id)))[2]
        == e.claim_by + 1
    )
    refused(c, dr, "TooEarly", lambda: c.admin.transact(dr.functions.reclaim(e.id)))
    check_balance_covers_debts(c, dr)

    advance_time(c.w3, e.claim_by + 1 - c.now())
    before = int(c.token.functions.balanceOf(a.address).call())
    rcpt = a.sender.transact(dr.functions.withdraw(e.id))
    paid = dr.events.RewardPaid().process_receipt(rcpt, errors=DISCARD)[0]["args"]["amount"]
    assert paid == REWARD * 820 // 1000 == demand.payout(REWARD, BUDGET, 820, 820)
    assert int(c.token.functions.balanceOf(a.address).call()) == before + paid
    assert refused(c, dr, "AlreadyPaid", lambda: a.sender.transact(dr.functions.withdraw(e.id))) == (
        e.id,
        a.address,
    )
    operator_before = int(c.token.functions.balanceOf(c.admin.address).call())
    rcpt = c.admin.transact(dr.functions.reclaim(e.id))
    back = dr.events.BudgetReturned().process_receipt(rcpt, errors=DISCARD)[0]["args"]
    assert (back["to"], back["amount"]) == (c.admin.address, BUDGET - paid)
    assert int(c.token.functions.balanceOf(c.admin.address).call()) == operator_before + BUDGET - paid
    assert refused(c, dr, "AlreadyReclaimed", lambda: c.admin.transact(dr.functions.reclaim(e.id))) == (e.id,)
    assert check_balance_covers_debts(c, dr) == 0 == int(c.token.functions.balanceOf(dr.address).call())


def test_demand_response_pro_rata_when_claims_exceed_the_budget(community: Community) -> None:
    """Two reductions worth more than the budget share it pro rata, whoever claims or withdraws first; a
    household whose import rose is refused and costs the others nothing."""
    c = community
    a, b, h = c.households
    dr = contract(c)
    for hh in (a, b, h):
        c.set_meter(hh)
    budget = 333_333_333_333_333_334  # less than the 0.2 token/kWh reward on 3,000 Wh: 0.6 token
    e = announce(c, dr, budget=budget)
    advance_time(c.w3, e.window_start + HOUR + 1 - c.now())
    claim(b, dr, e, demand.claim_evidence(pairs(b, e.ends, 1_000, (3_000, 3_000, 3_001))))  # 2,000 Wh
    claim(a, dr, e, demand.claim_evidence(pairs(a, e.ends, 0, (1_000, 1_001, 1_000))))  # 1,000 Wh
    rose = demand.claim_evidence(pairs(h, e.ends, 2_000, (1_800, 1_900, 2_000)))
    assert refused(c, dr, "NoReduction", lambda: claim(h, dr, e, rose)) == (e.id, h.address, 1_900, 2_000)
    assert dr.functions.eventOf(e.id).call()[5] == 3_000  # only the two reductions count
    assert int(c.token.functions.balanceOf(dr.address).call()) == budget
    check_balance_covers_debts(c, dr)

    advance_time(c.w3, e.claim_by + 1 - c.now())
    refused(c, dr, "NoClaim", lambda: h.sender.transact(dr.functions.withdraw(e.id)))
    got = {}
    for hh in (a, b):
        rcpt = hh.sender.transact(dr.functions.withdraw(e.id))
        got[hh.address] = dr.events.RewardPaid().process_receipt(rcpt, errors=DISCARD)[0]["args"]["amount"]
    assert got == {a.address: budget * 1_000 // 3_000, b.address: budget * 2_000 // 3_000}
    assert got[a.address] == demand.payout(REWARD, budget, 3_000, 1_000) == 111_111_111_111_111_111
    assert check_balance_covers_debts(c, dr) == 1  # floor-division dust: the budget's last base unit
    rcpt = c.admin.transact(dr.functions.reclaim(e.id))  # nothing left that no claim is owed
    assert dr.events.BudgetReturned().process_receipt(rcpt, errors=DISCARD)[0]["args"]["amount"] == 0
    assert check_balance_covers_debts(c, dr) == 1


def test_demand_response_attacks(community: Community) -> None:
    c = community
    a, b, h = c.households  # h has no meter key
    x = outsider(c)
    dr = contract(c)
    c.set_meter(a)
    c.set_meter(b)

    def no(name: str, fn: Callable[[], Any]) -> tuple:
        return refused(c, dr, name, fn)

    def announcing(
        start: int, reward: int, budget: int, claim_by: int, by: Sender = c.admin
    ) -> Callable[[], Any]:
        return lambda: by.transact(dr.functions.announce(start, reward, budget, claim_by))

    def claiming(hh: Household, e: Event, records: list[tuple[bytes, bytes]]) -> Callable[[], Any]:
        return lambda: claim(hh, dr, e, demand.claim_evidence(records))

    # only the operator announces, on an aligned hour ahead, with something on offer and a sane deadline
    start = (c.now() + 2 * HOUR) // HOUR * HOUR
    assert no("NotOperator", announcing(start, 1, 1, start + DAY, by=a.sender)) == (a.address,)
    assert no("WindowNotAligned", announcing(start + 1, 1, 1, start + DAY)) == (start + 1,)
    past = c.now() // HOUR * HOUR
    assert no("WindowNotAhead", announcing(past, 1, 1, past + DAY))[0] == past
    assert no("NothingOffered", announcing(start, 0, 5, start + DAY)) == (0, 5)
    assert no("NothingOffered", announcing(start, 5, 0, start + DAY)) == (5, 0)
    for claim_by in (start + 2 * HOUR - 1, start + 30 * DAY + 1):
        assert no("ClaimByOutOfRange", announcing(start, 1, 1, claim_by)) == (
            claim_by, start + 2 * HOUR, start + 30 * DAY
        )  # fmt: skip
    no("ERC20InsufficientAllowance", announcing(start, 1, 1, start + DAY))  # the budget is really escrowed
    assert no("UnknownEvent", lambda: a.sender.transact(dr.functions.claim(1, b""))) == (1,)

    # announced days ahead: the baseline is the 3 days before the announcement, not the days after it
    e = announce(c, dr, lead=3 * DAY + 5 * HOUR)
    assert e.ends[2] == e.window_start - 4 * DAY and e.ends[2] + HOUR <= e.announced_at < e.ends[2] + DAY
    good = pairs(a, e.ends, 100, (1_000, 1_000, 1_000))
    no("TooEarly", claiming(a, e, good))
    advance_time(c.w3, e.window_start + HOUR + 1 - c.now())
    assert no("NotParticipant", claiming(x, e, good)) == (x.address,)
    assert no("NoMeter", claiming(h, e, good)) == (h.address,)
    short = demand.claim_evidence(good)[:-1]
    assert no("EvidenceLength", lambda: claim(a, dr, e, short)) == (len(short), demand.EVIDENCE_SIZE)

    def with_record(i: int, record: tuple[bytes, bytes]) -> Callable[[], Any]:
        return claiming(a, e, [*good[:i], record, *good[i + 1 :]])

    # a statement signed by another key (b's meter, or a made-up one) for a's device and window
    meter = c.market.functions.meterOf(a.address).call()[0]
    raw = statement.encode(statement.decode(good[3][0])._replace(import_wh=10**9))
    for secret in (b.meter_secret, keccak(text="not-a-meter")):
        sig = statement.sign(raw, secret)
        assert no("WrongSigner", with_record(3, (raw, sig))) == (3, statement.recover_signer(raw, sig), meter)
    # a's own genuine statement replayed from another window (the event hour's end in place of its start)
    assert no("WrongWindow", with_record(0, good[1])) == (0, e.ends[1], e.ends[0])
    # baseline hours the household picked: the days just before the event, after it heard of it
    picked = demand.evidence_windows(e.window_start, e.window_start - HOUR)  # as if announced an hour ahead
    assert picked[2:] != e.ends[2:]
    chosen = pairs(a, picked, 100, (5_000, 5_000, 5_000))
    assert no("WrongWindow", claiming(a, e, chosen)) == (2, picked[2], e.ends[2])
    # the same meter key signing for another device word, a statement that is not a statement, malleated s
    other_dev = signed(a, e.ends[5], METER_BASE + 200_000, dev="another-meter")
    assert no("DeviceMismatch", with_record(5, other_dev))[0] == 5
    not_statement = (b"GPSTMTv2" + good[4][0][8:], good[4][1])
    assert no("BadMagic", with_record(4, not_statement)) == (4, b"GPSTMTv2")
    raw6, sig6 = good[6]
    high_s = (statement.SECP256K1_N - int.from_bytes(sig6[32:64], "big")).to_bytes(32, "big")
    twin = sig6[:32] + high_s + bytes([55 - sig6[64]])  # the same signature's malleated twin
    assert no("MalformedSignature", with_record(6, (raw6, twin))) == (6, 3, high_s)
    assert no("MalformedSignature", with_record(6, (raw6, sig6[:64] + b"\x1d")))[:2] == (6, 1)  # v = 29
    # the counter going backwards over a baseline hour (genuinely signed by a's meter)
    backwards = pairs(a, e.ends, 100, (1_000, -10, 1_000))
    assert no("CounterBackwards", claiming(a, e, backwards)) == (2, METER_BASE + 100_000, METER_BASE + 99_990)
    assert dr.functions.claimOf(e.id, a.address).call() == [0, False]
    assert int(c.token.functions.balanceOf(dr.address).call()) == BUDGET  # nothing refused cost anything

    claim(a, dr, e, demand.claim_evidence(good))
    assert no("AlreadyClaimed", claiming(a, e, good)) == (e.id, a.address)
    # a leaves and b gets a's meter key registered as its own (the Market refuses a key a participant holds;
    # the key is public: it signs what the community sees), then claims a's cut a second time with a's
    # statements: one claim per meter key
    c.admin.transact(c.market.functions.remove(a.address))
    c.admin.transact(c.market.functions.setMeter(b.address, meter))
    assert no("MeterAlreadyClaimed", claiming(b, e, good)) == (e.id, meter, a.address)
    assert no("NotOperator", lambda: a.sender.transact(dr.functions.reclaim(e.id))) == (a.address,)
    advance_time(c.w3, e.claim_by + 1 - c.now())
    assert no("TooLate", claiming(b, e, pairs(b, e.ends, 0, (900, 900, 900))))[2] == e.claim_by
    check_balance_covers_debts(c, dr)
    c.admin.transact(dr.functions.reclaim(e.id))
    no("AlreadyReclaimed", lambda: c.admin.transact(dr.functions.reclaim(e.id)))
    a.sender.transact(dr.functions.withdraw(e.id))
    assert check_balance_covers_debts(c, dr) == 0


def test_demand_response_operator_cli_on_anvil(anvil: Any, capsys: Any) -> None:
    """`gridpact contracts demand announce|status|reclaim` end to end on a real node: a key that is not
    the operator's is refused by name, the operator's announces (approve and escrow), status reads it
    back, and the budget comes back after the deadline."""
    w3 = Web3(Web3.HTTPProvider(anvil.info.url, request_kwargs={"timeout": 30}))
    snapshot = chain_snapshot(w3)
    try:
        addresses = deploy_all(w3, DEV_PRIVATE_KEYS[0])
        token, _ = contracts_at(w3, addresses)
        admin = Sender(w3, DEV_PRIVATE_KEYS[0])  # the community: the operator until one is named
        admin.transact(token.functions.mint(admin.address, 10**6))
        common = ["--rpc", anvil.info.url, "--demand", addresses["demand"]["electricity"]]

        def gp(*argv: str) -> tuple[int, str]:
            rc = cli.main(["demand", argv[0], *common, *argv[1:]])
            out = capsys.readouterr()
            return rc, out.out + out.err

        latest = int(w3.eth.get_block("latest").get("timestamp", 0))
        start = (latest // HOUR + 2) * HOUR
        offer = ["--window", str(start), "--reward", "200", "--budget", "1000000", "--claim-hours", "2"]
        rc, out = gp("announce", *offer, "--dev-key", "1")
        assert rc == 1 and "NotOperator" in out
        rc, out = gp("announce", "--window", "2026-12-08T18:00", *offer[2:], "--dev-key", "0")
        assert rc == 1 and "UTC offset" in out
        rc, out = gp("announce", *offer, "--dev-key", "0")
        assert rc == 0 and out.startswith(f"event 1: hour {start}, 200 per kWh, budget 1000000"), out
        assert int(token.functions.balanceOf(addresses["demand"]["electricity"]).call()) == 10**6
        rc, out = gp("status", "1")
        assert (
            rc == 0 and f"baseline  hours starting {start - DAY}, {start - 2 * DAY}, {start - 3 * DAY}" in out
        )
        assert "claimed   0 Wh, owed 0, remainder 1000000" in out
        rc, out = gp("reclaim", "1", "--dev-key", "0")
        assert rc == 1 and "TooEarly(1" in out
        advance_time(w3, start + 2 * HOUR + 1 - latest)
        rc, out = gp("reclaim", "1", "--dev-key", "0")
        assert rc == 0 and out.startswith(f"reclaim: 1000000 returned to {admin.address}"), out
        with pytest.raises(SystemExit):
            cli.main(["demand", "announce", *common, "--dev-key", "0"])  # --window and the offer are required
    finally:
        chain_revert(w3, snapshot)
