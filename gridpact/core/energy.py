"""Interval energy from cumulative counters: gaps, counter resets and rollovers.

Pure functions over counter samples (time, Wh, reset flag), vectorised with numpy so a month of
10-second readings fits a Pi's memory. A counter that goes backwards is a rollover when it wraps
from near the top of the register to near zero; otherwise (or when the node flags COUNTER_RESET)
it is a reset: the energy between the two samples is unknown, the new value counts as the energy
since the reset, and the interval is marked inexact. A gap longer than `max_gap_s` keeps its
energy (the counter is cumulative) but is inexact too, since its spread over time is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_ROLLOVER_WH = 100_000_000  # 99 999.99 kWh display wraps to 0


@dataclass(frozen=True)
class Sample:
    ts: int
    wh: int
    reset: bool = False


@dataclass(frozen=True)
class Step:
    """Energy between two consecutive samples; `exact` is False across a reset or a gap."""

    t0: int
    t1: int
    wh: int
    exact: bool


@dataclass(frozen=True)
class EnergyDelta:
    """Imported and exported energy in a window; `complete` only if verified readings cover it fully."""

    import_wh: int
    export_wh: int
    complete: bool


@dataclass(frozen=True)
class Steps:
    """Consecutive-sample increments of one counter, as arrays (t0 < t1 for each)."""

    t0: np.ndarray
    t1: np.ndarray
    wh: np.ndarray
    exact: np.ndarray


def increments(
    ts: np.ndarray, wh: np.ndarray, reset: np.ndarray, max_gap_s: int, rollover_wh: int = DEFAULT_ROLLOVER_WH
) -> Steps:
    """Per-interval increments of one counter from samples sorted by time."""
    ts, wh, reset = np.asarray(ts, np.int64), np.asarray(wh, np.int64), np.asarray(reset, bool)
    keep = np.concatenate(([True], np.diff(ts) > 0)) if len(ts) else np.zeros(0, bool)
    ts, wh, reset = ts[keep], wh[keep], reset[keep]
    prev, cur, flagged = wh[:-1], wh[1:], reset[1:]
    delta = cur - prev
    back = delta < 0
    rolled = back & ~flagged & (prev >= rollover_wh * 9 // 10) & (cur <= rollover_wh // 10)
    was_reset = (back & ~rolled) | flagged
    delta = np.where(rolled, rollover_wh - prev + cur, delta)
    delta = np.where(back & ~rolled, np.maximum(cur, 0), delta)
    exact = (np.diff(ts) <= max_gap_s) & ~was_reset
    return Steps(ts[:-1], ts[1:], delta, exact)


def window_energy(steps: Steps, t0: int, t1: int) -> tuple[int, bool]:
    """Energy in [t0, t1), pro rata for steps that straddle an edge; complete if exactly covered."""
    if t1 <= t0:
        return 0, True
    lo = np.maximum(steps.t0, t0)
    hi = np.minimum(steps.t1, t1)
    inside = hi > lo
    if not inside.any():
        return 0, False
    span = (steps.t1 - steps.t0)[inside]
    total = float(np.sum(steps.wh[inside] * (hi - lo)[inside] / span))
    covered = int(np.sum((hi - lo)[inside]))
    return round(total), bool(steps.exact[inside].all()) and covered == t1 - t0


def binned(steps: Steps, start: int, n: int, step_s: int) -> tuple[np.ndarray, np.ndarray]:
    """Energy per bin (Wh, pro rata) and whether each bin is fully and exactly covered."""
    edges = start + step_s * np.arange(n + 1, dtype=np.float64)
    if len(steps.t0) == 0:
        return np.zeros(n), np.zeros(n, dtype=bool)
    t = np.concatenate((steps.t0[:1], steps.t1)).astype(np.float64)
    cum = np.concatenate(([0.0], np.cumsum(steps.wh, dtype=np.float64)))
    energy = np.diff(np.interp(edges, t, cum))
    ok = (edges[:-1] >= t[0]) & (edges[1:] <= t[-1])
    bad = ~steps.exact
    if bad.any():
        first = np.clip((steps.t0[bad] - start) // step_s, 0, n)
        last = np.clip(-((start - steps.t1[bad]) // step_s), 0, n)  # ceil
        hits = np.zeros(n + 1, dtype=np.int64)
        np.add.at(hits, first, 1)
        np.add.at(hits, last, -1)
        ok &= np.cumsum(hits)[:n] == 0
    return energy, ok


def _arrays(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.array([s.ts for s in samples], np.int64),
        np.array([s.wh for s in samples], np.int64),
        np.array([s.reset for s in samples], bool),
    )


def counter_steps(
    samples: list[Sample], max_gap_s: int, rollover_wh: int = DEFAULT_ROLLOVER_WH
) -> list[Step]:
    """`increments` for a list of samples, as Step records (for reading and testing)."""
    st = increments(*_arrays(samples), max_gap_s, rollover_wh)
    return [
        Step(int(a), int(b), int(w), bool(e))
        for a, b, w, e in zip(st.t0, st.t1, st.wh, st.exact, strict=True)
    ]


def energy_in_window(steps: list[Step], t0: int, t1: int) -> tuple[int, bool]:
    """`window_energy` for Step records."""
    arr = Steps(
        np.array([s.t0 for s in steps], np.int64),
        np.array([s.t1 for s in steps], np.int64),
        np.array([s.wh for s in steps], np.int64),
        np.array([s.exact for s in steps], bool),
    )
    return window_energy(arr, t0, t1)


def window_delta(
    imports: list[Sample],
    exports: list[Sample],
    t0: int,
    t1: int,
    max_gap_s: int,
    rollover_wh: int = DEFAULT_ROLLOVER_WH,
) -> EnergyDelta:
    """Import and export energy in [t0, t1) from the two counters' samples."""
    imp, imp_ok = window_energy(increments(*_arrays(imports), max_gap_s, rollover_wh), t0, t1)
    exp, exp_ok = window_energy(increments(*_arrays(exports), max_gap_s, rollover_wh), t0, t1)
    return EnergyDelta(imp, exp, imp_ok and exp_ok)


def net_power(imp: Steps, exp: Steps, start: int, n: int, step_s: int) -> np.ndarray:
    """Mean net power (W, import positive) per step; NaN where the step is not fully covered."""
    imp_e, imp_ok = binned(imp, start, n, step_s)
    exp_e, exp_ok = binned(exp, start, n, step_s)
    return np.where(imp_ok & exp_ok, (imp_e - exp_e) * 3600.0 / step_s, np.nan)


def net_series(
    imports: list[Sample],
    exports: list[Sample],
    start: int,
    steps: int,
    step_s: int,
    max_gap_s: int,
    rollover_wh: int = DEFAULT_ROLLOVER_WH,
) -> np.ndarray:
    """`net_power` for lists of samples."""
    imp = increments(*_arrays(imports), max_gap_s, rollover_wh)
    exp = increments(*_arrays(exports), max_gap_s, rollover_wh)
    return net_power(imp, exp, start, steps, step_s)
