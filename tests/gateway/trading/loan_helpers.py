"""Two households that lend energy to each other: meters that follow a schedule, `run_trading` with `[loans]`.

Periods are 4 s. Each household's meter follows a CSV profile (meter_sim's `csv:` profiles repeat
outside their span) whose net power flips every 4 periods, at 1.2 MW so that one period moves
1333 Wh: A exports while B imports, then the other way round. A household's *forecast* is its
`[loans] profile`, which may differ from what its meter does (a borrower that planned to return and
does not; a lender that planned to lend and does not).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
from trade_helpers import HOUSEHOLD_KEYS, Community, InProcessNodes
from trade_node import HMAC_KEY, node_spec

from gateway.chain.keystore import create_keystore
from gateway.ops.metrics import Metrics
from gateway.storage import ReadingStore
from gateway.trading.config import parse_trading_config
from gateway.trading.service import TradingDeps, run_trading
from gridpact.core.clock import SystemClock
from gridpact.core.wire import encode_reading, verify
from meter_sim.profiles import parse_profile

PERIOD_S = 4
POWER_W = 1_200_000


def square_profile(path: Path, exporting_first: bool, always: str | None = None) -> str:
    """A CSV profile of 8 periods (32 s, aligned to the epoch): export 4 periods, import 4 (or `always` one)."""
    rows = ["timestamp,load_w,pv_w"]
    for k in range(8 * PERIOD_S * 4):
        t = k / 4
        first_half = (t // PERIOD_S) < 4
        exporting = first_half == exporting_first if always is None else always == "export"
        load, pv = (0, POWER_W) if exporting else (POWER_W, 0)
        rows.append(f"{t},{load},{pv}")
    path.write_text("\n".join(rows) + "\n")
    return f"csv:{path}"


def loan_table(**extra: Any) -> dict[str, Any]:
    """`[loans]` of a test household: 4 s periods, a window of 8, autarky only, a negligible battery."""
    return {
        "strategy": "s2", "period_s": PERIOD_S, "lead_s": 2, "window": 8, "q_max_wh": 600, "n_q": 7,
        "tau_min": 2, "scenarios": 20, "lam1": 0.0, "lam2": 1.0, "quantile": 0.5, "capacity_kwh": 0.01,
        "epsilon": 0.0, "max_rounds": 200, "round_timeout_s": 1.0, "collateral_per_kwh": 1000,
        "report_delay_s": 1.0,
    } | extra  # fmt: skip


class ProfileForecaster:
    """The gateway's forecaster for a test household: the net power of a known meter_sim profile."""

    def __init__(self, profile: str) -> None:
        self.profile = profile

    def net_demand(self, start: int, steps: int, step_s: int) -> list[float]:
        from gateway.negotiation.cooperative.cases import net_demand_kwh

        kwh = net_demand_kwh(self.profile, float(start), steps, float(step_s))
        return [float(e) * 3.6e6 / step_s for e in kwh]


def loan_households(
    tmp_path: Path,
    com: Community,
    broker_port: int,
    rpc: str | None,
    meters: tuple[str, ...],
    forecasts: tuple[str, ...],
    loans: tuple[dict[str, Any], ...] = ({}, {}, {}),
) -> list[dict[str, Any]]:
    """Node specs of households "a", "b" (, "c"): meter profiles, forecast profiles, `[loans]` extras."""
    assert rpc is not None
    t0 = float(int(time.time()))
    specs = []
    for n, name in enumerate(("a", "b", "c")[: len(meters)]):
        pass_file = tmp_path / f"{name}.pass"
        pass_file.write_text("secret\n")
        key_file = tmp_path / f"{name}.json"
        create_keystore(key_file, "secret", private_key=HOUSEHOLD_KEYS[n], kdf="pbkdf2", work=1000)
        spec = node_spec(name, key_file, pass_file, rpc, com.market.address, broker_port, meters[n], 0, t0)
        spec["tables"]["loans"] = loan_table(**loans[n])
        spec["forecast"] = forecasts[n]
        specs.append(spec)
    return specs


async def meter_feed(store: ReadingStore, profile: str, t0: float) -> None:
    """One signed reading per second; counters integrate the profile's power (20 steps a second)."""
    prof = parse_profile(profile)
    imp = exp = 0.0
    last = t0
    while True:
        now = float(int(time.time()))
        if now > last:
            ts = np.linspace(last, now, int((now - last) * 20) + 1)
            load, pv = prof.at_times(ts[:-1])
            net = (np.asarray(load) - np.asarray(pv)) * (1.0 / 20) / 3.6e6  # kWh per step
            imp += float(np.clip(net, 0, None).sum())
            exp += float(np.clip(-net, 0, None).sum())
            last = now
        payload = encode_reading(HMAC_KEY, store.device_id, int(now - t0) + 1, int(now), 0, "sdm120",
                                 {"p_W": 0.0, "e_imp_kWh": round(imp, 4), "e_exp_kWh": round(exp, 4)})  # fmt: skip
        store.add(verify(HMAC_KEY, payload))
        store.commit()
        await asyncio.sleep(now + 1 - time.time() + 0.01)


async def run_loan_node(spec: dict[str, Any], state_dir: Path, metrics: Metrics | None = None) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    trading = parse_trading_config(spec["tables"], state_dir)
    store = ReadingStore(state_dir / "readings.db", "meter-" + spec["name"])
    forecaster = ProfileForecaster(spec["forecast"])
    deps = TradingDeps(store, forecaster, metrics or Metrics(), spec["name"], state_dir, SystemClock())
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(meter_feed(store, spec["meter"]["profile"], spec["meter"]["t0"]))
            tg.create_task(run_trading(trading, deps))
    finally:
        store.close()


class LoanNodes(InProcessNodes):
    """InProcessNodes whose households run `run_loan_node` (scheduled meters)."""

    async def __aenter__(self) -> LoanNodes:
        self._tasks = [
            asyncio.create_task(run_loan_node(s, self.tmp_path / s["name"], self.metrics[s["name"]]))
            for s in self.specs
        ]
        return self

    async def restart(self, index: int, down_s: float) -> None:
        """Stop one household (cancelled like SIGTERM), keep it down `down_s`, start it on the same state."""
        await self.stop(index)
        await asyncio.sleep(down_s)
        self.start(index)

    async def stop(self, index: int) -> None:
        task = self._tasks[index]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def start(self, index: int) -> None:
        spec = self.specs[index]
        self._tasks[index] = asyncio.create_task(
            run_loan_node(spec, self.tmp_path / spec["name"], self.metrics[spec["name"]])
        )


def loans_contract(com: Community) -> Any:
    """The MarketLoans contract the Market names (`loansContract()`), deployed beside it."""
    from contracts.build import load_artifact

    address = com.market.functions.loansContract().call()
    return com.w3.eth.contract(address=address, abi=load_artifact("MarketLoans")["abi"])


def loan_events(com: Community, name: str) -> list[dict[str, Any]]:
    return [dict(e["args"]) for e in getattr(loans_contract(com).events, name)().get_logs(from_block=0)]
