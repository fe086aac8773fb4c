"""`--clock virtual`: the whole community as tasks of one SimLoop (hil/community/simloop.py).

The firmware's boards, the amqtt broker, every gateway's ingest (`gateway.ingest.mqtt.run_ingest`)
and trading (`gateway.trading.service.run_trading`) all run on one loop in the main thread, whose
clock is the simulated clock. The chain (an anvil started for the run; py-evm is handled too) is
called inline, its block time kept on the simulated clock by a web3 middleware. The engine's
hour loop drives it by running the loop up to the end of each hour; nothing waits in wall time.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hil.community.agents import NO_RPC, TAIL_H, AgentWorld, ProfileForecaster
from hil.community.endpoints import quiet_amqtt
from hil.community.engine import EngineConfig
from hil.community.fullstack import FullStackOptions
from hil.community.gateways import InlineRunner, meter_prefix
from hil.community.households import HouseholdSpec
from hil.community.nodes import MeterUart, firmware_config, provision_device_key
from hil.community.simloop import BoardClock, LoopClock, SimLoop

SETTLE_S = 2.0  # simulated seconds past a poll that carry its reading to the gateway


TIMED_METHODS = frozenset({"eth_sendRawTransaction", "eth_sendTransaction", "eth_call", "eth_estimateGas"})
SENDS = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})
# what cannot mine a block: any other method (a send, evm_*, anvil_*) drops the cached head
READS = frozenset({
    "eth_call", "eth_estimateGas", "eth_chainId", "eth_blockNumber", "eth_getBlockByNumber",
    "eth_getBlockByHash", "eth_getTransactionReceipt", "eth_getTransactionByHash", "eth_getLogs",
    "eth_getTransactionCount", "eth_getBalance", "eth_getCode", "eth_gasPrice", "eth_feeHistory",
    "eth_maxPriorityFeePerGas", "net_version",
})  # fmt: skip


def chain_time_middleware(chain: Any, loop: SimLoop, calls: Counter[str] | None = None) -> Any:
    """A web3 middleware that keeps the chain's block time on the simulated clock.

    `calls` counts the JSON-RPC requests by method (the bench prints them; the middleware's own
    time-moving requests are not counted).

    Before a transaction, a call or a gas estimate, if the chain is a minute or more behind, one
    empty block is mined at the simulated time (at most one per simulated minute with chain
    activity: a block every minute regardless made eth-tester's get_logs, which walks every
    block, the run's largest cost). On a dev node (anvil) every transaction's block also gets
    the simulated time (`evm_setNextBlockTimestamp`, one second past the last block at least),
    so no block time comes from the host's clock.

    Every gateway's settle loop reads the head block each round; between two blocks the answer
    cannot change, so `eth_getBlockByNumber("latest")` is answered from the last one until a
    method that may mine passes through or the simulator moves the chain's time (`chain.moves`).
    anvil answers a send before its block is mined (one block per transaction), so after a send a
    head is kept only once its number shows that block: a read in between could see the one before.
    """
    from web3.middleware import Web3Middleware

    tester = getattr(chain.w3.provider, "ethereum_tester", None) is not None
    state = {"moved": 0, "block_t": 0}
    head: dict[str, Any] = {}  # json(params) -> the node's answer, while chain.moves == head_at
    head_at = [-1]
    blocks = {"seen": -1, "expect": -1}  # the highest head number read; the number a kept head needs

    class SimulatedTime(Web3Middleware):
        def wrap_make_request(self, make_request: Any) -> Any:
            def middleware(method: Any, params: Any) -> Any:
                if calls is not None:  # a head answered from the cache is counted as "cached head"
                    calls[str(method)] += 1
                now = int(loop.unix())
                if method in TIMED_METHODS and now - state["moved"] >= 60:
                    state["moved"] = now
                    chain.set_time(now)
                    state["block_t"] = max(state["block_t"], now)
                if method in SENDS and not tester:
                    ts = max(now, state["block_t"] + 1)
                    make_request("evm_setNextBlockTimestamp", [ts])
                    state["block_t"] = ts
                if method not in READS or head_at[0] != chain.moves:
                    if head_at[0] != chain.moves:  # the simulator mined: every earlier send is in
                        blocks["expect"] = -1
                    head.clear()
                    head_at[0] = chain.moves
                latest = method == "eth_getBlockByNumber" and bool(params) and params[0] == "latest"
                if not latest:
                    answer = make_request(method, params)
                    if method not in READS:  # web3 reads the head again while it fills a transaction in
                        head.clear()
                    if method in SENDS and isinstance(answer, dict) and answer.get("result") is not None:
                        blocks["expect"] = max(blocks["expect"], blocks["seen"]) + 1
                    return answer
                key = json.dumps(params)
                if key in head:
                    if calls is not None:
                        calls[str(method)] -= 1
                        calls["cached head"] += 1
                    return copy.deepcopy(head[key])
                answer = make_request(method, params)
                block = answer.get("result") if isinstance(answer, dict) else None
                if isinstance(block, Mapping):  # an error or no block: asked again
                    raw = block.get("number", 0)
                    number = raw if isinstance(raw, int) else int(str(raw), 16)
                    blocks["seen"] = max(blocks["seen"], number)
                    if number >= blocks["expect"]:  # not a head from before a send's block
                        head[key] = answer
                return copy.deepcopy(answer)

            return middleware

    return SimulatedTime


METER_BROKER_HOUSEHOLDS = 10  # households whose meter topics share one simulated meter broker


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
        """Listen on `self.port`; a port taken since it was picked (a client's ephemeral port, say) is
        replaced by a fresh one, up to four times."""
        from amqtt.broker import Broker
        from amqtt.errors import BrokerError

        from hil.services import free_port

        for attempt in range(5):
            config = {
                "listeners": {
                    "default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}", "max_connections": 5000}
                },
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
            self._broker = Broker(config, loop=self.loop)
            try:
                self.loop.run_until_complete(self._broker.start())
                break
            except BrokerError:
                self._broker = None
                if attempt == 4:
                    raise
                self.port = free_port()
        return self.info

    def close(self) -> None:
        if self._broker is not None and not self.loop.is_closed():
            with quiet_amqtt():  # its "N messages not broadcasted" at shutdown is no news to a user
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
                 flash: Path, poll_s: int, prefix: str, device_key: bytes | None = None) -> None:  # fmt: skip
        import json

        from firmware.host.devload import DEVICE_DIR, DeviceNamespace
        from firmware.host.shims import PWRON_RESET, BoardState, make_all

        self.dev, self.loop = dev, loop
        flash.mkdir(parents=True, exist_ok=True)
        cfg = firmware_config(dev, key, host, port, poll_s, prefix)
        (flash / "config.json").write_text(json.dumps(cfg))
        provision_device_key(flash, device_key)  # the installer's key: it signs the hourly statements
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


class VirtualWorld(AgentWorld):
    """The gateways' own agents, the real firmware, amqtt and the chain on one simulated clock."""

    def __init__(
        self,
        cfg: EngineConfig,
        specs: list[HouseholdSpec],
        opts: FullStackOptions,
        w3: Any,
        metering: bool = False,
    ) -> None:
        """`metering`: book CPU by layer from the first step (`gridpact bench simulate`)."""
        self.loop = SimLoop(float(cfg.t0) - 1.0, metering)  # the gateways subscribe in the second before t0
        asyncio.set_event_loop(self.loop)
        self.seed = cfg.seed
        self.tasks: list[asyncio.Task[Any]] = []
        self.agent_errors: list[str] = []
        self.rpc_calls: Counter[str] = Counter()  # JSON-RPC requests during the run, by method (benches)
        self.household_brokers: list[LoopBroker] = []  # the households' meter brokers (`meter_brokers`)
        super().__init__(cfg, specs, opts, w3, NO_RPC)

    def make_broker(self) -> Any:
        return LoopBroker(self.loop)

    def meter_brokers(self, host: str, port: int) -> list[tuple[str, int]]:
        """The households' meter brokers (amqtt on this loop), apart from the community's (`host`, `port`),
        as on a Pi where each household has its own; here up to METER_BROKER_HOUSEHOLDS share one, each
        under its own topic prefix. One broker for everything cost O(households^2) at each connect: amqtt
        sends a connecting client the retained messages of every subscription in the broker, and each board
        retains some 20 discovery messages (half of a 100-household hour), which also reached the trading
        clients as malformed messages. One broker per household would add a broker's one-second session
        timer per household; a shard of ten keeps the connect cost small and the timers few."""
        out: list[tuple[str, int]] = []
        for i in range(len(self.specs)):
            if i % METER_BROKER_HOUSEHOLDS == 0:  # each started before the next port is picked
                broker = LoopBroker(self.loop)
                broker.start()
                self.household_brokers.append(broker)
            info = self.household_brokers[-1].info
            out.append((info.host, int(info.port)))
        return out

    @property
    def broker_where(self) -> str:
        """The report's line (no port: the kernel picks it, and summary.json must not depend on it)."""
        return (
            "embedded amqtt on the simulation's loop (loopback TCP): the community's broker, and the "
            f"households' meter brokers apart from it ({METER_BROKER_HOUSEHOLDS} households to one)"
        )

    @broker_where.setter
    def broker_where(self, value: str) -> None:
        """FullStackWorld sets its own line; this world's stays as above."""

    def _start_nodes(self, host: str, port: int) -> str:
        from meter_sim.clock import SimClock

        self.clock = SimClock(start=float(self.cfg.t0))
        self._meters_and_gateways(InlineRunner(self.loop), LoopClock(self.loop), host, port)
        self.run_until(self.cfg.t0)  # the gateways subscribe before the boards boot
        self.nodes = [
            LoopBoard(self.loop, SyncedUart(m, self.clock, self.loop), d, k, mh, mp,
                      self.state / f"flash-{d}", self.opts.poll_s, meter_prefix(s.name), sk)
            for s, m, d, k, sk, (mh, mp) in zip(self.specs, self.meters, self.devs, self.keys, self.device_keys,
                                                self.meter_at, strict=True)
        ]  # fmt: skip
        self.run_until(self.cfg.t0 + SETTLE_S)
        for node in self.nodes:
            node.wait_connected(0)
        return (
            "ran: the real firmware (firmware/device, unmodified) per household as a task of one "
            "discrete-event loop (hil/community/simloop.py), polling its meter over in-process Modbus "
            f"RTU every {self.opts.poll_s} simulated s; each signs its hourly meter statement with its "
            "provisioned device key"
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

        from meter_sim.profiles import parse_profile

        if self.chain is None:
            raise RuntimeError(f"the virtual clock needs the chain layer: {self.chain_error}")
        self.tasks += [g.task for g in self.gateways] + [n.task for n in self.nodes]
        self.chain.w3.middleware_onion.add(
            chain_time_middleware(self.chain, self.loop, self.rpc_calls), "simulated-time"
        )
        t_end = self.cfg.t0 + 3600 * self.cfg.hours
        clock = LoopClock(self.loop)
        for i, (spec, gw) in enumerate(zip(self.specs, self.gateways, strict=True)):
            forecaster = ProfileForecaster(parse_profile(spec.profile_spec), self.cfg.t0, t_end)
            task = gw.start_trading(forecaster, self.state / f"trading-{spec.name}", clock, self.chain.w3,
                                    Account.from_key(self.chain.keys[i]))  # fmt: skip
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
            for broker in self.household_brokers:
                broker.close()
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
