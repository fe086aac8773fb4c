"""The bench's CPU split: threads booked to layers by name, CPU ticks read from /proc stat lines."""

from __future__ import annotations

import threading
import time

from hil.community.layers import LayerCpu, cpu_ticks, layer_of


def test_sim_layers_thread_names_golden() -> None:
    assert layer_of("vboard-node-h00") == "firmware"
    assert layer_of("vboard-wdt-node-h00") == "firmware"
    assert layer_of("amqtt-broker") == "broker"
    assert layer_of("paho-mqtt-client-gw-h03") == "ingest"
    assert layer_of("store-writer_0") == "ingest"
    assert layer_of("gridpact-agents") == "trading"
    assert layer_of("gridpact-gateways") == "trading"  # hil.community.gateways.GatewayThread's default name
    assert layer_of("gridpact-chain_0") == "chain"
    assert layer_of("MainThread") == "other"


def test_sim_layers_stat_line_with_spaces_and_parens_in_the_name() -> None:
    line = "4242 (odd) name) S 1 2 3 4 5 6 7 8 9 10 123 45 0 0 20 0"
    assert cpu_ticks(line) == 168


def test_sim_layers_a_busy_named_thread_is_booked_to_its_layer() -> None:
    spun = threading.Event()
    release = threading.Event()

    def spin() -> None:
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
        spun.set()
        release.wait(10)  # alive until sampled: a loaded machine may not run the sampler while it spins

    with LayerCpu(every_s=0.05) as cpu:
        t = threading.Thread(target=spin, name="gridpact-agents")
        t.start()
        assert spun.wait(30)
        cpu.sample()
        release.set()
        t.join()
    secs = cpu.seconds()
    assert secs["trading"] >= 0.1, secs
    assert secs["firmware"] == 0.0, secs


def test_sim_loop_task_names_golden() -> None:
    """The virtual loop books a task by its name: the gateway's own children (`trading.settle`) are trading."""
    from hil.community.simloop import layer_of_task

    assert layer_of_task("board-node-h00") == "firmware"
    assert layer_of_task("ingest-h03") == "ingest"
    assert layer_of_task("trading-h03") == "trading"
    assert layer_of_task("trading.settle") == "trading"
    assert layer_of_task("trading.keeper.receive") == "trading"
    assert layer_of_task("chain-h01") == "chain"
    assert layer_of_task("Task-12") == "broker"  # amqtt's unnamed tasks


def test_sim_loop_books_a_socket_callback_to_the_task_that_registered_it() -> None:
    """aiomqtt registers paho's reader with `call_soon_threadsafe(loop.add_reader, ...)` from the
    connecting task: its reads count for that gateway's layer, not for "other"."""
    import asyncio
    import socket

    from hil.community.simloop import SimLoop

    loop = SimLoop(0.0, metering=True)
    a, b = socket.socketpair()
    got: list[bytes] = []
    done = loop.create_future()

    def readable() -> None:
        got.append(a.recv(16))
        sum(i * i for i in range(200_000))  # some CPU to book
        loop.remove_reader(a.fileno())
        done.set_result(None)

    async def connect() -> None:
        loop.call_soon_threadsafe(loop.add_reader, a.fileno(), readable)
        await asyncio.sleep(0)
        b.send(b"hello")
        await done

    try:
        loop.run_until_complete(loop.create_task(connect(), name="trading-h01"))
    finally:
        a.close()
        b.close()
        loop.close()
    assert got == [b"hello"]
    assert loop.cpu.get("trading", 0.0) > 0.005
    assert "broker" not in loop.cpu or loop.cpu["broker"] < loop.cpu["trading"]
