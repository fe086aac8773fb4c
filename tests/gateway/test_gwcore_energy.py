"""Interval energy from counters: pro rata windows, gaps, resets, rollovers; the anchoring hash."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.anchoring import batch_hash
from gridpact.core.energy import (
    EnergyDelta,
    Sample,
    counter_steps,
    energy_in_window,
    net_series,
    window_delta,
)


def ramp(t0: int, t1: int, every: int, wh0: int, wh_per_s: float) -> list[Sample]:
    return [Sample(t, wh0 + round((t - t0) * wh_per_s)) for t in range(t0, t1 + 1, every)]


def test_exact_window_from_steady_counter() -> None:
    imports = ramp(0, 3600, 10, 5_000, 1.0)  # 3.6 kW
    exports = ramp(0, 3600, 10, 100, 0.0)
    assert window_delta(imports, exports, 0, 3600, 60) == EnergyDelta(3600, 0, True)


def test_window_edges_are_pro_rata() -> None:
    samples = [Sample(0, 0), Sample(100, 1000)]
    assert energy_in_window(counter_steps(samples, 200), 25, 75) == (500, True)


def test_window_not_covered_is_incomplete() -> None:
    samples = ramp(0, 1800, 10, 0, 1.0)
    wh, complete = energy_in_window(counter_steps(samples, 60), 0, 3600)
    assert (wh, complete) == (1800, False)


def test_gap_keeps_energy_but_marks_incomplete() -> None:
    """Across an outage the counter still tells the total; how it was spread is unknown."""
    samples = [Sample(0, 0), Sample(10, 10), Sample(1000, 1000), Sample(1010, 1010)]
    steps = counter_steps(samples, max_gap_s=120)
    assert [s.exact for s in steps] == [True, False, True]
    assert energy_in_window(steps, 0, 1010) == (1010, False)
    assert energy_in_window(steps, 1000, 1010) == (10, True)


def test_rollover_counts_the_wrap() -> None:
    top = 100_000_000
    samples = [Sample(0, top - 30), Sample(10, top - 5), Sample(20, 20)]
    steps = counter_steps(samples, 60, rollover_wh=top)
    assert [s.wh for s in steps] == [25, 25]
    assert all(s.exact for s in steps)


def test_reset_counts_energy_since_reset_and_is_incomplete() -> None:
    samples = [Sample(0, 50_000), Sample(10, 50_010), Sample(20, 7), Sample(30, 17)]
    steps = counter_steps(samples, 60)
    assert [(s.wh, s.exact) for s in steps] == [(10, True), (7, False), (10, True)]
    assert energy_in_window(steps, 0, 30) == (27, False)


def test_reset_flag_from_the_node_is_honoured() -> None:
    samples = [Sample(0, 100), Sample(10, 110, reset=True)]
    assert counter_steps(samples, 60)[0].exact is False


def test_net_series_marks_uncovered_and_inexact_bins() -> None:
    imports = ramp(0, 7200, 10, 0, 2.0)  # 7.2 kW import
    exports = ramp(0, 7200, 10, 0, 0.5)  # 1.8 kW export
    exports = [s for s in exports if not 4000 < s.ts < 5000]  # an outage in the second hour
    series = net_series(imports, exports, 0, 3, 3600, max_gap_s=120)
    assert series[0] == pytest.approx(5400.0)
    assert np.isnan(series[1]) and np.isnan(series[2])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 500), min_size=2, max_size=40),
    st.integers(0, 2000),
    st.integers(1, 2000),
)
def test_windows_add_up(increments: list[int], cut: int, width: int) -> None:
    """Energy in [a, c) equals energy in [a, b) plus [b, c), up to rounding, for any split."""
    samples, wh = [], 0
    for i, inc in enumerate(increments):
        wh += inc
        samples.append(Sample(i * 60, wh))
    steps = counter_steps(samples, 120)
    end = samples[-1].ts
    a, c = 0, min(end, cut + width)
    b = min(cut, c)
    whole, _ = energy_in_window(steps, a, c)
    left, _ = energy_in_window(steps, a, b)
    right, _ = energy_in_window(steps, b, c)
    assert abs(whole - (left + right)) <= 1
    assert energy_in_window(steps, 0, end)[0] == wh - samples[0].wh


def test_batch_hash_definition() -> None:
    payloads = [b'{"a":1}', b'{"b":2}']
    expected = keccak(hashlib.sha256(payloads[0]).digest() + hashlib.sha256(payloads[1]).digest())
    assert batch_hash(payloads) == expected
    assert len(batch_hash([])) == 32
    assert batch_hash(payloads) != batch_hash(payloads[::-1])


def test_batch_hash_golden() -> None:
    """Pinned value so the trading side and the contracts can test against it."""
    got = batch_hash([b"reading-1", b"reading-2"]).hex()
    assert got == "d72742fd5acccb7be0ab4dba240ecc483f28111dc574d643dc13ab41134990c8"
    assert batch_hash([]).hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
