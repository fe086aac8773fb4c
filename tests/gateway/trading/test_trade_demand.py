"""Demand response as a household takes part (gateway/trading/demand.py).

The claim a gateway builds from its meter's statements (pure), then the whole path on a real
DemandResponse contract (py-evm, the real Market and token): the operator announces, the
gateway's taker claims the cut its meter's device-signed statements prove, refuses to claim a rise,
survives a restart without claiming twice, and collects its reward after the deadline.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from eth_account import Account

from contracts.harness import Community, advance_time, household_key
from gateway.chain.journal import Journal
from gateway.chain.market import market_abi
from gateway.chain.sender import TxSender
from gateway.dashboard.household import demand_rows, read_ledger
from gateway.storage import ReadingStore
from gateway.trading.chainrun import ChainRunner
from gateway.trading.demand import DemandChain, DemandTaker, DrEvent, evidence_ends, plan_claim, run_demand
from gridpact.core import statement
from hil.services import DEV_PRIVATE_KEYS, in_process_web3

HOUR, DAY = 3600, 86400
DIGEST = bytes(32)
SECRET = bytes.fromhex("11" * 32)
W = 1_800_003_600  # an hour-aligned event window
EVENT = DrEvent(1, W, 200, 10**6, W + 2 * DAY, W - HOUR)  # baseline: the 3 days before, same hour


def statements_for(imports: dict[int, int], dev: str = "meter-a", secret: bytes = SECRET):
    """Signed statements by window end, from cumulative import counters."""
    signed = {}
    for end, imp in imports.items():
        raw = statement.encode(statement.Statement(dev, end, imp, 0, 3, DIGEST))
        signed[end] = (raw, statement.sign(raw, secret))
    return signed.get


def counters(event_wh: int, baseline_wh: tuple[int, int, int], ev: DrEvent = EVENT) -> dict[int, int]:
    """Cumulative import at each evidence window end: each window starts from 10_000 Wh."""
    out = {}
    for start, wh in zip(evidence_ends(ev)[::2], (event_wh, *baseline_wh), strict=True):
        out[start], out[start + HOUR] = 10_000, 10_000 + wh
    return out


def test_the_evidence_is_each_windows_start_and_end_event_first() -> None:
    assert evidence_ends(EVENT) == (W, W + HOUR, W - DAY, W - DAY + HOUR, W - 2 * DAY, W - 2 * DAY + HOUR,
                                    W - 3 * DAY, W - 3 * DAY + HOUR)  # fmt: skip


def test_a_cut_below_the_baseline_is_claimed_with_all_eight_statements() -> None:
    claim = plan_claim(EVENT, statements_for(counters(400, (1_000, 1_300, 1_000))))
    assert not isinstance(claim, str)
    assert (claim.actual_wh, claim.baseline_wh, claim.reduction_wh) == (400, 1_100, 700)
    assert len(claim.evidence) == 8 * 165


def test_no_claim_without_a_cut_a_statement_or_sound_counters() -> None:
    assert plan_claim(EVENT, statements_for(counters(1_200, (1_000, 1_300, 1_000)))) == "no_reduction"
    assert plan_claim(EVENT, statements_for(counters(1_100, (1_000, 1_300, 1_000)))) == "no_reduction"
    partial = counters(400, (1_000, 1_300, 1_000))
    del partial[W - 2 * DAY]
    assert plan_claim(EVENT, statements_for(partial)) == "missing"
    backwards = counters(400, (1_000, 1_300, 1_000))
    backwards[W - DAY + HOUR] = 9_000  # a meter replaced: the counter restarted
    assert plan_claim(EVENT, statements_for(backwards)) == "bad_evidence"
    raw, sig = statements_for(counters(400, (1_000, 1_300, 1_000)))(W)  # type: ignore[misc]
    shifted = {end: (raw, sig) for end in evidence_ends(EVENT)}  # one statement offered for every window
    assert plan_claim(EVENT, shifted.get) == "bad_evidence"


def test_a_household_gateway_claims_its_metered_cut_once_and_collects_after_the_deadline(
    tmp_path: Path,
) -> None:
    """Two households on a real DemandResponse: one cut its import in the event hour (paid), one
    imported more (no claim sent: it would only cost gas). The cutting gateway restarts between
    its claim and the deadline and neither claims twice nor forgets to withdraw."""
    from contracts.deploy import demand_at

    c = Community(in_process_web3(), DEV_PRIVATE_KEYS[0])
    operator = c.add_household(household_key(9, "dr"))
    c.admin.transact(c.market.functions.setOperator(operator.address))
    dr = demand_at(c.w3, c.addresses)
    budget, reward = 10**6, 200  # reward: token base units per kWh
    c.admin.transact(c.token.functions.mint(operator.address, budget))
    operator.sender.transact(c.token.functions.approve(dr.address, budget))
    start = (c.now() // HOUR + 2) * HOUR
    operator.sender.transact(dr.functions.announce(start, reward, budget, start + 2 * HOUR))
    baseline = [int(w) for w in dr.functions.baselineWindows(1).call()]

    def gateway(hh, event_wh: int) -> tuple[DemandTaker, Journal, list[str], ReadingStore]:
        store = ReadingStore(tmp_path / f"{hh.device}.db", hh.device)
        for w, wh in zip((start, *baseline), (event_wh, 1_000, 1_300, 1_000), strict=True):
            for end, imp in ((w, 50_000), (w + HOUR, 50_000 + wh)):
                raw = statement.encode(statement.Statement(hh.device, end, imp, 0, 3, DIGEST))
                store.add_statement(hh.device, end, raw, statement.sign(raw, hh.meter_secret))
        journal, events = Journal(tmp_path / f"{hh.device}-trading.db"), []
        return taker_of(hh, journal, events, store), journal, events, store

    def taker_of(hh, journal: Journal, events: list[str], store: ReadingStore) -> DemandTaker:
        abi = market_abi() + [e for e in market_abi("DemandResponse") if e.get("type") == "error"]
        sender = TxSender(c.w3, Account.from_key(hh.key), journal, abi)
        return DemandTaker(DemandChain(c.w3, dr.address, sender), journal, store.statement_at, hh.address, 0.0,
                           events.append)  # fmt: skip

    cutter, riser = c.add_household(household_key(0, "dr")), c.add_household(household_key(1, "dr"))
    for hh in (cutter, riser):
        c.set_meter(hh)
    t_cut, j_cut, ev_cut, store_cut = gateway(cutter, 400)  # baseline 1_100 Wh: a cut of 700 Wh
    t_rise, j_rise, ev_rise, _ = gateway(riser, 1_500)

    for t in (t_cut, t_rise):  # the event hour has not ended: nothing to do yet
        t.refresh()
        t.step(c.now())
    assert ev_cut == ["dr_event_seen"] and j_cut.get("dr:1") is None
    # our clock runs ahead of the chain's: the contract refuses the claim as too early, which is not for
    # good (counted once, tried again, nothing journaled as given up)
    t_cut.step(start + HOUR + 200)
    t_cut.step(start + HOUR + 400)
    assert ev_cut == ["dr_event_seen", "dr_claim_refused"] and j_cut.get("dr:1") is None
    advance_time(c.w3, start + HOUR - c.now() + 1)
    for t in (t_cut, t_rise):
        t.refresh()
        t.step(c.now())
    assert j_cut.get("dr:1") == "claimed" and "dr_claimed" in ev_cut
    assert tuple(dr.functions.claimOf(1, cutter.address).call()) == (700, False)
    assert j_rise.get("dr:1") == "none" and "dr_no_reduction" in ev_rise
    assert j_rise.tx("dr-claim:1") is None  # no transaction for a claim the contract would refuse
    assert tuple(dr.functions.claimOf(1, riser.address).call()) == (0, False)

    # the cutter's gateway restarts: the journal says what it did
    j_cut.close()
    j_cut, ev_cut = Journal(tmp_path / f"{cutter.device}-trading.db"), []
    t_cut = taker_of(cutter, j_cut, ev_cut, store_cut)
    t_cut.refresh()
    t_cut.step(c.now())
    assert ev_cut == [] and c.token.functions.balanceOf(cutter.address).call() == 0
    advance_time(c.w3, start + 2 * HOUR - c.now() + 90)  # past the deadline and the clock slack
    t_cut.refresh()
    t_cut.step(c.now())
    assert j_cut.get("dr:1") == "paid" and ev_cut == ["dr_paid"]
    assert c.token.functions.balanceOf(cutter.address).call() == reward * 700 // 1000
    # what the household's dashboard reads: the event, the cut claimed, the reward paid
    assert json.loads(j_cut.get("dr:ev:1") or "")["window_start"] == start
    assert json.loads(j_cut.get("dr:claim:1") or "") == {
        "actual_wh": 400,
        "baseline_wh": 1_100,
        "reduction_wh": 700,
    }
    assert j_cut.get("dr:paid:1") == str(reward * 700 // 1000)
    rows = read_ledger(tmp_path / f"{cutter.device}-trading.db", c.now()).demand
    assert [(r["id"], r["state"], r["reduction_wh"], r["paid"]) for r in rows] == [(1, "paid", 700, 140)]
    assert tuple(dr.functions.claimOf(1, cutter.address).call()) == (700, True)
    t_cut.step(c.now())  # done: nothing more is sent
    assert ev_cut == ["dr_paid"]
    t_rise.step(c.now())
    assert j_rise.get("dr:1") == "none"

    # the gateway's task (`run_demand`, as the service runs it): a second event, claimed by the loop
    c.admin.transact(c.token.functions.mint(operator.address, budget))
    operator.sender.transact(c.token.functions.approve(dr.address, budget))
    start2 = (c.now() // HOUR + 2) * HOUR
    operator.sender.transact(dr.functions.announce(start2, reward, budget, start2 + 2 * HOUR))
    base2 = [int(w) for w in dr.functions.baselineWindows(2).call()]
    for w, wh in zip((start2, *base2), (100, 600, 600, 600), strict=True):
        for end, imp in ((w, 90_000), (w + HOUR, 90_000 + wh)):
            raw = statement.encode(statement.Statement(cutter.device, end, imp, 0, 3, DIGEST))
            store_cut.add_statement(cutter.device, end, raw, statement.sign(raw, cutter.meter_secret))
    advance_time(c.w3, start2 + HOUR - c.now() + 1)

    class ChainClock:
        def now(self) -> float:
            return float(c.now())

        async def sleep(self, seconds: float) -> None:
            await asyncio.sleep(min(seconds, 0.02))

    async def loop() -> None:
        runner = ChainRunner(ChainClock())
        task = asyncio.create_task(run_demand(t_cut, runner, ChainClock(), poll_s=1.0))
        try:
            for _ in range(500):
                if j_cut.get("dr:2") == "claimed":
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            runner.close()
        assert task.cancelled()

    asyncio.run(loop())
    assert j_cut.get("dr:2") == "claimed" and tuple(dr.functions.claimOf(2, cutter.address).call()) == (
        500,
        False,
    )


def test_a_claim_mined_and_reverted_is_sent_again_not_read_back_for_ever(tmp_path: Path) -> None:
    """The state changed between the claim's dry run and its block, so it was mined and reverted.
    The journal keeps it under the claim's key; the next pass must send a new claim (after a dry
    run of its own), not read that receipt back until the deadline and give the reward up."""
    from contracts.deploy import demand_at

    c = Community(in_process_web3(), DEV_PRIVATE_KEYS[0])
    operator = c.add_household(household_key(9, "dr"))
    c.admin.transact(c.market.functions.setOperator(operator.address))
    dr = demand_at(c.w3, c.addresses)
    c.admin.transact(c.token.functions.mint(operator.address, 10**6))
    operator.sender.transact(c.token.functions.approve(dr.address, 10**6))
    start = (c.now() // HOUR + 2) * HOUR
    operator.sender.transact(dr.functions.announce(start, 200, 10**6, start + 2 * HOUR))
    cutter = c.add_household(household_key(0, "dr"))
    c.set_meter(cutter)
    store = ReadingStore(tmp_path / "r.db", cutter.device)
    windows = (start, *(int(w) for w in dr.functions.baselineWindows(1).call()))
    for w, wh in zip(windows, (400, 1_000, 1_000, 1_000), strict=True):
        for end, imp in ((w, 50_000), (w + HOUR, 50_000 + wh)):
            raw = statement.encode(statement.Statement(cutter.device, end, imp, 0, 3, DIGEST))
            store.add_statement(cutter.device, end, raw, statement.sign(raw, cutter.meter_secret))
    journal, events = Journal(tmp_path / "trading.db"), []
    abi = market_abi() + [e for e in market_abi("DemandResponse") if e.get("type") == "error"]
    sender = TxSender(c.w3, Account.from_key(cutter.key), journal, abi)
    taker = DemandTaker(DemandChain(c.w3, dr.address, sender), journal, store.statement_at, cutter.address, 0.0,
                        events.append)  # fmt: skip
    advance_time(c.w3, start + HOUR - c.now() + 1)
    # the reverted claim: sent with its own gas (no dry run), mined, status 0, journaled under the claim's key
    nonce = c.w3.eth.get_transaction_count(cutter.address)
    tx = dr.functions.claim(1, bytes(8 * 165)).build_transaction(
        {"from": cutter.address, "nonce": nonce, "gas": 400_000, "chainId": c.w3.eth.chain_id}
    )
    signed = Account.from_key(cutter.key).sign_transaction(tx)
    tx_hash = c.w3.eth.send_raw_transaction(signed.raw_transaction)
    assert c.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 0
    journal.put_tx("dr-claim:1", nonce, bytes(signed.raw_transaction), "0x" + bytes(tx_hash).hex())

    taker.refresh()
    taker.step(c.now())
    assert events == ["dr_event_seen", "dr_claim_refused"] and journal.get("dr:1") is None
    assert journal.tx("dr-claim:1") is None  # forgotten: the next pass sends a new one
    taker.step(c.now())
    assert journal.get("dr:1") == "claimed" and events[-1] == "dr_claimed"
    assert tuple(dr.functions.claimOf(1, cutter.address).call()) == (600, False)
    assert events.count("dr_claim_refused") == 1


def test_the_dashboard_shows_each_event_with_what_the_gateway_did() -> None:
    kv = [("dr:ev:1", '{"window_start": 7200, "claim_by": 14400, "reward_per_kwh": 200, "budget": 5}'),
          ("dr:ev:2", '{"window_start": 90000, "claim_by": 97200, "reward_per_kwh": 300, "budget": 5}'),
          ("dr:ev:3", '{"window_start": 3600, "reward_per_kwh": 100}'), ("dr:3", "none"),
          ("dr:ev:4", "not json"), ("dr:ev:x", '{"window_start": 1}'),
          ("dr:claim:1", '{"reduction_wh": 700, "baseline_wh": 1100}'), ("dr:1", "claimed")]  # fmt: skip
    rows = demand_rows(kv, now=10_000)
    assert [(r["id"], r["state"], r["reduction_wh"], r["paid"]) for r in rows] == [
        (2, "coming", None, None), (1, "claimed", 700, None), (3, "no cut to claim", None, None)]  # fmt: skip
    assert demand_rows(kv, now=90_001)[0]["state"] == "under way"
    assert demand_rows(kv, now=95_000)[0]["state"] == "to be claimed"
