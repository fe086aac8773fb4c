"""The eco-industrial-park agent of Kröhling et al. (4.2, 5): context, decisions, and its simulated world.

Each decision step the agent waits, trades with the main provider, or negotiates with a peer using
Eq. 1 parameters. The world below is the simulation the policy is learned in (eip_learn.py); it is
pure and seeded, so training and held-out evaluation are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridpact.core.concession import AcceptanceRule, ConcessionParams, negotiate_price


@dataclass(frozen=True)
class EipContext:
    """What the agent perceives before deciding (units: m3 or kWh; prices: tokens per unit)."""

    balance: float  # + surplus to sell, - deficit to buy
    storage: float
    capacity: float
    steps_to_deadline: int
    provider_buy: float  # what the provider charges
    provider_sell: float  # what the provider pays
    peer_available: bool
    opponent_concession: float | None = None  # estimated cr of the peer from past sessions

    def __post_init__(self) -> None:
        nums = (self.balance, self.storage, self.capacity, self.provider_buy, self.provider_sell)
        if not all(math.isfinite(x) for x in nums):
            raise ValueError("context values must be finite")
        if self.provider_buy <= self.provider_sell or self.provider_sell < 0:
            raise ValueError("need provider_buy > provider_sell >= 0")
        if self.steps_to_deadline < 0 or self.capacity < 0 or self.storage < 0:
            raise ValueError("steps_to_deadline, capacity and storage must be >= 0")

    @property
    def is_seller(self) -> bool:
        return self.balance > 0


def estimate_concession(offers: Sequence[float]) -> float | None:
    """Estimate a peer's Eq. 1 concession rate from its offers in rounds 0, 1, 2, ... of a past session.

    log|O_t - ip| = log|rp - ip| - (1/cr) log dl + (1/cr) log t, so the slope of a least-squares
    line through (log t, log|O_t - ip|) is 1/cr whatever the peer's (unknown) rp and dl, as long
    as the rounds used are before its deadline. None when fewer than two rounds moved.
    """
    if len(offers) < 3 or not all(math.isfinite(x) for x in offers):
        return None
    ip = offers[0]
    scale = max(abs(x - ip) for x in offers)
    pts = [
        (math.log(t), math.log(abs(x - ip)))
        for t, x in enumerate(offers)
        if t >= 1 and abs(x - ip) > 1e-9 * max(scale, 1.0)
    ]
    # Drop the tail once the peer stopped moving (it reached rp, i.e. its deadline).
    while len(pts) >= 3 and abs(pts[-1][1] - pts[-2][1]) < 1e-12:
        pts.pop()
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx > 0 else 0.0
    return 1.0 / slope if slope > 0 else None


@dataclass(frozen=True)
class Wait:
    def to_dict(self) -> dict[str, Any]:
        return {"action": "wait"}


@dataclass(frozen=True)
class Provider:
    quantity: float

    def to_dict(self) -> dict[str, Any]:
        return {"action": "provider", "quantity": self.quantity}


@dataclass(frozen=True)
class Negotiate:
    params: ConcessionParams
    quantity: float

    def to_dict(self) -> dict[str, Any]:
        return {"action": "negotiate", "params": self.params.to_dict(), "quantity": self.quantity}


Decision = Wait | Provider | Negotiate


@dataclass(frozen=True)
class Preset:
    """Negotiation parameters relative to the provider tariffs, so one policy fits any tariff level.

    `keep` is the share of the spread the agent insists on keeping at its reservation price.
    """

    keep: float
    dl: int
    cr: float

    def params(self, seller: bool, buy: float, sell: float) -> ConcessionParams:
        spread = buy - sell
        if seller:
            return ConcessionParams(buy, sell + self.keep * spread, self.dl, self.cr)
        return ConcessionParams(sell, buy - self.keep * spread, self.dl, self.cr)


PRESETS: tuple[Preset, ...] = tuple(
    Preset(keep, dl, cr) for keep in (0.2, 0.4, 0.6) for dl in (10, 20) for cr in (0.5, 1.0, 2.0)
)
WAIT, PROVIDER = 0, 1
N_ACTIONS = 2 + len(PRESETS)


def action_name(a: int) -> str:
    if a == WAIT:
        return "wait"
    if a == PROVIDER:
        return "provider"
    p = PRESETS[a - 2]
    return f"negotiate(keep={p.keep},dl={p.dl},cr={p.cr})"


def to_decision(a: int, ctx: EipContext) -> Decision:
    """Turn an action index into a concrete decision for this context."""
    qty = abs(ctx.balance)
    if a == WAIT:
        return Wait()
    if a == PROVIDER:
        return Provider(qty)
    return Negotiate(PRESETS[a - 2].params(ctx.is_seller, ctx.provider_buy, ctx.provider_sell), qty)


def state_key(ctx: EipContext) -> str:
    """Discretised context: role, time left, peer present, opponent type, storage fill or need size."""
    role = "S" if ctx.is_seller else "B"
    time = "1" if ctx.steps_to_deadline <= 1 else ("2" if ctx.steps_to_deadline <= 3 else "4")
    peer = "p" if ctx.peer_available else "n"
    cr = ctx.opponent_concession
    opp = "u" if cr is None else ("t" if cr < 0.7 else ("m" if cr <= 1.5 else "c"))
    if ctx.is_seller:
        fill = ctx.storage / ctx.capacity if ctx.capacity > 0 else 1.0
        level = "0" if fill < 0.6 else ("1" if fill < 0.85 else "2")
    else:
        level = "0"
    return f"{role}{time}{peer}{opp}{level}"


def allowed_actions(ctx: EipContext) -> list[int]:
    return [WAIT, PROVIDER] + ([2 + i for i in range(len(PRESETS))] if ctx.peer_available else [])


# --- the simulated park -------------------------------------------------------------------------

HORIZON = 8
RUSH_PENALTY = 1.25  # a buyer short at its deadline pays the provider this much more
# Peers come in three kinds; a kind's concession rate is what past sessions reveal, and it goes
# with how much of the spread the peer insists on keeping and how long it negotiates.
OPPONENT_TYPES: tuple[tuple[float, tuple[float, float], tuple[int, ...]], ...] = (
    (0.3, (0.55, 0.7), (20,)),  # tough (Boulware): concedes late, keeps much
    (1.0, (0.3, 0.45), (10, 20)),  # linear
    (3.0, (0.05, 0.2), (10,)),  # conceder: concedes early, keeps little, short deadline
)
LEAK = 0.02  # share of stored gas lost per step
FLARE_ABOVE = 0.85  # a holder fuller than this flares half of the excess each step


def holding_loss(stored: float, capacity: float) -> float:
    """Gas a seller loses by holding it one more step: a small leak, and flaring when the holder is full."""
    return LEAK * stored + 0.5 * max(0.0, stored - FLARE_ABOVE * capacity)


@dataclass
class Episode:
    """One agent's day: a surplus to sell or a deficit to cover before the deadline."""

    seller: bool
    buy: float
    sell: float
    remaining: float  # surplus held (seller) or need left (buyer)
    capacity: float
    peer_prob: float
    t: int = 0
    money: float = 0.0
    opp_cr: float = 1.0
    opp_rp: float = 0.0
    opp_dl: int = 10
    opp_qty: float = 0.0
    peer: bool = False
    seen: float | None = None

    @property
    def done(self) -> bool:
        return self.t >= HORIZON or self.remaining <= 1e-9

    def context(self) -> EipContext:
        return EipContext(
            balance=self.remaining if self.seller else -self.remaining,
            storage=self.remaining if self.seller else 0.0,
            capacity=self.capacity,
            steps_to_deadline=HORIZON - self.t,
            provider_buy=self.buy,
            provider_sell=self.sell,
            peer_available=self.peer,
            opponent_concession=self.seen if self.peer else None,
        )


def _draw_peer(ep: Episode, rng: np.random.Generator) -> None:
    ep.peer = bool(rng.random() < ep.peer_prob)
    spread = ep.buy - ep.sell
    kind = int(rng.integers(len(OPPONENT_TYPES)))
    ep.opp_cr, (keep_lo, keep_hi), dls = OPPONENT_TYPES[kind]
    ep.opp_dl = int(dls[int(rng.integers(len(dls)))])
    keep = float(rng.uniform(keep_lo, keep_hi))
    ep.opp_rp = ep.sell + keep * spread if not ep.seller else ep.buy - keep * spread
    base = ep.remaining if ep.remaining > 0 else 1.0
    ep.opp_qty = float(rng.uniform(0.3, 1.2)) * base
    known = rng.random() < 0.7
    ep.seen = float(ep.opp_cr * math.exp(rng.normal(0.0, 0.2))) if known else None


def new_episode(rng: np.random.Generator) -> Episode:
    seller = bool(rng.random() < 0.5)
    buy = float(rng.uniform(60.0, 100.0))
    sell = float(rng.uniform(10.0, 30.0))
    qty = float(rng.uniform(50.0, 150.0))
    capacity = qty * float(rng.uniform(1.0, 1.6))
    ep = Episode(seller, buy, sell, qty, capacity, float(rng.uniform(0.3, 0.9)))
    _draw_peer(ep, rng)
    return ep


def step(ep: Episode, action: int | Preset, rng: np.random.Generator) -> float:
    """Apply one action (an index, or a Preset to negotiate with); returns the money it moved."""
    before = ep.money
    preset = action if isinstance(action, Preset) else (PRESETS[action - 2] if action >= 2 else None)
    if action == PROVIDER:
        price = ep.sell if ep.seller else ep.buy
        ep.money += price * ep.remaining if ep.seller else -price * ep.remaining
        ep.remaining = 0.0
    elif preset is not None and ep.peer:
        own = preset.params(ep.seller, ep.buy, ep.sell)
        opp_ip = ep.sell if ep.seller else ep.buy
        opp = ConcessionParams(opp_ip, ep.opp_rp, ep.opp_dl, ep.opp_cr)
        seller, buyer = (own, opp) if ep.seller else (opp, own)
        out = negotiate_price(seller, buyer, AcceptanceRule.NEXT, seller_first=ep.seller)
        if out.agreed and out.value is not None:
            qty = min(ep.remaining, ep.opp_qty)
            ep.money += out.value * qty if ep.seller else -out.value * qty
            ep.remaining -= qty
    ep.t += 1
    if ep.seller and not ep.done:
        ep.remaining -= holding_loss(ep.remaining, ep.capacity)
    if ep.t >= HORIZON and ep.remaining > 1e-9:
        if ep.seller:
            ep.money += ep.sell * ep.remaining
        else:
            ep.money -= ep.buy * RUSH_PENALTY * ep.remaining
        ep.remaining = 0.0
    if not ep.done:
        _draw_peer(ep, rng)
    return ep.money - before
