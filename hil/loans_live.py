"""`gridpact study cooperative-live`: Cases 1 and 2 of Chakraborty, Baarslag and Kaisers with live gateways.

The households of Table 3 (Case 1, two) or Table 4 (Case 2, nine) run as real gateways (`run_trading` with `[loans]`, strategy s2) on a
real Mosquitto and a real anvil with the Market: they bargain over the loan protocol, sign, lock
collateral and settle from their meters. Time is compressed: one live period of `--period-s`
seconds stands for 15 minutes of the households' data (meter_sim's profiles, from `--start-hour`
of the paper's spring day), and the meters (signed readings, verified, stored) follow that data.
Each gateway forecasts as the engine does (the real net demand plus one error draw).

xi (Eq. 16) of s0 (no battery), s1 (battery alone) and s2 (battery and the loans the gateways
agreed) are computed as in the paper, on the same data, over the live periods plus the window after
them (so every loan's return is inside). Over several seeds it prints the effect size s2 - s1 per
agent (mean and standard deviation) and the engine's own run of the same case for comparison.

With nine households a gateway has peers to choose between: `--selection both` runs every seed twice,
with the gateways' learned epsilon-greedy selection and with random selection (epsilon 1), and compares
the share of loan sessions that end in a doubly-signed loan, as the paper's Case 2 does.
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

from gateway.negotiation.cooperative.cases import START, AgentSpec, case1, case2, net_demand_kwh
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
KEYS = DEV_PRIVATE_KEYS[1:]  # household i trades with the dev account i + 1 (the first is the community's)
CASES = {1: case1, 2: case2}
SELECTION_EPSILON = {"learned": 0.1, "random": 1.0}  # random: every proposal to a peer drawn at random


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


def community(w3: Any, households: int) -> str:
    """Token and Market deployed, the households registered and funded; the Market's address."""
    from contracts.chain import Sender
    from contracts.deploy import contracts_at, deploy_all

    addresses = deploy_all(w3, DEV_PRIVATE_KEYS[0])
    token, market = contracts_at(w3, addresses)
    admin = Sender(w3, DEV_PRIVATE_KEYS[0])
    admin.transact(market.functions.setParams(30, 120, 200, 1000))
    for n, key in enumerate(KEYS[:households]):
        address = Account.from_key(key).address
        admin.transact(market.functions.register(address, n.to_bytes(32, "big"), b"\x01" * 32))
        admin.transact(token.functions.mint(address, 10**12))
        household = Sender(w3, key)
        household.transact(token.functions.approve(market.address, 10**12))
        household.transact(market.functions.deposit(10**12))
    w3.provider.make_request("evm_setIntervalMining", [1])
    return market.address


def tables(
    agent: AgentSpec, rpc: str, market: str, port: int, args: argparse.Namespace, seed: int, selection: str
) -> dict:
    b, scale = agent.battery, STEP_S / args.period_s  # the battery's rates per live second
    return {
        "community": {"id": f"case-{args.case}", "port": port, "roster_refresh_s": 2},
        "agent": {"window_s": 3600, "lead_s": 600, "fixed_net_wh": 0},
        "chain": {"rpc_url": rpc, "market": market, "keystore": "unused.json", "passphrase_file": "unused",
                  "anchor": False, "retry_max_s": 1, "rpc_timeout_s": 5},
        "loans": {"strategy": "s2", "period_s": args.period_s, "lead_s": args.period_s - 1, "window": 96,
                  "scenarios": args.scenarios, "lam1": agent.lam1, "lam2": agent.lam2, "quantile": agent.quantile,
                  "capacity_kwh": b.capacity_kwh, "soc_min": b.soc_min, "soc_max": b.soc_max, "soc0": agent.soc0,
                  "charge_kw": b.charge_kw * scale, "discharge_kw": b.discharge_kw * scale,
                  "efficiency": b.eta_charge * b.eta_discharge, "degradation": b.degradation,
                  "max_rounds": args.max_rounds, "round_timeout_s": 2.0, "report_delay_s": 1.0, "seed": seed,
                  "collateral_per_kwh": 1000, "epsilon": SELECTION_EPSILON[selection]},
    }  # fmt: skip


async def run_household(
    spec: dict, agent: AgentSpec, index: int, clock: CaseClock, seed: int, folder: Path, metrics: Metrics
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = parse_trading_config(spec, folder)
    store = ReadingStore(folder / "readings.db", f"meter-{agent.name.lower()}")
    deps = TradingDeps(store, CaseForecaster(agent, index, clock, seed), metrics, agent.name, folder,
                       SystemClock(), account=Account.from_key(KEYS[index]))  # fmt: skip
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(meter_feed(store, agent, clock))
            tg.create_task(run_trading(cfg, deps))
    finally:
        store.close()


def run_seed(
    seed: int, args: argparse.Namespace, broker: MosquittoBroker, work: Path, selection: str = "learned"
) -> dict[str, Any]:
    agents = CASES[args.case]()
    start = START + args.start_hour * 3600.0
    n = round(args.hours * 4)
    metrics = [Metrics() for _ in agents]
    anvil = AnvilNode()
    anvil.start()
    try:
        rpc = anvil.info.url
        assert rpc is not None
        w3 = Web3(Web3.HTTPProvider(rpc))
        market = community(w3, len(agents))
        t0 = (int(time.time()) // args.period_s + 2) * args.period_s
        clock = CaseClock(t0, args.period_s, start)
        folders = [work / f"seed{seed}-{selection}" / a.name for a in agents]

        async def main() -> None:
            specs = [tables(a, rpc, market, broker.port, args, seed, selection) for a in agents]
            runs = [
                run_household(specs[i], a, i, clock, seed, folders[i], metrics[i])
                for i, a in enumerate(agents)
            ]
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
    out: dict[str, Any] = {"seed": seed, "selection": selection, "agents": {}}
    unique: set[str] = set()
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
                unique.add(rec.id)
        closed = len(book.loans("closed"))
        book.close()
        cfg = parse_trading_config(tables(a, "http://x", market, 1, args, seed, selection), folders[i]).loans
        assert cfg is not None
        xi = performance(cfg, net, flows)
        out["agents"][a.name] = {k: round(v, 4) for k, v in xi.items()} | {"loans": agreed, "closed": closed}
    events: dict[str, int] = {}
    for m in metrics:
        for (event,), v in m.sample_values("trade_events_total").items():
            if event.startswith("loan_"):
                events[event] = events.get(event, 0) + int(v)
    out["events"] = dict(sorted(events.items()))  # why sessions ended as they did (refusals, failures)
    started = events.get("loan_session_started", 0)
    out["sessions"], out["loans"] = started, len(unique)
    out["success_rate"] = round(len(unique) / started, 4) if started else 0.0
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gridpact study cooperative-live", description=__doc__)
    p.add_argument("--case", type=int, choices=sorted(CASES), default=1, help="1: two households, 2: nine")
    p.add_argument("--selection", choices=("learned", "random", "both"), default="learned",
                   help="peer selection: the gateways' epsilon-greedy, random (epsilon 1), or each seed with both")  # fmt: skip
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--hours", type=float, default=12.0, help="hours of the households' data to run")
    p.add_argument(
        "--start-hour", type=float, default=6.0, help="of the paper's day (the cases start at 00:00)"
    )
    p.add_argument("--period-s", type=int, default=4, help="live seconds per 15-minute period")
    p.add_argument("--scenarios", type=int, default=100)
    p.add_argument("--max-rounds", type=int, default=600, help="rounds of a session (the paper: 5000)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    selections = ["learned", "random"] if args.selection == "both" else [args.selection]
    if len(CASES[args.case]()) > len(KEYS):
        p.error(f"case {args.case} needs more dev accounts than the {len(KEYS)} anvil has")
    broker = MosquittoBroker()
    broker.start()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="gridpact-loans-live-") as tmp:
            for seed in seeds:
                for selection in selections:
                    results.append(run_seed(seed, args, broker, Path(tmp), selection))
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
    return 0 if passed(summary) else 1


def engine_case(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    r = engine_run(CASES[args.case](), Settings(days=args.hours / 24, start=START + args.start_hour * 3600.0,
                                                seed=seed, deadline=args.max_rounds, backend="numpy", workers=1))  # fmt: skip
    return {"seed": seed, "agents": {name: {k: round(float(r.xi[k][i]), 4) for k in ("s0", "s1", "s2")}
                                     for i, name in enumerate(r.names)}}  # fmt: skip


def text_seed(r: dict[str, Any]) -> str:
    lines = [
        f"seed {r['seed']} ({r['selection']} selection: {r['loans']} loans of {r['sessions']} sessions, "
        f"{100 * r['success_rate']:.1f} %)",
        "        events: " + ", ".join(f"{k} {v}" for k, v in r.get("events", {}).items()),
        f"{'':8}{'agent':>5} {'xi(s0)':>9} {'xi(s1)':>9} {'xi(s2)':>9} {'s1-s0':>7} {'s2-s0':>7} loans",
    ]
    for name, x in r["agents"].items():
        lines.append(f"{'':8}{name:>5} {x['s0']:9.3f} {x['s1']:9.3f} {x['s2']:9.3f} {x['s1'] - x['s0']:7.3f} "
                     f"{x['s2'] - x['s0']:7.3f} {x['loans']} ({x['closed']} closed on chain)")  # fmt: skip
    return "\n".join(lines)


def _spread(d: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(d), 4), "sd": round(statistics.stdev(d), 4) if len(d) > 1 else 0.0,
            "min": round(min(d), 4)}  # fmt: skip


def summarise(live: list[dict[str, Any]], engine: list[dict[str, Any]]) -> dict[str, Any]:
    """Effect sizes over seeds: xi(s2) - xi(s1) per agent (learned selection, as the gateways ship), and
    with both selections run, the success rate of loan sessions learned against random on the same seeds."""
    out: dict[str, Any] = {"effect_s2_minus_s1": {}, "engine_effect_s2_minus_s1": {}}
    learned = [r for r in live if r.get("selection", "learned") == "learned"] or live
    ok = True
    for name in live[0]["agents"]:
        for key, runs in (("effect_s2_minus_s1", learned), ("engine_effect_s2_minus_s1", engine)):
            out[key][name] = _spread([r["agents"][name]["s2"] - r["agents"][name]["s1"] for r in runs])
        ok &= all(r["agents"][name]["s2"] >= r["agents"][name]["s1"] - 1e-9 for r in live)
        ok &= all(r["agents"][name]["s1"] >= r["agents"][name]["s0"] - 1e-9 for r in live)
    out["s2_at_least_s1_every_agent_every_seed"] = ok
    out["seeds"] = len(learned)
    rates = {
        sel: {r["seed"]: r["success_rate"] for r in live if r.get("selection") == sel}
        for sel in ("learned", "random")
    }
    paired = sorted(set(rates["learned"]) & set(rates["random"]))
    if paired:
        out["success_rate"] = {sel: _spread([rates[sel][k] for k in paired]) for sel in ("learned", "random")}
        out["success_learned_minus_random"] = _spread(
            [rates["learned"][k] - rates["random"][k] for k in paired]
        )
        out["learned_above_random"] = out["success_learned_minus_random"]["mean"] > 0
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
    if "learned_above_random" in s:
        a, b, d = s["success_rate"]["learned"], s["success_rate"]["random"], s["success_learned_minus_random"]
        lines.append(f"loan sessions ending in a signed loan: learned {100 * a['mean']:.1f} % (sd {100 * a['sd']:.1f}), "
                     f"random {100 * b['mean']:.1f} % (sd {100 * b['sd']:.1f}); "
                     f"difference {100 * d['mean']:+.1f} points (sd {100 * d['sd']:.1f}, min {100 * d['min']:+.1f})")  # fmt: skip
        lines.append(
            f"[{'PASS' if s['learned_above_random'] else 'FAIL'}] learned peer selection above random (live)"
        )
    return "\n".join(lines)


def passed(s: dict[str, Any]) -> bool:
    """The exit status' verdict: the paper's claims that this run could check."""
    return bool(s["s2_at_least_s1_every_agent_every_seed"] and s.get("learned_above_random", True))
