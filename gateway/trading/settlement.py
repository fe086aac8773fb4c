"""Delivery and settlement, driven by the journal and checked against the chain at every step.

For each journaled agreement the settler asks the chain first (so a restart never repeats what
is done; an answer is reused while the chain's head block stays the same) and then takes the one
next step: submit the signed terms, send the meter's evidence (or report the metered quantity)
after the window, reclaim the escrow after the deadline, or record the final state.

Evidence first: when this household's meter node signed statements bounding the delivery window
(hour-aligned windows: the node signs once an hour), the settler sends them (`settleByMeters`, its own
side; the counterparty's gateway or a keeper sends the other) and never reports a figure of its own:
the meters decide, and a side whose statements never arrive bears it (docs/contracts.md, "The
rule"). Only without statements (windows shorter than an hour, a meter without a device key) does it
fall back to the report rules below. The metered
quantity comes from this gateway's own verified readings (`ReadingStore.energy_between`): export
for a seller, import for a buyer, shared between agreements of the same window in id order.
The seller reports first; the buyer confirms the seller's figure when its own meter covers it
(so an honest shortfall settles with a partial refund at once), otherwise it reports its own and
the contract opens a dispute. Anchoring commits each past hour's readings hash once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.chain.errors import RevertError
from gateway.chain.journal import TX_REVERTED, AgreementRecord, Journal
from gateway.chain.market import FINAL, AgreementCache, Head, Market, Status, terms_from_dict
from gridpact.core.statement import StatementRejected, window_args

log = logging.getLogger("gridpact.gateway.trading")

OPEN_STATES = ("signing", "signed", "submitted", "reported")
# Terms that carry only our signature ("signing": a declined bid, a lost `confirm`) are opened, if ever,
# by the peer before they expire; nothing of ours needs to know sooner than the delivery's end, so the
# chain is asked about them this often (and again once they have expired), not every block.
SIGNING_LOOK_S = 300.0


@dataclass(frozen=True)
class Timing:
    report_delay_s: float  # after deliveryEnd, before the seller reports (readings arrive)
    confirm_wait_s: float  # how long the buyer waits for the seller's report
    keeper_grace_s: float = 0.0  # after deliveryEnd, how long the community keeper may carry our window first
    keeper_submit_grace_s: float = (
        0.0  # after deliveryStart, how long the keeper may submit our agreement first
    )


def submit_after(delivery_start: int, submitter: bool, keeper_grace_s: float) -> float:
    """When a party submits a doubly-signed agreement that is not open on chain yet.

    Without a keeper the party that confirmed (the submitter) does at once and the other at the delivery
    start (its fallback). With one, the keeper's round comes shortly after the start: the submitter waits
    `keeper_grace_s` past the start, the other party another grace (config keeps both well before the
    terms' expiry, a second before the window ends), so a silent keeper delays, never loses, an agreement."""
    if keeper_grace_s <= 0:
        return float("-inf") if submitter else float(delivery_start)
    return delivery_start + keeper_grace_s * (1 if submitter else 2)


@dataclass(frozen=True)
class MeterEvidence:
    """This household's meter statements at the window's start (None: not kept) and end: (bytes, r||s||v)."""

    first: tuple[bytes, bytes] | None
    last: tuple[bytes, bytes]


def evidence_for(
    terms: dict[str, Any], statement_at: Callable[[int], tuple[bytes, bytes] | None]
) -> MeterEvidence | None:
    """The meter evidence of an hour-aligned delivery window, from the store (loop thread); None without it."""
    start, end = int(terms["deliveryStart"]), int(terms["deliveryEnd"])
    if start % 3600 or end % 3600:
        return None
    last = statement_at(end)
    return None if last is None else MeterEvidence(statement_at(start), last)


def allocate(total_wh: int, agreements: list[tuple[str, int]], target: str) -> int:
    """Metered Wh attributed to `target` among same-window, same-role agreements (id order, capped at q)."""
    remaining = max(0, total_wh)
    for agreement_id, quantity in sorted(agreements):
        share = min(quantity, remaining)
        if agreement_id == target:
            return share
        remaining -= share
    raise KeyError(target)


def buyer_report(own_wh: int, seller_reported: bool, seller_wh: int) -> int:
    """The buyer confirms the seller's lower figure when its meter covers it; else reports its own."""
    if seller_reported and seller_wh <= own_wh:
        return seller_wh
    return own_wh


class Settler:
    """The journal-driven state machine; `advance` runs in the chain thread (blocking calls).

    A round is `new_round` then `advance` for each open agreement: each takes its first look at
    the chain from `views`, read once per head block (gateway.chain.market.AgreementCache), so a
    round without a new block costs one head read instead of one call per agreement.
    """

    def __init__(
        self, market: Market, journal: Journal, timing: Timing, count: Callable[[str], None]
    ) -> None:
        self.market = market
        self.journal = journal
        self.timing = timing
        self.count = count
        self.views = AgreementCache(market)
        self._signing_looked: dict[str, float] = {}  # agreement id -> when the chain was last asked

    def new_round(self) -> Head:
        """Read the chain's head once for this round (chain thread); views of an older head are dropped."""
        return self.views.new_round()

    def measured(self, rec: AgreementRecord, energy_between: Callable[[int, int], Any]) -> tuple[int, bool]:
        """(Wh attributed to this agreement, complete) from the store; call on the loop thread."""
        terms = rec.terms
        delta = energy_between(int(terms["deliveryStart"]), int(terms["deliveryEnd"]))
        total = int(delta.export_wh if rec.role == "seller" else delta.import_wh)
        same = [
            (r.id, int(r.terms["quantityWh"]))
            for r in self.journal.agreements()
            if r.role == rec.role and r.terms["deliveryStart"] == terms["deliveryStart"]
            and r.state not in ("abandoned", "signing")
        ]  # fmt: skip
        if rec.id not in {a for a, _ in same}:
            same.append((rec.id, int(terms["quantityWh"])))
        return allocate(total, same, rec.id), bool(delta.complete)

    def advance(
        self, rec: AgreementRecord, now: float, measured: int | None, evidence: MeterEvidence | None = None
    ) -> str:
        """Take the next step for one agreement; returns its journal state afterwards."""
        terms = terms_from_dict(rec.terms)
        if rec.state == "signing" and now <= terms.expiry:
            looked = self._signing_looked.get(rec.id)
            if looked is not None and now - looked < SIGNING_LOOK_S:
                return rec.state
            if len(self._signing_looked) >= 4096:  # bounded: an old entry only costs one look more
                self._signing_looked = {
                    k: t for k, t in self._signing_looked.items() if now - t < SIGNING_LOOK_S
                }
            self._signing_looked[rec.id] = now
        else:
            self._signing_looked.pop(rec.id, None)
        view = self.views.agreement(terms)
        if view.status is Status.DISPUTED and rec.note != "disputed":  # shown as an open dispute
            self.journal.set_agreement_state(rec.id, rec.state, note="disputed")
        if view.status in FINAL:
            return self._close(rec, view.status)
        if view.status is Status.NONE and rec.state in ("submitted", "reported"):
            return self._slot_moved_on(rec)
        if rec.state in ("signing", "signed"):
            if view.status is not Status.NONE:
                self.journal.set_agreement_state(rec.id, "submitted")
                return "submitted"
            if now > terms.expiry:
                closed = self.market.closed_status(rec.id)  # submitted by the peer, closed, slot reused
                if closed is not None:
                    return self._close(rec, closed)
                self.journal.set_agreement_state(rec.id, "abandoned", note="expired before submission")
                self.count("abandoned")
                return "abandoned"
            due = now >= submit_after(
                terms.deliveryStart, rec.note == "submitter", self.timing.keeper_submit_grace_s
            )
            if rec.state == "signed" and rec.peer_sig and due:
                return self._submit(rec, terms)
            return rec.state
        open_now = view.status in (Status.ACTIVE, Status.DISPUTED) and now <= view.deadline
        if open_now and rec.state == "submitted" and evidence is not None:
            if now < terms.deliveryEnd + self.timing.keeper_grace_s:  # the keeper's turn: batched is cheaper
                return self._carried(rec, terms) or rec.state
            sent = self._send_evidence(rec, terms, evidence)
            if sent is not None:
                return sent
        if view.status is Status.ACTIVE and rec.state == "submitted":
            if now < terms.deliveryEnd + self.timing.report_delay_s or measured is None:
                return rec.state
            if now <= view.deadline:
                return self._report(rec, terms, now, measured, view)
        if view.status in (Status.ACTIVE, Status.DISPUTED) and now > view.deadline:
            # either party closes it: the reports on record decide (a silent party accepts the other's), so a
            # seller whose buyer went quiet is paid without waiting for the buyer or the community
            return self._send_final(rec, "reclaim", lambda: self.market.reclaim(terms))
        return rec.state

    def _send_evidence(self, rec: AgreementRecord, terms: Any, ev: MeterEvidence) -> str | None:
        """Send this side's meter statements; None when they cannot count (then the report rules apply)."""
        me = terms.seller if rec.role == "seller" else terms.buyer
        used_until = self.market.meter_used_until(me)
        if used_until > terms.deliveryStart:  # a later window of this meter is on chain already
            carried = self._carried(rec, terms)
            if carried is not None:
                return carried
            self.count("evidence_superseded")
            return None
        first = None if used_until == terms.deliveryStart else ev.first
        if first is None and used_until != terms.deliveryStart:
            self.count("evidence_no_start")
            return None
        try:
            window = window_args(me, terms.deliveryStart, terms.deliveryEnd, first, ev.last)
        except StatementRejected as exc:
            self.count(f"evidence_{exc.reason}")
            return None
        # the meter's window counts once on chain: every agreement of ours on it goes in the same call
        same = [
            r for r in self.journal.agreements("submitted")
            if (r.terms["deliveryStart"], r.terms["deliveryEnd"]) == (terms.deliveryStart, terms.deliveryEnd)
        ]  # fmt: skip
        if rec.id not in {r.id for r in same}:
            same.append(rec)
        batch = [(terms_from_dict(r.terms), r.role == "seller") for r in same]
        try:
            record = self.market.settle_by_meters(rec.id, window, batch)
            receipt = self.market.sender.wait(record.key)
        except RevertError as exc:
            return self._after_revert(rec, exc)
        if receipt.status != 1:
            return self._recheck(rec)
        if self.market.meter_used_until(me) < terms.deliveryEnd:  # mined, but the Market refused our window
            self.count(
                "evidence_window_rejected"
            )  # (MeterWindowRejected: a key or statement it does not accept)
            log.warning("event=meter_evidence_rejected id=%s role=%s", rec.id, rec.role)
            return None
        self.count("evidence_sent")
        log.info("event=meter_evidence_sent id=%s role=%s agreements=%d", rec.id, rec.role, len(same))
        for r in same:
            self.journal.set_agreement_state(r.id, "reported", note="meters")
        after = self.market.agreement(terms_from_dict(rec.terms))
        return self._close(rec, after.status) if after.status in FINAL else "reported"

    def _carried(self, rec: AgreementRecord, terms: Any) -> str | None:
        """ "reported" once a keeper carried our meter's window with this agreement (our side's figure is on
        chain, the other's still missing); None when it has not (a settled one closes via `advance`)."""
        me = terms.seller if rec.role == "seller" else terms.buyer
        if self.market.meter_used_until(me) < terms.deliveryEnd:
            return None
        seller_known, buyer_known = self.market.evidence_of(terms)
        if not (seller_known if rec.role == "seller" else buyer_known):
            return None
        self.count("evidence_by_keeper")
        self.journal.set_agreement_state(rec.id, "reported", note="meters")
        return "reported"

    def _slot_moved_on(self, rec: AgreementRecord) -> str:
        """On chain before, NONE now: the seller reused the slot after it closed; the events say how."""
        closed = self.market.closed_status(rec.id)
        if closed is None:  # no closing event (yet): keep asking, never assume an outcome
            self.count("slot_unknown")
            return rec.state
        return self._close(rec, closed)

    def _close(self, rec: AgreementRecord, status: Status) -> str:
        self.journal.set_agreement_state(rec.id, "closed", note=status.name.lower())
        self.count(status.name.lower())
        log.info("event=agreement_closed id=%s status=%s role=%s", rec.id, status.name.lower(), rec.role)
        return "closed"

    def _submit(self, rec: AgreementRecord, terms: Any) -> str:
        seller_sig, buyer_sig = (
            (rec.my_sig, rec.peer_sig) if rec.role == "seller" else (rec.peer_sig, rec.my_sig)
        )
        assert seller_sig is not None and buyer_sig is not None
        try:
            record = self.market.submit(terms, seller_sig, buyer_sig)
            receipt = self.market.sender.wait(record.key)
        except RevertError as exc:
            return self._after_revert(rec, exc)
        if receipt.status == 1:
            self.count("submitted")
            self.journal.set_agreement_state(rec.id, "submitted")
            return "submitted"
        return self._recheck(rec)

    def _report(self, rec: AgreementRecord, terms: Any, now: float, measured: int, view: Any) -> str:
        mine = view.seller_reported if rec.role == "seller" else view.buyer_reported
        if not mine:
            value = measured
            if rec.role == "buyer":
                waited = now >= terms.deliveryEnd + self.timing.report_delay_s + self.timing.confirm_wait_s
                if not view.seller_reported and not waited:
                    return rec.state
                value = buyer_report(measured, view.seller_reported, view.seller_wh)
            try:
                record = self.market.report(terms, value)
                receipt = self.market.sender.wait(record.key)
            except RevertError as exc:
                return self._after_revert(rec, exc)
            if receipt.status != 1:
                return self._recheck(rec)
            self.count("reported")
            log.info(
                "event=delivery_reported id=%s role=%s wh=%d measured=%d", rec.id, rec.role, value, measured
            )
            measured = value
        self.journal.set_agreement_state(rec.id, "reported", measured_wh=measured)
        after = self.market.agreement(terms_from_dict(rec.terms))
        return self._close(rec, after.status) if after.status in FINAL else "reported"

    def _send_final(self, rec: AgreementRecord, what: str, send: Callable[[], Any]) -> str:
        try:
            record = send()
            self.market.sender.wait(record.key)
        except RevertError as exc:
            return self._after_revert(rec, exc)
        self.count(what)
        return self._recheck(rec)

    def _after_revert(self, rec: AgreementRecord, exc: RevertError) -> str:
        """A revert usually means the chain moved on (peer submitted, deadline passed): ask the chain."""
        # expected: block time lags (TooEarly); the peer closed it first, as either party may (WrongStatus)
        level = logging.DEBUG if exc.name in ("TooEarly", "WrongStatus") else logging.WARNING
        log.log(level, "event=agreement_revert id=%s error=%s", rec.id, exc)
        self.count(f"revert_{exc.name}")
        if exc.name in (
            "TermsExpired",
            "InsufficientBalance",
            "NotRegistered",
            "InvalidTerms",
            "BadSignature",
        ):
            view = self.market.agreement(terms_from_dict(rec.terms))
            if view.status is Status.NONE:
                self.journal.set_agreement_state(rec.id, "abandoned", note=exc.name)
                return "abandoned"
        return self._recheck(rec)

    def _recheck(self, rec: AgreementRecord) -> str:
        view = self.market.agreement(terms_from_dict(rec.terms))
        if view.status in FINAL:
            return self._close(rec, view.status)
        if view.status is not Status.NONE and rec.state in ("signing", "signed"):
            self.journal.set_agreement_state(rec.id, "submitted")
            return "submitted"
        for kind in ("submit", "report", "meters", "reclaim"):
            tx = self.journal.tx(f"{kind}:{rec.id}")
            if tx is not None and tx.state == TX_REVERTED:
                self.journal.drop_tx(tx.key)  # a reverted attempt may be retried once the state allows
        return rec.state


class Anchorer:
    """Commits each finished hour's batch hash once; `anchor_hour` runs in the chain thread."""

    def __init__(self, market: Market, journal: Journal, count: Callable[[str], None]) -> None:
        self.market = market
        self.journal = journal
        self.count = count

    def anchor_hour(self, hour_start: int, digest: bytes, count: int) -> bool:
        """True once the hour is anchored on chain (by this call or before)."""
        if self.market.anchored(hour_start) != bytes(32):
            return True
        try:
            record = self.market.anchor(hour_start, digest, count)
            receipt = self.market.sender.wait(record.key)
        except RevertError as exc:
            if exc.name == "AlreadyAnchored":
                return True
            self.count(f"anchor_revert_{exc.name}")
            log.warning("event=anchor_revert hour=%d error=%s", hour_start, exc)
            return False
        if receipt.status == 1:
            self.count("anchored")
        return self.market.anchored(hour_start) != bytes(32)
