"""`gridpact bench dashboard`: first render, push latency, resident memory, concurrent live viewers.

A real gateway process (`gridpact gateway run`) with `[dashboard]` enabled reads its meter through a
real Mosquitto on loopback. The bench signs in over HTTP, times the household page, holds N SSE
viewers open at once, publishes signed readings to the broker and times each viewer's event, reads
the gateway process's VmRSS (ingest and dashboard together: the dashboard runs in the gateway's
process) and stops it with SIGTERM, timing the stop. Everything it starts is stopped by its own id.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benches.sse import rss_mb as _rss_mb
from benches.sse import viewer as _viewer
from gateway.dashboard.auth import AccountStore
from gridpact.core.wire import encode_reading
from hil.services import MosquittoBroker, free_port

KEY = bytes(range(32))
PASSWORD = "bench-password-123"


def _config(directory: Path, broker_port: int, port: int) -> Path:
    (directory / "meter.key").write_text(KEY.hex() + "\n")
    path = directory / "gateway.toml"
    path.write_text(
        f"""
[gateway]
id = "house-07"
state_dir = "state"

[meter]
device_id = "node-01"
hmac_key_file = "meter.key"
topic_prefix = "bench"

[meter_broker]
host = "127.0.0.1"
port = {broker_port}

[metrics]
enabled = false

[dashboard]
enabled = true
listen = "127.0.0.1:{port}"
secure_cookies = false
max_viewers = 200
"""
    )
    return path


async def _measure(base: str, viewers: int, readings: int, publish: object) -> dict[str, float]:
    limits = httpx.Limits(max_connections=viewers + 4)
    timeout = httpx.Timeout(10.0, read=30.0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
        r = await client.post("/login", data={"name": "bench", "password": PASSWORD})
        if r.status_code != 303 or "gp_session" not in client.cookies:
            raise RuntimeError(f"sign-in failed: HTTP {r.status_code}")
        t0 = time.perf_counter()
        first = await client.get("/household/house-07")
        first_ms = (time.perf_counter() - t0) * 1000
        first.raise_for_status()
        warm = []
        for _ in range(20):
            t0 = time.perf_counter()
            (await client.get("/household/house-07")).raise_for_status()
            warm.append((time.perf_counter() - t0) * 1000)
        opened = asyncio.Event()
        count = [0]
        per_viewer: list[dict[int, float]] = [{} for _ in range(viewers)]
        tasks = [
            asyncio.create_task(
                _viewer(client, "/household/house-07/events", per_viewer[i], opened, count, viewers)
            )
            for i in range(viewers)
        ]
        await asyncio.wait_for(opened.wait(), 30)
        await asyncio.sleep(0.5)  # each viewer has had its first (initial) frame
        latencies: list[float] = []
        for n in range(readings):
            marks = [len(v) for v in per_viewer]
            sent = time.perf_counter()
            publish(n)  # type: ignore[operator]
            deadline = sent + 5
            while time.perf_counter() < deadline and any(
                len(v) == m for v, m in zip(per_viewer, marks, strict=True)
            ):
                await asyncio.sleep(0.005)
            for v, m in zip(per_viewer, marks, strict=True):
                if len(v) > m:
                    latencies.append((max(v.values()) - sent) * 1000)
            await asyncio.sleep(0.3)
        held = sum(1 for t in tasks if not t.done())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "first_ms": first_ms,
        "warm_p50_ms": statistics.median(warm),
        "push_p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "push_max_ms": max(latencies) if latencies else float("nan"),
        "delivered": len(latencies),
        "held": held,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gridpact bench dashboard", description=__doc__)
    p.add_argument("--viewers", type=int, default=50, help="concurrent SSE viewers (1..200)")
    p.add_argument(
        "--readings", type=int, default=10, help="readings (chain events) published while they watch"
    )
    p.add_argument("--view", choices=("household", "community", "both", "fold"), default="both",
                   help="fold: the community view's rebuild on a synthetic index of --agreements")  # fmt: skip
    p.add_argument(
        "--agreements", type=int, default=100, help="agreements on chain before the community view opens"
    )
    p.add_argument("--index", choices=("sqlite", "postgresql"), default="sqlite",
                   help="the community index's database (postgresql: a throwaway local cluster)")  # fmt: skip
    args = p.parse_args(argv)
    if not 1 <= args.viewers <= 200 or not 1 <= args.readings <= 1000 or not 0 <= args.agreements <= 100_000:
        print("--viewers must be 1..200, --readings 1..1000 and --agreements 0..100000", file=sys.stderr)
        return 2
    code = 0
    if args.view == "fold":
        from benches.dashboard_community import fold_bench

        return fold_bench(args.agreements, args.index)
    if args.view in ("household", "both"):
        code = _household(args)
    if args.view in ("community", "both") and code == 0:
        from benches.dashboard_community import community_bench

        code = community_bench(args.viewers, args.readings, args.agreements, args.index)
    return code


def _household(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="gridpact-bench-dash-") as tmp:
        directory = Path(tmp)
        broker = MosquittoBroker()
        broker.start()
        proc: subprocess.Popen[bytes] | None = None
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-dash-{os.getpid()}")
        try:
            port = free_port()
            config = _config(directory, broker.port, port)
            accounts = AccountStore(directory / "state" / "dashboard.sqlite3")
            accounts.add("bench", "household", "house-07", PASSWORD)
            accounts.close()
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
            t_start = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "gridpact.cli", "gateway", "run", "--config", str(config)], env=env
            )
            base = f"http://127.0.0.1:{port}"
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.perf_counter() - t_start > 30:
                    print("the gateway did not start", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            start_s = time.perf_counter() - t_start
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            now = int(time.time())

            def publish(n: int) -> None:
                payload = encode_reading(KEY, "node-01", n + 1, now + n, 0, "sdm120",
                                         {"p1_W": 100.0 + n, "e_imp_kWh": 1.0 + n / 1000, "e_exp_kWh": 0.5})  # fmt: skip
                client.publish("bench/meter/node-01/reading", payload, qos=1).wait_for_publish(5)

            rss_idle = _rss_mb(proc.pid)
            figures = asyncio.run(_measure(base, args.viewers, args.readings, publish))
            rss = _rss_mb(proc.pid)
            t_stop = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            stop_s = time.perf_counter() - t_stop
        finally:
            client.loop_stop()
            client.disconnect()
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
            broker.close()
    print("gridpact bench dashboard (gateway process with [dashboard] enabled, loopback, real Mosquitto)")
    print(f"  start to first /healthz       {start_s:8.2f} s")
    print(
        f"  first render (household page) {figures['first_ms']:8.1f} ms   warm p50 {figures['warm_p50_ms']:.1f} ms"
    )
    print(
        f"  push latency publish->SSE     p50 {figures['push_p50_ms']:6.1f} ms   max {figures['push_max_ms']:.1f} ms"
        f"   ({figures['delivered']:.0f} events over {args.viewers} viewers x {args.readings} readings)"
    )
    print(f"  concurrent SSE viewers held   {figures['held']:8.0f} / {args.viewers}")
    print(f"  resident memory (VmRSS)       {rss_idle:8.1f} MB idle, {rss:.1f} MB after the viewers")
    print(f"  SIGTERM to exit               {stop_s:8.2f} s")
    return 0
