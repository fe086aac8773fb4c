"""Each household's gateway in the simulator, assembled as the Pi's service assembles it.

`SimGateway` is the one assembly both clock modes use: the household's TOML tables (`[gateway]`,
`[meter]` with the node's registered statement signer, `[meter_broker]`, and the trading tables
when it trades) through `gateway.config.parse_config`, `gateway.service.build_runtime(cfg, clock)`,
the Pi's own `run_ingest` (aiomqtt) and `run_trading` as named tasks on the loop the gateway runs on. Only the
clock, the broker address, the meter topics' prefix and what trading gets injected (Web3, key,
forecaster) are the simulator's.

Where that loop runs is the `LoopRunner`: `--clock virtual` runs it in the simulation's own thread
(`InlineRunner`), the wall clock in a thread of its own (`GatewayThread`). The driver's reads of a
gateway (energy, hour batches, sequence numbers, counters) run on that loop through the runner, so
nothing outside the loop touches a store or a counter while ingest or trading uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gateway.config import GatewayConfig
from gateway.service import Runtime
from gridpact.core.clock import Clock
from gridpact.core.wire import Reading

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from gateway.trading.observer import TradeObserver
    from gateway.trading.ports import NetDemandForecaster

T = TypeVar("T")
CALL_S = 120.0  # a read waits this long for the gateways' loop (a loaded machine, a slow chain call)
STOP_S = 10.0
# MQTT keepalive off for the simulated gateways' clients: paho times its pings by the host's clock,
# which would make a run's order of events depend on its wall time (docs/simulate.md, "No wall-clock pings")
NO_PINGS = 0


def meter_prefix(household: str) -> str:
    """Each household's meter topics (`<prefix>/meter/<dev>/...`): on a Pi the meter broker is the
    household's own; here one broker carries every household, so each gets its own namespace."""
    return f"gridpact/{household}"


class SeededEntropy:
    """A simulated gateway's message ids, session ids and fresh nonces, drawn from a seed.

    Same seed, same agreement ids, so the same order wherever ids break ties. Never on a real
    gateway: there the next id or nonce must not be guessable (gateway.trading.entropy)."""

    def __init__(self, seed: str) -> None:
        self._rng = random.Random(seed)

    def token_hex(self, nbytes: int) -> str:
        return self._rng.randbytes(nbytes).hex()

    def randbelow(self, n: int) -> int:
        return self._rng.randrange(n)


class LoopRunner(Protocol):
    """Where a simulated community's gateways run: their tasks and every read of them."""

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the gateways' loop thread and return its result."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Start a named task on the gateways' loop."""
        ...


class InlineRunner:
    """The gateways' loop is the caller's own (`--clock virtual`): calls run at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def call(self, fn: Callable[[], T]) -> T:
        return fn()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return self.loop.create_task(coro, name=name)


async def _result(fn: Callable[[], T]) -> T:
    return fn()


async def _cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class GatewayThread:
    """The wall clock's gateways' loop: one asyncio loop in a thread of the simulator, as the Pi's
    service is one loop; the driver thread reaches it only through `call`."""

    def __init__(self, name: str = "gridpact-gateways") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn: Callable[[], T]) -> T:
        if threading.get_ident() == self._thread.ident:
            return fn()
        return asyncio.run_coroutine_threadsafe(_result(fn), self.loop).result(CALL_S)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return self.call(functools.partial(self.loop.create_task, coro, name=name))

    def cancel(self, tasks: Iterable[asyncio.Task[Any]], timeout: float = STOP_S) -> None:
        """Cancel the tasks and wait (bounded) until their own cleanup has run."""
        if self.loop.is_closed() or not self._thread.is_alive():
            return
        done = asyncio.run_coroutine_threadsafe(_cancel_all(list(tasks)), self.loop)
        with contextlib.suppress(TimeoutError):
            done.result(timeout)

    def stop(self) -> None:
        """Cancel what still runs, stop the loop and its thread, close the loop."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            self.cancel(self.call(asyncio.all_tasks))
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(STOP_S)
        if not self._thread.is_alive():
            self.loop.close()


class SimGateway:
    """One household's gateway as the Pi builds it; its reads are typed and run on its loop."""

    def __init__(self, runner: LoopRunner, name: str, dev: str, key: bytes, state_dir: Path, host: str,
                 port: int, clock: Clock, seed: int, tables: dict[str, dict[str, Any]],
                 statement_signer: str | None = None) -> None:  # fmt: skip
        from gateway.config import parse_config
        from gateway.ingest.mqtt import run_ingest
        from gateway.service import build_runtime

        self.runner, self.name, self.dev = runner, name, dev
        self.entropy = SeededEntropy(f"{seed}-{name}-trading")
        home = state_dir / f"gateway-{name}"
        home.mkdir(parents=True, exist_ok=True)
        (home / "meter-hmac.key").write_text(key.hex())
        doc: dict[str, Any] = {
            "gateway": {"id": name, "state_dir": str(home)},
            "meter": {
                "device_id": dev,
                "topic_prefix": meter_prefix(name),
                "hmac_key_file": "meter-hmac.key",
            }
            # the node's device-key address as the installer registered it: its signed statements are kept
            | ({"statement_signer": statement_signer} if statement_signer else {}),
            "meter_broker": {"host": host, "port": port, "keepalive_s": NO_PINGS},
            "metrics": {"enabled": False},
        } | tables
        self.cfg: GatewayConfig = parse_config(doc, home, env={})
        # the store is opened on the loop's thread, where ingest and trading use it
        self._rt: Runtime = runner.call(functools.partial(build_runtime, self.cfg, clock, {}))
        self.span: tuple[int, int] = (0, 0)  # the hours whose readings `seqs` reads back (set by the world)
        rt = self._rt
        ingest = run_ingest(rt.broker, rt.handler, rt.metrics, rt.latch, random.Random(f"{seed}-{name}"))
        self.task = runner.spawn(ingest, f"ingest-{name}")

    def start_trading(self, forecaster: NetDemandForecaster, state_dir: Path, clock: Clock, web3: Web3,
                      account: LocalAccount, observer: TradeObserver | None = None) -> asyncio.Task[None]:  # fmt: skip
        """The Pi's `run_trading` on the gateway's own store and counters, as the task `trading-<name>`;
        the forecaster, Web3 and key are the simulator's."""
        from gateway.trading.service import TradingDeps, run_trading

        if self.cfg.trading is None:
            raise RuntimeError(f"gateway {self.name} has no trading tables")
        rt = self._rt
        deps = TradingDeps(rt.store, forecaster, rt.metrics, self.name, state_dir, clock,
                           web3=web3, account=account, observer=observer, entropy=self.entropy)  # fmt: skip
        return self.runner.spawn(run_trading(self.cfg.trading, deps), f"trading-{self.name}")

    # ------------------------------------------------------------ reads (each one on the loop)

    def samples(self, name: str) -> dict[tuple[str, ...], float]:
        """One of the gateway's own metrics by label values (`gateway.ops.metrics.Metrics`)."""
        return self.runner.call(functools.partial(self._rt.metrics.sample_values, name))

    def _energy(self, t0: int, t1: int) -> tuple[int, int, bool]:
        self._rt.handler.flush()
        d = self._rt.store.energy_between(t0, t1)
        return int(d.import_wh), int(d.export_wh), bool(d.complete)

    def energy(self, t0: int, t1: int) -> tuple[int, int, bool]:
        """(import Wh, export Wh, complete) in [t0, t1) from the verified counters."""
        return self.runner.call(functools.partial(self._energy, t0, t1))

    def _hour_batch(self, hour_start: int) -> list[bytes]:
        self._rt.handler.flush()
        return self._rt.store.hour_batch(hour_start)

    def hour_batch(self, hour_start: int) -> list[bytes]:
        """The raw verified readings of one hour, in sequence order (what the gateway anchors)."""
        return self.runner.call(functools.partial(self._hour_batch, hour_start))

    def _net_power(self, start: int, steps: int, step_s: int) -> list[float]:
        return [float(v) for v in self._rt.store.net_power(start, steps, step_s)]

    def net_power(self, start: int, steps: int, step_s: int) -> list[float]:
        """Mean net power (W) per step from the verified readings (the household view's curve)."""
        return self.runner.call(functools.partial(self._net_power, start, steps, step_s))

    def _newest(self) -> Reading | None:
        return self._rt.handler.newest

    def newest(self) -> Reading | None:
        """The newest verified reading, if any."""
        return self.runner.call(self._newest)

    def _last_seq(self) -> int:
        return self._rt.handler.verifier.last_seq.get(self.dev, 0)

    def wait_seq(self, seq: int, timeout: float) -> bool:
        """Wait until the reading `seq` has been accepted (then commit it); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.runner.call(self._last_seq) < seq:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        self.runner.call(self._rt.handler.flush)
        return True

    @property
    def subscribed(self) -> bool:
        """Connected and subscribed to the meter broker (the Pi's `meter_broker_connected` gauge)."""
        return self.samples("meter_broker_connected").get((), 0) == 1

    def wait_subscribed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.subscribed:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway {self.name} could not subscribe in {timeout:.0f} s")
            time.sleep(0.01)

    @property
    def built_by_service(self) -> bool:
        """The `gateway_info` gauge that `gateway.service.build_runtime` sets, with this gateway's id."""
        return self.samples("gateway_info").get((self.name,), 0) == 1

    @property
    def outcomes(self) -> dict[str, int]:
        """Readings accepted, and every rejection by its reason (the gateway's own counters)."""
        out = {"accepted": int(self.samples("ingest_accepted_total").get(("reading",), 0))}
        for (kind, reason), n in self.samples("ingest_rejected_total").items():
            if kind == "reading" and n:
                out[reason] = out.get(reason, 0) + int(n)
        return out

    def _seqs(self) -> list[int]:
        from gridpact.core.wire import parse_body

        self._rt.handler.flush()
        return [
            parse_body(p).seq
            for hour in range(self.span[0], self.span[1], 3600)
            for p in self._rt.store.hour_batch(hour)
        ]

    @property
    def seqs(self) -> list[int]:
        """The sequence numbers of the verified readings in the gateway's store (over `span`)."""
        return self.runner.call(self._seqs)

    def _close(self) -> None:
        self.task.cancel()
        self._rt.handler.flush()
        self._rt.store.close()

    def close(self) -> None:
        """Stop ingest and close the store (the world cancels the loop's tasks first on the wall clock)."""
        self.runner.call(self._close)
