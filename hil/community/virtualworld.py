"""`--clock virtual`: the whole community as tasks of one SimLoop (hil/community/simloop.py).

The firmware's boards, the amqtt broker, every gateway's ingest (`gateway.ingest.mqtt.run_ingest`)
and trading (`gateway.trading.service.run_trading`) and the community's minute tick all run on one
loop in the main thread, whose clock is the simulated clock. The chain is the in-process EVM
(eth-tester on py-evm), called inline, its block time moved to the simulated minute. The engine's
hour loop drives it by running the loop up to the end of each hour; nothing waits in wall time.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from hil.community.agents import AgentWorld, ProfileForecaster, trading_tables
from hil.community.engine import EngineConfig
from hil.community.fullstack import FullStackOptions
from hil.community.households import HouseholdSpec
from hil.community.nodes import MeterUart, firmware_config
from hil.community.simloop import BoardClock, LoopClock, SimLoop

SETTLE_S = 2.0  # simulated seconds past a poll that carry its reading to the gateway


def meter_prefix(household: str) -> str:
    """Each household's meter topics (`<prefix>/meter/<dev>/...`): on a Pi the meter broker is the
    household's own; here one broker carries every household, so each gets its own namespace."""
    return f"gridpact/{household}"


TIMED_METHODS = frozenset({"eth_sendRawTransaction", "eth_sendTransaction", "eth_call", "eth_estimateGas"})


def chain_time_middleware(chain: Any, loop: SimLoop) -> Any:
    """A web3 middleware: before a transaction or a call, the chain's block time is moved to the
    simulated minute (one empty block at most per simulated minute with chain activity). A block
    per minute regardless made eth-tester's get_logs, which walks every block, the run's cost."""
    from web3.middleware import Web3Middleware

    last = [0]

    class SimulatedTime(Web3Middleware):
        def wrap_make_request(self, make_request: Any) -> Any:
            def middleware(method: Any, params: Any) -> Any:
                now = int(loop.unix())
                if method in TIMED_METHODS and now - last[0] >= 60:
                    last[0] = now
                    chain.set_time(now)
                return make_request(method, params)

            return middleware

    return SimulatedTime


class LoopBroker:
    """amqtt on the SimLoop (the embedded broker, in the simulation's own thread and clock)."""

    def __init__(self, loop: SimLoop) -> None:
        from hil.services import free_port

        self.loop = loop
        self.port = free_port()
        self._broker: Any = None

    @property
    def info(self) -> Any:
        from hil.services import BrokerInfo

        return BrokerInfo("amqtt", "127.0.0.1", self.port)

    def start(self) -> Any:
        from amqtt.broker import Broker

        config = {
            "listeners": {
                "default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}", "max_connections": 5000}
            },
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config, loop=self.loop)
        self.loop.run_until_complete(self._broker.start())
        return self.info

    def close(self) -> None:
        if self._broker is not None and not self.loop.is_closed():
            self.loop.run_until_complete(self._broker.shutdown())
            self._broker = None


class SyncedUart(MeterUart):
    """The meter's RS-485 end; the meter's own clock is brought up to the loop's before each request."""

    def __init__(self, meter: Any, sim_clock: Any, loop: SimLoop) -> None:
        super().__init__(meter, loop.unix)
        self.sim_clock, self.loop = sim_clock, loop

    def write(self, data: bytes, /) -> int:
        lag = self.loop.unix() - self.sim_clock.now()
        if lag > 0:
            self.sim_clock.advance(lag)
        return super().write(data)


class LoopBoard:
    """The real firmware (firmware/device, unmodified) as a task of the SimLoop; the node interface
    of hil.community.nodes (seq, connected, buffer, replayed, poll, flush, close)."""

    def __init__(self, loop: SimLoop, uart: SyncedUart, dev: str, key: bytes, host: str, port: int,
                 flash: Path, poll_s: int, prefix: str) -> None:  # fmt: skip
        import json

        from firmware.host.devload import DEVICE_DIR, DeviceNamespace
        from firmware.host.shims import PWRON_RESET, BoardState, make_all

        self.dev, self.loop = dev, loop
        flash.mkdir(parents=True, exist_ok=True)
        cfg = firmware_config(dev, key, host, port, poll_s) | {"prefix": prefix}
        (flash / "config.json").write_text(json.dumps(cfg))
        self.state = BoardState(
            clock=BoardClock(loop), platform="esp32", uart_device=uart, uid=(dev.encode() + b"\0" * 6)[:6],
            reset_cause=PWRON_RESET, wifi_available=True, ntp_available=True,
        )  # fmt: skip
        ns = DeviceNamespace(make_all(self.state), DEVICE_DIR, print_fn=self._print)
        self.app = ns.load("app").make(str(flash) + "/")
        if self.app is None:
            raise RuntimeError(f"{dev}: the firmware refused its config: {self.state.console[-5:]}")
        self.replayed = 0
        self.backlog = -1
        self.task = loop.create_task(self.app.main(), name=f"board-{dev}")
        inner = self.app.publish_rec

        async def publish_rec(buf: Any, h: Any, replayed: bool) -> bool:
            ok = await inner(buf, h, replayed)
            if ok and replayed and h[0] > self.backlog >= 0:
                self.replayed += 1
            return ok

        self.app.publish_rec = publish_rec

    def _print(self, *args: Any, sep: str = " ", end: str = "\n", **_kw: Any) -> None:
        self.state.log(sep.join(str(a) for a in args))

    @property
    def seq(self) -> int:
        return int(self.app.seq.next) - 1

    @property
    def connected(self) -> bool:
        return bool(self.app.client.up)

    @property
    def buffer(self) -> range:
        return range(self.app.ring.count + self.app.ram_n)

    def wait_connected(self, timeout: float) -> None:
        if self.backlog < 0:
            self.backlog = self.seq

    def poll(self, now: float) -> None:
        """Nothing: the firmware polls on its own timer, on the loop's clock."""

    def flush(self) -> None:
        """Nothing: replays go out as the loop runs."""

    def close(self) -> None:
        self.task.cancel()


class LoopGateway:
    """One household's gateway ingest, as the Pi runs it: `run_ingest` with the gateway's handler."""

    def __init__(self, loop: SimLoop, name: str, dev: str, key: bytes, state_dir: Path, host: str, port: int,
                 seed: int) -> None:  # fmt: skip
        from gateway.config import BrokerParams
        from gateway.ingest.mqtt import IngestHandler, run_ingest
        from gateway.ingest.verifier import ReadingVerifier
        from gateway.ops.logs import ErrorLatch
        from gateway.ops.metrics import Metrics
        from gateway.storage import ReadingStore

        self.name, self.dev = name, dev
        self.store = ReadingStore(state_dir / f"{name}.sqlite3", dev)
        self.verifier = ReadingVerifier({dev: key}, self.store.last_seqs())
        self.metrics = Metrics()
        self.outcomes: dict[str, int] = {}
        self.seqs: list[int] = []
        gw = self

        class CountingHandler(IngestHandler):
            """The gateway's handler; the simulator counts each outcome for its checks."""

            def handle(self, topic: str, payload: bytes) -> str:
                outcome = super().handle(topic, payload)
                gw.outcomes[outcome] = gw.outcomes.get(outcome, 0) + 1
                if outcome == "accepted" and topic.endswith("/reading"):
                    gw.seqs.append(gw.verifier.last_seq[dev])
                return outcome

        self.handler = CountingHandler(meter_prefix(name), self.store, self.verifier, self.metrics, loop.unix)
        params = BrokerParams(host, port, identifier=f"gridpact-gw-{name}")
        self.task = loop.create_task(
            run_ingest(params, self.handler, self.metrics, ErrorLatch(), random.Random(f"{seed}-{name}")),
            name=f"ingest-{name}",
        )
        self.subscribed = True

    def wait_subscribed(self, timeout: float) -> None:
        """Nothing to wait for in wall time: the loop connects it before the first poll."""

    def energy(self, t0: int, t1: int) -> tuple[int, int, bool]:
        self.handler.flush()
        d = self.store.energy_between(t0, t1)
        return d.import_wh, d.export_wh, d.complete

    def energy_between(self, t0: int, t1: int) -> Any:
        self.handler.flush()
        return self.store.energy_between(t0, t1)

    def hour_batch(self, hour_start: int) -> list[bytes]:
        self.handler.flush()
        return self.store.hour_batch(hour_start)

    def close(self) -> None:
        self.task.cancel()
        self.handler.flush()
        self.store.close()


class VirtualWorld(AgentWorld):
    """The gateways' own agents, the real firmware, amqtt and py-evm on one simulated clock."""

    def __init__(
        self, cfg: EngineConfig, specs: list[HouseholdSpec], opts: FullStackOptions, w3: Any
    ) -> None:
        self.loop = SimLoop(float(cfg.t0) - 1.0)  # the gateways subscribe in the second before t0
        asyncio.set_event_loop(self.loop)
        self.seed = cfg.seed
        self.tasks: list[asyncio.Task[Any]] = []
        self.agent_errors: list[str] = []
        super().__init__(cfg, specs, opts, w3, "in-process")

    def make_broker(self) -> Any:
        return LoopBroker(self.loop)

    @property
    def broker_where(self) -> str:
        """The report's line (no port: the kernel picks it, and summary.json must not depend on it)."""
        return "embedded amqtt on the simulation's loop (loopback TCP)"

    @broker_where.setter
    def broker_where(self, value: str) -> None:
        """FullStackWorld sets its own line; this world's stays as above."""

    def _start_nodes(self, host: str, port: int) -> str:
        from meter_sim.clock import SimClock
        from meter_sim.farm import MeterFarm

        self.clock = SimClock(start=float(self.cfg.t0))
        self.farm = MeterFarm(self.clock, seed=self.cfg.seed)
        self.meters = [
            self.farm.add_meter("sdm120", 1, p, name=s.name, tick_s=10.0)
            for p, s in zip(self.profiles(), self.specs, strict=True)
        ]
        self.gateways = [
            LoopGateway(self.loop, s.name, d, k, self.state, host, port, self.seed)
            for s, d, k in zip(self.specs, self.devs, self.keys, strict=True)
        ]
        self.run_until(self.cfg.t0)  # the gateways subscribe before the boards boot
        self.nodes = [
            LoopBoard(self.loop, SyncedUart(m, self.clock, self.loop), d, k, host, port,
                      self.state / f"flash-{d}", self.opts.poll_s, meter_prefix(s.name))
            for s, m, d, k in zip(self.specs, self.meters, self.devs, self.keys, strict=True)
        ]  # fmt: skip
        self.run_until(self.cfg.t0 + SETTLE_S)
        for node in self.nodes:
            node.wait_connected(0)
        return (
            "ran: the real firmware (firmware/device, unmodified) per household as a task of one "
            "discrete-event loop (hil/community/simloop.py), polling its meter over in-process Modbus "
            f"RTU every {self.opts.poll_s} simulated s"
        )

    # ------------------------------------------------------------ simulated time

    def run_until(self, t_unix: float) -> None:
        """Run every task of the community until the simulated clock reads `t_unix`."""
        self.loop.run_until_complete(asyncio.sleep(max(0.0, t_unix - self.loop.unix())))
        lag = self.loop.unix() - self.clock.now()
        if lag > 0:
            self.clock.advance(lag)
        if self.agent_errors:
            raise RuntimeError(f"a gateway's trading stopped: {self.agent_errors[0]}")
        crashed = [t for t in self.tasks if t.done() and not t.cancelled() and t.exception() is not None]
        if crashed:
            raise RuntimeError(f"{crashed[0].get_name()} stopped: {crashed[0].exception()!r}")

    def start_agents(self) -> None:
        from eth_account import Account

        from gateway.trading.config import parse_trading_config
        from gateway.trading.service import TradingDeps, run_trading
        from hil.community.engine import agent_params
        from meter_sim.profiles import parse_profile

        if self.chain is None:
            raise RuntimeError(f"the virtual clock needs the chain layer: {self.chain_error}")
        self.tasks += [g.task for g in self.gateways] + [n.task for n in self.nodes]
        self.chain.w3.middleware_onion.add(chain_time_middleware(self.chain, self.loop), "simulated-time")
        sell_m, buy_m, cr = agent_params(len(self.specs), self.cfg.seed)
        t_end = self.cfg.t0 + 3600 * self.cfg.hours
        clock = LoopClock(self.loop)
        for i, (spec, gw) in enumerate(zip(self.specs, self.gateways, strict=True)):
            state = self.state / f"trading-{spec.name}"
            state.mkdir(parents=True, exist_ok=True)
            tables = trading_tables(self.cfg, self.broker_host, self.broker_port, "http://127.0.0.1:1",
                                    self.chain.market.address, state,
                                    (float(sell_m[i]), float(buy_m[i]), float(cr[i])))  # fmt: skip
            trading = parse_trading_config(tables, state)
            forecaster = ProfileForecaster(parse_profile(spec.profile_spec), self.cfg.t0, t_end)
            deps = TradingDeps(gw, forecaster, gw.metrics, spec.name, state, clock,
                               web3=self.chain.w3, account=Account.from_key(self.chain.keys[i]))  # fmt: skip
            task = self.loop.create_task(run_trading(trading, deps), name=f"trading-{spec.name}")
            task.add_done_callback(self._task_done)
            self.tasks.append(task)

    def stop_agents(self) -> None:
        if self.loop.is_closed():
            return
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            self.loop.run_until_complete(asyncio.gather(*self.tasks, return_exceptions=True))
        self.tasks = []

    def run_minute(self, t_min: int) -> None:
        self.run_until(t_min + 60 + SETTLE_S)

    def run_hour(self, k: int) -> None:
        self.run_until(self.cfg.t0 + 3600 * (k + 1) + SETTLE_S)
        self.resolve()
        self.hourly_balances.append(list(self.replay_chain().balance))

    def finish(self) -> int:
        """Run on by simulated minutes until no agreement is open (or TAIL_H hours); returns open ones."""
        from hil.community.agentledger import open_agreements
        from hil.community.agents import TAIL_H

        assert self.chain is not None
        t_start = t = self.cfg.t0 + 3600 * self.cfg.hours
        for _ in range(TAIL_H * 6):
            t += 600
            self.run_until(t + SETTLE_S)
            self.resolve()
            if open_agreements(self.chain.market) == 0:
                break
        self.tail_note = f"{(t - t_start) / 60:.0f} simulated minutes more"
        return open_agreements(self.chain.market)

    def _drain(self, timeout: float) -> None:
        """Readings reach their gateway within SETTLE_S simulated seconds of their poll."""

    def close(self) -> None:
        try:
            super().close()
        finally:
            if not self.loop.is_closed():
                pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.close()
            asyncio.set_event_loop(None)
