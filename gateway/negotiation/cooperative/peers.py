"""ε-greedy peer selection learned from past distances to the Nash solution (section 4.2).

Reward. Each agent keeps, per peer, the mean distance in the outcome space between what its
sessions with that peer produced and the pair's Nash solution, normalised by the distance
from the no-deal point to the pair's utopia point (so that periods with large and small
stakes weigh the same); a failed session counts 1, the worst a session can do. Lower is
better: the peer that "historically provides the fairer solution".

Context. Compatibility depends on the time of day (two PV households both have a surplus
at noon), so the statistics are kept per block of the day (`contexts` blocks). A block's
mean is shrunk towards the peer's all-day mean with the weight of CONTEXT_WEIGHT sessions,
and the all-day mean towards PRIOR_MEAN with the weight of PRIOR_WEIGHT sessions: a block
seen rarely falls back on what is known of the peer, one early result settles nothing.

Pairing. Each agent explores with probability ε: explorers, in random order, pair with a
random unpaired peer. The others name the unpaired peer with the best score; two agents
whose shared history is the best among the unpaired (the sum of both sides' scores) name
each other and pair first, then the next best among the rest, and so on. The session's
initiator is the one drawn first in a random order. ε = 1 is the paper's random peer
selection baseline. With an odd number of agents one sits out each period.
"""

from __future__ import annotations

import numpy as np

PRIOR_MEAN = 0.5
PRIOR_WEIGHT = 2.0
CONTEXT_WEIGHT = 2.0


class PeerSelector:
    """Pairing of n agents per period; `update` feeds back each session's distance."""

    def __init__(self, n: int, epsilon: float, rng: np.random.Generator, contexts: int = 1) -> None:
        if n < 2 or not 0.0 <= epsilon <= 1.0 or contexts < 1:
            raise ValueError("peer selection needs n >= 2 agents, 0 <= epsilon <= 1, contexts >= 1")
        self.n, self.epsilon, self.rng, self.contexts = n, float(epsilon), rng, contexts
        self.total = np.zeros((contexts, n, n))
        self.count = np.zeros((contexts, n, n), dtype=np.int64)

    def scores(self, ctx: int = 0) -> np.ndarray:
        """(n, n) expected distance to the Nash solution of agent i with peer j (inf on the diagonal)."""
        overall = (self.total.sum(axis=0) + PRIOR_MEAN * PRIOR_WEIGHT) / (
            self.count.sum(axis=0) + PRIOR_WEIGHT
        )
        if self.contexts > 1:
            m = (self.total[ctx] + CONTEXT_WEIGHT * overall) / (self.count[ctx] + CONTEXT_WEIGHT)
        else:
            m = overall
        np.fill_diagonal(m, np.inf)
        return m

    def score(self, i: int, ctx: int = 0) -> np.ndarray:
        """Agent i's expected distance per peer (inf for itself)."""
        return self.scores(ctx)[i]

    def pairs(self, ctx: int = 0) -> list[tuple[int, int]]:
        """This period's sessions as (initiator, responder); one agent may stay out if n is odd."""
        n = self.n
        order = self.rng.permutation(n)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        explore = self.rng.random(n) < self.epsilon
        free = np.ones(n, dtype=bool)
        out: list[tuple[int, int]] = []
        for i in order:
            i = int(i)
            if not (free[i] and explore[i]):
                continue
            others = np.flatnonzero(free & (np.arange(n) != i))
            if others.size == 0:
                break
            j = int(self.rng.choice(others))
            free[i] = free[j] = False
            out.append((i, j))
        if free.sum() < 2:
            return out
        m = self.scores(ctx)
        pair = m + m.T  # both sides' view of the pair; ties broken at random
        pair = pair + self.rng.random((n, n)) * 1e-9
        pair = np.minimum(pair, pair.T)
        np.fill_diagonal(pair, np.inf)
        while free.sum() >= 2:
            idx = np.flatnonzero(free)
            sub = pair[np.ix_(idx, idx)]
            a, b = np.unravel_index(int(np.argmin(sub)), sub.shape)
            i, j = int(idx[a]), int(idx[b])
            if rank[j] < rank[i]:
                i, j = j, i
            free[i] = free[j] = False
            out.append((i, j))
        return out

    def update(self, i: int, j: int, distance: float, ctx: int = 0) -> None:
        """Both sides remember the session (in context ctx, e.g. the block of the day)."""
        for a, b in ((i, j), (j, i)):
            self.total[ctx, a, b] += distance
            self.count[ctx, a, b] += 1
