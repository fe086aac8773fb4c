"""A study file (TOML) -> a frozen, validated list of points, each keyed by a hash of itself.

The key names a point's result file, so a study that is interrupted and started again finds
the points already done, and two studies that share a point share its result.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gridpact.core.config import load_toml
from hil.community.tariffs import COMMUNITY_TARIFF, Tariff

MODES = ("engine", "fullstack")
STRATEGIES = ("concession", "engine")
METRICS = (
    "welfare_gain_vs_grid_only",
    "welfare_gain_vs_battery_only",
    "p2p_kwh",
    "self_sufficiency",
    "trades",
    "refunds",
    "mean_p2p_price",
)
MAX_POINTS = 100_000


@dataclass(frozen=True)
class Market:
    """A named market setting of the sweep: the grid tariff households fall back on, and its rounds."""

    name: str
    tariff: Tariff = COMMUNITY_TARIFF
    rounds: int = 20
    start_tokens: float = 50.0

    def validate(self) -> Market:
        self.tariff.validate()
        if not 1 <= self.rounds <= 1000:
            raise ValueError(f"market {self.name!r}: rounds must be 1..1000, got {self.rounds}")
        if self.start_tokens < 0:
            raise ValueError(f"market {self.name!r}: start_tokens must be >= 0")
        return self


DEFAULT_MARKETS = {"default": Market("default")}


def _tariff_doc(t: Tariff) -> dict[str, Any]:
    """The tariff as points' keys have always named it (day, peak, night, feed-in, hours): keys stay stable."""
    return {
        "day": t.retail,
        "peak": t.peak if t.peak is not None else t.retail,
        "night": t.night if t.night is not None else t.retail,
        "feed_in": t.feed_in,
        "peak_hours": list(t.peak_hours),
        "night_hours": list(t.night_hours),
    }


@dataclass(frozen=True)
class Point:
    """One run of the simulator: everything that decides its result (and nothing else)."""

    mode: str
    seed: int
    strategy: str
    market: Market
    households: int
    days: float

    @property
    def hours(self) -> int:
        return max(1, round(self.days * 24))

    @property
    def key(self) -> str:
        """Hash of the point's canonical JSON: its identity across restarts and machines."""
        doc = asdict(self)
        doc["market"]["tariff"] = _tariff_doc(self.market.tariff)
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def label(self) -> dict[str, Any]:
        """The point's swept values, as table columns."""
        return {
            "key": self.key,
            "mode": self.mode,
            "seed": self.seed,
            "strategy": self.strategy,
            "market": self.market.name,
            "households": self.households,
            "days": self.days,
        }


@dataclass(frozen=True)
class Study:
    """A validated study: its name, the metrics of the summary and its points in a fixed order."""

    name: str
    metrics: tuple[str, ...]
    points: tuple[Point, ...]
    swept: tuple[str, ...]  # parameters with more than one value (seed excluded: it is the spread)


def _ints(raw: Any, what: str) -> list[int]:
    if isinstance(raw, dict) and set(raw) <= {"start", "count"}:
        start, count = raw.get("start", 0), raw.get("count", 1)
        if not (isinstance(start, int) and isinstance(count, int) and count >= 1):
            raise ValueError(f"{what}: {{start, count}} must be integers, count >= 1")
        return list(range(start, start + count))
    vals: list[Any] = raw if isinstance(raw, list) else [raw]
    if not vals or not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        raise ValueError(f"{what} must be an integer or a non-empty list of integers, got {raw!r}")
    return [int(v) for v in vals]


def _market(name: str, raw: Any) -> Market:
    if not isinstance(raw, dict):
        raise ValueError(f"markets.{name} must be a table")
    known = {"day", "peak", "night", "feed_in", "rounds", "start_tokens"}
    if set(raw) - known:
        raise ValueError(f"markets.{name}: unknown keys {sorted(set(raw) - known)}; known: {sorted(known)}")
    base = COMMUNITY_TARIFF
    tariff = Tariff(
        retail=float(raw.get("day", base.retail)),
        peak=float(raw.get("peak", base.peak or base.retail)),
        night=float(raw.get("night", base.night or base.retail)),
        feed_in=float(raw.get("feed_in", base.feed_in)),
    )
    return Market(name, tariff, int(raw.get("rounds", 20)), float(raw.get("start_tokens", 50.0))).validate()


def parse(doc: dict[str, Any], default_name: str = "study") -> Study:
    """A study from a parsed TOML document: clear ValueErrors for anything wrong."""
    known = {"name", "mode", "seeds", "strategies", "markets", "households", "days", "metrics"}
    if set(doc) - known:
        raise ValueError(f"unknown keys {sorted(set(doc) - known)}; known: {sorted(known)}")
    modes = doc.get("mode", "engine")
    modes = modes if isinstance(modes, list) else [modes]
    for m in modes:
        if m not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {m!r}")
    seeds = _ints(doc.get("seeds", [1]), "seeds")
    strategies = doc.get("strategies", ["concession"])
    strategies = strategies if isinstance(strategies, list) else [strategies]
    for s in strategies:
        if s not in STRATEGIES:
            raise ValueError(f"strategies must be among {STRATEGIES}, got {s!r}")
    raw_markets = doc.get("markets", {})
    if not isinstance(raw_markets, dict):
        raise ValueError("markets must be a table of named tables, e.g. [markets.default]")
    markets = [_market(n, v) for n, v in raw_markets.items()] or list(DEFAULT_MARKETS.values())
    households = _ints(doc.get("households", [6]), "households")
    for h in households:
        if not 2 <= h <= 10_000:
            raise ValueError(f"households must be 2..10000, got {h}")
    days_raw = doc.get("days", [1])
    days = [float(d) for d in (days_raw if isinstance(days_raw, list) else [days_raw])]
    for d in days:
        if not 1 / 24 <= d <= 366:
            raise ValueError(f"days must be 1/24 .. 366, got {d}")
    metrics = doc.get("metrics", ["welfare_gain_vs_grid_only", "p2p_kwh"])
    metrics = metrics if isinstance(metrics, list) else [metrics]
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"metrics must be among {METRICS}, got {m!r}")
    combos = list(itertools.product(modes, strategies, markets, households, days, seeds))
    if len(combos) > MAX_POINTS:
        raise ValueError(f"{len(combos)} points: at most {MAX_POINTS} per study")
    points = tuple(Point(mo, se, st, ma, h, d) for mo, st, ma, h, d, se in combos)
    axes = {"mode": modes, "strategy": strategies, "market": markets, "households": households, "days": days}
    swept = tuple(k for k, v in axes.items() if len(v) > 1)
    return Study(str(doc.get("name", default_name)), tuple(metrics), points, swept)


def load(path: Path) -> Study:
    """A study from a TOML file (errors name the file)."""
    try:
        return parse(load_toml(path), path.stem)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
