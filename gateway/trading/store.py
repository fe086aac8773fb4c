"""The community store: a storage operator's gateway trading its battery (Ali et al., the
large-scale energy storage model).

The store is a participant like a household, with its own meter at its own grid connection and a
battery behind an inverter (gateway/inverter.py), and no load of its own. It buys in the hours it
is told to (`[store] buy_hours`: when the households' PV runs over) and sells in others
(`sell_hours`: the evening), through the same negotiation, signatures and Market as any household.
Two pieces make a household's agent a store's:

* `StorePlan` stands in for the forecast: a window's "net demand" is what the battery can take
  (a buy hour) or give (a sell hour) at the inverter's power, after what the store has already
  agreed for the windows before it;
* `run_store` makes the meter show what was agreed: each window it charges at the rate that
  imports the window's net bought energy by the window's end (discharges for a net sale), from
  what the meter says has moved so far, and holds the charge in windows with nothing agreed.

Payment rule (and why it is not the paper's): a sale to the store settles like any sale, from the
store's meter evidence of the energy taken in the window. The paper rewards a seller only once
the store's output is used by another household; but energy in a shared battery has no owner, so
which seller's energy "was used" is an arbitrary attribution, and the deferral makes sellers
carry the store's risk of never reselling. Paid on the store's metered import, the seller is paid
for what the store provably took; the store carries its own resale risk, priced into its spread.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from gateway.chain.journal import AgreementRecord, Journal
from gateway.inverter import BatteryControl, InverterUnavailable
from gateway.trading.ports import ReadingSource
from gridpact.core.clock import Clock
from gridpact.core.inverter import U16, Command, InverterStatus, Mode

log = logging.getLogger("gridpact.gateway.trading")

HOUR = 3600
# of the room or the charge, for the round trip's losses: never promise what it cannot move
LOSS_MARGIN = 0.95
# of the inverter's power: room to catch up on a command that arrived late
POWER_MARGIN = 0.9
# aim past the agreed energy: a shortfall is refunded or disputed, 2 % more costs little
DISPATCH_MARGIN = 1.02
DELIVERING = ("signed", "submitted", "reported", "closed")  # agreements the store must deliver or take


@dataclass(frozen=True)
class StoreSchedule:
    """When the store buys and when it sells (UTC hours of a window's start), and what it keeps."""

    buy_hours: frozenset[int]
    sell_hours: frozenset[int]
    reserve_permille: int = 100


def agreed_wh(records: list[AgreementRecord], start: int, end: int) -> int:
    """Net energy the store agreed to take (+, bought) or give (-, sold) in windows starting in [start, end)."""
    total = 0
    for r in records:
        if r.state in DELIVERING and start <= int(r.terms["deliveryStart"]) < end:
            q = int(r.terms["quantityWh"])
            total += q if r.role == "buyer" else -q
    return total


def store_net_wh(
    window_start: int, length: int, st: InverterStatus, committed_wh: int, schedule: StoreSchedule
) -> float:
    """The store's "net demand" for a window: + what the battery can take in a buy hour, - what it can
    give in a sell hour, 0 otherwise; `committed_wh` is what it already agreed before this window."""
    hour = (window_start // HOUR) % 24
    limit = POWER_MARGIN * st.max_power_w * length / 3600.0
    stored = st.capacity_wh * st.soc_permille / 1000.0 + committed_wh
    if hour in schedule.buy_hours:
        return max(0.0, min(limit, LOSS_MARGIN * (st.capacity_wh - stored)))
    if hour in schedule.sell_hours:
        reserve = st.capacity_wh * schedule.reserve_permille / 1000.0
        return -max(0.0, min(limit, LOSS_MARGIN * (stored - reserve)))
    return 0.0


def dispatch(net_wh: int, moved_wh: int, now: float, start: int, end: int) -> Command:
    """The command that makes the meter show `net_wh` (+ import; with DISPATCH_MARGIN) over [start, end),
    `moved_wh` of it done by `now`: the rest at an even rate until the end, when it lapses; hold when
    nothing is left."""
    secs = end - now
    lifetime = max(1, min(U16, math.ceil(secs)))
    left = round(net_wh * DISPATCH_MARGIN) - moved_wh
    if secs <= 0 or net_wh == 0 or (net_wh > 0 and left < 1) or (net_wh < 0 and left > -1):
        return Command(Mode.HOLD, 0, lifetime)  # nothing (more) to move: keep the charge for later sales
    power = max(1, min(U16, math.ceil(abs(left) * 3600.0 / secs)))
    return Command(Mode.CHARGE if left > 0 else Mode.DISCHARGE, power, lifetime)


class StorePlan:
    """The store's stand-in for a forecast (`HouseholdPort.net_demand_wh`), on the inverter's last status."""

    def __init__(self, schedule: StoreSchedule, journal: Journal, clock: Clock) -> None:
        self.schedule, self.journal, self.clock = schedule, journal, clock
        self.status: InverterStatus | None = None  # refreshed by run_store; None: do not trade blind

    def net_demand_wh(self, start: int, length: int) -> float | None:
        if self.status is None:
            return None
        # what is agreed for windows not yet over (the one under way counted whole)
        now = int(self.clock.now())
        committed = agreed_wh(self.journal.agreements(*DELIVERING), now - length + 1, start)
        return store_net_wh(start, length, self.status, committed, self.schedule)

    def storage_wh(self) -> float | None:
        st = self.status
        return None if st is None else st.capacity_wh * st.soc_permille / 1000.0


async def run_store(
    plan: StorePlan, inverter: BatteryControl, readings: ReadingSource, clock: Clock, window_s: int,
    renew_s: float, count: Callable[[str], None],
) -> None:  # fmt: skip
    """Keep the battery doing what the store agreed, window by window; an unreachable inverter is
    counted and logged once (the plan then offers nothing: the store does not trade blind)."""
    down = False
    dispatched: int | None = None
    while True:
        now = clock.now()
        start = int(now // window_s * window_s)
        end = start + window_s
        try:
            st = await inverter.status()
            plan.status = st
            net = agreed_wh(plan.journal.agreements(*DELIVERING), start, start + 1)
            moved = readings.energy_between(start, int(now))
            cmd = dispatch(net, moved.import_wh - moved.export_wh, now, start, end)
            await inverter.command(cmd)
            if net and dispatched != start:
                dispatched = start
                count("store_window_dispatched")
                log.info("event=store_dispatch window=%d net_wh=%d mode=%s power_w=%d soc_permille=%d", start, net,
                         cmd.mode.name.lower(), cmd.power_w, st.soc_permille)  # fmt: skip
            if down:
                down = False
                log.info("event=store_inverter_reachable")
        except InverterUnavailable as exc:
            plan.status = None
            if not down:
                down = True
                count("store_inverter_unreachable")
                log.warning("event=store_inverter_unreachable error=%s", exc)
        except asyncio.CancelledError:
            raise
        await clock.sleep(max(0.05, min(renew_s, end - clock.now() + 0.01)))
