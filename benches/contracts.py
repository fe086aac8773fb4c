"""`gridpact bench contracts`: gas of each Market operation and per agreement over its whole life.

An agreement's life is submit + settle (with both parties' signed delivery reports). It is
measured alone and in batches of `--batch` (default 50) among a community of `--households`
(default 10), both for first use of the sellers' nonce slots and for steady state (nonces of
closed agreements reused), and for a worst case where every agreement has new parties.
`--operation [ROUNDS]` adds hourly trading as the gateways do it (each seller's nonce ring,
hour h submitted while h-1 delivers): steady-state gas per agreement, the one-off premium of a
slot's first use, and the figure amortised over 30 days.
Figures are gasUsed from real receipts (after refunds), on py-evm or on a started anvil.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth_account import Account

from contracts.harness import Community, Household, advance_time, household_key

if TYPE_CHECKING:
    from hil.community.market import Trade

TOKENS = 10**24
HOUR = 3600


@contextlib.contextmanager
def _chain(kind: str) -> Iterator[tuple[Any, str]]:
    from hil.services import DEV_PRIVATE_KEYS, AnvilNode, in_process_web3

    if kind == "inprocess":
        yield in_process_web3(), DEV_PRIVATE_KEYS[0]
        return
    from web3 import Web3

    node = AnvilNode()
    node.start()
    try:
        yield Web3(Web3.HTTPProvider(node.info.url, request_kwargs={"timeout": 60})), DEV_PRIVATE_KEYS[0]
    finally:
        node.close()


def _gas(receipt: Any) -> int:
    return int(receipt["gasUsed"])


def single_operations(c: Community, a: Household, b: Household) -> dict[str, int]:
    """Gas of each operation once, on its own transaction."""
    m, w3, out = c.market, c.w3, {}
    c.admin.transact(c.token.functions.mint(a.address, 10**18))
    a.sender.transact(c.token.functions.approve(m.address, 10**18))
    out["deposit"] = _gas(a.sender.transact(m.functions.deposit(10**18)))
    out["withdraw"] = _gas(a.sender.transact(m.functions.withdraw(1)))
    t = c.terms(a, b)
    out["submitAgreement (first use of nonce)"] = _gas(
        c.admin.transact(m.functions.submitAgreement(t.as_tuple(), *c.sign(t, a, b)))
    )
    advance_time(w3, 2 * HOUR + 60)
    out["settleBatch x1 (signed reports)"] = _gas(
        c.admin.transact(m.functions.settleBatch([c.settle_item(t, a, b, 1000, 1000)]))
    )
    t = c.terms(a, b, nonce=t.nonce)
    out["submitAgreement (reused nonce)"] = _gas(
        c.admin.transact(m.functions.submitAgreement(t.as_tuple(), *c.sign(t, a, b)))
    )
    advance_time(w3, 2 * HOUR + 60)
    out["report (first, on chain)"] = _gas(a.sender.transact(m.functions.report(t.as_tuple(), 1000)))
    out["report (second: settles)"] = _gas(b.sender.transact(m.functions.report(t.as_tuple(), 995)))
    t = c.terms(a, b)
    c.admin.transact(m.functions.submitAgreement(t.as_tuple(), *c.sign(t, a, b)))
    advance_time(w3, 2 * HOUR + 60)
    out["settleBatch x1 (reports differ: dispute)"] = _gas(
        c.admin.transact(m.functions.settleBatch([c.settle_item(t, a, b, 1000, 0)]))
    )
    out["resolveDispute"] = _gas(c.admin.transact(m.functions.resolveDispute(t.as_tuple(), 500)))
    t = c.terms(a, b)
    c.admin.transact(m.functions.submitAgreement(t.as_tuple(), *c.sign(t, a, b)))
    advance_time(w3, 2 * HOUR + 86_400 + 60)
    out["reclaim"] = _gas(b.sender.transact(m.functions.reclaim(t.as_tuple())))
    t = c.terms(a, b)
    out["cancelTerms"] = _gas(a.sender.transact(m.functions.cancelTerms(t.as_tuple())))
    loan = c.loan(a, b, 2000, 10**18, 6 * HOUR)
    out["submitLoan"] = _gas(
        c.admin.transact(c.loans.functions.submitLoan(loan.as_tuple(), *c.sign_loan(loan, a, b)))
    )
    out["reportReturn (first)"] = _gas(
        a.sender.transact(c.loans.functions.reportReturn(loan.as_tuple(), 2000, 2000))
    )
    out["reportReturn (second: closes)"] = _gas(
        b.sender.transact(c.loans.functions.reportReturn(loan.as_tuple(), 2000, 2000))
    )
    out["anchorReadings"] = _gas(
        a.sender.transact(m.functions.anchorReadings(c.now() // HOUR * HOUR - HOUR, b"\x01" * 32, 3600))
    )
    return out


def batch_life(
    c: Community, pairs: list[tuple[Household, Household]], nonce_base: int
) -> tuple[float, float]:
    """(submit, settle) gas per agreement for one batch over `pairs`, sellers' nonces from `nonce_base`."""
    m = c.market
    terms = [c.terms(s, b, nonce=nonce_base + i) for i, (s, b) in enumerate(pairs)]
    sigs = [c.sign(t, s, b) for t, (s, b) in zip(terms, pairs, strict=True)]
    sub = c.admin.transact(
        m.functions.submitAgreements(
            [t.as_tuple() for t in terms], [x[0] for x in sigs], [x[1] for x in sigs]
        )
    )
    advance_time(c.w3, 2 * HOUR + 60)
    items = [c.settle_item(t, s, b, 995, 1000) for t, (s, b) in zip(terms, pairs, strict=True)]
    settle = c.admin.transact(m.functions.settleBatch(items))
    n = len(pairs)
    return _gas(sub) / n, _gas(settle) / n


@dataclass
class Operation:
    """What `operation` measured: per-round gas per agreement and the slots the sellers' rings used."""

    per_round: list[float]  # (submit + settle) gas per agreement, one entry per settled round
    new_slots: list[int]  # slots written for the first time, per round
    agreements: int
    total_gas: int
    slots: int  # distinct (seller, nonce) slots written
    max_ring: int  # the most ring nonces one seller held at once
    windows: int = 0  # meter windows settled (one per household and hour it traded)
    unchained: int = 0  # of them, windows that needed a start statement (two signatures)

    @property
    def steady(self) -> float:
        """Gas per agreement with every slot reused: the run's gas less the first-use premium of the slots it
        opened, over its agreements (an hour's figure varies with its size, so no per-hour fit)."""
        return (self.total_gas - FIRST_USE_PREMIUM * self.slots) / self.agreements

    @property
    def premium_per_slot(self) -> float:
        """Gas above steady state, once per slot (its first use: a zero -> non-zero SSTORE)."""
        return float(FIRST_USE_PREMIUM)


# EVM (EIP-2200, EIP-2929): storing into a zero slot costs 20,000, overwriting a non-zero one 2,900 (both
# after the same cold access): what a slot's first agreement pays once, above a reused slot's
FIRST_USE_PREMIUM = 20_000 - 2_900


def operation(
    c: Community,
    hh: list[Household],
    batch: int,
    rounds: int,
    seed: int = 7,
    meters: bool = True,
    group: int = 1,
    traffic: list[list[Trade]] | None = None,
    combine: bool = False,
) -> Operation:
    """Hourly trading as the gateways do it: each seller's slot nonce from its ring (the gateway's
    `NonceRing`), hour h submitted while hour h-1 is still delivering, and settled in one batch
    after its end (when hour h+1's batch goes in), so a seller trading every hour needs 2+ slots.

    `meters` (the live rule): a keeper settles each window with `settleByMeters`, carrying the signed
    statement of every party's meter at the window's end (and at its start when that meter's last used
    window did not end there); each meter exports what its household sold and imports what it bought
    plus some load. Else the parties' signed reports in `settleBatch` (the previous rule).

    `group` (meters only): the keeper settles that many consecutive windows in one call (gateway keeper's
    `[keeper] group_windows`); a meter's later window in the call chains to its earlier one, so it needs
    one statement per hour, and the call's base cost is shared. Each hour's gas per agreement is its
    submit plus its share (by agreements) of the call that settled it.

    `traffic`: each hour's trades (seller, buyer, Wh by household index) instead of `batch` random pairs;
    an hour without trades only lets time pass (`rounds` counts hours with trades).

    `combine` (meters, one window a call): the keeper's live call pattern, one `settleByMeters` an hour that
    settles the delivered window and opens the next batch (the gateway keeper's default); each agreement's
    gas is then its share of the call that opened it plus its share of the call that settled it.
    """
    import random

    from contracts.harness import NO_READING, NO_WINDOW
    from gateway.trading.nonces import NonceRing
    from gridpact.core.statement import settlement_batch

    rng = random.Random(seed)
    traffic = None if traffic is None else list(traffic)
    m = c.market
    rings = {h.address: NonceRing() for h in hh}
    counters = {h.address: (rng.randint(0, 10**6), rng.randint(0, 10**6)) for h in hh}  # (import, export)
    last_end: dict[str, int] = {}  # per meter: end of its last window used on chain
    if meters:
        for h in hh:
            if not h.meter_secret:
                c.set_meter(h)
        advance_time(c.w3, HOUR - c.now() % HOUR + 5)  # windows are whole hours
    open_batches: list[tuple[list[Any], list[tuple[Household, Household]], int, int]] = []
    per_round: list[float] = []
    new_slots: list[int] = []
    slots: set[tuple[str, int]] = set()
    total = agreements = max_ring = n_windows = unchained = 0

    def merge(batches: list[Any]) -> tuple[list[tuple], list[tuple]]:
        """One call's windows and items for delivered batches (a meter's later window chains to its earlier)."""
        nonlocal n_windows, unchained
        windows: list[tuple] = []
        items: list[tuple] = []
        for terms, pairs, _, _ in batches:
            w, it = _meter_batch(c, terms, pairs, counters, last_end, rng, NO_WINDOW)
            n_windows += len(w)
            unchained += sum(1 for x in w if x[4] != NO_READING)
            items += [(t, s_ + len(windows), b_ + len(windows)) for t, s_, b_ in it]
            windows += w
        return windows, items

    def next_batch(now: int) -> tuple[list[Any], list[tuple[Household, Household]], list[Any], int] | None:
        """The hour's agreements (terms, parties, signatures, slots used for the first time), nonces from the
        sellers' rings; None for an hour without trades."""
        nonlocal max_ring
        if traffic is not None:
            hour = traffic.pop(0) if traffic else []
            if not hour:
                return None
            pairs = [(hh[t.seller], hh[t.buyer]) for t in hour]
            sizes = [t.wh for t in hour]
        else:
            pairs = [(a, b) for a, b in (rng.sample(hh, 2) for _ in range(batch))]
            sizes = [rng.randint(100, 3000) for _ in range(batch)]
        terms = []
        before = len(slots)
        end = (now // HOUR + 2) * HOUR if meters else now + 2 * HOUR
        for (seller, buyer), wh in zip(pairs, sizes, strict=True):
            nonce = rings[seller.address].allocate((), now)
            slots.add((seller.address, nonce))
            terms.append(c.terms(seller, buyer, quantity_wh=wh, unit_price=2 * 10**17,
                                 delivery_end=end, expiry=now + 60, nonce=nonce))  # fmt: skip
        max_ring = max(max_ring, *(len(r.reserved) for r in rings.values()))
        sigs = [c.sign(t, s, b) for t, (s, b) in zip(terms, pairs, strict=True)]
        return terms, pairs, sigs, len(slots) - before

    while True:
        now = c.now()
        delivered = [b for b in open_batches if b[0][0].deliveryEnd <= now]
        finishing = len(per_round) + len(open_batches) >= rounds
        if combine:
            # the keeper's hourly call: settle the delivered window and open the next batch, whose nonces the
            # sellers chose while that window still delivered (allocated before the settled ones are released)
            del open_batches[: len(delivered)]
            fresh = None if finishing else next_batch(now)
            if fresh is None and traffic is not None and not traffic and not finishing:
                rounds = len(per_round) + len(open_batches) + len(delivered)
            windows, items = merge(delivered)
            opens = (
                []
                if fresh is None
                else [(t.as_tuple(), *sig) for t, sig in zip(fresh[0], fresh[2], strict=True)]
            )
            if items or opens:
                gas = _gas(
                    c.admin.transact(m.functions.settleByMeters(settlement_batch(windows, items, opens)))
                )
                total += gas
                touched = len(items) + len(opens)  # the call's gas, shared evenly by both
                for terms, _, opened_gas, new in delivered:
                    for t in terms:
                        rings[t.seller].release(t.nonce)
                    per_round.append(opened_gas / len(terms) + gas / touched)
                    new_slots.append(new)
                    agreements += len(terms)
                if fresh is not None:
                    open_batches.append((fresh[0], fresh[1], gas * len(opens) // touched, fresh[3]))
            if not open_batches and (finishing or (fresh is None and traffic is not None and not traffic)):
                break
            advance_time(c.w3, HOUR)
            continue
        if meters and group > 1 and delivered and (len(delivered) >= group or finishing):
            del open_batches[: len(delivered)]
            windows, items = merge(delivered)
            settle_gas = _gas(c.admin.transact(m.functions.settleByMeters(settlement_batch(windows, items))))
            n_all = sum(len(b[0]) for b in delivered)
            for terms, _, submit_gas, new in delivered:
                for t in terms:
                    rings[t.seller].release(t.nonce)
                share = settle_gas * len(terms) / n_all
                per_round.append((submit_gas + share) / len(terms))
                new_slots.append(new)
                total += submit_gas
                agreements += len(terms)
            total += settle_gas
            delivered = []
        while (group == 1 or not meters) and open_batches and open_batches[0][0][0].deliveryEnd <= now:
            terms, pairs, submit_gas, new = open_batches.pop(0)
            if meters:
                windows, items = merge([(terms, pairs, submit_gas, new)])
                call = m.functions.settleByMeters(settlement_batch(windows, items))
            else:
                call = m.functions.settleBatch([
                    c.settle_item(t, s, b, t.quantityWh, t.quantityWh)
                    for t, (s, b) in zip(terms, pairs, strict=True)
                ])  # fmt: skip
            settle_gas = _gas(c.admin.transact(call))
            for t in terms:
                rings[t.seller].release(t.nonce)
            per_round.append((submit_gas + settle_gas) / len(terms))
            new_slots.append(new)
            total += submit_gas + settle_gas
            agreements += len(terms)
        if len(per_round) + len(open_batches) >= rounds:
            if not open_batches:
                break
            advance_time(c.w3, HOUR)
            continue
        fresh = next_batch(now)
        if fresh is None:  # an hour without trades, or the traffic ran out
            if traffic is not None and not traffic:
                rounds = len(per_round) + len(open_batches)  # settle what is open
            advance_time(c.w3, HOUR)
            continue
        terms, pairs, sigs, new = fresh
        submit = c.admin.transact(m.functions.submitAgreements(
            [t.as_tuple() for t in terms], [x[0] for x in sigs], [x[1] for x in sigs]))  # fmt: skip
        open_batches.append((terms, pairs, _gas(submit), new))
        advance_time(c.w3, HOUR)
    return Operation(per_round, new_slots, agreements, total, len(slots), max_ring, n_windows, unchained)


def engine_traffic(households: int, hours: int, seed: int) -> list[list[Trade]]:
    """Each hour's agreements of the simulator's negotiation engine among `households` (seed `seed`), after
    a day of warm-up: the traffic the gateways' own agents produce (`gridpact simulate --engine-only`)."""
    from hil.community.engine import EngineConfig, run_engine

    warmup = 24
    result = run_engine(EngineConfig(households=households, hours=warmup + hours, seed=seed))
    out: list[list[Trade]] = [[] for _ in range(hours)]
    for s in result.settled:
        if s.hour >= warmup:
            out[s.hour - warmup].append(s.trade)
    return out


def disjoint_traffic(households: int, active: int, per_hour: int, hours: int, seed: int) -> list[list[Trade]]:
    """Each hour `per_hour` agreements between distinct households drawn from the first `active`: nobody
    trades twice in an hour, the pattern of sparse trading (every agreement needs its own two meter windows)."""
    import random

    from hil.community.market import Trade

    if 2 * per_hour > active:
        raise ValueError(f"{per_hour} disjoint pairs need {2 * per_hour} active households, not {active}")
    rng = random.Random(seed)
    out: list[list[Trade]] = []
    for _ in range(hours):
        people = rng.sample(range(active), 2 * per_hour)
        out.append([Trade(people[2 * i], people[2 * i + 1], rng.randint(200, 2000), 200_000, 0)
                    for i in range(per_hour)])  # fmt: skip
    return out


def _meter_batch(
    c: Community,
    terms: list[Any],
    pairs: list[tuple[Household, Household]],
    counters: dict[str, tuple[int, int]],
    last_end: dict[str, int],
    rng: Any,
    no_window: int,
) -> tuple[list[tuple], list[tuple]]:
    """The keeper's `settleByMeters` call for one window: one meter window per party, chained where it can."""
    start, end = terms[0].deliveryStart, terms[0].deliveryEnd
    sold: dict[str, int] = {}
    bought: dict[str, int] = {}
    for t in terms:
        sold[t.seller] = sold.get(t.seller, 0) + t.quantityWh
        bought[t.buyer] = bought.get(t.buyer, 0) + t.quantityWh
    people = {h.address: h for pair in pairs for h in pair}
    windows: list[tuple] = []
    index: dict[str, int] = {}
    for addr, h in people.items():
        imp0, exp0 = counters[addr]
        imp1 = imp0 + bought.get(addr, 0) + rng.randint(0, 500)  # plus the household's own load
        exp1 = exp0 + sold.get(addr, 0)
        chained = last_end.get(addr) == start
        windows.append(c.meter_window(h, start, end, None if chained else (imp0, exp0), (imp1, exp1)))
        index[addr] = len(windows) - 1
        counters[addr] = (imp1, exp1)
        last_end[addr] = end
    for addr in counters.keys() - people.keys():  # meters of households without trades keep counting
        imp0, exp0 = counters[addr]
        counters[addr] = (imp0 + rng.randint(0, 500), exp0)
    items = [(t.as_tuple(), index[t.seller], index[t.buyer]) for t in terms]
    assert no_window not in index.values()
    return windows, items


def operation_lines(op: Operation, households: int, traffic: str, days: int = 30) -> list[str]:
    per_hour = op.agreements / len(op.per_round)
    month = round(per_hour * 24 * days)  # agreements in `days` of hourly batches of this size
    amortised = op.steady + op.premium_per_slot * op.slots / month
    lines = [
        f"in operation ({households} households, {traffic}, {per_hour:.1f} agreements a trading hour, "
        "sellers' nonce rings):",
        f"  first hour (every slot new)             {op.per_round[0]:>9,.0f} gas per agreement",
        f"  steady state (slots reused)             {op.steady:>9,.0f} gas per agreement "
        f"(all {op.agreements:,} of {len(op.per_round)} hours, less the first use of slots)",
        f"  first-use premium                       {op.premium_per_slot:>9,.0f} gas per slot, once "
        f"({op.slots} slots, at most {op.max_ring} ring nonces held by one seller)",
        f"  run average (first uses included)       {op.total_gas / op.agreements:>9,.0f} gas per agreement",
        f"  amortised over {days} days of hourly trading {amortised:>9,.0f} gas per agreement "
        f"({month:,} agreements)",
    ]
    if op.windows:
        lines.append(
            f"  meter windows                           {op.windows / op.agreements:>9.2f} per agreement "
            f"({op.unchained / op.windows:.0%} of them with a start statement)"
        )
    return lines


def admission_lines(c: Community, hh: list[Household]) -> list[str]:
    """Gas of admission by vote (Admission.sol): every household a member, all vote yes, one executes."""
    adm = c.admission
    lines = ["", f"admission by vote, {len(hh)} members (gas per transaction):"]
    lines.append(
        f"  {'sync ' + str(len(hh)) + ' members':<40} {_gas(hh[0].sender.transact(adm.functions.sync([h.address for h in hh]))):>9,}"
    )
    candidate = Account.from_key(household_key(0, "bench-candidate")).address
    rcpt = hh[0].sender.transact(adm.functions.propose(candidate, bytes(32), bytes(32)))
    pid = int(adm.functions.proposalCount().call())
    lines.append(f"  {'propose':<40} {_gas(rcpt):>9,}")
    votes = [_gas(h.sender.transact(adm.functions.vote(pid, True))) for h in hh]
    lines.append(f"  {'vote (first of a proposal)':<40} {votes[0]:>9,}")
    lines.append(f"  {'vote (later)':<40} {votes[-1]:>9,}")
    advance_time(c.w3, int(adm.functions.votingPeriod().call()))
    rcpt = hh[-1].sender.transact(adm.functions.execute(pid))
    lines.append(f"  {'execute, ' + str(len(hh)) + ' voters (register included)':<40} {_gas(rcpt):>9,}")
    return lines


def run(
    chain: str,
    households: int,
    batch: int,
    worst_case: bool,
    rounds: int = 0,
    settle_by: str = "meters",
    group: int = 1,
    traffic: str = "random",
    seed: int = 1,
    calls: str = "combined",
    active: int = 0,
) -> list[str]:
    lines: list[str] = []
    with _chain(chain) as (w3, admin_key):
        c = Community(w3, admin_key)
        hh = [c.add_household(household_key(i), deposit=TOKENS) for i in range(households)]
        lines.append(f"chain: {chain}; Market runtime {len(w3.eth.get_code(c.market.address))} bytes")
        lines.append("")
        lines.append("gas per operation (own transaction, 21,000 base included):")
        for name, gas in single_operations(c, hh[0], hh[1]).items():
            lines.append(f"  {name:<40} {gas:>9,}")
        t = c.terms(hh[2], hh[3])
        sub = _gas(
            c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, hh[2], hh[3])))
        )
        advance_time(w3, 2 * HOUR + 60)
        settle = _gas(
            c.admin.transact(c.market.functions.settleBatch([c.settle_item(t, hh[2], hh[3], 1000, 1000)]))
        )
        lines.append("")
        lines.append("gas per agreement over its life (submit + settle with signed reports):")
        lines.append(
            f"  alone                                   {sub:>9,} + {settle:>7,} = {sub + settle:>7,}"
        )
        pairs = [(hh[(2 * i) % households], hh[(2 * i + 1) % households]) for i in range(batch)]
        for label in ("first use of nonces", "steady state (reused)"):
            s, t_ = batch_life(c, pairs, 10_000)
            lines.append(
                f"  batch of {batch}, {households} households, {label:<22} {s:>8,.0f} + {t_:>7,.0f} = {s + t_:>7,.0f}"
            )
        if worst_case:
            fresh = [
                c.add_household(household_key(i, "bench-fresh"), deposit=TOKENS) for i in range(2 * batch)
            ]
            pairs = [(fresh[2 * i], fresh[2 * i + 1]) for i in range(batch)]
            s, t_ = batch_life(c, pairs, 20_000)
            lines.append(
                f"  batch of {batch}, all parties new, first use of nonces   {s:>8,.0f} + {t_:>7,.0f} = {s + t_:>7,.0f}"
            )
            s, t_ = batch_life(c, pairs, 20_000)
            lines.append(
                f"  batch of {batch}, all parties distinct, reused nonces     {s:>8,.0f} + {t_:>7,.0f} = {s + t_:>7,.0f}"
            )
        if rounds:
            lines.append("")
            recorded = (
                engine_traffic(households, 4 * rounds, seed)
                if traffic == "engine"
                else disjoint_traffic(households, active or households, batch, rounds + 2, seed)
                if traffic == "disjoint"
                else None
            )
            meters = settle_by == "meters"
            combine = meters and group == 1 and calls == "combined"
            op = operation(
                c, hh, batch, rounds, meters=meters, group=group, traffic=recorded, combine=combine
            )
            lines.append(
                "the keeper's hourly settleByMeters settles the ended window from the meters' signed statements "
                "and opens the started one"
                if combine
                else f"settled by the keeper from the meters' signed statements (settleByMeters, {group} window(s) "
                "a call), opened by submitAgreements"
                if meters
                else "settled from the parties' signed reports (settleBatch)"
            )
            label = (
                f"the engine's trades, seed {seed}"
                if traffic == "engine"
                else f"{batch} disjoint pairs an hour among {active or households}, seed {seed}"
                if traffic == "disjoint"
                else "random pairs"
            )
            lines.extend(operation_lines(op, households, label))
        lines.extend(admission_lines(c, hh))
        lines.append("")
        lines.append("target: <= 60,000 gas per agreement in batches of 50 (public designs: ~95,000)")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gridpact bench contracts", description=__doc__)
    parser.add_argument("--chain", choices=("inprocess", "anvil"), default="inprocess")
    parser.add_argument("--households", type=int, default=10)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument(
        "--worst-case", action="store_true", help="also a batch whose parties are all distinct"
    )
    parser.add_argument(
        "--operation", type=int, nargs="?", const=12, default=0, metavar="ROUNDS",
        help="also hourly trading among --households with the gateways' nonce rings (default 12 rounds)",
    )  # fmt: skip
    parser.add_argument(
        "--settle", choices=("meters", "reports"), default="meters",
        help="--operation settles from the meters' statements (the live rule) or the parties' reports",
    )  # fmt: skip
    parser.add_argument(
        "--group", type=int, default=1, metavar="WINDOWS",
        help="--operation with meters: the keeper settles this many consecutive windows per call",
    )  # fmt: skip
    parser.add_argument(
        "--traffic", choices=("random", "engine", "disjoint"), default="random",
        help="--operation trades: --batch random pairs an hour, or the simulator engine's own agreements "
        "among --households (what `gridpact simulate --engine-only` negotiates, after a day of warm-up), or "
        "--batch pairs of distinct households an hour among --active (sparse trading: nobody trades twice an hour)",
    )  # fmt: skip
    parser.add_argument(
        "--active", type=int, default=0, metavar="N",
        help="--traffic disjoint: the pairs come from the first N households (default: all)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="--traffic engine: the community's seed")
    parser.add_argument(
        "--calls", choices=("combined", "separate"), default="combined",
        help="--operation with meters, one window a call: the keeper settles and opens in one call an hour "
        "(the live default) or in two (settleByMeters, then submitAgreements)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.households < 4 or args.batch < 1:
        print("need --households >= 4 and --batch >= 1", file=sys.stderr)
        return 2
    if args.operation and args.operation < 4:
        print("need --operation ROUNDS >= 4 (the first rounds are warm-up)", file=sys.stderr)
        return 2
    if args.group < 1:
        print("need --group >= 1", file=sys.stderr)
        return 2
    if (
        args.traffic == "disjoint"
        and not 2 * args.batch <= (args.active or args.households) <= args.households
    ):
        print("--traffic disjoint needs 2 x --batch <= --active <= --households", file=sys.stderr)
        return 2
    for line in run(args.chain, args.households, args.batch, args.worst_case, args.operation, args.settle,
                    args.group, args.traffic, args.seed, args.calls, args.active):  # fmt: skip
        print(line, flush=True)
    return 0
