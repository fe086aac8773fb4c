"""gridpact.core.demand: golden vectors, then the same answers as DemandResponse.sol on anvil and py-evm.

The contract's arithmetic is exposed as pure functions (`baselineWindowsFor`, `owedTotal`, `payout`), so a
short Hypothesis run compares them with the mirror by calls alone; the claims themselves are compared in
test_contracts_demand_response.py.
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from contracts.deploy import demand_at
from contracts.harness import Community
from gridpact.core import demand

HOUR, DAY = 3_600, 86_400
W = 1_767_225_600  # 2026-01-01 00:00 UTC
U128 = 2**128 - 1


# (event hour, announced at) -> its baseline hours, the boundaries included
BASELINES = {
    (W, W - HOUR): (W - DAY, W - 2 * DAY, W - 3 * DAY),
    (W, W - 1): (W - DAY, W - 2 * DAY, W - 3 * DAY),
    (W, W - DAY + HOUR): (W - DAY, W - 2 * DAY, W - 3 * DAY),  # yesterday's hour ended right then
    (W, W - DAY + HOUR - 1): (W - 2 * DAY, W - 3 * DAY, W - 4 * DAY),  # a second before it ended
    (W, W - 10 * DAY + HOUR): (W - 10 * DAY, W - 11 * DAY, W - 12 * DAY),
    (W, W - 10 * DAY): (W - 11 * DAY, W - 12 * DAY, W - 13 * DAY),  # that day's hour had only begun
}


def test_baseline_windows_golden() -> None:
    for (start, announced), want in BASELINES.items():
        assert demand.baseline_windows(start, announced) == want, (start, announced)
    assert demand.baseline_windows(W, W - HOUR, days=1) == (W - DAY,)
    with pytest.raises(ValueError, match="after the announcement"):
        demand.baseline_windows(W, W)
    with pytest.raises(ValueError, match="before 1970"):  # the contract's subtraction would underflow
        demand.baseline_windows(2 * DAY, DAY)
    d1, d2, d3 = W - DAY, W - 2 * DAY, W - 3 * DAY
    ends = (W, W + HOUR, d1, d1 + HOUR, d2, d2 + HOUR, d3, d3 + HOUR)
    assert demand.evidence_windows(W, W - HOUR) == ends


def test_reduction_and_payout_golden() -> None:
    assert demand.baseline_wh((1_250, 900, 1_510)) == 1_220
    assert demand.reduction_wh(400, (1_250, 900, 1_510)) == 820
    assert demand.reduction_wh(0, (1, 1, 2)) == 1  # the average rounds down: 4 // 3
    assert demand.reduction_wh(1, (1, 1, 2)) == 0
    assert demand.reduction_wh(2_000, (1_800, 1_900, 2_000)) == 0  # import rose: nothing
    with pytest.raises(ValueError, match="baseline deltas"):
        demand.reduction_wh(0, (1, 2))
    with pytest.raises(ValueError, match="baseline deltas"):
        demand.reduction_wh(0, (1, -2, 3))
    with pytest.raises(ValueError, match="negative"):
        demand.reduction_wh(-1, (1, 2, 3))
    reward = 200_000_000_000_000_000
    assert demand.payout(reward, 10**18, 820, 820) == 164_000_000_000_000_000
    # the reward on all claims just fits the budget: full reward; a base unit less: pro rata
    assert (
        demand.payout(1_000, 3_000, 3_000, 1_000) == 1_000 and demand.owed_total(1_000, 3_000, 3_000) == 3_000
    )
    assert (
        demand.payout(1_000, 2_999, 3_000, 1_000) == 999
        and demand.payout(1_000, 2_999, 3_000, 2_000) == 1_999
    )
    assert demand.owed_total(1_000, 2_999, 3_000) == 2_999
    assert demand.owed_total(reward, 10**18, 0) == 0
    assert (
        demand.payout(3, 10, 333, 333) == 0
    )  # less than a base unit of reward: nothing (the claim still counts)


def test_claim_evidence_layout() -> None:
    records = [(bytes([i]) * 100, bytes([0x80 + i]) * 65) for i in range(8)]
    ev = demand.claim_evidence(records)
    assert len(ev) == demand.EVIDENCE_SIZE == 1_320
    assert ev[165:265] == bytes([1]) * 100 and ev[265:330] == bytes([0x81]) * 65
    with pytest.raises(ValueError, match="want 8"):
        demand.claim_evidence(records[:7])
    with pytest.raises(ValueError, match="record 3"):
        demand.claim_evidence([*records[:3], (b"\0" * 99, b"\0" * 65), *records[4:]])
    with pytest.raises(ValueError, match="record 7"):
        demand.claim_evidence([*records[:7], (b"\0" * 100, b"\0" * 64)])


def test_golden_vectors_on_the_contract(community: Community) -> None:
    dr = demand_at(community.w3, community.addresses)
    for (start, announced), want in BASELINES.items():
        assert tuple(dr.functions.baselineWindowsFor(start, announced).call()) == want, (start, announced)
    for args in (
        (1_000, 3_000, 3_000, 1_000),
        (1_000, 2_999, 3_000, 1_000),
        (3, 10, 333, 333),
        (1, 1, 2**88 - 1, 7),
    ):
        assert dr.functions.payout(*args).call() == demand.payout(*args), args
        assert dr.functions.owedTotal(*args[:3]).call() == demand.owed_total(*args[:3]), args


TIMES = st.tuples(st.integers(60 * DAY, 2**34), st.integers(1, 40 * DAY)).map(
    lambda t: ((t[0] + t[1]) // HOUR * HOUR + HOUR, t[0])  # (an aligned hour after the announcement, when)
)
FIGURES = st.tuples(
    st.integers(1, U128), st.integers(1, U128), st.integers(1, 2**88 - 1), st.floats(0, 1)
).map(lambda t: (t[0], t[1], t[2], int(t[2] * t[3])))  # (reward, budget, total Wh, one claim's Wh <= total)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(times=TIMES, figures=FIGURES, small=st.tuples(st.integers(1, 10**21), st.integers(1, 10**6)))
def test_mirror_matches_the_contract(
    community: Community, times: tuple[int, int], figures: tuple[int, int, int, int], small: tuple[int, int]
) -> None:
    """Read-only calls: the chain state the fixture rolls back is never touched."""
    dr = demand_at(community.w3, community.addresses)
    window_start, announced_at = times
    assert tuple(
        dr.functions.baselineWindowsFor(window_start, announced_at).call()
    ) == demand.baseline_windows(window_start, announced_at)
    reward, budget, total, share = figures
    for r, b, t, s in (
        (reward, budget, total, share),
        (small[0], budget % 10**24 + 1, small[1], small[1] // 3),
    ):
        assert dr.functions.owedTotal(r, b, t).call() == demand.owed_total(r, b, t)
        assert dr.functions.payout(r, b, t, s).call() == demand.payout(r, b, t, s)
