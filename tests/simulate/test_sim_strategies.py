"""The pluggable strategies: the negotiation engine's hourly market through the adapter, and `pick`."""

from __future__ import annotations

import pytest

from hil.community.engine import EngineConfig, run_engine
from hil.community.market import MarketWindow, Order, check_trades
from hil.community.strategies import engine_available, engine_market, pick
from hil.community.summary import summarize


def window() -> MarketWindow:
    return MarketWindow(
        3600 * 12, 300_000, 80_000,
        asks=[Order(0, 1500, 300_000, 120_000, 1.0), Order(1, 700, 300_000, 100_000, 2.0)],
        bids=[Order(2, 900, 80_000, 250_000, 0.7), Order(3, 400, 80_000, 240_000, 1.0)],
    )  # fmt: skip


def test_the_engine_is_the_default_when_present() -> None:
    assert engine_available(), "gateway.negotiation's hourly market should be importable in this repo"
    assert pick("auto")[0] == "engine"
    assert pick("concession")[0] == "concession"
    with pytest.raises(ValueError, match="--strategy"):
        pick("random")


def test_engine_market_trades_are_valid_and_clear_the_window() -> None:
    w = window()
    trades = engine_market(w)
    check_trades(w, trades)  # quantities within orders, prices within [feed-in, retail]
    assert sum(t.wh for t in trades) == 1300  # every Wh wanted is bought: sellers had 2200
    for t in trades:
        ask = next(o for o in w.asks if o.household == t.seller)
        bid = next(o for o in w.bids if o.household == t.buyer)
        assert ask.rp - 1 <= t.price <= bid.rp + 1  # within both reserves (rounding to base units)


def test_engine_market_in_a_community_run_conserves_tokens() -> None:
    cfg = EngineConfig(households=9, hours=24, seed=3)
    c = summarize(run_engine(cfg, engine_market))["community"]
    assert c["trades"] > 0 and c["settlements"] == c["trades"] and c["token_conservation"]
