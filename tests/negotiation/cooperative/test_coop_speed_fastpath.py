"""The speed-ups of the fast path give exactly what the plain search gives.

Lifting against a literal scan of the exit period, lanes at a bound (table) against the
search bit for bit, and batch splits (what worker processes see) against one batch bit for
bit. Agreement with the reference path and the Algorithm 3 oracle is in test_coop_evaluate.
"""

from __future__ import annotations

import numpy as np
from coop_oracle import calm_household_batch

from gateway.negotiation.cooperative import fast
from gateway.negotiation.cooperative.battery import BatteryArrays
from gateway.negotiation.cooperative.bench import sample_batch
from gateway.negotiation.cooperative.evaluate import EvalBatch


def rows_of(batch: EvalBatch) -> fast._Rows:
    """The per-row tables fast.evaluate builds for a batch."""
    a, s, w, _, _ = batch.shape
    agent = np.repeat(np.arange(a), s)
    p = BatteryArrays.stack(list(batch.batteries), shape_tail=1).index(agent)
    return fast._Rows(
        batch.demand.reshape(a * s, w), p, batch.lam1[agent][:, None], batch.lam2[agent][:, None]
    )


def scan_exit(rows: fast._Rows, row: int, x: float, j: int) -> int:
    """First period k >= j whose free step leaves [xmin, xmax], by a literal scan (w: never)."""
    p = rows.P[row]
    u = x - p[j]
    for k in range(j, rows.w):
        if not (rows.xmin_r[row] - p[k + 1] <= u <= rows.xmax_r[row] - p[k + 1]):
            return k
    return rows.w


def test_coop_speed_exit_search_equals_a_scan() -> None:
    batch = sample_batch(2)
    rows = rows_of(batch)
    rng = np.random.default_rng(3)
    n, m, w = 30, 6, rows.w
    lo, hi = rows.xmin_r[0], rows.xmax_r[0]
    j = np.arange(1, w + 1)  # every start period, the last one included
    x = rng.uniform(lo, hi, (n, m, j.size))
    x[:, 0] = lo  # lanes at a bound
    x[:, 1] = hi
    for r0 in (0, batch.shape[1]):  # both agents' rows
        k, _ = rows.first_exit(x, j, r0)
        want = [
            [[scan_exit(rows, r0 + a, float(x[a, b, c]), int(j[c])) for c in range(j.size)] for b in range(m)]
            for a in range(n)
        ]
        assert np.array_equal(k, np.array(want))
        # the lifting part is exercised: many lanes stay inside longer than the first window
        assert np.mean(k - j >= fast.H) > 0.1


def test_coop_speed_exit_search_with_lanes_that_never_leave() -> None:
    """A large battery and a calm household: lanes run free to the end of the window."""
    w = 96
    batch = calm_household_batch(w)
    rows = rows_of(batch)
    j = np.arange(0, w)
    x = np.full((3, 2, w), 5.0)
    x[:, 1] = 2.5
    k, _ = rows.first_exit(x, j)
    want = [
        [[scan_exit(rows, a, float(x[a, b, c]), int(j[c])) for c in range(w)] for b in range(2)]
        for a in range(3)
    ]
    assert np.array_equal(k, np.array(want))
    assert np.all(k[:, 0] == w)


def test_coop_speed_lanes_at_a_bound_take_the_table_bit_for_bit() -> None:
    batch = sample_batch(2)
    rows = rows_of(batch)
    a, s, w, nq, _ = batch.shape
    j = np.arange(2, w + 1)
    rng = np.random.default_rng(5)
    for i in range(a):
        lo, hi = rows.xmin_r[i * s], rows.xmax_r[i * s]
        x = rng.uniform(lo, hi, (s, nq, j.size))
        pick = rng.integers(0, 3, x.shape)
        x[pick == 0] = lo
        x[pick == 1] = hi
        cost, end = rows.rest(x, j, i * s)
        cost_s, end_s = rows.rest(x, j, i * s, use_table=False)
        assert np.array_equal(cost, cost_s)
        assert np.array_equal(end, end_s)
        # the table does carry the bound lanes' cost (not a copy of a neighbour's)
        assert np.ptp(cost[pick == 1]) > 0


def test_coop_speed_batch_splits_give_the_same_bits() -> None:
    """Worker processes evaluate parts of a period's batch: the parts must give the same bits."""
    b = sample_batch(6)
    b = EvalBatch(b.demand, b.x0, b.batteries, b.lam1, b.lam2, b.q, b.tau, risk=1.0)
    whole = fast.evaluate(b)

    def part(sl: slice) -> EvalBatch:
        return EvalBatch(
            b.demand[sl], b.x0[sl], b.batteries[sl], b.lam1[sl], b.lam2[sl], b.q[sl], b.tau, b.risk
        )

    split = np.concatenate(
        [fast.evaluate(part(slice(0, 1))), fast.evaluate(part(slice(1, 4))), fast.evaluate(part(slice(4, 6)))]
    )
    assert np.array_equal(whole, split)
    assert np.array_equal(whole, fast.evaluate(b))  # nothing carried over between calls
