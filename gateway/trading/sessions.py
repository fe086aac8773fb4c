"""One bilateral negotiation over signed peer messages, hosting the engine's `Negotiator`.

The buyer opens (`propose`), the two alternate `counter`s with the round index of the engine,
and whoever accepts sends the EIP-712 terms with its signature (`accept`); the other checks them
against the session, signs, journals and answers `confirm`. The terms' nonce is the seller's
slot nonce, picked from its ring (nonces.py) and named in every `counter` (the buyer learns it
from the seller's first reply and must repeat it). The confirming party holds both
signatures first, so it submits. Every wait has a deadline on the gateway clock: a silent peer
ends the session (counted) instead of stalling the agent. Our signature is journaled before it
leaves the gateway, so a crash can never leave an agreement on chain that the journal forgot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount

from gateway.chain.journal import Journal
from gateway.chain.market import sign_terms_hex, signed_by, terms_from_dict
from gateway.negotiation import Accept, Counter, Negotiator, Offer, Reject
from gateway.trading.entropy import SYSTEM, Entropy
from gateway.trading.protocol import Envelope
from gridpact.core.clock import Clock
from gridpact.core.eip712 import Domain, Terms, agreement_id

Send = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # (type, to, body)


@dataclass
class Session:
    """State of one session; `inbox` receives the peer's messages for it."""

    id: str
    peer: str
    role: str  # our role: "buyer" | "seller"
    window: int
    window_s: int
    quantity_wh: int
    negotiator: Negotiator
    my_price: int | None = None
    round: int = 0
    peer_prices: list[float] = field(default_factory=list)  # the peer's offers, rounds 0, 1, 2, ...
    inbox: asyncio.Queue[Envelope] = field(default_factory=asyncio.Queue)
    nonce: int | None = None  # the seller's slot nonce: the seller's ring picks it, the buyer learns it
    offered: bool = False  # we sent terms we signed (accept or bid): they bind us until they expire


def new_session_id(entropy: Entropy = SYSTEM) -> str:
    return "0x" + entropy.token_hex(32)


def price_offer(price: int) -> Offer:
    return Offer.of(price=float(price))


def wire_price(offer: Offer) -> int:
    """Prices on the wire are integers (token base units per kWh)."""
    return max(0, round(offer.price))


@dataclass
class SessionContext:
    """What a session needs from the agent."""

    me: LocalAccount
    domain: Callable[[], Domain]
    journal: Journal
    send: Send
    clock: Clock
    round_timeout_s: float
    max_rounds: int
    count: Callable[[str], None]
    reserve: Callable[[Session, int, int], bool]  # (session, quantity, price) -> may we sign?
    on_agreement: Callable[[], None]


async def receive(session: Session, clock: Clock, timeout: float) -> Envelope | None:
    """The next message of the session, or None after `timeout` seconds of the gateway clock."""
    getter = asyncio.ensure_future(session.inbox.get())
    sleeper = asyncio.ensure_future(clock.sleep(timeout))
    try:
        done, _ = await asyncio.wait({getter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        if not getter.done():
            getter.cancel()
    return getter.result() if getter in done else None


def build_terms(s: Session, me: str, quantity: int, price: int) -> Terms:
    if s.nonce is None:
        raise ValueError("the session has no slot nonce yet")
    seller, buyer = (me, s.peer) if s.role == "seller" else (s.peer, me)
    start = s.window
    return terms_from_dict({"seller": seller, "buyer": buyer, "quantityWh": quantity, "unitPrice": price,
                            "deliveryStart": start, "deliveryEnd": start + s.window_s, "nonce": s.nonce,
                            "expiry": start + s.window_s - 1})  # fmt: skip


async def run_session(ctx: SessionContext, s: Session, opening: Envelope | None) -> str | None:
    """Drive a session to its end; returns the agreement id, or None (rejected, timed out, invalid)."""
    try:
        return await _run(ctx, s, opening)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a session must never take the agent down
        ctx.count(f"session_error_{type(exc).__name__}")
        return None


async def _run(ctx: SessionContext, s: Session, opening: Envelope | None) -> str | None:
    if opening is None:  # we are the buyer and open
        offer = s.negotiator.first_offer(0)
        s.my_price = wire_price(offer)
        await ctx.send("propose", s.peer, {"session": s.id, "window": s.window, "window_s": s.window_s,
                                            "round": 0, "quantity_wh": s.quantity_wh, "price": s.my_price})  # fmt: skip
        env = await receive(s, ctx.clock, ctx.round_timeout_s)
    else:
        env = opening
    while True:
        if env is None:
            ctx.count("timeout")
            return None
        kind, body = env.type, env.body
        if kind == "reject":
            ctx.count("rejected_by_peer")
            return None
        if kind == "accept":
            return await _confirm(ctx, s, env)
        if kind not in ("propose", "counter"):
            ctx.count("unexpected_message")
            return None
        if kind == "counter" and not _take_nonce(s, int(body["nonce"])):
            ctx.count("nonce_mismatch")
            return await _reject(ctx, s, "terms_mismatch")
        s.peer_prices.append(float(body["price"]))  # what the peer revealed (its concession)
        quantity = min(int(body["quantity_wh"]), s.quantity_wh)  # never more than we need or have
        if quantity <= 0:
            return await _reject(ctx, s, "quantity")
        s.quantity_wh = quantity
        t = int(body["round"]) + (1 if s.role == "buyer" else 0)
        s.round = t
        if t > ctx.max_rounds:
            return await _reject(ctx, s, "deadline")
        response = s.negotiator.respond(price_offer(int(body["price"])), t)
        if isinstance(response, Reject):
            return await _reject(ctx, s, response.reason[:64])
        if isinstance(response, Accept):
            return await _accept(ctx, s, int(body["price"]))
        assert isinstance(response, Counter)
        s.my_price = wire_price(response.offer)
        if s.nonce is None:  # a buyer countering before the seller named its slot: cannot happen in v1
            return await _reject(ctx, s, "no_nonce")
        await ctx.send("counter", s.peer, {"session": s.id, "round": t, "quantity_wh": s.quantity_wh,
                                            "price": s.my_price, "nonce": s.nonce})  # fmt: skip
        env = await receive(s, ctx.clock, ctx.round_timeout_s)


def _take_nonce(s: Session, nonce: int) -> bool:
    """The seller names its slot nonce in its first counter; every later counter must repeat it."""
    if s.nonce is None and s.role == "buyer":
        s.nonce = nonce
    return nonce == s.nonce


async def _reject(ctx: SessionContext, s: Session, reason: str) -> None:
    ctx.count(f"reject_{reason.split(':')[0].replace(' ', '_')[:24]}")
    await ctx.send("reject", s.peer, {"session": s.id, "reason": reason})
    return None


async def _accept(ctx: SessionContext, s: Session, price: int) -> str | None:
    """We accept the peer's price: sign the terms, journal, send `accept`, wait for `confirm`."""
    return await sign_and_offer(ctx, s, price, "accept")


async def sign_and_offer(ctx: SessionContext, s: Session, price: int, kind: str) -> str | None:
    """Sign terms at `price` (journaled before they leave), send them as `accept` (or a station
    auction's `bid`), and wait for the peer's `confirm`. Our signature binds us until the terms
    expire, so what we committed stays committed even when the peer declines or falls silent."""
    if s.nonce is None:
        return await _reject(ctx, s, "no_nonce")
    if not ctx.reserve(s, s.quantity_wh, price):
        return await _reject(ctx, s, "no_capacity")
    terms = build_terms(s, ctx.me.address, s.quantity_wh, price)
    domain = ctx.domain()
    sig = sign_terms_hex(terms, domain, ctx.me)
    aid = "0x" + agreement_id(terms, domain).hex()
    ctx.journal.put_agreement(aid, s.role, s.peer, terms.as_dict(), sig, terms.deliveryEnd)  # BEFORE sending
    body: dict[str, Any] = {"session": s.id, "terms": terms.as_dict(), "sig": sig}
    if kind == "accept":
        body["round"] = s.round
    await ctx.send(kind, s.peer, body)
    s.offered = True
    env = await receive(s, ctx.clock, ctx.round_timeout_s * 2)
    if env is None or env.type != "confirm" or env.body["agreement"] != aid:
        declined = kind == "bid" and env is not None and env.type == "reject"
        ctx.count("bid_declined" if declined else "confirm_missing")
        ctx.on_agreement()  # the settler decides (the peer may still submit)
        return None
    return aid if take_confirm(ctx, aid, terms, s.peer, env.body["sig"], "agreed") else None


def take_confirm(ctx: SessionContext, aid: str, terms: Terms, peer: str, sig: object, counter: str) -> bool:
    """The peer's `confirm` of terms we signed and journaled under `aid`: keep its signature if it is the
    peer's (counted as `counter`; the settler woken), else count `confirm_bad_signature` (one that is
    not a signature at all included)."""
    if not signed_by(terms, ctx.domain(), sig, peer):
        ctx.count("confirm_bad_signature")
        return False
    ctx.journal.set_peer_sig(aid, str(sig))
    ctx.count(counter)
    ctx.on_agreement()
    return True


async def _confirm(ctx: SessionContext, s: Session, env: Envelope) -> str | None:
    """The peer accepted: check its terms against the session, sign, journal (we submit), `confirm`."""
    raw = env.body["terms"]
    try:
        terms = terms_from_dict(raw)
    except (ValueError, KeyError):
        return await _reject(ctx, s, "bad_terms")
    if s.nonce is None and s.role == "buyer":  # the seller accepted our opening: its terms name the slot
        s.nonce = terms.nonce
    expected = build_terms(s, ctx.me.address, terms.quantityWh, s.my_price or 0)
    if terms != expected or not 0 < terms.quantityWh <= s.quantity_wh:
        ctx.count("terms_mismatch")
        return await _reject(ctx, s, "terms_mismatch")
    domain = ctx.domain()
    if not signed_by(terms, domain, env.body["sig"], s.peer):
        ctx.count("terms_bad_signature")
        return await _reject(ctx, s, "bad_signature")
    if not ctx.reserve(s, terms.quantityWh, terms.unitPrice):
        return await _reject(ctx, s, "no_capacity")
    return await countersign(ctx, s.id, s.role, s.peer, terms, env.body["sig"])


async def countersign(
    ctx: SessionContext, session_id: str, role: str, peer: str, terms: Terms, peer_sig: str
) -> str:
    """Sign terms the peer signed (checked, capacity reserved), journal both signatures (we are the
    submitter), then `confirm`; returns the agreement id. A session's accept and an auction's
    winning bid end here alike."""
    domain = ctx.domain()
    sig = sign_terms_hex(terms, domain, ctx.me)
    aid = "0x" + agreement_id(terms, domain).hex()
    ctx.journal.put_agreement(aid, role, peer, terms.as_dict(), sig, terms.deliveryEnd)
    ctx.journal.set_peer_sig(aid, peer_sig)
    ctx.journal.set_agreement_state(aid, "signed", note="submitter")
    await ctx.send("confirm", peer, {"session": session_id, "agreement": aid, "sig": sig})
    ctx.count("agreed")
    ctx.on_agreement()
    return aid
