"""The DemandResponse contract's arithmetic and claim evidence, mirrored once for the Python side.

A gateway deciding whether a demand response event is worth acting on, the dashboard showing what a
claim will pay, and the operator sizing a budget all predict what the chain will do; they call these
functions so that none of them drifts from `contracts/src/DemandResponse.sol` (docs/contracts.md,
"Demand response"; tests/contracts/test_contracts_demand_response.py checks them against the
contract on the EVM). Times are Unix seconds; energy in Wh; rewards in token base units per kWh;
amounts in token base units. Every division rounds down, as the contract's does.
"""

from __future__ import annotations

from collections.abc import Sequence

BASELINE_DAYS = 3  # the contract's BASELINE_DAYS
HOUR = 3_600
DAY = 86_400
STATEMENT_SIZE = 100  # docs/wire/statement-v1.md
SIG_SIZE = 65  # r || s || v
RECORD_SIZE = STATEMENT_SIZE + SIG_SIZE
EVIDENCE_RECORDS = 2 * (1 + BASELINE_DAYS)
EVIDENCE_SIZE = EVIDENCE_RECORDS * RECORD_SIZE


def baseline_windows(window_start: int, announced_at: int, days: int = BASELINE_DAYS) -> tuple[int, ...]:
    """Starts of the baseline hours of an event hour starting `window_start`, announced at `announced_at`.

    They are the `days` most recent same-hour windows `window_start - k days` that had ended by the
    announcement (k from the least k >= 1 with `window_start - k days + 1 hour <= announced_at`), the most
    recent first: fixed by the contract so that a household can neither choose its best days nor raise
    its baseline after hearing of the event. This is also the order of a claim's baseline evidence.
    """
    if window_start <= announced_at:
        raise ValueError(f"the event hour {window_start} must start after the announcement {announced_at}")
    k0 = -(-(window_start + HOUR - announced_at) // DAY)  # ceil; >= 1 as window_start > announced_at
    starts = tuple(window_start - (k0 + k) * DAY for k in range(days))
    if starts and starts[-1] < 0:
        raise ValueError(f"baseline hours before 1970 for an event hour at {window_start}")
    return starts


def evidence_windows(window_start: int, announced_at: int) -> tuple[int, ...]:
    """The window end every record of a claim's evidence must carry, in order: for the event hour and
    then each baseline hour, its start and its end."""
    starts = (window_start, *baseline_windows(window_start, announced_at))
    return tuple(t for s in starts for t in (s, s + HOUR))


def baseline_wh(baseline_deltas: Sequence[int]) -> int:
    """The baseline: the average import over the baseline hours, rounded down."""
    if len(baseline_deltas) != BASELINE_DAYS or min(baseline_deltas) < 0:
        raise ValueError(f"want {BASELINE_DAYS} non-negative baseline deltas, not {list(baseline_deltas)}")
    return sum(baseline_deltas) // BASELINE_DAYS


def reduction_wh(actual_wh: int, baseline_deltas: Sequence[int]) -> int:
    """The metered reduction a claim is paid on: the baseline less the event hour's import, or 0 (the
    contract then refuses the claim with `NoReduction`, so a claim never costs the others anything)."""
    if actual_wh < 0:
        raise ValueError(f"the event hour's import cannot be negative ({actual_wh})")
    base = baseline_wh(baseline_deltas)
    return base - actual_wh if base > actual_wh else 0


def owed_total(reward_per_kwh: int, budget: int, total_wh: int) -> int:
    """What all the claims of an event together are owed: the reward on `total_wh`, capped at the budget.
    The operator's `reclaim` returns `budget - owed_total(...)`."""
    return min(reward_per_kwh * total_wh // 1000, budget)


def payout(reward_per_kwh: int, budget: int, total_wh: int, reduction_wh: int) -> int:
    """One claim's reward once claiming closed: the full reward while the reward on all claims fits the
    budget, else its pro-rata share of the budget. Pro rata, not first come first served, so that claims
    race for nothing and there is nothing to front-run."""
    if reward_per_kwh * total_wh // 1000 <= budget:
        return reward_per_kwh * reduction_wh // 1000
    return budget * reduction_wh // total_wh


def claim_evidence(pairs: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The `evidence` argument of `DemandResponse.claim`: the (statement, r || s || v) pairs in the order of
    `evidence_windows`, each as the 100 statement bytes exactly as the meter signed them followed by its
    65-byte signature. Sizes are checked here; the signer, the windows and the device are the contract's
    to judge."""
    if len(pairs) != EVIDENCE_RECORDS:
        raise ValueError(f"want {EVIDENCE_RECORDS} signed statements, not {len(pairs)}")
    out = bytearray()
    for i, (raw, sig) in enumerate(pairs):
        if len(raw) != STATEMENT_SIZE or len(sig) != SIG_SIZE:
            raise ValueError(f"record {i}: {len(raw)}-byte statement, {len(sig)}-byte signature")
        out += raw + sig
    return bytes(out)
