"""Counter-based random numbers: a value depends only on (seed, stream, index), never on call order."""

from __future__ import annotations

from functools import cache

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a good 64-bit mix, cheap on arrays (uint64 arrays wrap silently)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


@cache
def _key(seed: int, stream: int) -> np.uint64:
    return _splitmix(np.array([(seed * 1_000_003 + stream) % 2**64], dtype=np.uint64))[0]


def uniform(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1), one per index."""
    x = _splitmix(np.asarray(index).astype(np.uint64) ^ _key(seed, stream))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def smooth_noise(seed: int, stream: int, x: np.ndarray) -> np.ndarray:
    """Value noise in [0, 1): random knots at integer x, smoothstep in between."""
    k = np.floor(x)
    f = x - k
    w = f * f * (3.0 - 2.0 * f)
    ki = k.astype(np.int64)
    knots = uniform(seed, stream, np.stack([ki, ki + 1]))  # one call for both ends
    return (1.0 - w) * knots[0] + w * knots[1]
