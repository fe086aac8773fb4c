"""The hourly offer market (Mezquita et al., 4.1): invariants as properties, a worked window, the simulation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.negotiation import (
    BuyerState,
    MarketConfig,
    SellerState,
    Tariff,
    get_offers,
    publish_offers,
    run_window,
)
from gateway.negotiation.market_sim import invariant_violations, simulate_market

ROOT = Path(__file__).resolve().parents[2]
TARIFFS = Tariff(feed_in=0.08, retail=0.30)
kwh = st.floats(0.0, 5.0, allow_nan=False)
price = st.floats(0.0, 0.6, allow_nan=False)
cr = st.sampled_from([0.3, 0.5, 1.0, 2.0, 4.0])


@st.composite
def windows(draw: st.DrawFn, slow: bool = True) -> tuple[list[SellerState], list[BuyerState], MarketConfig]:
    n_s, n_b = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    lat = st.integers(0, 5) if slow else st.just(0)
    sellers = [SellerState(f"s{i}", draw(kwh), draw(price), draw(cr), draw(lat)) for i in range(n_s)]
    buyers = [
        BuyerState(f"b{i}", draw(kwh), draw(price), draw(cr), draw(st.integers(0, 4))) for i in range(n_b)
    ]
    rounds = draw(st.integers(4, 30))
    return sellers, buyers, MarketConfig(rounds, draw(st.integers(1, rounds - 2)))


def check_window(sellers: list[SellerState], buyers: list[BuyerState], cfg: MarketConfig) -> None:
    result = run_window(publish_offers(sellers, 0, TARIFFS), sellers, buyers, TARIFFS, cfg)
    for tr in result.trades:
        assert TARIFFS.feed_in <= tr.price <= TARIFFS.retail  # bounded by the tariffs
        assert tr.kwh > 0
    sold = {s.id: sum(t.kwh for t in result.trades if t.seller == s.id) for s in sellers}
    bought = {b.id: sum(t.kwh for t in result.trades if t.buyer == b.id) for b in buyers}
    for s in sellers:  # energy is conserved
        assert sold[s.id] + result.grid_export.get(s.id, 0.0) == pytest.approx(s.surplus_kwh, abs=1e-9)
    for b in buyers:
        assert bought[b.id] + result.grid_import[b.id] == pytest.approx(b.need_kwh, abs=1e-9)
    # No buyer imports from the grid while energy of a seller it reached is left unsold.
    assert invariant_violations(result) == 0
    for b in buyers:
        if result.grid_import[b.id] > 1e-9:
            assert all(result.grid_export[s] <= 1e-9 for s in result.reachable(b.id))


@settings(max_examples=200, deadline=None)
@given(windows())
def test_window_invariants(w: tuple[list[SellerState], list[BuyerState], MarketConfig]) -> None:
    check_window(*w)


@settings(max_examples=100, deadline=None)
@given(windows(slow=False))
def test_no_import_while_any_community_energy_unsold(
    w: tuple[list[SellerState], list[BuyerState], MarketConfig],
) -> None:
    """With every seller answering in time, nobody imports while any community energy is left."""
    sellers, buyers, cfg = w
    result = run_window(publish_offers(sellers, 0, TARIFFS), sellers, buyers, TARIFFS, cfg)
    assert not result.dropped
    if any(v > 1e-9 for v in result.grid_import.values()):
        assert result.unsold_kwh <= 1e-9


def test_worked_window() -> None:
    sellers = [SellerState("s1", 1.2, 0.10, 1.5, 0), SellerState("s2", 0.5, 0.20, 1.0, 3)]
    buyers = [BuyerState("b1", 0.8, 0.28, 0.8, 2), BuyerState("b2", 1.0, 0.15, 1.0, 4)]
    offers = publish_offers(sellers, 17, TARIFFS)
    assert [(o.seller, o.window, o.kwh, o.ask) for o in offers] == [
        ("s1", 17, 1.2, 0.30),
        ("s2", 17, 0.5, 0.30),
    ]
    assert get_offers([*publish_offers(sellers, 18, TARIFFS), *offers], 17) == offers
    result = run_window(offers, sellers, buyers, TARIFFS, MarketConfig(20, 3))
    assert result.dropped == [("b1", "s2")]  # s2 answers in 3 rounds, b1 waits 2
    got = [(t.seller, t.buyer, round(t.kwh, 6), round(t.price, 6), t.agreed) for t in result.trades]
    assert got == [
        ("s1", "b1", 0.8, 0.174008, True),
        ("s2", "b2", 0.5, 0.15, False),
        ("s1", "b2", 0.4, 0.134904, True),
    ]
    assert result.grid_import == pytest.approx({"b1": 0.0, "b2": 0.1})
    assert result.unsold_kwh == pytest.approx(0.0)


def test_bad_market_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="retail"):
        Tariff(0.3, 0.1).validate()
    with pytest.raises(ValueError, match="surplus_kwh"):
        SellerState("s", -1.0, 0.1)
    with pytest.raises(ValueError, match="need_kwh"):
        BuyerState("b", float("nan"), 0.1)
    with pytest.raises(ValueError):
        MarketConfig(3, 2)
    s = [SellerState("s", 1.0, 0.1)]
    with pytest.raises(ValueError, match="unique"):
        run_window(publish_offers(s, 0, TARIFFS), s + s, [], TARIFFS)
    with pytest.raises(ValueError, match="unknown sellers"):
        run_window(publish_offers(s, 0, TARIFFS), [], [], TARIFFS)


def test_simulation_on_household_profiles() -> None:
    a = simulate_market(8, 24, 3)
    assert a == simulate_market(8, 24, 3)  # deterministic under the seed
    assert a["invariant_violations"] == 0
    assert a["traded_kwh"] > 0 and a["buyer_savings"] > 0 and a["seller_gains"] > 0
    assert 0.08 <= a["mean_price"] <= 0.30


def test_market_cli_json() -> None:
    cmd = [
        sys.executable,
        "-m",
        "gridpact.cli",
        "negotiate",
        "market",
        "--households",
        "6",
        "--hours",
        "12",
        "--json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout)["invariant_violations"] == 0
