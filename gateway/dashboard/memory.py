"""Keeping a long-running dashboard's resident memory down on glibc (a Pi's Raspberry Pi OS, Debian).

glibc gives each thread that allocates its own malloc arena (up to eight per core), and keeps freed
memory of every arena resident until it is trimmed. The dashboard's chain work runs in worker
threads (JSON-RPC answers, ABI decoding, the snapshot's rebuild), so after a catch-up the freed
pages of several arenas stay counted in VmRSS. `tune` caps the arenas at two (`mallopt`, before any
worker thread starts); `trim` hands freed pages back to the kernel (`malloc_trim`). Both are
glibc's public API; on another C library (musl, macOS) they do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8  # glibc's malloc.h


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def tune(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process; True when applied."""
    return _LIBC is not None and bool(_LIBC.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Return freed heap pages to the kernel; True when some were released."""
    return _LIBC is not None and bool(_LIBC.malloc_trim(0))
