"""ε-greedy peer selection learned from past distances to the Nash solution (section 4.2).

Each agent keeps, per peer, the mean distance in the outcome space between what its
sessions with that peer produced and the pair's Nash solution, normalised by the distance
from the no-deal point to the pair's utopia point (the best utility each side could have
had), so that periods with large and small stakes weigh the same; a failed session counts
as 1, the worst a session can do. The mean starts from a prior of PRIOR_MEAN worth
PRIOR_WEIGHT sessions, so one early failure or success does not settle a peer for good. At each period agents are
taken in a random order; an agent still unpaired picks, among the unpaired others, a random
peer with probability ε, else the one with the smallest mean distance. ε = 1 is the
paper's random peer selection baseline.
"""

from __future__ import annotations

import numpy as np

PRIOR_MEAN = 0.5
PRIOR_WEIGHT = 2.0


class PeerSelector:
    """Pairing of n agents per period; `update` feeds back each session's distance."""

    def __init__(self, n: int, epsilon: float, rng: np.random.Generator, contexts: int = 1) -> None:
        if n < 2 or not 0.0 <= epsilon <= 1.0 or contexts < 1:
            raise ValueError("peer selection needs n >= 2 agents, 0 <= epsilon <= 1, contexts >= 1")
        self.n, self.epsilon, self.rng = n, float(epsilon), rng
        self.total = np.zeros((contexts, n, n))
        self.count = np.zeros((contexts, n, n), dtype=np.int64)

    def score(self, i: int, ctx: int = 0) -> np.ndarray:
        """Smoothed mean past distance to the Nash solution per peer (inf for itself)."""
        m = (self.total[ctx, i] + PRIOR_MEAN * PRIOR_WEIGHT) / (self.count[ctx, i] + PRIOR_WEIGHT)
        m[i] = np.inf
        return m

    def pairs(self, ctx: int = 0) -> list[tuple[int, int]]:
        """This period's sessions as (initiator, responder); one agent may stay out if n is odd."""
        free = np.ones(self.n, dtype=bool)
        out: list[tuple[int, int]] = []
        for i in self.rng.permutation(self.n):
            i = int(i)
            if not free[i]:
                continue
            others = np.flatnonzero(free & (np.arange(self.n) != i))
            if others.size == 0:
                break
            if self.rng.random() < self.epsilon:
                j = int(self.rng.choice(others))
            else:
                s = self.score(i, ctx)[others]
                best = others[s == s.min()]
                j = int(self.rng.choice(best))
            free[i] = free[j] = False
            out.append((i, j))
        return out

    def update(self, i: int, j: int, distance: float, ctx: int = 0) -> None:
        """Both sides remember the session (in context ctx, e.g. the time of day)."""
        for a, b in ((i, j), (j, i)):
            self.total[ctx, a, b] += distance
            self.count[ctx, a, b] += 1
