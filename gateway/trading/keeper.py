"""The community keeper: one `settleByMeters` call per delivery window, for every household in it.

Each gateway publishes its meter node's device-signed hourly statement, with the terms of its open
agreements on that window, to `PREFIX/COMMUNITY/v1/meters/<household>` (retained, so a keeper that
restarts gets every household's latest). The statement authenticates itself: the keeper checks its
signer against the meter key the community registered on chain (`meterOf`) and drops, and counts,
anything else. The agreement terms are only a list of what to settle: the contract checks each one
(open, delivered, the window its parties'), so a gateway that lies about them only gets its own
items rejected. After a window ends (plus a short delay for the statements to arrive) the keeper
sends one call with every household's window and every agreement on it, chained to the meter's
previous window where it can (one statement per meter per hour). Gateways keep their own fallback:
after `agent.keeper_grace_s` they send their own window themselves, so a silent keeper never stalls
money (docs/keeper.md).

The keeper batches submission too: the gateway that would submit an agreement publishes it, doubly
signed, to `PREFIX/COMMUNITY/v1/agreements/<publisher>` when negotiation ends, and waits
`agent.keeper_submit_grace_s` past the delivery start before submitting it itself. The keeper checks
both EIP-712 signatures host-side (`terms_signer`, the gateway's own check), drops and counts forged,
expired, malformed and repeated ones, and opens what it holds in one `submitAgreements` call a short
delay after each window starts (`SubmitBook`; the contract skips, and reports, an item it cannot open).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_utils.crypto import keccak

from gateway.chain.market import NO_WINDOW, Market, Status, Terms, signed_by, terms_from_dict
from gridpact.core.eip712 import Domain, agreement_id
from gridpact.core.statement import (
    FUTURE_SLACK_S,
    WINDOW_S,
    StatementRejected,
    decode,
    device_word,
    json_object,
    parse_pair,
    reading_args,
    recover_signer,
)
from gridpact.core.statement import NO_READING as _NO_READING

log = logging.getLogger("gridpact.gateway.trading")

MAX_PUBLICATION = 64 * 1024
MAX_TERMS = 64


def meters_topic(prefix: str, community: str, household: str) -> str:
    return f"{prefix}/{community}/v1/meters/{household.lower()}"


def meters_filter(prefix: str, community: str) -> str:
    return f"{prefix}/{community}/v1/meters/+"


def agreements_topic(prefix: str, community: str, publisher: str) -> str:
    return f"{prefix}/{community}/v1/agreements/{publisher.lower()}"


def agreements_filter(prefix: str, community: str) -> str:
    return f"{prefix}/{community}/v1/agreements/+"


@dataclass(frozen=True)
class Publication:
    """One household's signed statement at `end` (and the one at the window's start, when it has it)
    with the terms of its agreements on the window that ends there."""

    household: str
    last: tuple[bytes, bytes]
    first: tuple[bytes, bytes] | None
    terms: tuple[Terms, ...]

    @property
    def end(self) -> int:
        return decode(self.last[0]).window_end


def encode_publication(
    household: str, last: tuple[bytes, bytes], first: tuple[bytes, bytes] | None, terms: list[dict[str, Any]]
) -> bytes:
    """The JSON a gateway publishes (terms as the journal keeps them)."""

    def pair(p: tuple[bytes, bytes] | None) -> dict[str, str] | None:
        return None if p is None else {"stmt": p[0].hex(), "sig": p[1].hex()}

    body = {"v": 1, "household": household.lower(), "last": pair(last), "first": pair(first), "terms": terms}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def parse_publication(payload: bytes) -> Publication:
    """A publication's fields, shape-checked; signatures are checked against the chain later."""
    obj = json_object(payload, MAX_PUBLICATION)
    household, terms = obj.get("household"), obj.get("terms")
    if not isinstance(household, str) or not household.startswith("0x") or len(household) != 42:
        raise StatementRejected("json", "household must be a 0x address")
    if not isinstance(terms, list) or len(terms) > MAX_TERMS:
        raise StatementRejected("json", f"terms must be a list of at most {MAX_TERMS}")
    try:
        last = _pair(obj.get("last"))
        first = None if obj.get("first") is None else _pair(obj.get("first"))
        parsed = tuple(terms_from_dict(t) for t in terms)
    except (KeyError, TypeError, ValueError) as exc:
        raise StatementRejected("json", str(exc)[:80]) from None
    if last is None:
        raise StatementRejected("json", "no statement")
    return Publication(household.lower(), last, first, parsed)


def _pair(value: object) -> tuple[bytes, bytes]:
    _, raw, sig = parse_pair(value)
    return raw, sig


@dataclass
class KeeperBook:
    """What the keeper knows: per (household, window end) the verified statement, per end the agreements.

    Pure: the meter key comes from the caller (the chain's `meterOf`). A statement not signed by the
    household's registered meter, or dated off the hour or in the future, is counted and dropped."""

    statements: dict[tuple[str, int], tuple[bytes, bytes]] = field(default_factory=dict)
    agreements: dict[int, dict[tuple[str, int], Terms]] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)

    def reject(self, reason: str) -> str:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return reason

    def add(self, pub: Publication, meter_key: str | None, now: int) -> str | None:
        """Keep a publication's statements and terms; returns the rejection reason, or None."""
        if not meter_key or int(meter_key, 16) == 0:
            return self.reject("no_meter")
        pairs = [p for p in (pub.first, pub.last) if p is not None]
        for raw, sig in pairs:
            try:
                signer = recover_signer(raw, sig)
            except StatementRejected as exc:
                return self.reject(exc.reason)
            if signer.lower() != meter_key.lower():
                return self.reject("signer")
            end = decode(raw).window_end
            if end % WINDOW_S or end > now + FUTURE_SLACK_S:
                return self.reject("time")
        if pub.first is not None and decode(pub.first[0]).dev != decode(pub.last[0]).dev:
            return self.reject("device")
        for raw, sig in pairs:
            self.statements[(pub.household, decode(raw).window_end)] = (raw, sig)
        end = pub.end
        if end in self.done:
            return None
        mine = [t for t in pub.terms if pub.household in (t.seller.lower(), t.buyer.lower())]
        book = self.agreements.setdefault(end, {})
        for t in mine:
            if t.deliveryEnd == end and t.deliveryStart == end - WINDOW_S:
                book[(t.seller.lower(), t.nonce)] = t
        return None

    def due(self, now: int, delay_s: float, group: int = 1) -> list[int]:
        """Window ends to settle now, in one call: those with agreements, past their delay and not settled
        yet, once `group` of them are waiting or the oldest has waited `group - 1` more hours."""
        ready = sorted(
            e for e, a in self.agreements.items() if a and e + delay_s <= now and e not in self.done
        )
        if not ready:
            return []
        if len(ready) >= group or ready[0] + (group - 1) * WINDOW_S + delay_s <= now:
            return ready[:group]
        return []

    def next_at(self, delay_s: float, group: int = 1) -> float:
        """When `due` next has windows to give (infinity: none pending), so the keeper can sleep till then."""
        pending = sorted(e for e, a in self.agreements.items() if a and e not in self.done)
        if not pending:
            return math.inf
        grouped = pending[group - 1] + delay_s if len(pending) >= group else math.inf
        return min(grouped, pending[0] + (group - 1) * WINDOW_S + delay_s)

    def plan(
        self, ends: list[int], used_until: Callable[[str], int], provider: str, open_: Callable[[Terms], bool]
    ) -> tuple[list[tuple], list[tuple]]:
        """(windows, items) of the windows ending at `ends` (ascending): one window per household with a
        usable statement per window (chained when its meter's last used window, on chain or earlier in this
        call, ends at the start), then every open agreement with its parties' window indices (NO_WINDOW for
        the provider or a missing one)."""
        windows: list[tuple] = []
        items: list[tuple] = []
        used: dict[str, int] = {}
        for end in ends:
            start = end - WINDOW_S
            terms = [t for t in self.agreements.get(end, {}).values() if open_(t)]
            people = sorted({p.lower() for t in terms for p in (t.seller, t.buyer)} - {provider.lower()})
            index: dict[str, int] = {}
            for who in people:
                last = self.statements.get((who, end))
                if last is None:
                    continue
                if who not in used:
                    used[who] = used_until(who)
                if used[who] > start:
                    continue  # this window (or a later one) counted already
                first = None if used[who] == start else self.statements.get((who, start))
                if used[who] != start and first is None:
                    self.reject("no_start")
                    continue
                index[who] = len(windows)
                used[who] = end
                windows.append(
                    (
                        _checksum(who),
                        device_word(decode(last[0]).dev),
                        start,
                        end,
                        _NO_READING if first is None else reading_args(*first),
                        reading_args(*last),
                    )
                )
            for t in sorted(terms, key=lambda t: (t.seller.lower(), t.nonce)):
                s, b = index.get(t.seller.lower(), NO_WINDOW), index.get(t.buyer.lower(), NO_WINDOW)
                if s != NO_WINDOW or b != NO_WINDOW:
                    items.append((t.as_tuple(), s, b))
        return windows, items


MAX_AGREEMENT = 4 * 1024
MAX_SUBMIT_BATCH = 100  # agreements opened per keeper round (`settleByMeters`, gas); more wait for the next
# The keeper pays the gas of what it submits, and holds it in memory: a pair of members that signs
# agreements between themselves without end must not make it pay or grow without end. Past these, the
# parties submit their own (their fallback), at their own cost.
MAX_HELD_PER_PARTY = 16  # agreements held at once naming one household (seller or buyer)
MAX_LEAD_S = 24 * 3600  # held only when the window starts within this


@dataclass(frozen=True)
class SignedAgreement:
    """Terms with both parties' signatures (65-byte hex), as a gateway would submit them."""

    terms: Terms
    seller_sig: str
    buyer_sig: str


def encode_agreement(terms: Terms, seller_sig: str, buyer_sig: str) -> bytes:
    """The JSON a gateway publishes for the keeper to submit (terms as the journal keeps them)."""
    body = {"v": 1, "terms": terms.as_dict(), "seller_sig": seller_sig, "buyer_sig": buyer_sig}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def parse_agreement(payload: bytes) -> SignedAgreement:
    """A published agreement's fields, shape-checked; the signatures are checked by `SubmitBook.add`."""
    obj = json_object(payload, MAX_AGREEMENT)
    sigs = obj.get("seller_sig"), obj.get("buyer_sig")
    for sig in sigs:
        if not isinstance(sig, str) or len(sig.removeprefix("0x")) != 130:
            raise StatementRejected("json", "seller_sig and buyer_sig must be 65-byte hex")
    raw = obj.get("terms")
    if not isinstance(raw, dict):
        raise StatementRejected("json", "terms must be an object")
    try:
        terms = terms_from_dict(raw)
        for sig in sigs:
            bytes.fromhex(str(sig).removeprefix("0x"))
    except (KeyError, TypeError, ValueError) as exc:
        raise StatementRejected("json", str(exc)[:80]) from None
    return SignedAgreement(terms, str(sigs[0]), str(sigs[1]))


@dataclass
class SubmitBook:
    """The doubly-signed agreements the keeper holds until its next `submitAgreements` round.

    Pure: the domain (chain id, Market address) and the time come from the caller. `seen` remembers
    every agreement held or sent until it expires, so a repeated or replayed publication is dropped;
    after its expiry the chain refuses it anyway, and so does `add`."""

    held: dict[str, SignedAgreement] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)  # agreement id -> expiry
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> str:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return reason

    def add(self, a: SignedAgreement, domain: Domain, now: int) -> str | None:
        """Hold an agreement whose two signatures are its parties'; returns the rejection reason, or None."""
        t = a.terms
        if now >= t.expiry:
            return self.reject("expired")
        if t.seller.lower() == t.buyer.lower() or not t.quantityWh or not t.deliveryStart < t.deliveryEnd \
                or t.expiry >= t.deliveryEnd:  # fmt: skip
            return self.reject("terms")
        if t.deliveryStart > now + MAX_LEAD_S:
            return self.reject("early")
        aid = agreement_key(t, domain)
        if aid in self.seen:
            return self.reject("duplicate")
        parties = {t.seller.lower(), t.buyer.lower()}
        for p in parties:
            if (
                sum(p in (h.terms.seller.lower(), h.terms.buyer.lower()) for h in self.held.values())
                >= MAX_HELD_PER_PARTY
            ):
                return self.reject("party_limit")
        try:
            ok = _low_s(a.seller_sig) and _low_s(a.buyer_sig)
        except (ValueError, TypeError):  # not a signature's bytes
            ok = False
        ok = (
            ok and signed_by(t, domain, a.seller_sig, t.seller) and signed_by(t, domain, a.buyer_sig, t.buyer)
        )
        if not ok:
            return self.reject("signature")
        self.held[aid] = a
        self.seen[aid] = t.expiry
        return None

    def due(self, now: int, delay_s: float) -> list[tuple[str, SignedAgreement]]:
        """What to submit now, in one call: once any held agreement's window started `delay_s` ago, every
        held agreement whose window has started that long (oldest first, at most MAX_SUBMIT_BATCH). Expired
        ones are dropped (their parties' own fallback ran long before)."""
        for aid in [k for k, a in self.held.items() if now >= a.terms.expiry]:
            del self.held[aid]
            self.reject("expired")
        for aid in [k for k, expiry in self.seen.items() if now >= expiry and k not in self.held]:
            del self.seen[aid]
        ready = [(k, a) for k, a in self.held.items() if a.terms.deliveryStart + delay_s <= now]
        ready.sort(
            key=lambda item: (item[1].terms.deliveryStart, item[1].terms.seller.lower(), item[1].terms.nonce)
        )
        return ready[:MAX_SUBMIT_BATCH]

    def next_at(self, delay_s: float) -> float:
        """When `due` next has agreements to give (infinity: none held)."""
        return min((a.terms.deliveryStart + delay_s for a in self.held.values()), default=math.inf)

    def taken(self, ids: list[str]) -> None:
        for aid in ids:
            self.held.pop(aid, None)


SECP256K1_HALF_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 // 2


def _low_s(signature: str) -> bool:
    """Only the canonical form of a signature (the contract's ECDSA refuses the other, malleated one): a
    copy with s flipped must not take the genuine publication's place (it would be a repeat of it)."""
    raw = bytes.fromhex(signature.removeprefix("0x"))
    return (
        len(raw) == 65 and int.from_bytes(raw[32:64], "big") <= SECP256K1_HALF_N and raw[64] in (0, 1, 27, 28)
    )


def agreement_key(terms: Terms, domain: Domain) -> str:
    return "0x" + agreement_id(terms, domain).hex()


def _checksum(address: str) -> str:
    from eth_utils.address import to_checksum_address

    return to_checksum_address(address)


class Keeper:
    """The chain side of the keeper; every method runs in the chain thread (blocking calls)."""

    def __init__(
        self,
        market: Market,
        book: KeeperBook,
        count: Callable[[str], None],
        submits: SubmitBook | None = None,
    ) -> None:
        self.market = market
        self.book = book
        self.count = count
        self.submits = SubmitBook() if submits is None else submits

    def meter_key(self, household: str) -> str | None:
        return str(self.market.sender.call(self.market.contract.functions.meterOf(_checksum(household)))[0])

    def accept(self, payload: bytes, now: int) -> str | None:
        """Parse, verify against the on-chain meter key and keep; the rejection reason, or None."""
        try:
            pub = parse_publication(payload)
        except StatementRejected as exc:
            return self.book.reject(exc.reason)
        return self.book.add(pub, self.meter_key(pub.household), now)

    def settle(self, ends: list[int]) -> int:
        """One `settleByMeters` for the windows ending at `ends`; the number of agreements it carried."""
        return self.round([], ends)[0]

    def _plan(self, ends: list[int]) -> tuple[list[tuple], list[tuple]]:
        """The windows and items of the rounds ending at `ends` (then done here)."""
        if not ends:
            return [], []
        provider = str(self.market.contract.functions.provider().call()[0])

        def open_(t: Terms) -> bool:
            return self.market.agreement(t).status in (Status.ACTIVE, Status.DISPUTED)

        windows, items = self.book.plan(ends, self.market.meter_used_until, provider, open_)
        for end in ends:
            self.book.done.add(end)
            self.book.agreements.pop(end, None)
        return windows, items

    def round(self, due: list[tuple[str, SignedAgreement]], ends: list[int]) -> tuple[int, int]:
        """One `settleByMeters` that settles the windows ending at `ends` and opens the held agreements
        `due`: the hour's two jobs in one call, so each household's balance slot is touched once and the
        base cost paid once (docs/keeper.md). Returns (agreements carried, agreements opened).

        Journaled under a key naming the windows and a digest of the ids opened: a restart re-broadcasts
        the same transaction. An item the chain refuses is skipped by the contract and counted here."""
        windows, items = self._plan(ends)
        todo = self._todo(due)
        if not items and not todo:
            return 0, 0
        opens = [(a.terms, a.seller_sig, a.buyer_sig) for _, a in todo]
        if todo:
            digest = keccak(b"".join(bytes.fromhex(aid[2:]) for aid, _ in sorted(todo))).hex()[:16]
            key = f"keeper-submit:{todo[0][1].terms.deliveryStart}:{digest}"
            key = f"keeper:{ends[0]}:{ends[-1]}:{key}" if items else key
        else:
            key = f"keeper:{ends[0]}:{ends[-1]}"
        try:
            record = self.market.settle_windows(key, windows, items, opens)
            receipt = self.market.sender.wait(record.key)
        except Exception as exc:  # refused before mining (a revert at estimate, no gas money, node gone)
            log.warning("event=keeper_failed windows=%d items=%d opens=%d error=%s",
                        len(windows), len(items), len(opens), str(exc)[:200])  # fmt: skip
            receipt = None
        if receipt is None or receipt.status != 1:  # both jobs lost: the parties' fallbacks take them over
            self.count_failed(settling=bool(items), opening=bool(todo))
            return 0, 0
        opened = 0
        if items:
            self.count("keeper_settled")
        if todo:
            refused = self.market.batch_rejections(receipt.logs, first=len(items))
            for name in refused:
                self.count(f"keeper_submit_refused_{name}")
            opened = len(todo) - len(refused)
            self.count("keeper_submitted")
        log.info("event=keeper_round end=%d windows=%d items=%d opened=%d gas=%d", ends[-1] if ends else 0,
                 len(windows), len(items), opened, receipt.gas_used)  # fmt: skip
        return len(items), opened

    def count_failed(self, settling: bool, opening: bool) -> None:
        """A round that failed (reverted or raised): one count per job it carried; the parties'
        fallbacks take both over."""
        if settling:
            self.count("keeper_failed")
        if opening:
            self.count("keeper_submit_failed")

    def accept_agreement(self, payload: bytes, now: int) -> str | None:
        """Parse and verify a published agreement and hold it for the next round; the rejection reason, or None."""
        try:
            signed = parse_agreement(payload)
        except StatementRejected as exc:
            return self.submits.reject(exc.reason)
        return self.submits.add(signed, self.market.domain, now)

    def submit(self, due: list[tuple[str, SignedAgreement]]) -> int:
        """The held agreements `due` not yet open on chain, opened in one call; the number it opened."""
        return self.round(due, [])[1]

    def _todo(self, due: list[tuple[str, SignedAgreement]]) -> list[tuple[str, SignedAgreement]]:
        """Of the agreements `due` (then taken from the book), those not already open on chain."""
        if not due:
            return []
        self.submits.taken([aid for aid, _ in due])
        todo = [(aid, a) for aid, a in due if self.market.agreement(a.terms).status is Status.NONE]
        if len(todo) < len(due):
            self.count("keeper_submit_already_open")
        return todo
