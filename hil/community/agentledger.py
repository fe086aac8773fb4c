"""The report's trades and tokens read back from the chain after `--agents gateway`.

The gateways made every agreement, report and settlement themselves, so the simulator learns
what happened only from the Market's events. They are replayed into the simulation's Ledger
(which applies the contract's payment and penalty rule on its own): equal per-household balances
then show that the chain and the rule agree, and the ledger's sums check conservation.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridpact.core.settlement import split
from hil.community.engine import EngineResult, SettledTrade
from hil.community.ledger import Ledger
from hil.community.market import Trade


@dataclass(frozen=True)
class ChainAgreement:
    """One agreement as the chain saw it; `delivered`/`paid`/`refund` are None while open."""

    id: bytes
    seller: int
    buyer: int
    wh: int
    price: int
    block: int
    delivered: int | None = None
    paid: int | None = None
    refund: int | None = None
    reclaimed: int | None = None
    disputed: bool = False
    reports: tuple[int, ...] = ()  # the delivery reports on chain (one per party that reported)
    by_meters: bool = False  # settled by `settleByMeters`: from the meter nodes' signed statements
    settled_by: int | None = None  # the household whose gateway sent the settling transaction (None: another)


_SEEN: weakref.WeakKeyDictionary[Any, dict[str, tuple[int, list[Any]]]] = weakref.WeakKeyDictionary()


def _logs(market: Any, name: str) -> list[Any]:
    """Every `name` event of the Market so far. Read incrementally (a dev chain never reorganises):
    eth-tester's get_logs walks every block, and the run asks after every simulated hour."""
    seen = _SEEN.setdefault(market, {})
    last, logs = seen.get(name, (-1, []))
    latest = int(market.w3.eth.block_number)
    if latest > last:
        logs = logs + list(getattr(market.events, name)().get_logs(from_block=last + 1, to_block=latest))
        seen[name] = (latest, logs)
    return logs


_CALLS: weakref.WeakKeyDictionary[Any, dict[bytes, tuple[str, str]]] = weakref.WeakKeyDictionary()


def call_of(market: Any, event: Any) -> tuple[str, str]:
    """(Market function, sender address in lower case) of the transaction that emitted `event`: e.g.
    `settleByMeters` for a settlement from the meters' statements, `report` or `reclaim` otherwise."""
    seen = _CALLS.setdefault(market, {})
    tx_hash = bytes(event["transactionHash"])
    if tx_hash not in seen:
        tx = market.w3.eth.get_transaction(tx_hash)
        try:
            fn, _ = market.decode_function_input(tx["input"])
            name = str(fn.fn_name)
        except ValueError:  # not a Market call (none here: every settlement is one)
            name = ""
        seen[tx_hash] = (name, str(tx["from"]).lower())
    return seen[tx_hash]


def path_gas(market: Any) -> tuple[int, int]:
    """(gas, transactions) of every Market transaction that opened, settled, reported or reclaimed an
    agreement: what the agreements' whole lives cost on chain, the keeper's hourly calls included."""
    names = (
        "AgreementSubmitted",
        "AgreementSettled",
        "EscrowReclaimed",
        "DeliveryReported",
        "MeterEvidenceRecorded",
    )
    txs = {bytes(e["transactionHash"]) for name in names for e in _logs(market, name)}
    return sum(int(market.w3.eth.get_transaction_receipt(h)["gasUsed"]) for h in txs), len(txs)


def open_agreements(market: Any) -> int:
    """Submitted agreements neither settled nor reclaimed (disputes count as open)."""
    submitted = {bytes(e["args"]["id"]) for e in _logs(market, "AgreementSubmitted")}
    closed = {bytes(e["args"]["id"]) for e in _logs(market, "AgreementSettled")}
    closed |= {bytes(e["args"]["id"]) for e in _logs(market, "EscrowReclaimed")}
    return len(submitted - closed)


def read_agreements(market: Any, addresses: list[str]) -> list[ChainAgreement]:
    """Every agreement between two households, with how it ended, in submission order."""
    index = {a.lower(): i for i, a in enumerate(addresses)}
    settled_events = _logs(market, "AgreementSettled")
    settled = {bytes(e["args"]["id"]): e["args"] for e in settled_events}
    calls = {bytes(e["args"]["id"]): call_of(market, e) for e in settled_events}
    reclaimed = {bytes(e["args"]["id"]): int(e["args"]["amount"]) for e in _logs(market, "EscrowReclaimed")}
    disputed = {bytes(e["args"]["id"]) for e in _logs(market, "DisputeOpened")}
    reports: dict[bytes, list[int]] = {}
    for e in _logs(market, "DeliveryReported"):
        reports.setdefault(bytes(e["args"]["id"]), []).append(int(e["args"]["deliveredWh"]))
    out = []
    for e in _logs(market, "AgreementSubmitted"):
        a = e["args"]
        aid = bytes(a["id"])
        seller, buyer = index.get(str(a["seller"]).lower()), index.get(str(a["buyer"]).lower())
        if seller is None or buyer is None:  # a provider trade: not between households
            continue
        s = settled.get(aid)
        out.append(
            ChainAgreement(
                aid, seller, buyer, int(a["quantityWh"]), int(a["unitPrice"]), int(e["blockNumber"]),
                None if s is None else int(s["deliveredWh"]), None if s is None else int(s["paidToSeller"]),
                None if s is None else int(s["refundedToBuyer"]), reclaimed.get(aid), aid in disputed,
                tuple(reports.get(aid, ())), calls.get(aid, ("", ""))[0] == "settleByMeters",
                index.get(calls.get(aid, ("", ""))[1]),
            )
        )  # fmt: skip
    return out


def split_charged(ag: ChainAgreement, penalty_bps: int) -> int | None:
    """Wh the buyer was charged for, by the contract's rule, in a settlement on two differing reports;
    None when the chain's split follows no rule.

    Within tolerance (or an unresolved dispute reclaimed after its deadline) the seller is paid on
    the smaller capped report and the buyer charged on the larger, so a buyer whose own meter saw
    less than the seller's full report pays in full, without a refund. A dispute the community
    resolved pays and charges both on its figure (the settled `deliveredWh`).
    """
    assert ag.delivered is not None and ag.paid is not None and ag.refund is not None
    higher = min(max(ag.reports), ag.wh)
    for charged in (higher, ag.delivered):
        s = split(ag.wh, ag.price, ag.delivered, charged, penalty_bps=penalty_bps)
        if (s.seller, s.buyer) == (ag.paid, ag.refund):
            return charged
    return None


def under_delivered(settled: list[SettledTrade]) -> tuple[int, int, bool]:
    """(agreements delivered short, of them charged in full on the larger report, each other one refunded).

    A buyer is owed a refund when it was charged for less than the agreed quantity; one charged in
    full on a report of full delivery (the other report lower, within tolerance) is not: that is the
    contract's rule against shading a report, the gap going to the treasury."""
    short = [st for st in settled if st.delivered_wh < st.trade.wh]
    in_full = [st for st in short if st.charged >= st.trade.wh]
    return len(short), len(in_full), all(st.refund > 0 for st in short if st.charged < st.trade.wh)


def replay(
    agreements: list[ChainAgreement], n: int, start: int, unit: int, hour_of: Any
) -> tuple[Ledger, list[SettledTrade], list[str]]:
    """The chain's agreements through the Ledger; returns it, the settled trades and disagreements."""
    ledger = Ledger(n, unit=unit)
    for i in range(n):
        ledger.mint(i, start)
    settled: list[SettledTrade] = []
    problems: list[str] = []
    for ag in agreements:
        trade = Trade(ag.seller, ag.buyer, ag.wh, ag.price, 0)
        aid = ledger.agree(trade)
        ledger.disputes += ag.disputed
        if (
            ag.delivered is not None
            and len(set(ag.reports)) > 1
            and ag.paid is not None
            and ag.refund is not None
        ):
            # two differing reports: the chain pays on the lower, charges on the higher, the gap to
            # the treasury; booked as the chain split it, once it matches the contract's rule
            charged = split_charged(ag, ledger.penalty_bps)
            if charged is None:
                problems.append(
                    f"agreement {ag.id.hex()[:10]}: chain paid/refunded {ag.paid}/{ag.refund} on reports "
                    f"{ag.reports}, the contract's rule gives neither the reports' split nor a resolution's"
                )
            ledger.settle_split(aid, ag.paid, ag.refund)
            settled.append(SettledTrade(hour_of(ag), trade, ag.delivered, ag.paid, ag.refund, charged))
        elif ag.delivered is not None:
            to_seller, refund = ledger.settle(aid, ag.delivered)
            if (to_seller, refund) != (ag.paid, ag.refund):
                problems.append(
                    f"agreement {ag.id.hex()[:10]}: chain paid/refunded {ag.paid}/{ag.refund}, "
                    f"the contract's rule gives {to_seller}/{refund}"
                )
            settled.append(SettledTrade(hour_of(ag), trade, ag.delivered, to_seller, refund))
        elif ag.reclaimed is not None:
            ledger.escrow.pop(aid)
            ledger.balance[ag.buyer] += ag.reclaimed
            ledger.refunded[ag.buyer] += ag.reclaimed
            ledger.refunds += 1
    return ledger, settled, problems


def apply_to_result(
    r: EngineResult,
    ledger: Ledger,
    settled: list[SettledTrade],
    hourly_balances: list[list[int]] | None = None,
) -> None:
    """Replace the (empty) engine market's figures by the gateways' trades (`hourly_balances`: each
    household's free balance at the end of each hour, as the chain's events had it then)."""
    n, hours = r.grid_imp.shape
    bought, sold = np.zeros((n, hours)), np.zeros((n, hours))
    for st in settled:
        if 0 <= st.hour < hours:
            sold[st.trade.seller, st.hour] += st.delivered_wh / 1000
            bought[st.trade.buyer, st.hour] += st.delivered_wh / 1000
    r.grid_exp = r.batt_exp - sold + np.clip(bought - r.batt_imp, 0, None)
    r.grid_imp = np.clip(r.batt_imp - bought, 0, None)
    r.p2p_bought, r.p2p_sold = bought, sold
    r.ledger, r.settled = ledger, settled
    if hourly_balances is not None and len(hourly_balances) == hours:  # the chain's balances, hour by hour
        r.balance = np.array(hourly_balances, dtype=np.float64).T
    else:
        r.balance = np.repeat(np.array(ledger.balance, dtype=np.float64)[:, None], hours, axis=1)
    r.conserved_every_hour = ledger.conserved()


def journal_terms(state: Any) -> dict[bytes, dict[str, Any]]:
    """Agreement id -> EIP-712 terms, from every gateway's journal (`<state>/trading-*/trading.db`)."""
    from gateway.chain.journal import Journal

    out: dict[bytes, dict[str, Any]] = {}
    for db in sorted(state.glob("trading-*/trading.db")):
        journal = Journal(db)
        try:
            for rec in journal.agreements():
                out[bytes.fromhex(rec.id.removeprefix("0x"))] = rec.terms
        finally:
            journal.close()
    return out


def resolve_disputes(chain: Any, terms_by_id: dict[bytes, dict[str, Any]], failures: list[str]) -> int:
    """The community's part: settle each open dispute at what both meters support, min(seller, buyer).

    That is the contract's own rule for reports within tolerance; a dispute here means a buyer's
    battery covered part of what it bought, so its import meter saw less than the seller exported.
    """
    from gateway.chain.market import terms_from_dict

    market = chain.market
    done = {bytes(e["args"]["id"]) for e in _logs(market, "AgreementSettled")}
    done |= {bytes(e["args"]["id"]) for e in _logs(market, "EscrowReclaimed")}
    resolved = 0
    for e in _logs(market, "DisputeOpened"):
        a = e["args"]
        aid = bytes(a["id"])
        if aid in done or aid not in terms_by_id:
            continue
        terms = terms_from_dict(terms_by_id[aid])
        wh = min(int(a["sellerWh"]), int(a["buyerWh"]))
        try:
            chain.transact(chain.community, market.functions.resolveDispute(terms.as_tuple(), wh))
        except Exception as exc:  # e.g. past its deadline: the buyer reclaims; said in the report
            failures.append(f"dispute {aid.hex()[:10]} not resolved: {str(exc)[:160]}")
            continue
        done.add(aid)
        resolved += 1
    return resolved
