"""ε-greedy peer selection (section 4.2): pairing rules, per-context memory, learning beats random."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.negotiation.cooperative.peers import CONTEXT_WEIGHT, PRIOR_MEAN, PRIOR_WEIGHT, PeerSelector


def _run(sel: PeerSelector, compat: np.ndarray, periods: int, seed: int) -> float:
    """Success rate when pair (i, j) in context c agrees with probability compat[c, i, j]."""
    rng = np.random.default_rng(seed)
    ok = total = 0
    for t in range(periods):
        block = t % compat.shape[0]
        ctx = block * sel.contexts // compat.shape[0]  # the selector's own blocks of the day
        for i, j in sel.pairs(ctx):
            agreed = rng.random() < compat[block, i, j]
            sel.update(i, j, 0.0 if agreed else 1.0, ctx)
            ok += int(agreed)
            total += 1
    return ok / total


def _matching_compat(n: int, pairs: list[tuple[int, int]], good: float, bad: float) -> np.ndarray:
    c = np.full((n, n), bad)
    for i, j in pairs:
        c[i, j] = c[j, i] = good
    return c


def test_coop_peers_pairs_are_a_matching_with_random_initiators() -> None:
    sel = PeerSelector(9, 0.1, np.random.default_rng(3))
    first = np.zeros(9)
    for _ in range(400):
        pairs = sel.pairs()
        flat = [i for p in pairs for i in p]
        assert len(pairs) == 4 and len(set(flat)) == 8
        for i, _j in pairs:
            first[i] += 1
    assert first.min() > 100  # every agent initiates sometimes: no fixed roles


def test_coop_peers_mutual_best_pairs_form_first() -> None:
    """With ε = 0 and a clear history the best pairs of the cooperative are formed."""
    sel = PeerSelector(6, 0.0, np.random.default_rng(0))
    for _ in range(5):
        for i in range(6):
            for j in range(i + 1, 6):
                sel.update(i, j, 0.0 if {i, j} in ({0, 5}, {1, 4}, {2, 3}) else 1.0)
    for _ in range(20):
        assert {frozenset(p) for p in sel.pairs()} == {
            frozenset((0, 5)),
            frozenset((1, 4)),
            frozenset((2, 3)),
        }


def test_coop_peers_best_pair_is_not_broken_by_whoever_chooses_first() -> None:
    """0's favourite is 1, but 1 and 2 are the best pair: they pair, and 0 takes 3."""
    sel = PeerSelector(4, 0.0, np.random.default_rng(0))
    history = {(1, 2): 0.0, (0, 1): 0.1, (0, 2): 0.5, (0, 3): 0.6, (2, 3): 0.6, (1, 3): 1.0}
    for _ in range(10):
        for (i, j), d in history.items():
            sel.update(i, j, d)
    for _ in range(50):
        assert {frozenset(p) for p in sel.pairs()} == {frozenset((1, 2)), frozenset((0, 3))}


def test_coop_peers_context_statistics_shrink_to_the_peer_mean() -> None:
    sel = PeerSelector(3, 0.1, np.random.default_rng(0), contexts=4)
    for _ in range(4):
        sel.update(0, 1, 0.0, ctx=2)
    overall = PRIOR_MEAN * PRIOR_WEIGHT / (4 + PRIOR_WEIGHT)
    assert sel.score(0, 2)[1] == pytest.approx(overall * CONTEXT_WEIGHT / (4 + CONTEXT_WEIGHT))
    assert sel.score(0, 3)[1] == pytest.approx(overall)  # unseen block: what is known of the peer
    assert sel.score(0, 3)[2] == pytest.approx(PRIOR_MEAN)  # unseen peer: the prior
    assert np.isinf(sel.score(1, 0)[1])


def test_coop_peers_learned_selection_finds_the_compatible_pairs() -> None:
    """Nine agents, four compatible pairs (90 % agreement) among pairs that rarely agree (20 %)."""
    compat = _matching_compat(9, [(0, 5), (1, 7), (2, 8), (3, 6)], 0.9, 0.2)[None]
    learned = _run(PeerSelector(9, 0.1, np.random.default_rng(1)), compat, 600, seed=11)
    rnd = _run(PeerSelector(9, 1.0, np.random.default_rng(1)), compat, 600, seed=11)
    assert rnd < 0.35
    assert learned > rnd + 0.4


def test_coop_peers_per_context_memory_follows_the_time_of_day() -> None:
    """Compatible pairs change between two blocks of the day: only per-block memory finds both."""
    compat = np.stack(
        [
            _matching_compat(8, [(0, 1), (2, 3), (4, 5), (6, 7)], 0.9, 0.1),
            _matching_compat(8, [(0, 2), (1, 3), (4, 6), (5, 7)], 0.9, 0.1),
        ]
    )
    two = _run(PeerSelector(8, 0.1, np.random.default_rng(2), contexts=2), compat, 800, seed=5)
    one = _run(PeerSelector(8, 0.1, np.random.default_rng(2), contexts=1), compat, 800, seed=5)
    rnd = _run(PeerSelector(8, 1.0, np.random.default_rng(2), contexts=2), compat, 800, seed=5)
    assert two > one + 0.15 and two > rnd + 0.4


def test_coop_peers_random_baseline_ignores_history() -> None:
    sel = PeerSelector(4, 1.0, np.random.default_rng(4))
    for _ in range(50):
        sel.update(0, 1, 0.0)
    seen = np.zeros(4)
    for _ in range(300):
        for i, j in sel.pairs():
            if 0 in (i, j):
                seen[j if i == 0 else i] += 1
    assert seen[1:].min() > 70


@pytest.mark.parametrize("args", [(1, 0.1, 1), (4, -0.1, 1), (4, 1.5, 1), (4, 0.1, 0)])
def test_coop_peers_bad_selector_is_rejected(args: tuple[int, float, int]) -> None:
    n, eps, ctx = args
    with pytest.raises(ValueError, match="peer"):
        PeerSelector(n, eps, np.random.default_rng(0), contexts=ctx)
