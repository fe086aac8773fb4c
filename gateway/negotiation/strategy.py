"""Strategies: what to offer at round t and how to judge an opponent's offer.

Two kinds, both built by `strategy_from_config`: per-issue time-dependent concession (Eq. 1)
and utility-space concession over a multi-issue grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gateway.negotiation.offers import Offer
from gateway.negotiation.outcomes import AdditiveUtility, Issue, LinearUtility, OutcomeSpace
from gridpact.core.concession import TOLERANCE, ConcessionParams, at_least_as_good, concession


class StrategyConfigError(ValueError):
    """A strategy config is missing a key or has an invalid value; `key` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"strategy config {key!r}: {message}")
        self.key = key


class Strategy(Protocol):
    """What a Negotiator needs from a strategy."""

    @property
    def issues(self) -> tuple[str, ...]: ...

    @property
    def deadline(self) -> int: ...

    def offer(self, t: int) -> Offer: ...

    def acceptable(self, offer: Offer, reference: Offer) -> bool: ...

    def problem(self, offer: Offer) -> str | None: ...


@dataclass(frozen=True)
class IssueConcession:
    """Eq. 1 on one issue plus the direction the agent prefers."""

    params: ConcessionParams
    prefer_high: bool


@dataclass(frozen=True)
class TimeDependentStrategy:
    """Each issue conceded independently by Eq. 1; a package offer passes only if every issue passes."""

    per_issue: Mapping[str, IssueConcession]

    @property
    def issues(self) -> tuple[str, ...]:
        return tuple(sorted(self.per_issue))

    @property
    def deadline(self) -> int:
        return max(c.params.dl for c in self.per_issue.values())

    def offer(self, t: int) -> Offer:
        return Offer.from_dict({k: c.params.offer(t) for k, c in self.per_issue.items()})

    def acceptable(self, offer: Offer, reference: Offer) -> bool:
        return all(at_least_as_good(offer[k], reference[k], c.prefer_high) for k, c in self.per_issue.items())

    def problem(self, offer: Offer) -> str | None:
        if set(offer.issues) != set(self.per_issue):
            return f"offer issues {list(offer.issues)} != {list(self.issues)}"
        return None


@dataclass(frozen=True)
class GridStrategy:
    """Concede in utility by Eq. 1 (1 -> reservation) and offer the grid outcome just above the target."""

    space: OutcomeSpace
    utility: AdditiveUtility
    dl: int
    cr: float
    reservation: float

    @property
    def issues(self) -> tuple[str, ...]:
        return self.space.names

    @property
    def deadline(self) -> int:
        return self.dl

    def target(self, t: int) -> float:
        return concession(1.0, self.reservation, self.dl, self.cr, t)

    def offer(self, t: int) -> Offer:
        grid = self.space.grid()
        utils = self.utility.over(self.space)
        target = self.target(t)
        above = np.flatnonzero(utils >= target - TOLERANCE)
        # Closest above the target; ties go to the first outcome in grid order (deterministic).
        idx = int(above[np.argmin(utils[above])]) if above.size else int(np.argmax(utils))
        return self.space.offer_at(grid[idx])

    def acceptable(self, offer: Offer, reference: Offer) -> bool:
        return self.utility(offer) >= self.utility(reference) - TOLERANCE

    def problem(self, offer: Offer) -> str | None:
        if not self.space.contains(offer):
            return f"offer {offer.to_dict()} is outside the outcome space"
        return None


def _number(cfg: Mapping[str, Any], key: str, where: str) -> float:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StrategyConfigError(f"{where}.{key}", f"must be a number, got {value!r}")
    return float(value)


def _prefer(cfg: Mapping[str, Any], where: str, default: bool | None) -> bool:
    value = cfg.get("prefer")
    if value is None:
        if default is None:
            raise StrategyConfigError(f"{where}.prefer", "required ('high' or 'low') when ip == rp")
        return default
    if value not in ("high", "low"):
        raise StrategyConfigError(f"{where}.prefer", f"must be 'high' or 'low', got {value!r}")
    return value == "high"


def _issue_concession(name: str, cfg: Any) -> IssueConcession:
    if not isinstance(cfg, Mapping):
        raise StrategyConfigError(name, f"must be a mapping with ip, rp, dl, cr, got {cfg!r}")
    ip, rp, cr = (_number(cfg, k, name) for k in ("ip", "rp", "cr"))
    dl = cfg.get("dl")
    if isinstance(dl, bool) or not isinstance(dl, int | float) or int(dl) != dl:
        raise StrategyConfigError(f"{name}.dl", f"must be an integer number of rounds, got {dl!r}")
    try:
        params = ConcessionParams(ip, rp, int(dl), cr)
    except ValueError as exc:
        raise StrategyConfigError(name, str(exc)) from None
    default = None if ip == rp else ip > rp
    prefer_high = _prefer(cfg, name, default)
    if ip != rp and prefer_high != (ip > rp):
        raise StrategyConfigError(
            f"{name}.prefer", "conceding from ip to rp must move away from the preference"
        )
    return IssueConcession(params, prefer_high)


def _grid(cfg: Mapping[str, Any]) -> GridStrategy:
    issues_cfg = cfg.get("issues")
    if not isinstance(issues_cfg, Mapping) or not issues_cfg:
        raise StrategyConfigError("issues", "must map issue names to {low, high, step, prefer}")
    issues: list[Issue] = []
    parts: dict[str, LinearUtility] = {}
    for name, icfg in issues_cfg.items():
        if not isinstance(icfg, Mapping):
            raise StrategyConfigError(f"issues.{name}", "must be a mapping")
        low, high, step = (_number(icfg, k, f"issues.{name}") for k in ("low", "high", "step"))
        try:
            issues.append(Issue(str(name), low, high, step))
        except ValueError as exc:
            raise StrategyConfigError(f"issues.{name}", str(exc)) from None
        parts[str(name)] = LinearUtility(low, high, _prefer(icfg, f"issues.{name}", None))
    weights_cfg = cfg.get("weights", {k: 1.0 for k in parts})
    if not isinstance(weights_cfg, Mapping) or set(weights_cfg) != set(parts):
        raise StrategyConfigError("weights", f"must give a weight for each of {sorted(parts)}")
    weights = {str(k): _number(weights_cfg, k, "weights") for k in weights_cfg}
    try:
        utility = AdditiveUtility(parts, weights)
    except ValueError as exc:
        raise StrategyConfigError("weights", str(exc)) from None
    dl, cr = cfg.get("dl"), _number(cfg, "cr", "grid")
    if isinstance(dl, bool) or not isinstance(dl, int) or dl < 1:
        raise StrategyConfigError("dl", f"must be an integer >= 1, got {dl!r}")
    if cr <= 0:
        raise StrategyConfigError("cr", "must be > 0")
    reservation = _number(cfg, "reservation", "grid") if "reservation" in cfg else 0.0
    if not 0.0 <= reservation <= 1.0:
        raise StrategyConfigError("reservation", "must be in [0, 1]")
    return GridStrategy(OutcomeSpace(tuple(issues)), utility, dl, cr, reservation)


def strategy_from_config(cfg: Mapping[str, Any]) -> TimeDependentStrategy | GridStrategy:
    """Build a strategy from a JSON-like mapping (see README.md); raises StrategyConfigError."""
    if not isinstance(cfg, Mapping) or not cfg:
        raise StrategyConfigError("<root>", f"must be a non-empty mapping, got {cfg!r}")
    kind = cfg.get("type", "concession")
    if kind == "grid":
        return _grid(cfg)
    if kind != "concession":
        raise StrategyConfigError("type", f"unknown strategy type {kind!r} (use 'concession' or 'grid')")
    per_issue = {str(k): _issue_concession(str(k), v) for k, v in cfg.items() if k != "type"}
    if not per_issue:
        raise StrategyConfigError("<root>", "needs at least one issue")
    return TimeDependentStrategy(per_issue)
