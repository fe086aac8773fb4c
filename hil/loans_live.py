"""`gridpact study cooperative-live`: Case 1 of Chakraborty, Baarslag and Kaisers with two live gateways.

The two households of Table 3 run as real gateways (`run_trading` with `[loans]`, strategy s2) on a
real Mosquitto and a real anvil with the Market: they bargain over the loan protocol, sign, lock
collateral and settle from their meters. Time is compressed: one live period of `--period-s`
seconds stands for 15 minutes of the households' data (meter_sim's profiles, from `--start-hour`
of the paper's spring day), and the meters (signed readings, verified, stored) follow that data.
Each gateway forecasts as the engine does (the real net demand plus one error draw).

xi (Eq. 16) of s0 (no battery), s1 (battery alone) and s2 (battery and the loans the gateways
agreed) are computed as in the paper, on the same data, over the live periods plus the window after
them (so every loan's return is inside). Over several seeds it prints the effect size s2 - s1 per
agent (mean and standard deviation) and the engine's own run of the same case for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account
from web3 import Web3

from gateway.negotiation.cooperative.cases import START, AgentSpec, case1, net_demand_kwh
from gateway.negotiation.cooperative.scenarios import ScenarioModel, forecast, period_rng
from gateway.negotiation.cooperative.simulation import Settings
from gateway.negotiation.cooperative.simulation import run as engine_run
from gateway.ops.metrics import Metrics
from gateway.storage import ReadingStore
from gateway.trading.config import parse_trading_config
from gateway.trading.loans import FLOW_STATES, LoanBook, performance
from gateway.trading.service import TradingDeps, run_trading
from gridpact.core.clock import SystemClock
from gridpact.core.wire import encode_reading, verify
from hil.services import DEV_PRIVATE_KEYS, AnvilNode, MosquittoBroker

STEP_S = 900.0
HMAC_KEY = b"k" * 32
KEYS = (DEV_PRIVATE_KEYS[1], DEV_PRIVATE_KEYS[2])


class CaseClock:
    """Live time <-> the households' data: live period k (from t0) is the data's 15 minutes k."""

    def __init__(self, t0: int, period_s: int, start: float) -> None:
        self.t0, self.period_s, self.start = t0, period_s, start

    def index(self, t: float) -> int:
        return int((t - self.t0) // self.period_s)

    def data_time(self, k: int) -> float:
        return self.start + k * STEP_S


class CaseForecaster:
    """The gateway's forecaster: real net demand plus one draw of the paper's error process (as the engine)."""

    def __init__(self, agent: AgentSpec, index: int, clock: CaseClock, seed: int) -> None:
        self.agent, self.index, self.clock, self.seed = agent, index, clock, seed

    def net_demand(self, start: int, steps: int, step_s: int) -> np.ndarray:
        k = self.clock.index(start)
        real = net_demand_kwh(self.agent.profile, self.clock.data_time(k), steps)
        point = forecast(real, ScenarioModel(), period_rng(self.seed, self.index, k, 0))
        return point * 3.6e6 / step_s  # W in live time: W x period_s = the data's kWh per 15 minutes


async def meter_feed(store: ReadingStore, agent: AgentSpec, clock: CaseClock) -> None:
    """Signed readings each second; power is the data's energy of the current period spread over it."""
    imp = exp = 0.0
    last = float(int(time.time()))
    while True:
        now = float(int(time.time()))
        t = last
        while t < now:
            k = clock.index(t)
            kwh = float(net_demand_kwh(agent.profile, clock.data_time(k), 1)[0])
            end = min(now, clock.t0 + (k + 1) * clock.period_s)
            share = kwh * (end - t) / clock.period_s
            imp, exp = imp + max(share, 0.0), exp + max(-share, 0.0)
            t = end
        last = now
        payload = encode_reading(HMAC_KEY, store.device_id, int(now), int(now), 0, "sdm120",
                                 {"p_W": 0.0, "e_imp_kWh": round(imp, 6), "e_exp_kWh": round(exp, 6)})  # fmt: skip
        store.add(verify(HMAC_KEY, payload))
        store.commit()
        await asyncio.sleep(now + 1 - time.time() + 0.01)


def community(w3: Any) -> str:
    """Token and Market deployed, both households registered and funded; the Market's address."""
    from contracts.chain import Sender
    from contracts.deploy import contracts_at, deploy_all

    addresses = deploy_all(w3, DEV_PRIVATE_KEYS[0])
    token, market = contracts_at(w3, addresses)
    admin = Sender(w3, DEV_PRIVATE_KEYS[0])
    admin.transact(market.functions.setParams(30, 120, 200, 1000))
    for n, key in enumerate(KEYS):
        address = Account.from_key(key).address
        admin.transact(market.functions.register(address, n.to_bytes(32, "big"), b"\x01" * 32))
        admin.transact(token.functions.mint(address, 10**12))
        household = Sender(w3, key)
        household.transact(token.functions.approve(market.address, 10**12))
        household.transact(market.functions.deposit(10**12))
    w3.provider.make_request("evm_setIntervalMining", [1])
    return market.address


def tables(agent: AgentSpec, rpc: str, market: str, port: int, args: argparse.Namespace, seed: int) -> dict:
    b, scale = agent.battery, STEP_S / args.period_s  # the battery's rates per live second
    return {
        "community": {"id": "case-one", "port": port, "roster_refresh_s": 2},
        "agent": {"window_s": 3600, "lead_s": 600, "fixed_net_wh": 0},
        "chain": {"rpc_url": rpc, "market": market, "keystore": "unused.json", "passphrase_file": "unused",
                  "anchor": False, "retry_max_s": 1, "rpc_timeout_s": 5},
        "loans": {"strategy": "s2", "period_s": args.period_s, "lead_s": args.period_s - 1, "window": 96,
                  "scenarios": args.scenarios, "lam1": agent.lam1, "lam2": agent.lam2, "quantile": agent.quantile,
                  "capacity_kwh": b.capacity_kwh, "soc_min": b.soc_min, "soc_max": b.soc_max, "soc0": agent.soc0,
                  "charge_kw": b.charge_kw * scale, "discharge_kw": b.discharge_kw * scale,
                  "efficiency": b.eta_charge * b.eta_discharge, "degradation": b.degradation,
                  "max_rounds": args.max_rounds, "round_timeout_s": 2.0, "report_delay_s": 1.0, "seed": seed,
                  "collateral_per_kwh": 1000, "epsilon": 0.1},
    }  # fmt: skip


async def run_household(
    spec: dict, agent: AgentSpec, index: int, clock: CaseClock, seed: int, folder: Path
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = parse_trading_config(spec, folder)
    store = ReadingStore(folder / "readings.db", f"meter-{agent.name.lower()}")
    deps = TradingDeps(store, CaseForecaster(agent, index, clock, seed), Metrics(), agent.name, folder,
                       SystemClock(), account=Account.from_key(KEYS[index]))  # fmt: skip
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(meter_feed(store, agent, clock))
            tg.create_task(run_trading(cfg, deps))
    finally:
        store.close()


def run_seed(seed: int, args: argparse.Namespace, broker: MosquittoBroker, work: Path) -> dict[str, Any]:
    agents = case1()
    start = START + args.start_hour * 3600.0
    n = round(args.hours * 4)
    anvil = AnvilNode()
    anvil.start()
    try:
        rpc = anvil.info.url
        assert rpc is not None
        w3 = Web3(Web3.HTTPProvider(rpc))
        market = community(w3)
        t0 = (int(time.time()) // args.period_s + 2) * args.period_s
        clock = CaseClock(t0, args.period_s, start)
        folders = [work / f"seed{seed}" / a.name for a in agents]

        async def main() -> None:
            specs = [tables(a, rpc, market, broker.port, args, seed) for a in agents]
            runs = [run_household(specs[i], a, i, clock, seed, folders[i]) for i, a in enumerate(agents)]
            tasks = [asyncio.create_task(r) for r in runs]
            await asyncio.sleep(max(0.0, t0 + n * args.period_s - args.period_s + 1 - time.time()))
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise RuntimeError(f"a household stopped: {task.exception()!r}")
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(main())
    finally:
        anvil.close()
    periods = np.arange(n + 96)
    out: dict[str, Any] = {"seed": seed, "agents": {}}
    for i, a in enumerate(agents):
        net = net_demand_kwh(a.profile, start, n + 96)
        book = LoanBook(folders[i] / "trading.db")
        flows = np.zeros(periods.size)
        agreed = 0
        for rec in book.loans(*FLOW_STATES):
            k = (rec.period - t0) // args.period_s
            if 0 <= k < n:
                q = int(rec.terms["quantityWh"]) / 1000.0 * (1.0 if rec.role == "lender" else -1.0)
                flows[k] += q
                flows[k + rec.tau] -= q
                agreed += 1
        closed = len(book.loans("closed"))
        book.close()
        cfg = parse_trading_config(tables(a, "http://x", market, 1, args, seed), folders[i]).loans
        assert cfg is not None
        xi = performance(cfg, net, flows)
        out["agents"][a.name] = {k: round(v, 4) for k, v in xi.items()} | {"loans": agreed, "closed": closed}
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gridpact study cooperative-live", description=__doc__)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--hours", type=float, default=12.0, help="hours of the households' data to run")
    p.add_argument(
        "--start-hour", type=float, default=6.0, help="of the paper's day (Case 1 starts at 00:00)"
    )
    p.add_argument("--period-s", type=int, default=4, help="live seconds per 15-minute period")
    p.add_argument("--scenarios", type=int, default=100)
    p.add_argument("--max-rounds", type=int, default=600, help="rounds of a session (the paper: 5000)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    broker = MosquittoBroker()
    broker.start()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="gridpact-loans-live-") as tmp:
            for seed in seeds:
                results.append(run_seed(seed, args, broker, Path(tmp)))
                if not args.json:
                    print(text_seed(results[-1]), flush=True)
    finally:
        broker.close()
    engine = [engine_case(args, s) for s in seeds]
    summary = summarise(results, engine)
    if args.json:
        print(json.dumps({"live": results, "engine": engine, "summary": summary}, indent=1))
    else:
        print(text_summary(summary))
    return 0 if summary["s2_at_least_s1_every_agent_every_seed"] else 1


def engine_case(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    r = engine_run(case1(), Settings(days=args.hours / 24, start=START + args.start_hour * 3600.0, seed=seed,
                                     deadline=args.max_rounds, backend="numpy", workers=1))  # fmt: skip
    return {"seed": seed, "agents": {name: {k: round(float(r.xi[k][i]), 4) for k in ("s0", "s1", "s2")}
                                     for i, name in enumerate(r.names)}}  # fmt: skip


def text_seed(r: dict[str, Any]) -> str:
    lines = [
        f"seed {r['seed']}: {'agent':>5} {'xi(s0)':>9} {'xi(s1)':>9} {'xi(s2)':>9} {'s1-s0':>7} {'s2-s0':>7} loans"
    ]
    for name, x in r["agents"].items():
        lines.append(f"{'':8}{name:>5} {x['s0']:9.3f} {x['s1']:9.3f} {x['s2']:9.3f} {x['s1'] - x['s0']:7.3f} "
                     f"{x['s2'] - x['s0']:7.3f} {x['loans']} ({x['closed']} closed on chain)")  # fmt: skip
    return "\n".join(lines)


def summarise(live: list[dict[str, Any]], engine: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"effect_s2_minus_s1": {}, "engine_effect_s2_minus_s1": {}}
    ok = True
    for name in live[0]["agents"]:
        for key, runs in (("effect_s2_minus_s1", live), ("engine_effect_s2_minus_s1", engine)):
            d = [r["agents"][name]["s2"] - r["agents"][name]["s1"] for r in runs]
            out[key][name] = {"mean": round(statistics.fmean(d), 4),
                              "sd": round(statistics.stdev(d), 4) if len(d) > 1 else 0.0, "min": round(min(d), 4)}  # fmt: skip
        ok &= all(r["agents"][name]["s2"] >= r["agents"][name]["s1"] - 1e-9 for r in live)
        ok &= all(r["agents"][name]["s1"] >= r["agents"][name]["s0"] - 1e-9 for r in live)
    out["s2_at_least_s1_every_agent_every_seed"] = ok
    out["seeds"] = len(live)
    return out


def text_summary(s: dict[str, Any]) -> str:
    lines = [
        f"over {s['seeds']} seeds, xi(s2) - xi(s1) per agent (mean, sd, min): live gateways vs the engine"
    ]
    for name, v in s["effect_s2_minus_s1"].items():
        e = s["engine_effect_s2_minus_s1"][name]
        lines.append(f"  {name}: live {v['mean']:.3f} (sd {v['sd']:.3f}, min {v['min']:.3f})   "
                     f"engine {e['mean']:.3f} (sd {e['sd']:.3f}, min {e['min']:.3f})")  # fmt: skip
    lines.append(f"[{'PASS' if s['s2_at_least_s1_every_agent_every_seed'] else 'FAIL'}] "
                 "xi(s2) >= xi(s1) >= xi(s0) for every agent and seed (live)")  # fmt: skip
    return "\n".join(lines)
