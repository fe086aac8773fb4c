"""`run_loans`: energy loans between gateways, one task of the trading TaskGroup.

Per period (`[loans] period_s`), `lead_s` before it starts, an s2 gateway picks a peer
(epsilon-greedy on its past sessions, `loans.choose_peer`), evaluates its contract space from its
forecast and modelled battery, and bargains over the loan protocol (docs/wire/loan-protocol-v1.md):
alternating offers until one side accepts; the accepter signs the Market's `Loan`, the other side
checks the terms and confirms with its signature. Both signatures are journaled before they leave.
The confirming side submits (`submitLoan` locks the borrower's collateral); the accepting side
submits when the lending period starts if the loan is still not on chain.

After the return period each side reports what its own meter saw (`reportReturn(lent, returned)`:
the lender's export while lending and import while it comes back, the borrower's the other way
round, shared among loans of the same period in id order); a silent party accepts the other's
figures and, past the deadline, either side closes it (`expireLoan`): the contract's rules, under
which silence and lies gain nothing (docs/contracts.md), decide who gets the collateral.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from web3 import Web3

from gateway.chain.errors import ChainError, RevertError
from gateway.chain.sender import TxSender
from gateway.trading.chainrun import ChainRunner
from gateway.trading.config import TradingConfig
from gateway.trading.inbox import Inbox
from gateway.trading.loanchain import LoanChain, LoanStatus
from gateway.trading.loanproto import LOAN_V1, loan_from_dict, message
from gateway.trading.loans import (
    OPEN_LOAN_STATES,
    Bargainer,
    LoanBook,
    LoanRecord,
    Offer,
    answer,
    battery_state,
    choose_peer,
    context_of,
    contract_space,
    flat_of,
    grid_of,
    loan_terms,
    offer_at,
    report_figures,
)
from gateway.trading.ports import CounterFamily, NetDemandForecaster, ReadingSource
from gateway.trading.protocol import Envelope, encode
from gateway.trading.roster import Roster
from gateway.trading.settlement import allocate
from gateway.trading.transport import Transport, community_tls
from gridpact.core.clock import Clock
from gridpact.core.eip712 import LOAN_FIELDS, Domain, Loan, loan_id

log = logging.getLogger("gridpact.gateway.trading")


class Counters(Protocol):
    """The trading counters (service._Counters): events and dropped peer messages."""

    dropped: CounterFamily

    def count(self, event: str) -> None: ...


@dataclass
class LoanDeps:
    """What the loans task takes from the trading service: the same key, sender, chain thread and roster."""

    cfg: TradingConfig
    account: LocalAccount
    w3: Web3
    sender: TxSender
    runner: ChainRunner
    roster: Roster
    store: ReadingSource  # gateway.storage.ReadingStore
    forecaster: NetDemandForecaster | None  # None: no loans proposed (nothing to decide from)
    clock: Clock
    state_dir: Path
    counters: Counters


def loan_signer(loan: Loan, domain: Domain, signature: str) -> str:
    """Who signed the loan (recovered through eth-account's own EIP-712 encoder, a cross-check of ours)."""
    msg = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}],
            "Loan": [{"name": n, "type": k} for n, k in LOAN_FIELDS],
        },
        "primaryType": "Loan",
        "domain": domain.as_dict(),
        "message": loan.as_dict(),
    }  # fmt: skip
    return Account.recover_message(encode_typed_data(full_message=msg), signature=signature)


def sign_loan_hex(loan: Loan, domain: Domain, account: LocalAccount) -> str:
    signed = Account.unsafe_sign_hash(loan_id(loan, domain), account.key)
    return "0x" + bytes(signed.signature).hex()


@dataclass
class Session:
    """One bilateral session; `mine` is our last offer (None: silence), `round` its round."""

    id: str
    peer: str
    period: int
    initiator: str
    responder: str
    first: bool
    queue: asyncio.Queue[Envelope | None] = field(default_factory=asyncio.Queue)
    round: int = 0
    mine: int | None = None


def stagger_s(lead_s: float, round_timeout_s: float) -> float:
    """The longest random wait before a proposal: a round's timeout, at most a quarter of the lead (the
    rest is for bargaining). Proposals over a broker arrive within milliseconds, so even a short
    spread lets the first one reach its peer before that peer proposes itself."""
    return min(lead_s / 4.0, round_timeout_s)


class LoanAgent:
    """The loans task of one gateway."""

    def __init__(self, deps: LoanDeps) -> None:
        assert deps.cfg.loans is not None
        self.deps = deps
        self.cfg = deps.cfg.loans
        self.me = deps.account.address
        self.clock = deps.clock
        self.grid = grid_of(self.cfg)
        community = deps.cfg.community
        self.inbox = Inbox(self.me, community.id, deps.roster.allows, max_age_s=community.max_message_age_s,
                           not_before=int(self.clock.now()) + 1, family=LOAN_V1)  # fmt: skip
        self.transport = Transport(community.host, community.port, community.topic_prefix, community.id, self.me,
                                   community.username, community.password_file, community_tls(community),
                                   level=LOAN_V1.level, keepalive_s=community.keepalive_s)  # fmt: skip
        self.chain = LoanChain(deps.w3, self.cfg.contract, deps.sender, market=deps.cfg.chain.market)
        self.book = LoanBook(Path(deps.state_dir) / "trading.db")
        self.sessions: dict[str, Session] = {}
        self.busy: dict[int, str] = {}
        self.rng = np.random.default_rng([self.cfg.seed, int(self.me[2:10], 16), 11])
        self._dropped: Counter[str] = Counter()
        self._tg: asyncio.TaskGroup | None = None
        self.domain: Domain | None = None

    def count(self, event: str) -> None:
        self.deps.counters.count(event)

    async def guarded(self, work: Coroutine[Any, Any, None]) -> None:
        """One session's failure (a bug, a node error) is counted and logged; it never stops the others."""
        try:
            await work
        except (ChainError, ValueError, KeyError, TypeError, OSError) as exc:
            self.count("loan_session_error")
            log.warning("event=loan_session_error error=%s", repr(exc)[:300])

    # ------------------------------------------------------------ run

    async def run(self) -> None:
        try:
            self.domain = await self.deps.runner.call(lambda: self.chain.domain)
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self.transport.run(self.on_raw), name="trading.loans.transport")
                tg.create_task(self.period_loop(), name="trading.loans.periods")
                tg.create_task(self.settle_loop(), name="trading.loans.settle")
        finally:
            self.book.close()

    async def publish(self, kind: str, to: str, body: dict[str, Any]) -> None:
        env = message(kind, self.deps.account, to, self.deps.cfg.community.id, int(self.clock.now()), body)
        if not await self.transport.publish(to, encode(env)):
            self.count("loan_publish_failed")

    async def on_raw(self, raw: bytes) -> None:
        env = self.inbox.check(raw, self.clock.now())
        for reason, n in self.inbox.dropped.items():  # the loan family's drops, labelled apart
            if n > self._dropped[reason]:
                self.deps.counters.dropped.inc(n - self._dropped[reason], reason=f"loan_{reason}")
                self._dropped[reason] = n
        if env is None:
            return
        if env.type == "loan_evidence":
            try:
                self.on_evidence(env)
            except (ValueError, sqlite3.Error) as exc:  # counted; the transport keeps delivering
                self.count("loan_evidence_error")
                log.warning("event=loan_evidence_error error=%s", repr(exc)[:200])
            return
        sid = str(env.body["session"])
        if env.type == "loan_propose":
            if sid in self.sessions:
                self.count("loan_duplicate_session")
                return
            assert self._tg is not None
            self._tg.create_task(self.guarded(self.respond(env)), name=f"trading.loans.session.{sid[:10]}")
            return
        session = self.sessions.get(sid)
        if session is None or session.peer.lower() != env.sender.lower():
            self.count("loan_no_session")
            return
        session.queue.put_nowait(env)

    # ------------------------------------------------------------ periods: ledger, peer choice, sessions

    async def period_loop(self) -> None:
        ps, lead = self.cfg.period_s, self.cfg.lead_s
        while True:
            now = self.clock.now()
            t = (int(now + lead) // ps + 1) * ps
            await self.clock.sleep(max(0.0, t - lead - now))
            self.record_ledger(t)
            if self.cfg.strategy != "s2" or t in self.busy:
                continue
            peers = sorted(
                a for a in self.deps.roster.registered | self.deps.roster.static if a != self.me.lower()
            )
            peer = choose_peer(peers, self.book.memory(), context_of(t, self.cfg), self.cfg, self.rng)
            if peer is not None:
                assert self._tg is not None
                wait = float(self.rng.uniform(0.0, stagger_s(self.cfg.lead_s, self.cfg.round_timeout_s)))
                self._tg.create_task(
                    self.guarded(self.initiate(peer, t, wait)), name=f"trading.loans.initiate.{t}"
                )

    def forecast_kwh(self, t: int) -> np.ndarray | None:
        """Point forecast of the net demand (kWh per period) over the window from period t."""
        w, ps = self.cfg.window, self.cfg.period_s
        if self.deps.forecaster is None:
            return None
        try:
            watts = np.asarray(self.deps.forecaster.net_demand(t, w, ps), dtype=np.float64)
        except (ValueError, ArithmeticError, LookupError, AttributeError):
            return None
        if watts.shape != (w,) or not np.all(np.isfinite(watts)):
            return None
        return watts * ps / 3.6e6

    def record_ledger(self, t: int) -> None:
        """Net demand per period: the forecast for t, the meter's figure for periods that ended."""
        ps = self.cfg.period_s
        point = self.forecast_kwh(t)
        if point is not None:
            self.book.record_net(t, float(point[0]), measured=False)
        for p in self.book.unmeasured(before=int(self.clock.now()) - ps):
            delta = self.deps.store.energy_between(p, p + ps)
            if delta.complete:
                self.book.record_net(p, (int(delta.import_wh) - int(delta.export_wh)) / 1000.0, measured=True)

    async def space(self, t: int, initiator: bool) -> Bargainer | None:
        point = self.forecast_kwh(t)
        if point is None:
            self.count("loan_no_forecast")
            return None
        ps = self.cfg.period_s
        window = np.arange(t, t + self.cfg.window * ps, ps, dtype=np.int64)
        demand = point + self.book.flows(self.cfg, window)
        _, net, flows = self.book.ledger(self.cfg, until=t)
        from gateway.trading.config import loan_battery

        x0 = battery_state(self.cfg, loan_battery(self.cfg), net + flows)
        key = (int(self.me[2:10], 16), t // ps)
        space = await asyncio.to_thread(contract_space, self.cfg, demand, x0, initiator, key)
        return Bargainer(space)

    async def initiate(self, peer: str, t: int, wait: float = 0.0) -> None:
        """Propose a loan for period `t` to `peer`, after `wait` seconds: every gateway plans a session for
        each period, and one that proposed while its neighbours also did would find them all busy; so
        each waits a random moment, and one that a neighbour's proposal reached first answers that
        instead (one session per period), which pairs most of the community without a coordinator."""
        if wait > 0:
            await self.clock.sleep(wait)
        if t in self.busy:
            self.count("loan_initiate_yielded")
            return
        sid = "0x" + secrets.token_hex(32)
        s = Session(sid, peer, t, self.me, peer, first=True)
        self.sessions[sid], self.busy[t] = s, sid
        try:
            bargainer = await self.space(t, initiator=True)
            if bargainer is None or self.sessions.get(sid) is not s:
                return
            s.mine = bargainer.offer(0)
            offer = offer_at(self.grid, s.mine, self.me, peer)
            self.count("loan_session_started")
            await self.publish("loan_propose", peer, {"session": sid, "period": t, "period_s": self.cfg.period_s,
                                                      "round": 0, "lender": offer.lender,
                                                      "quantity_wh": offer.quantity_wh, "tau": offer.tau})  # fmt: skip
            await self.bargain(s, bargainer)
        finally:
            self._end(s)

    async def respond(self, env: Envelope) -> None:
        body = env.body
        sid, t, peer = str(body["session"]), int(body["period"]), env.sender
        now, ps = self.clock.now(), self.cfg.period_s
        reason = None
        if self.cfg.strategy != "s2":
            reason = "not_lending"
        elif (
            int(body["period_s"]) != ps
            or t % ps
            or not 0 < t - now <= self.cfg.lead_s + 2 * self.cfg.round_timeout_s
        ):
            reason = "wrong_period"
        elif int(body["round"]) != 0:
            reason = "round_mismatch"
        elif t in self.busy:
            other = self.sessions.get(self.busy[t])
            if other is not None and other.first and other.peer.lower() == peer.lower() and sid < other.id:
                other.queue.put_nowait(None)  # both proposed to each other: the lower session id goes on
                self._end(other)
                self.count("loan_session_yielded")
            else:
                reason = "busy"
        if reason is not None:
            self.count(f"loan_refused_{reason}")
            await self.publish("loan_reject", peer, {"session": sid, "reason": reason})
            return
        s = Session(sid, peer, t, peer, self.me, first=False)
        self.sessions[sid], self.busy[t] = s, sid
        try:
            bargainer = await self.space(t, initiator=False)
            if bargainer is None:
                await self.publish("loan_reject", peer, {"session": sid, "reason": "no_forecast"})
                return
            await self.on_offer(s, bargainer, 0, body)
            await self.bargain(s, bargainer)
        finally:
            self._end(s)

    def _end(self, s: Session) -> None:
        if self.sessions.get(s.id) is s:
            del self.sessions[s.id]
        if self.busy.get(s.period) == s.id:
            del self.busy[s.period]

    # ------------------------------------------------------------ Algorithm 1 over the wire

    async def bargain(self, s: Session, b: Bargainer) -> None:
        """Wait for the peer's answer to our last message until the session ends."""
        while self.sessions.get(s.id) is s:
            try:
                env = await asyncio.wait_for(s.queue.get(), self.cfg.round_timeout_s)
            except TimeoutError:
                self.count("loan_timeout")
                self._reward(s, b, None)
                return
            if env is None:  # yielded to the peer's own proposal
                return
            if env.type == "loan_reject":
                self.count("loan_rejected_by_peer")
                if env.body["reason"] != "busy":
                    self._reward(s, b, None)
                return
            if env.type == "loan_accept":
                await self.confirm(s, b, env)
                return
            if env.type == "loan_counter" and await self.on_offer(s, b, int(env.body["round"]), env.body):
                continue
            if env.type not in ("loan_counter",):
                self.count("loan_unexpected")
            return

    async def on_offer(self, s: Session, b: Bargainer, round_: int, body: dict[str, Any]) -> bool:
        """The peer's offer at `round_`: accept it, or answer with ours; False when the session ended."""
        expected = (
            s.round + 1 if s.first or s.round else 0
        )  # the responder's first offer to answer is round 0
        if round_ != expected:
            await self._fail(s, b, "round_mismatch")
            return False
        offer = Offer(str(body["lender"]), int(body["quantity_wh"]), int(body["tau"]))
        theirs = flat_of(self.grid, offer, s.initiator)
        if offer.quantity_wh and (
            theirs is None or offer.lender.lower() not in (s.initiator.lower(), s.responder.lower())
        ):
            await self._fail(s, b, "off_grid")
            return False
        action, mine = answer(b, round_, theirs, self.cfg.max_rounds)
        if action == "accept" and mine is not None:
            await self.accept(s, b, round_, mine)
            return False
        if action != "counter":
            await self._fail(s, b, action)
            return False
        nxt = round_ + 1
        s.round, s.mine = nxt, mine
        o = offer_at(self.grid, mine, s.initiator, s.responder)
        await self.publish("loan_counter", s.peer, {"session": s.id, "round": nxt, "lender": o.lender,
                                                    "quantity_wh": o.quantity_wh, "tau": o.tau})  # fmt: skip
        return True

    async def _fail(self, s: Session, b: Bargainer, reason: str) -> None:
        self.count(f"loan_failed_{reason}")
        self._reward(s, b, None)
        self._end(s)
        await self.publish("loan_reject", s.peer, {"session": s.id, "reason": reason})

    def _reward(self, s: Session, b: Bargainer, flat: int | None) -> None:
        self.book.remember(s.peer, context_of(s.period, self.cfg), b.distance(flat))

    def _loan(self, s: Session, flat: int) -> Loan:
        return loan_terms(offer_at(self.grid, flat, s.initiator, s.responder), s.initiator, s.responder,
                          s.period, self.cfg, s.id)  # fmt: skip

    async def accept(self, s: Session, b: Bargainer, round_: int, flat: int) -> None:
        """We accept the peer's offer: journal our signature, send it, wait for the peer's."""
        assert self.domain is not None
        loan = self._loan(s, flat)
        lid = "0x" + loan_id(loan, self.domain).hex()
        sig = sign_loan_hex(loan, self.domain, self.deps.account)
        role = "lender" if loan.lender == self.me else "borrower"
        tau = self.grid.contract(flat)[1]
        self.book.put(LoanRecord(lid, role, s.peer, loan.as_dict(), s.period, tau, sig, None, False, "signed",
                                 None, None, None))  # fmt: skip
        self.count("loan_accepted")
        await self.publish(
            "loan_accept", s.peer, {"session": s.id, "round": round_, "loan": loan.as_dict(), "sig": sig}
        )
        try:
            while True:
                env = await asyncio.wait_for(s.queue.get(), 2 * self.cfg.round_timeout_s)
                if env is None or env.type == "loan_reject":
                    self._reward(s, b, None)
                    return
                if env.type == "loan_confirm":
                    break
        except TimeoutError:
            self.count("loan_confirm_timeout")  # the loan stays signed: the peer may still submit it
            return
        peer_sig = str(env.body["sig"])
        if env.body["loan_id"] != lid or not self._signed_by(loan, peer_sig, s.peer):
            self.count("loan_bad_confirm")
            return
        self.book.update(lid, peer_sig=peer_sig, state="agreed")
        self.count("loan_agreed")
        self._reward(s, b, flat)

    async def confirm(self, s: Session, b: Bargainer, env: Envelope) -> None:
        """The peer accepted our last offer: check its terms and signature, journal ours, confirm."""
        assert self.domain is not None
        if s.mine is None or int(env.body["round"]) != s.round:
            await self._fail(s, b, "terms_mismatch")
            return
        loan = self._loan(s, s.mine)
        try:
            theirs = loan_from_dict(env.body["loan"])
        except ValueError:
            theirs = None
        peer_sig = str(env.body["sig"])
        if theirs != loan or not self._signed_by(loan, peer_sig, s.peer):
            await self._fail(s, b, "terms_mismatch")
            return
        lid = "0x" + loan_id(loan, self.domain).hex()
        sig = sign_loan_hex(loan, self.domain, self.deps.account)
        role = "lender" if loan.lender == self.me else "borrower"
        self.book.put(LoanRecord(lid, role, s.peer, loan.as_dict(), s.period, self.grid.contract(s.mine)[1], sig,
                                 peer_sig, True, "agreed", None, None, None))  # fmt: skip
        await self.publish("loan_confirm", s.peer, {"session": s.id, "loan_id": lid, "sig": sig})
        self.count("loan_agreed")
        self._reward(s, b, s.mine)

    def _signed_by(self, loan: Loan, signature: str, who: str) -> bool:
        assert self.domain is not None
        try:
            return loan_signer(loan, self.domain, signature).lower() == who.lower()
        except Exception:  # a malformed signature is a mismatch, not a crash
            return False

    # ------------------------------------------------------------ chain: submit, report, close

    def on_evidence(self, env: Envelope) -> None:
        """The peer's own meter bounds of one of our loans with it (kept, first figures win)."""
        rec = self.book.loan(str(env.body["loan_id"]))
        if rec is None or rec.peer.lower() != env.sender.lower():
            self.count("loan_evidence_unknown")
            return
        if max(int(env.body["lent_wh"]), int(env.body["returned_wh"])) >= 2**63:  # no loan is that large
            self.count("loan_evidence_malformed")
            return
        if rec.peer_lent is None:
            self.book.update(
                rec.id, peer_lent=int(env.body["lent_wh"]), peer_returned=int(env.body["returned_wh"])
            )
            self.count("loan_evidence")

    async def settle_loop(self) -> None:
        interval = max(0.2, min(5.0, self.cfg.period_s / 4))
        while True:
            for rec in self.book.loans(*OPEN_LOAN_STATES):
                try:
                    await self.advance(rec)
                except ChainError as exc:
                    self.count("loan_settle_error")
                    log.warning("event=loan_settle_error id=%s error=%s", rec.id, str(exc)[:300])
            await self.clock.sleep(interval)

    async def advance(self, rec: LoanRecord) -> None:
        """The next step of one loan, from what the chain says about it."""
        run = self.deps.runner.call
        loan = loan_from_dict(rec.terms)
        status, _deadline = await run(self.chain.status, loan)
        now = self.clock.now()
        if status in (LoanStatus.CLOSED, LoanStatus.CANCELLED):
            figures = await run(self.chain.closed, loan)
            note = "cancelled" if figures is None else ",".join(f"{k}={v}" for k, v in figures.items())
            self.book.update(rec.id, state="closed", note=note)
            self.count("loan_closed")
            log.info("event=loan_closed id=%s role=%s %s", rec.id, rec.role, note)
            return
        if status is LoanStatus.NONE:
            if now > loan.expiry + 2 * self.cfg.round_timeout_s:
                self.book.update(rec.id, state="abandoned")
                self.count("loan_abandoned")
            elif rec.state == "agreed" and rec.peer_sig and (rec.submitter or now >= rec.period):
                sigs = (rec.my_sig, rec.peer_sig) if rec.role == "lender" else (rec.peer_sig, rec.my_sig)
                try:
                    await run(self.chain.submit, loan, *sigs)
                    self.count("loan_submitted")
                except RevertError as exc:
                    self.count(f"loan_revert_{exc.name}")
            return
        if rec.state in ("signed", "agreed"):
            self.book.update(rec.id, state="open")
            self.count("loan_open")
        if status is LoanStatus.OPEN and now >= loan.returnBy + self.cfg.report_delay_s:
            own_lent, own_returned, complete = self.measured(rec)
            late = now >= loan.returnBy + 3 * self.cfg.report_delay_s + 2
            if complete or late:  # our bounds to the peer until the loan closes (it may have missed them)
                body = {"loan_id": rec.id, "lent_wh": own_lent, "returned_wh": own_returned}
                await self.publish("loan_evidence", rec.peer, body)
            if rec.state != "reported" and (complete or late) and (rec.peer_lent is not None or late):
                lent, returned = report_figures(
                    rec.role, own_lent, own_returned, rec.peer_lent, rec.peer_returned
                )
                try:
                    await run(self.chain.report, loan, lent, returned)
                    self.book.update(rec.id, state="reported", lent_wh=lent, returned_wh=returned)
                    self.count("loan_reported")
                except RevertError as exc:
                    self.count(f"loan_revert_{exc.name}")
                    if (
                        exc.name == "AlreadyReported"
                    ):  # our key reported already (another run, a backup): once
                        self.book.update(rec.id, state="reported", note="reported elsewhere")
                return
        if now > _deadline + 1:
            try:
                await run(self.chain.expire, loan)
                self.count("loan_expired")
            except RevertError as exc:
                self.count(f"loan_revert_{exc.name}")

    def measured(self, rec: LoanRecord) -> tuple[int, int, bool]:
        """(lent, returned, complete) from our own verified meter data, shared among loans in id order."""
        ps = self.cfg.period_s
        legs: list[tuple[str, str, int, int]] = []  # (key, direction, start, quantity)
        for r in self.book.loans():
            if r.state == "abandoned":
                continue
            q, ret = int(r.terms["quantityWh"]), r.period + r.tau * ps
            out, back = ("export", "import") if r.role == "lender" else ("import", "export")
            legs += [(f"{r.id}:lent", out, r.period, q), (f"{r.id}:returned", back, ret, q)]
        figures: list[int] = []
        complete = True
        for name in ("lent", "returned"):
            key = f"{rec.id}:{name}"
            (_, direction, start, _) = next(leg for leg in legs if leg[0] == key)
            delta = self.deps.store.energy_between(start, start + ps)
            complete &= bool(delta.complete)
            total = int(delta.export_wh if direction == "export" else delta.import_wh)
            same = [(k, q) for k, d, st, q in legs if d == direction and st == start]
            figures.append(allocate(total, same, key))
        return figures[0], figures[1], complete


async def run_loans(deps: LoanDeps) -> None:
    """The trading service's hook: run the loans task until cancelled."""
    await LoanAgent(deps).run()
