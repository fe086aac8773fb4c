"""Energy loans between gateways: the cooperative engine's model on one household (pure core + its book).

What the gateway decides, from the engine of Chakraborty, Baarslag and Kaisers
(`gateway/negotiation/cooperative`, not re-implemented here):

* the contract space of one period (Algorithms 2-3): the forecast over the planning window plus
  the loans already agreed, |S| scenarios of the Gaussian error process, the battery state, the
  criteria weights -> expected utilities over the grid Q x T, ordered, with the aspiration quantile;
* one side of Algorithm 1 with Algorithms 4-5 (`Bargainer`): the k-th best offer at round 2k (the
  initiator) or 2k+1 (the responder), silence once below the threshold, accept above it; two
  gateways following it reach exactly `contracts.negotiate`'s outcome (tested);
* peer selection: epsilon-greedy over the engine's `PeerSelector` scores (shrunk per-context means).

One deviation, because a live gateway sees only its own utilities: the session's reward is the
distance of the outcome to *its own* best contract, normalised by the span from its reservation
value (1 for a failed session), not the distance to the pair's Nash solution, which needs both
sides' private utilities.

Signs: a contract (q, tau) is written from the initiator's side as in the engine: q > 0, the
initiator lends q now and gets it back tau periods later. On the wire offers name the lender.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gateway.negotiation.cooperative import fast
from gateway.negotiation.cooperative.battery import BatterySpec, simulate, xi
from gateway.negotiation.cooperative.contracts import ContractGrid, ContractSpace
from gateway.negotiation.cooperative.evaluate import EvalBatch
from gateway.negotiation.cooperative.peers import PeerSelector
from gateway.negotiation.cooperative.scenarios import ScenarioModel, period_rng, scenarios
from gateway.trading.config import LoansConfig, loan_battery
from gridpact.core.eip712 import Loan


@dataclass(frozen=True)
class Offer:
    """One offer on the wire: who lends, how many Wh, returned after `tau` periods; 0 Wh is silence."""

    lender: str
    quantity_wh: int
    tau: int


def grid_of(cfg: LoansConfig) -> ContractGrid:
    """The negotiation domain of `[loans]` (Table 2 of the paper by default)."""
    return ContractGrid.default(cfg.window, cfg.q_max_wh / 1000.0, cfg.n_q, cfg.tau_min)


def flat_of(grid: ContractGrid, offer: Offer, initiator: str) -> int | None:
    """The grid index of an offer (initiator's side), None when it is off the grid or silence."""
    if offer.quantity_wh == 0:
        return None
    signed = offer.quantity_wh if offer.lender.lower() == initiator.lower() else -offer.quantity_wh
    qi = np.flatnonzero(np.round(grid.q * 1000.0).astype(np.int64) == signed)
    ti = np.flatnonzero(grid.tau == offer.tau)
    if qi.size != 1 or ti.size != 1:
        return None
    return int(qi[0]) * grid.tau.size + int(ti[0])


def offer_at(grid: ContractGrid, flat: int | None, initiator: str, responder: str) -> Offer:
    """The wire form of a grid contract (silence for None)."""
    if flat is None:
        return Offer(initiator, 0, 0)
    q, tau = grid.contract(flat)
    return Offer(initiator if q > 0 else responder, round(abs(q) * 1000.0), tau)


def loan_terms(
    offer: Offer, initiator: str, responder: str, period: int, cfg: LoansConfig, session: str
) -> Loan:
    """The Market's Loan for an agreed offer: returned by the end of the return period.

    The terms expire when the lending period ends (nothing can be lent after it), the collateral
    is `collateral_per_kwh` for each kWh, and the nonce is the session id's first 8 bytes.
    """
    from eth_utils.address import to_checksum_address

    lender = to_checksum_address(offer.lender)
    borrower = to_checksum_address(responder if lender.lower() == initiator.lower() else initiator)
    return Loan(
        lender, borrower, offer.quantity_wh, offer.quantity_wh * cfg.collateral_per_kwh // 1000,
        period + (offer.tau + 1) * cfg.period_s, int(session[2:18], 16), period + cfg.period_s - 1,
    )  # fmt: skip


def contract_space(
    cfg: LoansConfig, demand_kwh: np.ndarray, x0: float, initiator: bool, rng_key: tuple[int, int]
) -> ContractSpace:
    """Algorithms 2-3 for one gateway and period: `demand_kwh` is the point forecast plus agreed loans."""
    grid = grid_of(cfg)
    model = ScenarioModel(n_scenarios=cfg.scenarios)
    d = scenarios(
        np.asarray(demand_kwh, dtype=np.float64), model, period_rng(cfg.seed, rng_key[0], rng_key[1], 1)
    )
    sign = 1.0 if initiator else -1.0
    batch = EvalBatch(d[None], np.array([x0]), (loan_battery(cfg),), np.array([cfg.lam1]), np.array([cfg.lam2]),
                      (sign * grid.q)[None, :], grid.tau, cfg.risk)  # fmt: skip
    eu = fast.evaluate(batch)[0]
    return ContractSpace.build(eu, grid, cfg.quantile)


class Bargainer:
    """One side of Algorithm 1: offers best first (Algorithm 4), accepts above the threshold (Algorithm 5)."""

    def __init__(self, space: ContractSpace) -> None:
        self.space = space
        self.offers = space.offers()

    def offer(self, round_: int) -> int | None:
        """The contract offered at `round_` (the initiator's rounds are even, the responder's odd)."""
        k = round_ // 2
        return int(self.offers[k]) if k < self.offers.size else None

    def accepts(self, flat: int | None) -> bool:
        return flat is not None and bool(self.space.accepts(np.array([flat]))[0])

    def distance(self, flat: int | None) -> float:
        """The session's reward for peer selection (lower is better), see the module docstring."""
        if flat is None or self.offers.size == 0:
            return 1.0
        best = float(self.space.eu[self.offers[0]])
        span = best - self.space.reservation
        if span <= 0:
            return 1.0
        return float(min(1.0, max(0.0, (best - float(self.space.eu[flat])) / span)))


def answer(b: Bargainer, round_: int, theirs: int | None, max_rounds: int) -> tuple[str, int | None]:
    """One step of Algorithm 1 after the peer's offer (or silence) at `round_`.

    ("accept", theirs), ("counter", ours or None for silence) at round_ + 1, or ("fail", None)
    with the reason "deadline" or "exhausted" (both sides silent) as the first element.
    """
    if theirs is not None and b.accepts(theirs):
        return "accept", theirs
    mine = b.offer(round_ + 1)
    if round_ + 1 >= max_rounds:
        return "deadline", None
    if mine is None and theirs is None:
        return "exhausted", None
    return "counter", mine


def report_figures(
    role: str, own_lent: int, own_returned: int, peer_lent: int | None, peer_returned: int | None
) -> tuple[int, int]:
    """(lent, returned) this gateway reports, from its own meter's bounds and the peer's.

    Each figure has a claimant, whose own export is the evidence: the lender claims what it lent,
    the borrower what it returned. A gateway reports its own bound for the figure it claims, and
    for the other the smaller of the peer's claim and its own bound (its import caps what it can
    have received). Honest peers so report the same figures; a peer that overstates its claim is
    capped by our meter, one that understates it only loses, and one that lies on chain differs
    from us and meets the contract's dispute rules, under which the liar gains nothing.
    """
    if role == "lender":
        return own_lent, own_returned if peer_returned is None else min(own_returned, peer_returned)
    return own_lent if peer_lent is None else min(own_lent, peer_lent), own_returned


def choose_peer(
    peers: list[str], memory: dict[str, dict[int, tuple[float, int]]], ctx: int, cfg: LoansConfig,
    rng: np.random.Generator,
) -> str | None:  # fmt: skip
    """Epsilon-greedy: a random peer with probability epsilon, else the best score (the engine's shrinkage)."""
    if not peers:
        return None
    peers = sorted(peers)
    if rng.random() < cfg.epsilon:
        return peers[int(rng.integers(len(peers)))]
    sel = PeerSelector(len(peers) + 1, cfg.epsilon, rng, cfg.contexts)
    for k, peer in enumerate(peers):
        for c, (total, count) in memory.get(peer.lower(), {}).items():
            if 0 <= c < cfg.contexts:
                sel.total[c, 0, k + 1] = total
                sel.count[c, 0, k + 1] = count
    score = sel.score(0, ctx)[1:] + rng.random(len(peers)) * 1e-9  # ties at random
    return peers[int(np.argmin(score))]


def context_of(period: int, cfg: LoansConfig) -> int:
    """The block of the day a period falls in (peer statistics are kept per block)."""
    per_day = max(1, round(86400 / cfg.period_s))
    return (period // cfg.period_s % per_day) * cfg.contexts // per_day


def battery_state(cfg: LoansConfig, spec: BatterySpec, history_kwh: np.ndarray) -> float:
    """State of charge after greedy dispatch of the recorded periods (net demand plus exchanges)."""
    x0 = min(max(cfg.soc0 * spec.capacity_kwh, spec.xmin), spec.xmax)
    if history_kwh.size == 0:
        return x0
    return float(simulate(x0, history_kwh, spec)[0][-1])


def performance(cfg: LoansConfig, net_kwh: np.ndarray, flows_kwh: np.ndarray) -> dict[str, float]:
    """Realised xi (Eq. 16) of s0, s1 and s2 on the recorded periods (the paper computes all three on the same data)."""
    spec = loan_battery(cfg)
    x0 = min(max(cfg.soc0 * spec.capacity_kwh, spec.xmin), spec.xmax)
    if net_kwh.size == 0:
        return {"s0": 0.0, "s1": 0.0, "s2": 0.0}
    return {
        "s0": xi(net_kwh, spec, cfg.lam1, cfg.lam2, x0, use_battery=False),
        "s1": xi(net_kwh, spec, cfg.lam1, cfg.lam2, x0),
        "s2": xi(net_kwh + flows_kwh, spec, cfg.lam1, cfg.lam2, x0),
    }


# ---------------------------------------------------------------- the loan book (SQLite, beside the journal)

BOOK_SCHEMA = """
CREATE TABLE IF NOT EXISTS loans (
    id TEXT PRIMARY KEY, role TEXT NOT NULL, peer TEXT NOT NULL, terms TEXT NOT NULL, period INTEGER NOT NULL,
    tau INTEGER NOT NULL, my_sig TEXT NOT NULL, peer_sig TEXT, submitter INTEGER NOT NULL, state TEXT NOT NULL,
    lent_wh INTEGER, returned_wh INTEGER, note TEXT, updated REAL NOT NULL, peer_lent INTEGER, peer_returned INTEGER
);
CREATE TABLE IF NOT EXISTS loan_peers (
    peer TEXT NOT NULL, ctx INTEGER NOT NULL, total REAL NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (peer, ctx)
);
CREATE TABLE IF NOT EXISTS loan_ledger (period INTEGER PRIMARY KEY, net_kwh REAL NOT NULL, measured INTEGER NOT NULL);
"""
# loan states: signed (our signature out) -> agreed (both) -> open (on chain) -> reported -> closed | abandoned
OPEN_LOAN_STATES = ("signed", "agreed", "open", "reported")
FLOW_STATES = ("agreed", "open", "reported", "closed")


@dataclass(frozen=True)
class LoanRecord:
    """One loan as this gateway knows it; `role` is lender or borrower."""

    id: str
    role: str
    peer: str
    terms: dict[str, Any]
    period: int
    tau: int
    my_sig: str
    peer_sig: str | None
    submitter: bool
    state: str
    lent_wh: int | None
    returned_wh: int | None
    note: str | None
    peer_lent: int | None = None  # the peer's own meter bounds (loan_evidence)
    peer_returned: int | None = None


class LoanBook:
    """Loans, per-peer session statistics and the period ledger, in the gateway's trading.db.

    A connection of its own (the journal's file is in WAL mode, so both write safely); a loan is
    written before our signature leaves, like an agreement, so a crash never forgets one.
    """

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(str(path), timeout=30.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(BOOK_SCHEMA)
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def put(self, rec: LoanRecord) -> bool:
        with self.db:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO loans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (rec.id, rec.role, rec.peer, json.dumps(rec.terms), rec.period, rec.tau, rec.my_sig, rec.peer_sig,
                 int(rec.submitter), rec.state, rec.lent_wh, rec.returned_wh, rec.note, time.time(), rec.peer_lent,
                 rec.peer_returned),
            )  # fmt: skip
        return cur.rowcount == 1

    def update(self, loan_id: str, **values: Any) -> None:
        allowed = {"peer_sig", "state", "lent_wh", "returned_wh", "note", "peer_lent", "peer_returned"}
        if not values or set(values) - allowed:
            raise ValueError(f"cannot update {sorted(set(values) - allowed)}")
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.db:
            self.db.execute(
                f"UPDATE loans SET {cols}, updated = ? WHERE id = ?", (*values.values(), time.time(), loan_id)
            )

    def loans(self, *states: str) -> list[LoanRecord]:
        where = f"WHERE state IN ({','.join('?' * len(states))})" if states else ""
        rows = self.db.execute(f"SELECT * FROM loans {where} ORDER BY id", states).fetchall()
        return [
            LoanRecord(
                r[0],
                r[1],
                r[2],
                json.loads(r[3]),
                r[4],
                r[5],
                r[6],
                r[7],
                bool(r[8]),
                r[9],
                r[10],
                r[11],
                r[12],
                r[14],
                r[15],
            )
            for r in rows
        ]

    def loan(self, loan_id: str) -> LoanRecord | None:
        found = [r for r in self.loans() if r.id == loan_id]
        return found[0] if found else None

    def remember(self, peer: str, ctx: int, distance: float) -> None:
        """One session's reward for `peer` in context `ctx` (persists across restarts)."""
        with self.db:
            self.db.execute(
                "INSERT INTO loan_peers VALUES (?,?,?,1) ON CONFLICT(peer, ctx) DO UPDATE SET "
                "total = total + excluded.total, count = count + 1",
                (peer.lower(), ctx, float(distance)),
            )

    def memory(self) -> dict[str, dict[int, tuple[float, int]]]:
        out: dict[str, dict[int, tuple[float, int]]] = {}
        for peer, ctx, total, count in self.db.execute("SELECT peer, ctx, total, count FROM loan_peers"):
            out.setdefault(peer, {})[int(ctx)] = (float(total), int(count))
        return out

    def record_net(self, period: int, net_kwh: float, measured: bool) -> None:
        """The household's net demand of one period (forecast first, the meter's figure once it is known)."""
        with self.db:
            self.db.execute(
                "INSERT INTO loan_ledger VALUES (?,?,?) ON CONFLICT(period) DO UPDATE SET net_kwh = excluded.net_kwh, "
                "measured = excluded.measured WHERE loan_ledger.measured = 0",
                (period, float(net_kwh), int(measured)),
            )

    def unmeasured(self, before: int) -> list[int]:
        """Periods whose net demand is still the forecast, among those that started before `before`."""
        rows = self.db.execute("SELECT period FROM loan_ledger WHERE measured = 0 AND period < ?", (before,))
        return [int(r[0]) for r in rows]

    def ledger(self, cfg: LoansConfig, until: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(periods, net kWh, exchange kWh) of the recorded periods before `until`, in order."""
        rows = self.db.execute("SELECT period, net_kwh FROM loan_ledger ORDER BY period").fetchall()
        rows = [r for r in rows if until is None or r[0] < until]
        periods = np.array([r[0] for r in rows], dtype=np.int64)
        net = np.array([r[1] for r in rows], dtype=np.float64)
        return periods, net, self.flows(cfg, periods)

    def flows(self, cfg: LoansConfig, periods: np.ndarray) -> np.ndarray:
        """Exchange pool (Eq. 5) over `periods`: + q when we lend (more demand), - q when it comes back."""
        out = np.zeros(periods.size)
        index = {int(p): k for k, p in enumerate(periods)}
        for rec in self.loans(*FLOW_STATES):
            q = int(rec.terms["quantityWh"]) / 1000.0
            sign = 1.0 if rec.role == "lender" else -1.0
            for p, v in ((rec.period, sign * q), (rec.period + rec.tau * cfg.period_s, -sign * q)):
                if p in index:
                    out[index[p]] += v
        return out
