"""`--clock virtual`: the whole community on one discrete-event loop, deterministic under its seed.

The loop's own rules (jumps only when idle, executor work inline, bytes between two sockets
block a jump) with small scenarios, then the full stack twice with the same seed: the real
firmware, amqtt, the gateways' own ingest and trading, anvil; summary.json must be the same
byte for byte apart from wall times.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

from hil.community.simloop import SimLoop

T0 = 1_811_808_000.0


def test_sim_virtual_loop_jumps_to_timers_without_waiting() -> None:
    loop = SimLoop(T0)
    try:
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, s: float) -> None:
            await asyncio.sleep(s)
            woke.append((name, loop.time()))

        async def main() -> None:
            await asyncio.gather(sleeper("a", 3600), sleeper("b", 5), sleeper("c", 86400))

        started = time.monotonic()
        loop.run_until_complete(main())
        assert time.monotonic() - started < 2  # a simulated day, no wall-time waits
        assert woke == [("b", 5), ("a", 3600), ("c", 86400)]
        assert loop.unix() == T0 + 86400
    finally:
        loop.close()


def test_sim_virtual_loop_runs_executor_work_inline_and_in_order() -> None:
    loop = SimLoop(T0)
    try:
        order: list[int] = []

        async def main() -> list[int]:
            return list(
                await asyncio.gather(*(asyncio.to_thread(lambda i=i: order.append(i) or i) for i in range(5)))
            )

        assert loop.run_until_complete(main()) == [0, 1, 2, 3, 4]
        assert order == [0, 1, 2, 3, 4] and loop.time() == 0.0
    finally:
        loop.close()


def test_sim_virtual_loop_delivers_a_tcp_reply_before_a_timer_fires() -> None:
    """An echo over loopback TCP answers 'now' in simulated time, not after the 10 s timeout."""
    loop = SimLoop(T0)
    try:

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readexactly(4))
            await writer.drain()

        async def main() -> tuple[bytes, float]:
            server = await asyncio.start_server(echo, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with socket.socket(fileno=writer.get_extra_info("socket").fileno()) as s:
                nodelay = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                s.detach()
            writer.write(b"ping")
            got = await asyncio.wait_for(reader.readexactly(4), 10)
            writer.close()
            server.close()
            await server.wait_closed()
            assert nodelay  # the selector turned Nagle off
            return got, loop.time()

        got, at = loop.run_until_complete(main())
        assert got == b"ping" and at < 1.0
    finally:
        loop.close()


def test_sim_virtual_same_seed_same_summary() -> None:
    """Three households, three sunny hours, twice: the same trades, settlements and numbers."""
    from hil.community.agentrun import run_agents
    from hil.community.engine import EngineConfig
    from hil.community.fullstack import FullStackOptions
    from hil.community.summary import without_wall_times

    runs = []
    for _ in range(2):
        cfg = EngineConfig(households=3, hours=3, seed=5)
        result, summary = run_agents(cfg, FullStackOptions(nodes="firmware", clock="virtual"), start_hour=10)
        assert [c for c in summary["checks"] if c.startswith("PROBLEM")] == [], summary["checks"]
        runs.append(json.dumps(without_wall_times(json.loads(json.dumps(summary))), indent=1))
        assert result.settled, "no trade settled: the comparison would prove little"
        # the meter nodes' retained discovery and health live on the households' meter brokers, apart
        # from the community's: none reaches a gateway's peer inbox or the keeper (one shared amqtt sent
        # each connecting client every retained message matching anyone's subscription)
        events = summary["gateway_events"]
        assert events.get("malformed", 0) == 0 and events.get("keeper_rejected_topic", 0) == 0, events
    assert runs[0] == runs[1]
