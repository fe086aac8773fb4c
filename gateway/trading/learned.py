"""The learned strategy's glue: the learned policy's (Kröhling et al.) context from the gateway's state, and peer memory.

The engine's `Policy` (gateway.negotiation, learned offline) maps an `EipContext` to wait,
provider, or negotiate(ip, rp, dl, cr). The agent calls it at each decision step of a window's
negotiation period; these small pure functions turn the agent's real state into that context and
the decision into an engine strategy. `PeerMemory` keeps each peer's estimated concession rate in
the journal (`<state_dir>/trading.db`), so what a peer revealed survives restarts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gateway.negotiation import EipContext, Negotiate, estimate_concession
from gateway.negotiation.eip import HORIZON
from gridpact.core.tariff import Tariff

PEER_KEY = "peer_cr:"  # journal key prefix, one entry per peer address (lower case)
MEMORY = 0.5  # weight of a new estimate against what was known: a peer may change its strategy


def step_seconds(lead_s: float) -> float:
    """A decision step: the negotiation period split into the policy's horizon of steps."""
    return max(lead_s / HORIZON, 1e-3)


def steps_to_deadline(now: float, close: float, step_s: float) -> int:
    """Whole decision steps left before the window's negotiation closes (0 when closed)."""
    return max(0, math.ceil((close - now) / step_s - 1e-9))


def window_context(
    net_wh: float,
    storage_wh: float,
    steps: int,
    tariffs: Tariff,
    peer_available: bool,
    opponent_concession: float | None,
) -> EipContext:
    """The policy's context: + surplus / - deficit in kWh (net_wh is + when importing)."""
    balance = -net_wh / 1000.0
    storage = max(0.0, storage_wh) / 1000.0
    return EipContext(
        balance=balance,
        storage=storage,
        capacity=max(storage, abs(balance)),
        steps_to_deadline=steps,
        provider_buy=tariffs.retail,
        provider_sell=tariffs.feed_in,
        peer_available=peer_available,
        opponent_concession=opponent_concession,
    )


def price_strategy(decision: Negotiate, max_rounds: int) -> dict[str, Any]:
    """Engine config for a negotiate decision; the learned deadline never passes the session's last round."""
    p = decision.params
    return {"price": {"ip": p.ip, "rp": p.rp, "dl": max(1, min(int(p.dl), max_rounds)), "cr": p.cr}}


def blend(old: float | None, new: float) -> float:
    """Geometric mean weighted by MEMORY: concession rates are ratios, so average their logs."""
    if old is None or old <= 0:
        return new
    return math.exp((1 - MEMORY) * math.log(old) + MEMORY * math.log(new))


class PeerMemory:
    """Each peer's estimated concession rate, in memory and in the journal's key-value table."""

    def __init__(self, journal: Any) -> None:
        self.journal = journal
        self.known: dict[str, float] = {}

    def get(self, peer: str) -> float | None:
        key = peer.lower()
        if key not in self.known:
            raw = self.journal.get(PEER_KEY + key)
            try:
                value = float(raw) if raw is not None else None
            except ValueError:
                value = None
            if value is None or not math.isfinite(value) or value <= 0:
                return None
            self.known[key] = value
        return self.known[key]

    def observe(self, peer: str, offers: Sequence[float]) -> float | None:
        """Learn from one session's offers of the peer (rounds 0, 1, 2, ...); returns the new estimate."""
        estimate = estimate_concession(list(offers))
        if estimate is None or not math.isfinite(estimate) or estimate <= 0:
            return None
        value = blend(self.get(peer), estimate)
        self.known[peer.lower()] = value
        self.journal.set(PEER_KEY + peer.lower(), repr(value))
        return value
