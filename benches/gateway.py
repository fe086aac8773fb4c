"""`gridpact bench gateway`: ingest rate next to a bare paho subscriber, and the service's memory.

Both subscribers are measured the same way: a persistent MQTT session is created, N signed
readings are queued on the broker while the subscriber is away, then the subscriber connects and
drains them. The rate is messages per second from the first to the last one handled, so publisher
speed and Python start-up do not count. The gateway runs as the real service (a subprocess of
`gridpact gateway run`), verifying every tag and sequence number and committing to SQLite; its
progress and the figures come from its metrics endpoint and /proc.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ops.status import scrape
from gateway.storage import ReadingStore
from gridpact.core.wire import encode_reading, verify
from hil.services import EmbeddedBroker, MosquittoBroker, free_port

KEY = bytes(range(32))
TOPIC = "gridpact/meter/node-01/reading"
T0 = 1_767_225_600


def readings(n: int, seq0: int = 1, ts0: int = T0, every: int = 1) -> list[bytes]:
    """n signed sdm120 readings, one every `every` seconds, the import counter growing 3.6 kW."""
    values = {"u1_V": 230.1, "i1_A": 5.0, "p1_W": 1127.5, "pf1": 0.98, "f_Hz": 50.0}
    return [
        encode_reading(
            KEY,
            "node-01",
            seq0 + i,
            ts0 + i * every,
            0,
            "sdm120",
            {**values, "e_imp_kWh": (i * every) / 1000, "e_exp_kWh": 0.0},
        )
        for i in range(n)
    ]


def prefill(db: Path, days: int, every: int = 10) -> int:
    """A store holding `days` of history up to now (as the forecaster reads it); the last seq."""
    store = ReadingStore(db, "node-01")
    now = int(time.time())
    n = days * 86400 // every
    for start in range(0, n, 10_000):
        chunk = readings(min(10_000, n - start), 1 + start, now - days * 86400 + start * every, every)
        for payload in chunk:
            store.add(verify(KEY, payload))
        store.commit()
    store.close()
    return n


def queue_messages(port: int, payloads: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(TOPIC, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.disconnect()
    client.loop_stop()


def paho_rate(port: int, payloads: list[bytes], client_id: str) -> float:
    """Messages/s of a bare paho subscriber (QoS 1, persistent session) draining the queue."""
    n = len(payloads)
    times: list[float] = []
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        times.append(time.perf_counter())
        if len(times) >= n:
            done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    sub.subscribe(TOPIC, qos=1)  # the subscription is what the persistent session keeps
    time.sleep(0.5)
    sub.disconnect()
    sub.loop_stop()
    queue_messages(port, payloads)
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    done.wait(120)
    sub.disconnect()
    sub.loop_stop()
    drop_session(port, client_id)
    if len(times) < n:
        raise RuntimeError(f"paho subscriber got {len(times)} of {n}")
    return (n - 1) / (times[-1] - times[0])


def aiomqtt_rate(port: int, payloads: list[bytes], client_id: str) -> float:
    """Messages/s of a bare aiomqtt subscriber (its async iterator, no processing): context for the
    gateway's figure, which is built on aiomqtt."""
    import asyncio

    import aiomqtt

    n = len(payloads)

    async def run() -> float:
        async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, clean_session=False) as client:
            await client.subscribe(TOPIC, 1)
        await asyncio.to_thread(queue_messages, port, payloads)
        times: list[float] = []
        async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, clean_session=False) as client:
            async for _ in client.messages:
                times.append(time.perf_counter())
                if len(times) >= n:
                    break
        return (n - 1) / (times[-1] - times[0])

    rate = asyncio.run(asyncio.wait_for(run(), 120))
    drop_session(port, client_id)
    return rate


def drop_session(port: int, client_id: str) -> None:
    """Discard a persistent session, so it does not collect the next round's messages."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


def _write_config(directory: Path, port: int, metrics_port: int) -> Path:
    (directory / "meter.key").write_text(KEY.hex())
    path = directory / "gateway.toml"
    path.write_text(
        f'[gateway]\nid = "{directory.name}"\nstate_dir = "state"\nlog_level = "warning"\n'
        f'[meter]\ndevice_id = "node-01"\nhmac_key_file = "meter.key"\n'
        f'[meter_broker]\nport = {port}\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
    )
    return path


def _proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _start_gateway(
    config: Path, metrics_port: int, until: Callable[[dict[str, float]], bool]
) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridpact.cli", "gateway", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not until(scrape("127.0.0.1", metrics_port)):
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited: {proc.stderr.read().decode()[-800:] if proc.stderr else ''}")
        time.sleep(0.02)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def gateway_rate(port: int, payloads: list[bytes], workdir: Path) -> tuple[float, int, int]:
    """(readings/s verified and stored, RSS KiB after the run, peak RSS KiB) of the real service."""
    n = len(payloads)
    metrics_port = free_port()
    config = _write_config(workdir, port, metrics_port)
    accepted = 'gridpact_ingest_accepted_total{kind="reading"}'
    first = _start_gateway(config, metrics_port, lambda s: s.get("gridpact_meter_broker_connected") == 1)
    _stop(first)
    queue_messages(port, payloads)
    proc = _start_gateway(config, metrics_port, lambda s: s.get(accepted, 0) > 0)
    try:
        t_first = time.perf_counter()
        got_first = scrape("127.0.0.1", metrics_port).get(accepted, 0.0)
        deadline = time.monotonic() + 30
        got = got_first
        while got < n and time.monotonic() < deadline:
            time.sleep(0.02)
            got = scrape("127.0.0.1", metrics_port).get(accepted, 0.0)
        t_last = time.perf_counter()
        if got < n:
            bad = {
                k: v for k, v in scrape("127.0.0.1", metrics_port).items() if "rejected" in k or "broker" in k
            }
            raise RuntimeError(f"gateway accepted {got:.0f} of {n}; {bad}")
        forecast_deadline = time.monotonic() + 60
        while "gridpact_forecast_next_step_watts" not in scrape("127.0.0.1", metrics_port) and (
            time.monotonic() < forecast_deadline
        ):
            time.sleep(0.1)  # memory is read once the first forecast (the month-long read) is done
        rss, peak = _proc_kib(proc.pid, "VmRSS"), _proc_kib(proc.pid, "VmHWM")
    finally:
        _stop(proc)
        drop_session(port, f"gridpact-gw-{workdir.name}")
    return (n - got_first) / (t_last - t_first), rss, peak


def gateway_rate_in_process(port: int, payloads: list[bytes], workdir: Path) -> float:
    """Readings/s of the gateway's own `run_gateway` in this process, like the two baselines: the
    same code as the service, without a second process and HTTP polling competing for the CPU."""
    import asyncio

    from gateway.config import load_config
    from gateway.service import Runtime, run_gateway

    n = len(payloads)
    cfg = load_config(_write_config(workdir, port, free_port()))

    async def start() -> tuple[asyncio.Task[None], Runtime]:
        started: asyncio.Future[Runtime] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(run_gateway(cfg, started=started))
        return task, await started

    async def stop(task: asyncio.Task[None]) -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def run() -> float:
        task, rt = await start()
        connected = rt.metrics.gauge("meter_broker_connected", "")
        while connected.get() != 1:
            await asyncio.sleep(0.01)
        await stop(task)
        await asyncio.to_thread(queue_messages, port, payloads)
        times: list[float] = []
        done = asyncio.Event()
        task, rt = await start()
        handle = rt.handler.handle
        accepted = rt.metrics.counter("ingest_accepted_total", "", ("kind",)).labels(kind="reading")

        def timed(topic: str, payload: bytes) -> str:
            """Stamp each handled message, as the paho baseline's on_message does."""
            outcome = handle(topic, payload)
            times.append(time.perf_counter())
            if accepted.get() >= n:
                done.set()
            return outcome

        rt.handler.handle = timed  # type: ignore[method-assign]  # per instance: Delivery looks it up per message
        with contextlib.suppress(TimeoutError):  # counted below: a shortfall is reported
            await asyncio.wait_for(done.wait(), 120)
        got = accepted.get()
        await stop(task)
        if got < n:
            raise RuntimeError(f"gateway accepted {got:.0f} of {n}")
        return (len(times) - 1) / (times[-1] - times[0])

    try:
        return asyncio.run(run())
    finally:
        drop_session(port, f"gridpact-gw-{workdir.name}")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} (1 / 5 min) on {os.cpu_count()} CPUs"


def _rounds(port: int, payloads: list[bytes], rounds: int, warmup: int, tmp: Path) -> dict[str, list[float]]:
    """Each subscriber drains the same queue once per round; the order alternates from round to
    round so drift in the machine's load does not favour one; warm-up rounds are not kept."""
    rates: dict[str, list[float]] = {"paho": [], "aiomqtt": [], "gateway": []}
    for r in range(warmup + rounds):
        order = ["paho", "aiomqtt", "gateway"]
        for name in order if r % 2 == 0 else order[::-1]:
            if name == "paho":
                rate = paho_rate(port, payloads, f"bench-paho-{r}")
            elif name == "aiomqtt":
                rate = aiomqtt_rate(port, payloads, f"bench-aiomqtt-{r}")
            else:
                workdir = tmp / f"round-{r}"
                workdir.mkdir()
                rate = gateway_rate_in_process(port, payloads, workdir)
            if r >= warmup:
                rates[name].append(rate)
    return rates


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gridpact bench gateway", description="ingest rate next to a bare paho subscriber, and memory"
    )
    parser.add_argument("--readings", type=int, default=20_000, help="readings per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are reported")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and not counted")
    parser.add_argument("--history-days", type=int, default=28, help="store size for the memory run")
    parser.add_argument("--broker", choices=("mosquitto", "amqtt"), default="mosquitto")
    args = parser.parse_args(argv)
    payloads = readings(args.readings)
    broker = MosquittoBroker() if args.broker == "mosquitto" else EmbeddedBroker()
    load_before = _load()
    broker.start()
    try:
        with tempfile.TemporaryDirectory(prefix="gridpact-bench-") as tmp:
            rates = _rounds(broker.port, payloads, args.rounds, args.warmup, Path(tmp))
            load_after = _load()
            workdir = Path(tmp) / "memory"
            (workdir / "state").mkdir(parents=True)
            last = prefill(workdir / "state" / "readings.sqlite3", args.history_days)
            fresh = readings(args.readings, last + 1, int(time.time()))
            loaded_rate, rss, peak = gateway_rate(broker.port, fresh, workdir)
    finally:
        broker.close()
    med = {name: statistics.median(xs) for name, xs in rates.items()}
    paired = [g / p for g, p in zip(rates["gateway"], rates["paho"], strict=True)]
    print(
        f"gateway bench: {args.readings} signed readings queued on {args.broker}, drained by each subscriber;"
        f" {args.warmup} warm-up + {args.rounds} measured rounds, alternating order"
    )
    print(f"machine: {load_before} before, {load_after} after the rounds")
    for name, xs in rates.items():
        print(f"rounds {name:8s} (msg/s): {', '.join(f'{x:.0f}' for x in xs)}")
    print(f"bare paho subscriber      : {med['paho']:10.0f} msg/s (median; its own network thread)")
    print(
        f"bare aiomqtt subscriber   : {med['aiomqtt']:10.0f} msg/s = {100 * med['aiomqtt'] / med['paho']:5.1f} % of paho"
        " (its message iterator, no processing)"
    )
    print(
        f"gateway (verify + SQLite) : {med['gateway']:10.0f} readings/s = {100 * med['gateway'] / med['paho']:5.1f} %"
        f" of paho; per round, gateway/paho median {100 * statistics.median(paired):.1f} %"
        f" (min {100 * min(paired):.1f} %)"
    )
    print(
        f"gateway service process   : {loaded_rate:10.0f} readings/s (its own process, {args.history_days}-day store,"
        " progress polled over HTTP)"
    )
    print(
        f"gateway resident memory   : {rss / 1024:10.1f} MiB after ingest with a {args.history_days}-day store"
        f" and forecast, peak {peak / 1024:.1f} MiB (target < 120 MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
