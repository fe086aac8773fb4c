"""What the dashboard benches share: an SSE viewer that notes when each event arrives, and VmRSS."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx


def rss_mb(pid: int) -> float:
    """VmRSS of a process in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def viewer(client: httpx.AsyncClient, url: str, seqs: dict[int, float], opened: asyncio.Event,
                 count: list[int], want: int) -> None:  # fmt: skip
    """One SSE viewer: notes when each event id first arrives; `opened` is set when `want` viewers are in."""
    async with client.stream("GET", url) as resp:
        resp.raise_for_status()
        count[0] += 1
        if count[0] == want:
            opened.set()
        async for line in resp.aiter_lines():
            if line.startswith("id: "):
                seq = int(line[4:])
                seqs.setdefault(seq, time.perf_counter())
