"""Eq. 1 golden vectors and properties of the time-dependent concession."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.negotiation import ConcessionParams, concession

# Kröhling et al., Table 1: Prosumer 0 (seller) and Prosumer 1 (buyer); values computed by hand
# from O_t = ip + (rp - ip) (t/dl)^(1/cr).
SELLER_GOLDEN = {0: 80.0, 5: 50.0, 10: 80 - 60 * math.sqrt(0.5), 11: 80 - 60 * math.sqrt(0.55), 20: 20.0}
BUYER_GOLDEN = {0: 20.0, 5: 23.75, 10: 35.0, 11: 38.15, 20: 80.0}


@pytest.mark.parametrize(("t", "expected"), sorted(SELLER_GOLDEN.items()))
def test_eq1_seller_table1(t: int, expected: float) -> None:
    assert concession(80, 20, 20, 2.0, t) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("t", "expected"), sorted(BUYER_GOLDEN.items()))
def test_eq1_buyer_table1(t: int, expected: float) -> None:
    assert concession(20, 80, 20, 0.5, t) == pytest.approx(expected, abs=1e-12)


def test_eq1_linear_and_clamped() -> None:
    assert concession(10, 0, 10, 1.0, 3) == pytest.approx(7.0)
    assert concession(10, 0, 10, 1.0, 25) == 0.0  # past the deadline: stays at rp
    assert concession(10, 0, 10, 1.0, -3) == 10.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ip": 1, "rp": 0, "dl": 0, "cr": 1.0},
        {"ip": 1, "rp": 0, "dl": 5, "cr": 0.0},
        {"ip": float("nan"), "rp": 0, "dl": 5, "cr": 1.0},
        {"ip": 1, "rp": 0, "dl": 2.5, "cr": 1.0},
    ],
)
def test_params_reject_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ConcessionParams(**kwargs)  # type: ignore[arg-type]


prices = st.floats(0, 1000, allow_nan=False)
rates = st.floats(0.05, 20, allow_nan=False)


@given(prices, prices, st.integers(1, 60), rates)
def test_offers_monotone_and_within_ip_rp(ip: float, rp: float, dl: int, cr: float) -> None:
    offers = [concession(ip, rp, dl, cr, t) for t in range(dl + 3)]
    lo, hi = min(ip, rp), max(ip, rp)
    assert all(lo - 1e-9 <= o <= hi + 1e-9 for o in offers)
    step = [b - a for a, b in itertools.pairwise(offers)]
    if rp <= ip:
        assert all(d <= 1e-9 for d in step)
    else:
        assert all(d >= -1e-9 for d in step)
    assert offers[0] == ip and offers[dl] == pytest.approx(rp)


@given(prices, prices, st.integers(2, 60), rates, rates)
def test_higher_cr_concedes_more(ip: float, rp: float, dl: int, cr1: float, cr2: float) -> None:
    low, high = sorted((cr1, cr2))
    for t in range(1, dl):
        a, b = concession(ip, rp, dl, low, t), concession(ip, rp, dl, high, t)
        assert abs(b - ip) >= abs(a - ip) - 1e-9
