"""Demand response as a household takes part: claim the reward for a metered cut, then collect it.

The micro-grid operator announces an event on the DemandResponse contract (Ali et al., section 3.3):
cut your import in hour window W, reward R per kWh. The household is paid for the cut its own meter
proves: its import in W against its baseline, the mean import of the same hour on the contract's
baseline days (ended before the announcement, so nobody can inflate them once the event is known).
The evidence is the meter node's device-signed hourly statements the gateway already keeps for
settlement (`ReadingStore.statement_at`): two per window, its start and its end.

This task follows every event: after the window ends (plus `claim_delay_s` for the last statement),
it builds the evidence, works out the cut itself (`gridpact.core.demand`, the contract's rule) and
claims only a cut above zero (a claim the contract must refuse would only cost gas). After the
claim deadline it withdraws its share (pro rata when the claims exceed the budget). What it did for
each event is kept in the journal, so a restart neither claims twice nor forgets to withdraw.
Missing evidence is retried until the deadline, and counted once.

With a `[battery]` (its inverter on the LAN, gateway/inverter.py), the household also shifts energy
into the window: shortly before it, the battery is charged at the inverter's full power (from the
grid if need be, in hours that are not measured against the baseline), with a command that lapses by
itself at the window's start, so the battery then covers the house's load in self-consumption, as
it always does. A gateway that dies mid-charge therefore never leaves the battery charging. The
charge costs the round trip's loss (5 % in the home battery model, up to ~10 % on real ones) at
the tariff, and earns the reward on the energy it keeps out of the window's import: worth it for
any reward above a tenth of the tariff, so the gateway always takes part; the decision is
`battery_plan` (pure).
Other loads the household controls are not driven: no such seam exists yet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import Web3

from gateway.chain.abis import market_abi
from gateway.chain.errors import ChainError, RevertError
from gateway.chain.journal import Journal, TxRecord
from gateway.chain.sender import TxSender
from gateway.inverter import BatteryControl, InverterUnavailable
from gateway.trading.chainrun import ChainRunner
from gridpact.core import demand
from gridpact.core.clock import Clock
from gridpact.core.inverter import U16, Command, InverterStatus, Mode
from gridpact.core.statement import StatementRejected, decode

log = logging.getLogger("gridpact.gateway.trading")

HOUR = 3600
CLOCK_SLACK_S = 60  # the chain's clock may lag ours: a withdrawal waits this long past the deadline
Statements = Callable[[int], tuple[bytes, bytes] | None]  # window end -> (statement, r || s || v)
CHARGE_MARGIN = 1.25  # start charging this much earlier than the battery's room at full power takes


@dataclass(frozen=True)
class DrEvent:
    """An announced event as the contract keeps it."""

    id: int
    window_start: int
    reward_per_kwh: int
    budget: int
    claim_by: int
    announced_at: int  # fixes the baseline hours (`gridpact.core.demand.baseline_windows`)


@dataclass(frozen=True)
class Claim:
    """What we would claim for an event: the evidence bytes and the cut they prove."""

    evidence: bytes
    actual_wh: int
    baseline_wh: int
    reduction_wh: int


def evidence_ends(ev: DrEvent) -> tuple[int, ...]:
    """The statements' window ends, in the contract's order: the event window, then each baseline
    window, each as (its start, its end)."""
    return demand.evidence_windows(ev.window_start, ev.announced_at)


def plan_claim(ev: DrEvent, statements: Statements) -> Claim | str:
    """The claim our meter's statements support, or why there is none ("missing" evidence: perhaps
    later; "bad_evidence", "no_reduction": never)."""
    pairs: list[tuple[bytes, bytes]] = []
    imports: list[int] = []
    for end in evidence_ends(ev):
        found = statements(end)
        if found is None:
            return "missing"
        try:
            st = decode(found[0])
        except StatementRejected:
            return "bad_evidence"
        if st.window_end != end:
            return "bad_evidence"
        pairs.append(found)
        imports.append(st.import_wh)
    deltas = [imports[i + 1] - imports[i] for i in range(0, len(imports), 2)]
    if any(d < 0 for d in deltas):
        return "bad_evidence"  # a counter went backwards (a meter replaced): the contract refuses it
    actual, baseline = deltas[0], demand.baseline_wh(deltas[1:])
    cut = demand.reduction_wh(actual, deltas[1:])
    if cut <= 0:
        return "no_reduction"
    return Claim(demand.claim_evidence(pairs), actual, baseline, cut)


def charge_start(window_start: int, prepare_s: float, st: InverterStatus) -> float:
    """When to start charging for a window: as late as fills the battery's room at the inverter's full
    power (with a margin), never earlier than `prepare_s` before it."""
    if st.max_power_w <= 0:
        return float(window_start)
    need_s = CHARGE_MARGIN * 3600.0 * st.room_wh / st.max_power_w
    return window_start - min(prepare_s, need_s)


def battery_plan(
    windows: list[int],
    now: float,
    prepare_s: float,
    st: InverterStatus,
    sales: Sequence[tuple[int, int]] = (),
) -> Command | None:
    """The command for the battery now, given the known event windows' starts (those not yet over)
    and the household's own sales ((start, end) of each agreed delivery): charge at full power until
    the next window or sale starts (the command lapses then), never during a window or a sale (the
    charge would eat the surplus the household sold); None: leave the inverter alone."""
    if any(a <= now < b for a, b in sales):
        return None
    prev_end = -math.inf
    for w in sorted(windows):
        if w <= now < w + HOUR:
            return None  # a window in progress: the battery covers the house, it does not charge
        start = max(charge_start(w, prepare_s, st), prev_end)
        if start <= now < w and st.room_wh > 0 and st.max_power_w > 0:
            until = min([w, *(a for a, _ in sales if a > now)])
            return Command(Mode.CHARGE, min(st.max_power_w, U16), max(1, min(U16, math.ceil(until - now))))
        prev_end = w + HOUR
    return None


def sales_between(journal: Journal, t0: float, t1: float) -> list[tuple[int, int]]:
    """(start, end) of our seller agreements still to deliver whose delivery overlaps [t0, t1)."""
    out = []
    for r in journal.agreements("signing", "signed", "submitted"):
        a, b = int(r.terms["deliveryStart"]), int(r.terms["deliveryEnd"])
        if r.role == "seller" and a < t1 and b > t0:
            out.append((a, b))
    return sorted(out)


class DemandChain:
    """The DemandResponse contract through this gateway's sender (blocking: call in the chain thread)."""

    def __init__(self, w3: Web3, address: str, sender: TxSender) -> None:
        self.sender = sender
        self.contract: Any = w3.eth.contract(
            address=to_checksum_address(address), abi=market_abi("DemandResponse")
        )

    def event_count(self) -> int:
        return int(self.sender.call(self.contract.functions.eventCount()))

    def event(self, event_id: int) -> DrEvent:
        start, claim_by, announced, reward, budget, _total, _reclaimed = self.sender.call(
            self.contract.functions.eventOf(event_id)
        )
        return DrEvent(event_id, int(start), int(reward), int(budget), int(claim_by), int(announced))

    def total_wh(self, event_id: int) -> int:
        """All the event's claims together (what a pro-rata payout divides by)."""
        return int(self.sender.call(self.contract.functions.eventOf(event_id))[5])

    def claim_of(self, event_id: int, household: str) -> tuple[int, bool]:
        wh, paid = self.sender.call(self.contract.functions.claimOf(event_id, to_checksum_address(household)))
        return int(wh), bool(paid)

    def claim(self, event_id: int, evidence: bytes) -> TxRecord:
        return self.sender.send(f"dr-claim:{event_id}", self.contract.functions.claim(event_id, evidence))

    def withdraw(self, event_id: int) -> TxRecord:
        return self.sender.send(f"dr-withdraw:{event_id}", self.contract.functions.withdraw(event_id))


class DemandTaker:
    """One household's part in every event: what it did is journaled under `dr:<id>` (claimed,
    paid, none: nothing to claim, missed: no evidence by the deadline)."""

    def __init__(
        self, chain: DemandChain, journal: Journal, statements: Statements, me: str,
        claim_delay_s: float, count: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.chain = chain
        self.journal = journal
        self.statements = statements
        self.me = me
        self.claim_delay_s = claim_delay_s
        self.count = count
        self.events: dict[int, DrEvent] = {}
        self._missing: set[int] = set()
        self._resumed = False
        self._refused: set[str] = set()  # transaction keys the contract refused: counted and logged once

    def _note_event(self, ev: DrEvent) -> None:
        """What the household's dashboard shows of an event (`dr:ev:<id>`; read-only there)."""
        self.journal.set(f"dr:ev:{ev.id}", json.dumps({"window_start": ev.window_start, "claim_by": ev.claim_by,
                                                        "reward_per_kwh": ev.reward_per_kwh, "budget": ev.budget}))  # fmt: skip

    def state(self, event_id: int) -> str | None:
        return self.journal.get(f"dr:{event_id}")

    def _set(self, event_id: int, state: str) -> None:
        self.journal.set(f"dr:{event_id}", state)

    def refresh(self) -> None:
        """Learn the events announced since we last looked (blocking)."""
        known = int(self.journal.get("dr:seen", "0") or 0)
        count = self.chain.event_count()
        for event_id in range(known + 1, count + 1):
            ev = self.chain.event(event_id)
            self.events[event_id] = ev
            self._note_event(ev)
            self.count("dr_event_seen")
            log.info("event=dr_announced id=%d window=%d reward_per_kwh=%d budget=%d claim_by=%d", event_id,
                     ev.window_start, ev.reward_per_kwh, ev.budget, ev.claim_by)  # fmt: skip
        if count > known:
            self.journal.set("dr:seen", str(count))
        if not self._resumed:  # once, at start: the events a previous run left unfinished
            self._resumed = True
            for event_id in range(1, known + 1):
                if self.state(event_id) not in ("paid", "none", "missed"):
                    self.events[event_id] = self.chain.event(event_id)
                    self._note_event(self.events[event_id])

    def coming_windows(self, now: float) -> list[int]:
        """The starts of the known events' windows that are not over."""
        return sorted(ev.window_start for ev in self.events.values() if now < ev.window_start + HOUR)

    def step(self, now: float) -> None:
        """Claim what can be claimed now, withdraw what is due (blocking)."""
        for event_id, ev in list(self.events.items()):
            state = self.state(event_id)
            if state in ("paid", "none", "missed"):
                del self.events[event_id]
            elif state == "claimed":
                if now > ev.claim_by + CLOCK_SLACK_S:
                    self._withdraw(ev)
            elif now > ev.claim_by:
                self._set(event_id, "missed")
                self.count("dr_missed")
            elif now >= ev.window_start + HOUR + self.claim_delay_s:
                self._claim(ev)

    def _claim(self, ev: DrEvent) -> None:
        plan = plan_claim(ev, self.statements)
        if plan == "missing":
            if ev.id not in self._missing:
                self._missing.add(ev.id)
                self.count("dr_evidence_missing")  # once; tried again each pass until the deadline
            return
        if isinstance(plan, str):
            self._set(ev.id, "none")
            self.count(f"dr_{plan}")
            return
        if not self._mined(
            f"dr-claim:{ev.id}", lambda: self.chain.claim(ev.id, plan.evidence), "dr_claim_refused"
        ):
            return  # refused now (the chain's clock behind ours: TooEarly) is not for good: again until the deadline
        self.journal.set(f"dr:claim:{ev.id}", json.dumps({"actual_wh": plan.actual_wh, "baseline_wh": plan.baseline_wh,
                                                          "reduction_wh": plan.reduction_wh}))  # fmt: skip
        self._set(ev.id, "claimed")
        self.count("dr_claimed")
        log.info("event=dr_claimed id=%d actual_wh=%d baseline_wh=%d reduction_wh=%d", ev.id, plan.actual_wh,
                 plan.baseline_wh, plan.reduction_wh)  # fmt: skip

    def _withdraw(self, ev: DrEvent) -> None:
        wh, paid = self.chain.claim_of(ev.id, self.me)
        if not paid and not self._mined(
            f"dr-withdraw:{ev.id}", lambda: self.chain.withdraw(ev.id), "dr_withdraw_refused"
        ):
            return  # tried again next pass: the reward stays ours in the contract
        total = self.chain.total_wh(ev.id)
        self.journal.set(f"dr:paid:{ev.id}", str(demand.payout(ev.reward_per_kwh, ev.budget, total, wh)))
        self._set(ev.id, "paid")
        self.count("dr_paid")

    def _mined(self, key: str, send: Callable[[], TxRecord], refused: str) -> bool:
        """Send (journaled under `key`: a restart re-sends the same transaction) and wait for the
        receipt; False when the contract refused it (counted as `refused` and logged the first time; a
        dry run that reverts costs no gas; one mined and reverted is forgotten, so the next pass sends
        a new one). An outage propagates (the runner waits it out)."""
        try:
            send()
            if self.chain.sender.wait(key).status == 1:
                return True
            why = "reverted when mined"
            # the state changed between the dry run and the block: the next pass tries a new transaction
            # (after its own dry run), where the journaled one would only be read back, reverted, for ever
            self.chain.sender.journal.drop_tx(key)
        except RevertError as exc:
            why = str(exc)
        if key not in self._refused:
            self._refused.add(key)
            self.count(refused)
            log.warning("event=dr_refused key=%s error=%s", key, why)
        return False


class BatteryShift:
    """Moves the battery for coming events through its inverter; an unreachable inverter is counted
    and logged once, then quietly retried until it answers again."""

    def __init__(
        self,
        inverter: BatteryControl,
        prepare_s: float,
        count: Callable[[str], None],
        journal: Journal | None = None,
    ) -> None:
        self.inverter, self.prepare_s, self.count, self.journal = inverter, prepare_s, count, journal
        self.down = False
        self.charging_for: int | None = None

    async def act(self, windows: list[int], now: float) -> float | None:
        """Command the battery for `now`; the time to look again (None: nothing coming)."""
        first = next((w for w in windows if w > now), None)
        if first is None or self.prepare_s <= 0:
            return None
        if now < first - self.prepare_s:
            return first - self.prepare_s
        sales = sales_between(self.journal, now, first) if self.journal is not None else []
        try:
            st = await self.inverter.status()
            cmd = battery_plan(windows, now, self.prepare_s, st, sales)
            if cmd is not None:
                await self.inverter.command(cmd)
        except InverterUnavailable as exc:
            if not self.down:
                self.down = True
                self.count("dr_battery_unreachable")
                log.warning("event=dr_battery_unreachable error=%s", exc)
            return now + 60.0
        if self.down:
            self.down = False
            log.info("event=dr_battery_reachable")
        if (
            cmd is None
        ):  # not yet (looked again at the start), or full, in a window or a sale (looked again soon)
            start = charge_start(first, self.prepare_s, st)
            selling_until = max((b for a, b in sales if a <= now < b), default=now + 300.0)
            return start if start > now else min(float(first), selling_until)
        if self.charging_for != first:
            self.charging_for = first
            self.count("dr_battery_charged")
            log.info("event=dr_battery_charging window=%d power_w=%d soc_permille=%d", first, cmd.power_w,
                     st.soc_permille)  # fmt: skip
        return now + 300.0  # renewed while it charges (an inverter rebooted meanwhile forgot it)


async def run_demand(
    taker: DemandTaker, runner: ChainRunner, clock: Clock, poll_s: float, battery: BatteryShift | None = None
) -> None:
    """Every `poll_s` of the gateway clock (sooner when the battery must act): new events, then
    claims and withdrawals, then the battery."""
    while True:
        wake = clock.now() + poll_s
        try:
            await runner.call(taker.refresh)
            await runner.call(taker.step, clock.now())
        except asyncio.CancelledError:
            raise
        except ChainError as exc:  # a refused read: logged, tried again next pass
            taker.count("dr_chain_error")
            log.warning("event=dr_chain_error error=%s", exc)
        if battery is not None:
            now = clock.now()
            again = await battery.act(taker.coming_windows(now), now)
            if again is not None:
                wake = min(wake, max(again, now + 1.0))
        await clock.sleep(wake - clock.now())
