"""Authenticating incoming peer messages: every drop is counted by reason, nothing raises.

Checks, in order (cheapest first): size, JSON and schema, version, community, addressee, age
(stale or from the future), sender on the roster, signature, replay. A message passes only if
all hold. The replay cache keeps message ids only as long as they could still pass the age
check, so it is bounded by the traffic of `max_age_s`.

The cache lives in memory, so a gateway that restarts could not tell a message it saw just before
the restart from a new one: `not_before` (the service's start time) drops everything signed
before it started ("before_start"). Nothing lost that matters: such a message belonged to a
session of the previous run, which its peer times out and starts again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.trading.protocol import PEER_V1, Envelope, Family, ProtocolError, decode, recover_sender

DROP_REASONS = (
    "too_large", "malformed", "wrong_version", "wrong_community", "not_for_us", "stale", "future",
    "unknown_sender", "bad_signature", "replay", "own", "before_start",
)  # fmt: skip


@dataclass
class Inbox:
    """Stateful checker for one gateway; `roster` answers whether an address may speak."""

    me: str
    community: str
    roster: Callable[[str], bool]
    max_age_s: float = 30.0
    max_future_s: float = 5.0
    max_ids: int = 100_000
    not_before: float | None = None  # messages signed earlier cannot be proven unseen after a restart
    prune_every: int = 1024
    family: Family = PEER_V1  # the message family this inbox reads (its schemas and signing prefix)
    dropped: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    _seen: dict[tuple[str, str], int] = field(default_factory=dict)

    def check(self, raw: bytes, now: float) -> Envelope | None:
        """The authenticated envelope, or None after counting why it was dropped."""
        try:
            env = self._check(raw, now)
        except ProtocolError as exc:
            self.dropped[exc.reason] += 1
            return None
        self.accepted += 1
        return env

    def _check(self, raw: bytes, now: float) -> Envelope:
        env = decode(raw, self.family)
        if env.community != self.community:
            raise ProtocolError("wrong_community", env.community)
        if env.sender.lower() == self.me.lower():
            raise ProtocolError("own", "our own message")
        if env.to is not None and env.to.lower() != self.me.lower():
            raise ProtocolError("not_for_us", env.to)
        if env.ts < now - self.max_age_s:
            raise ProtocolError("stale", f"ts {env.ts} older than {self.max_age_s} s")
        if env.ts > now + self.max_future_s:
            raise ProtocolError("future", f"ts {env.ts} ahead of {now:.0f}")
        if self.not_before is not None and env.ts < self.not_before:
            raise ProtocolError("before_start", f"ts {env.ts} signed before this gateway started")
        if not self.roster(env.sender):
            raise ProtocolError("unknown_sender", env.sender)
        if recover_sender(env, self.family).lower() != env.sender.lower():
            raise ProtocolError("bad_signature", "signer is not the sender")
        key = (env.sender.lower(), env.id)
        if key in self._seen:
            raise ProtocolError("replay", env.id)
        self._remember(key, env.ts, now)
        return env

    def _remember(self, key: tuple[str, str], ts: int, now: float) -> None:
        if (
            len(self._seen) % self.prune_every == self.prune_every - 1
        ):  # ids older than the age window can go: they are stale anyway
            horizon = now - self.max_age_s
            self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
        if len(self._seen) >= self.max_ids:
            horizon = now - self.max_age_s
            self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
            if len(self._seen) >= self.max_ids:  # a flood within the window: refuse to grow
                raise ProtocolError("replay", "replay cache full")
        self._seen[key] = ts
