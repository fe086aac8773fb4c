"""`gridpact bench meter-sim`: latency and throughput of one meter-sim process serving many meters.

The server is a separate `gridpact meter-sim serve --config` process (one TCP port per meter,
as in a community where each gateway polls its own meter); this process is the load generator:
one connection per meter, requests spread evenly at `--rate` requests/s in total.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SERVER = "import sys; from meter_sim.cli import main; sys.exit(main(sys.argv[1:]))"


def farm_config(n: int, model: str) -> dict:
    """`n` meters, each a household with PV (every third with a battery), each on its own port."""
    endpoints = []
    for i in range(n):
        battery = ",battery_kwh=7" if i % 3 == 0 else ""
        profile = f"household:seed={i},pv_kwp={3 + i % 5}{battery}"
        meter = {"model": model, "unit_id": 1, "profile": profile, "name": f"house-{i}"}
        endpoints.append({"tcp": "127.0.0.1:0", "meters": [meter]})
    return {"endpoints": endpoints}


async def start_server(config: Path, n: int) -> tuple[asyncio.subprocess.Process, list[int]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, "serve", "--config", str(config), stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    ports = []
    while len(ports) < n:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line:
            raise RuntimeError("meter-sim exited before it was ready")
        if line.startswith("meter-sim ready tcp"):
            ports.append(int(line.split()[3].rpartition(":")[2]))
    return proc, ports


async def poll(
    port: int, start_at: float, period: float, until: float, out: list[float], errors: list[str]
) -> None:
    """One gateway: read 80 input registers from its meter every `period` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    tid = 0
    t_next = start_at
    while t_next < until:
        await asyncio.sleep(max(0.0, t_next - loop.time()))
        tid = (tid + 1) & 0xFFFF
        t = time.perf_counter()
        writer.write(struct.pack(">HHHBBHH", tid, 0, 6, 1, 4, 0, 80))
        header = await reader.readexactly(7)
        body = await reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1)
        out.append(time.perf_counter() - t)
        if body[0] != 4 or len(body) != 162:
            errors.append(body.hex())
        t_next += period
    writer.close()


async def run(n: int, rate: float, seconds: float, model: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "farm.json"
        config.write_text(json.dumps(farm_config(n, model)))
        t_start = time.perf_counter()
        proc, ports = await start_server(config, n)
        ready_s = time.perf_counter() - t_start
        try:
            latencies: list[float] = []
            errors: list[str] = []
            loop = asyncio.get_running_loop()
            period = n / rate
            t0 = loop.time() + 0.5
            until = t0 + seconds
            await asyncio.gather(
                *(poll(p, t0 + i * period / n, period, until, latencies, errors) for i, p in enumerate(ports))
            )
            elapsed = loop.time() - t0
        finally:
            proc.terminate()
            await proc.wait()
    lat = np.array(latencies) * 1e3
    print(f"meter-sim bench: {n} meters ({model}) in one process, TCP loopback, 80-register reads")
    print(f"  startup to ready: {ready_s:.2f} s")
    print(
        f"  requests: {len(lat)} in {elapsed:.1f} s = {len(lat) / elapsed:.1f} req/s (target rate {rate:g})"
    )
    print(
        f"  latency ms: p50 {np.percentile(lat, 50):.2f}  p99 {np.percentile(lat, 99):.2f}  max {lat.max():.2f}"
    )
    print(f"  errors: {len(errors)}; server exit status {proc.returncode}")
    print(f"  target p99 < 10 ms: {'met' if np.percentile(lat, 99) < 10.0 else 'NOT met'}")
    return 0 if not errors else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gridpact bench meter-sim")
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s in total")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--model", default="sdm630", choices=["sdm120", "sdm630"])
    args = parser.parse_args(argv)
    if args.meters < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("meters, rate and seconds must be positive")
    return asyncio.run(run(args.meters, args.rate, args.seconds, args.model))
