"""One household for the trading tests: a real ReadingStore fed with signed readings, and `run_trading`.

Run in-process (`run_node`) or as its own process (`python trade_node.py SPEC.json`) so a test can
SIGKILL it. The meter is a meter_sim constant profile; its counters are a pure function of wall
time since `t0` (energy = power x time), so they keep growing across kills and restarts exactly
like a real meter's. Readings are HMAC-signed with the reading-v1 encoder and verified before
they are stored, as ingest does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.ops.metrics import Metrics
from gateway.storage import ReadingStore
from gateway.trading.config import parse_trading_config
from gateway.trading.service import TradingDeps, run_trading
from gridpact.core.clock import SystemClock
from gridpact.core.wire import encode_reading, verify
from meter_sim.profiles import parse_profile

HMAC_KEY = b"k" * 32


def node_spec(
    name: str,
    key_file: Path,
    pass_file: Path,
    rpc: str,
    market: str,
    broker_port: int,
    profile: str,
    fixed_net_wh: int,
    t0: float,
    **agent: Any,
) -> dict[str, Any]:
    """The JSON a node runs from: the trading TOML tables as a dict, plus the meter."""
    agent_table = {
        "window_s": 4, "lead_s": 4, "round_timeout_s": 0.6, "max_rounds": 12, "min_trade_wh": 50,
        "report_delay_s": 1.0, "confirm_wait_s": 1.5, "fixed_net_wh": fixed_net_wh,
        "seller": {"price": {"ip": 200, "rp": 100, "dl": 10, "cr": 1.0}},
        "buyer": {"price": {"ip": 100, "rp": 200, "dl": 10, "cr": 1.0}},
    } | agent  # fmt: skip
    return {
        "name": name,
        "meter": {"profile": profile, "t0": t0},
        "tables": {
            "community": {"id": "test-street", "host": "127.0.0.1", "port": broker_port, "roster_refresh_s": 2},
            "agent": agent_table,
            "chain": {"rpc_url": rpc, "market": market, "keystore": str(key_file), "passphrase_file": str(pass_file),
                      "anchor": False, "receipt_timeout_s": 20, "retry_max_s": 1, "rpc_timeout_s": 3},
        },
    }  # fmt: skip


def counters_at(profile: str, t0: float, t: float) -> tuple[float, float]:
    """(import kWh, export kWh) of a constant meter_sim profile after running from t0 to t."""
    load_w, pv_w = parse_profile(profile).power_at(t0)
    net = load_w - pv_w
    hours = max(0.0, t - t0) / 3600.0
    return max(net, 0.0) * hours / 1000.0, max(-net, 0.0) * hours / 1000.0


Counters = Callable[[float], tuple[float, float]]  # Unix time -> (import kWh, export kWh)


async def meter_feed(store: ReadingStore, profile: str, t0: float, counters: Counters | None = None) -> None:
    """One signed reading per second, verified then stored (the ingest path without the broker); the
    counters are the constant profile's, or `counters`' (a meter_sim meter's registers)."""
    while True:
        now = time.time()
        ts = int(now)
        imp, exp = counters_at(profile, t0, ts) if counters is None else counters(ts)
        payload = encode_reading(HMAC_KEY, store.device_id, ts - int(t0) + 1, ts, 0, "sdm120",
                                 {"p_W": 0.0, "e_imp_kWh": round(imp, 4), "e_exp_kWh": round(exp, 4)})  # fmt: skip
        store.add(verify(HMAC_KEY, payload))
        store.commit()
        await asyncio.sleep(ts + 1 - time.time() + 0.01)


async def run_node(
    spec: dict[str, Any], state_dir: Path, metrics: Metrics | None = None, web3: Any = None,
    counters: Counters | None = None,
) -> None:  # fmt: skip
    """Run one household until cancelled."""
    state_dir.mkdir(parents=True, exist_ok=True)
    trading = parse_trading_config(spec["tables"], state_dir)
    store = ReadingStore(state_dir / "readings.db", "meter-" + spec["name"])
    deps = TradingDeps(store, None, metrics or Metrics(), spec["name"], state_dir, SystemClock(), web3=web3)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(meter_feed(store, spec["meter"]["profile"], spec["meter"]["t0"], counters))
            tg.create_task(run_trading(trading, deps))
    finally:
        store.close()


def serve_forks() -> None:
    """A zygote: imports done once, then one forked household per `start SPEC LOG` line on stdin.

    The crash test kills households with SIGKILL twenty times; forking from a process that has
    already imported web3 makes each restart take milliseconds instead of seconds, while each
    household is still a real process of its own (own SQLite handles, sockets, threads).
    """
    for line in sys.stdin:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        _, spec_file, log_file = line.split()
        pid = os.fork()
        if pid == 0:
            fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = 0
            try:
                main(Path(spec_file))
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        print(pid, flush=True)


def main(spec_path: Path) -> None:
    node = json.loads(spec_path.read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout, force=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_node(node, spec_path.parent / node["name"]))


if __name__ == "__main__":
    if sys.argv[1] == "--zygote":
        serve_forks()
    else:
        main(Path(sys.argv[1]))
