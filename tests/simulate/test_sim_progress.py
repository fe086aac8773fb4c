"""The progress line's counts under `--agents gateway` are the chain's, hour by hour.

The engine's own market is empty there (the gateways trade), so the progress callback is fed the
Market's events replayed into a Ledger after each hour: trades, settlements, refunds, disputes and
tokens in escrow as they stand, and the last hour's figures equal the final report's.
"""

from __future__ import annotations

import itertools

from hil.community.agentledger import ChainAgreement, replay
from hil.community.engine import EngineConfig
from hil.community.fullstack import FullStackOptions
from hil.community.ledger import Ledger

UNIT = 10**18


def test_sim_progress_replay_counts_open_disputed_and_escrowed_agreements() -> None:
    start = 50 * UNIT
    settled = ChainAgreement(b"\x01" * 32, 0, 1, 500, 10**17 * 2, 1, 500, 10**17, 0)
    disputed_open = ChainAgreement(b"\x02" * 32, 0, 2, 1000, 10**17 * 2, 2, disputed=True)
    open_one = ChainAgreement(b"\x03" * 32, 1, 2, 250, 10**17 * 2, 3)
    ledger, _, problems = replay([settled, disputed_open, open_one], 3, start, UNIT, lambda ag: 0)
    assert problems == []
    assert (ledger.agreements, ledger.settled, ledger.refunds, ledger.disputes) == (3, 1, 0, 1)
    assert ledger.escrowed() == 2 * 10**17 + 5 * 10**16  # 1000 Wh and 250 Wh at 0.2 token/kWh
    assert ledger.conserved()


def test_sim_replay_books_differing_reports_with_the_gap_to_the_treasury() -> None:
    """Reports 1000 and 990 Wh (inside the tolerance): the chain paid the seller on 990 less the
    penalty on 10 Wh and charged the buyer on 1000; the replay books that split (it is the
    contract's rule), the gap is the treasury's, tokens conserved."""
    escrow = 2 * 10**17  # 1000 Wh at 0.2 token/kWh
    paid, refund = 198 * 10**15 - 2 * 10**14, 0  # value(990 Wh) less 10 % of value(10 Wh)
    ag = ChainAgreement(b"\x04" * 32, 0, 1, 1000, 2 * 10**17, 1, 990, paid, refund, reports=(1000, 990))
    ledger, settled, problems = replay([ag], 2, 50 * UNIT, UNIT, lambda _: 0)
    assert problems == []
    assert ledger.treasury == escrow - paid - refund == 22 * 10**14
    assert settled[0].charged == 1000 and settled[0].refund == 0
    assert ledger.balance[0] == 50 * UNIT + paid and ledger.balance[1] == 50 * UNIT - escrow
    assert ledger.conserved() and len(settled) == 1


def test_sim_progress_counts_are_the_chains_at_every_hour() -> None:
    from hil.community.agentrun import run_agents

    seen: list[tuple[int, int, int, int, int, int, int]] = []

    def progress(done: int, total: int, ledger: Ledger) -> None:
        seen.append(
            (
                done,
                ledger.agreements,
                ledger.settled,
                ledger.refunds,
                ledger.disputes,
                ledger.escrowed(),
                ledger.treasury,
            )
        )

    cfg = EngineConfig(households=3, hours=4, seed=1)
    result, summary = run_agents(cfg, FullStackOptions(), progress=progress, start_hour=10)
    assert [s[0] for s in seen] == [1, 2, 3, 4]
    for a, b in itertools.pairwise(seen):  # counts only grow
        assert all(y >= x for x, y in zip(a[1:5], b[1:5], strict=True)), seen
    final = result.ledger
    # every agreement is submitted inside the run (the last window has no forecast), so the last
    # line already counts all of them; settlements may still come in the tail after it
    assert seen[-1][1] == final.agreements >= 1, seen
    assert final.settled >= seen[-1][2]
    # the hourly balances are the chain's: free balances plus escrow plus the treasury's share (the gap
    # of a buyer charged on the larger of two reports) equal what was minted
    assert result.balance.shape == (3, 4)
    free = sum(int(b) for b in result.balance[:, -1])  # float64 columns: exact to ~1e5 base units
    assert abs(free - (final.minted - seen[-1][5] - seen[-1][6])) < 10**6
    assert summary["community"]["token_conservation"] is True
