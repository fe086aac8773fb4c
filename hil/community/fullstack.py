"""The full-stack community: software meters -> meter nodes -> MQTT -> household gateways -> Market contract.

The engine's hourly market and ledger run on top; this world runs each hour underneath on a
stepped clock, measures each household's energy from its gateway's verified meter data, and puts
agreements, settlements and reading anchors on chain. Every layer reports whether it really ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hil.community.endpoints import connect_chain, parse_broker_url, quiet_amqtt, summer_start_after
from hil.community.engine import (
    EngineConfig,
    EngineResult,
    PvTrip,
    SettledTrade,
    run_engine,
)
from hil.community.households import HouseholdSpec, make_community
from hil.community.ledger import Ledger
from hil.community.market import Strategy, Trade, hourly_concession_market

if TYPE_CHECKING:
    from gridpact.core.clock import Clock
    from hil.community.gateways import GatewayThread, LoopRunner

POLL_S = 60


@dataclass
class FullStackOptions:
    """Where the broker and chain are (None: embedded ones) and whether to inject faults."""

    broker_url: str | None = None
    chain_url: str | None = None
    faults: bool = False
    anchor: bool = True
    poll_s: int = POLL_S
    nodes: str = "standin"  # or "firmware": the real firmware on virtual boards in virtual time
    clock: str = "wall"  # or "virtual": every part on one discrete-event loop (hil/community/virtualworld.py)
    market: str = "p2p"  # the gateways' [agent] market: "p2p" or "stations" (grid-station auctions)


class FullStackWorld:
    """Owns the services and per-household parts for one run; `close()` stops all of them."""

    def __init__(
        self, cfg: EngineConfig, specs: list[HouseholdSpec], opts: FullStackOptions, w3: Any
    ) -> None:
        from hil.community.chain import CommunityChain

        self.cfg, self.specs, self.opts = cfg, specs, opts
        self.events: list[dict[str, Any]] = []
        self.checks: list[str] = []
        self.problems: list[str] = []
        self._dir = tempfile.TemporaryDirectory(prefix="gridpact-simulate-")
        self.broker: Any = None
        if opts.broker_url:
            host, port = parse_broker_url(opts.broker_url)
        else:
            self.broker = self.make_broker()
            info = self.broker.start()
            host, port = info.host, info.port
        self.broker_where = opts.broker_url or f"{self.broker.info.kind if self.broker else ''} {host}:{port}"
        from hil.community.chain import meter_address
        from hil.community.nodes import device_keys

        # each meter node's device key, provisioned as an installer would (from the seed: reproducible);
        # the community registers its address on chain (`setMeter`), each gateway as its statement signer
        self.device_keys = device_keys(cfg.seed, [s.name for s in specs])
        self.signers = [meter_address(k) for k in self.device_keys]
        self.chain: CommunityChain | None = CommunityChain(
            w3, [s.name for s in specs], meter_keys=self.device_keys
        )
        self.chain_error = ""
        try:
            self.chain.setup(int(cfg.start_tokens) * 10**cfg.decimals)
        except Exception as exc:  # the layer did not run: said in the report, never pretended
            self.chain_error = f"{type(exc).__name__}: {str(exc)[:300]}"
            self.chain = None
        self.keys = [hashlib.sha256(f"gridpact-sim-{cfg.seed}-{s.name}".encode()).digest() for s in specs]
        self.devs = [f"node-{s.name}" for s in specs]
        self.state = Path(self._dir.name)
        self.incomplete_windows = 0
        self.metered: dict[int, tuple[list[int], list[int]]] = {}  # hour -> (import, export) Wh per household
        # settlements on chain, and of them those from the meters' signed statements (settleByMeters)
        self.settlement: dict[str, int] = {"settled": 0, "from_meter_statements": 0}
        self.gateway_thread: GatewayThread | None = None  # the wall clock's gateways' loop
        self.nodes_layer = self._start_nodes(host, port)

    def make_broker(self) -> Any:
        """The broker restart of --faults needs a broker that really drops its clients when stopped:
        Mosquitto (a process); the embedded amqtt otherwise."""
        from hil.services import EmbeddedBroker, MosquittoBroker

        return MosquittoBroker() if self.opts.faults else EmbeddedBroker()

    def profiles(self) -> list[Any]:
        """Each household's meter_sim profile, its battery inside, PV trips of --faults applied."""
        from hil.community.faults import TrippedProfile
        from meter_sim.profiles import parse_profile

        out = []
        for i, s in enumerate(self.specs):
            spec = s.profile_spec + (f",battery_kwh={s.battery_kwh:g}" if s.battery_kwh else "")
            profile = parse_profile(spec)
            trips = [
                (self.cfg.t0 + 3600.0 * t.start_hour, self.cfg.t0 + 3600.0 * t.end_hour)
                for t in self.cfg.pv_trips
                if t.household == i
            ]
            out.append(TrippedProfile(profile, trips))  # windows may be added during the run (--faults)
        self.tripped: list[TrippedProfile] = out
        return out

    def gateway_tables(self, i: int, host: str, port: int) -> dict[str, dict[str, Any]]:
        """Household i's gateway tables besides [gateway]/[meter]/[meter_broker]: none (ingest only);
        the gateways' own agents add the trading tables."""
        return {}

    def reading_span(self) -> tuple[int, int]:
        """The hours whose verified readings the checks read back from each gateway's store."""
        return self.cfg.t0 - 3600, self.cfg.t0 + 3600 * (self.cfg.hours + 1)

    def _meters_and_gateways(self, runner: LoopRunner, clock: Clock, host: str, port: int) -> None:
        """Each household's software meter on `self.clock` and its gateway (built as the Pi's service
        builds it) on `runner`'s loop with `clock`: the same in both clock modes."""
        from hil.community.gateways import SimGateway
        from meter_sim.farm import MeterFarm

        self.farm = MeterFarm(self.clock, seed=self.cfg.seed)
        self.meter_at = self.meter_brokers(host, port)
        self.meters = [
            self.farm.add_meter("sdm120", 1, p, name=s.name, tick_s=10.0)
            for p, s in zip(self.profiles(), self.specs, strict=True)
        ]
        self.gateways = [
            SimGateway(runner, s.name, d, k, self.state, mh, mp, clock, self.cfg.seed,
                       self.gateway_tables(i, host, port), self.signers[i])
            for i, (s, d, k, (mh, mp)) in enumerate(zip(self.specs, self.devs, self.keys, self.meter_at, strict=True))
        ]  # fmt: skip
        span = self.reading_span()
        for g in self.gateways:
            g.span = span

    def meter_brokers(self, host: str, port: int) -> list[tuple[str, int]]:
        """Each household's meter broker (host, port): here the run's one broker carries them all, each
        household under its own topic prefix (`meter_prefix`)."""
        return [(host, port)] * len(self.specs)

    def _start_nodes(self, host: str, port: int) -> str:
        """Meters on a stepped clock, each household's gateway on the gateways' loop thread, and the
        nodes; returns the boards layer's line for the report."""
        from hil.community.agentclock import SteppedAsyncClock
        from hil.community.gateways import GatewayThread, meter_prefix
        from hil.community.nodes import make_nodes
        from meter_sim.clock import SimClock

        self.clock = SimClock(start=float(self.cfg.t0))
        self.aclock = SteppedAsyncClock(self.clock)  # the gateways' clock: simulated time from asyncio
        self.gateway_thread = GatewayThread()
        self._meters_and_gateways(self.gateway_thread, self.aclock, host, port)
        self.nodes, layer = make_nodes(
            self.opts.nodes, self.meters, self.devs, self.keys, host, port, self.state,
            float(self.cfg.t0), self.opts.poll_s, [meter_prefix(s.name) for s in self.specs], self.device_keys,
        )  # fmt: skip
        for g in self.gateways:
            g.wait_subscribed(15)
        for node in self.nodes:
            node.wait_connected(15)
            node.poll(self.clock.now())  # a reading at t0, so the first window is covered
        return layer

    # ------------------------------------------------------------ the hour underneath the market

    def _poll_all(self) -> None:
        self.clock.advance(self.opts.poll_s)
        now = self.clock.now()
        for node in self.nodes:
            node.poll(now)

    def _fault_schedule(self, k: int, minute: int) -> None:
        if not self.opts.faults:
            return
        now = self.clock.now()
        hours = self.cfg.hours
        if (
            k == min(8, hours - 1) and minute == 10
        ):  # a meter stops answering for 20 minutes (inside one hour)
            for i in (1, 2):
                self.meters[i].inject("no_response", 20 * 60.0)
                self.events.append(
                    {"t": int(now), "event": "meter outage", "detail": f"{self.specs[i].name} 20 min"}
                )
        if k == max(0, min(14, hours - 2)) and minute == 20:
            self._broker_outage(now)

    def _broker_outage(self, now: float) -> None:
        if self.broker is None:
            self.events.append(
                {"t": int(now), "event": "broker restart", "detail": "skipped: external broker"}
            )
            return
        self._drain(10)
        self.broker.stop()
        deadline = time.monotonic() + 10
        while any(n.connected for n in self.nodes) or any(g.subscribed for g in self.gateways):
            if time.monotonic() > deadline:
                self.problems.append("clients did not notice the broker going down within 10 s")
                break
            time.sleep(0.01)
        down_polls = 5
        for _ in range(down_polls):  # the nodes keep polling and buffer what they cannot publish
            self._poll_all()
        buffered = sum(len(n.buffer) for n in self.nodes)
        self.broker.start()
        for g in self.gateways:
            g.wait_subscribed(20)
        for node in self.nodes:
            node.wait_connected(20)
            node.flush()
        self.events.append(
            {"t": int(now), "event": "broker restart",
             "detail": f"down for {down_polls * self.opts.poll_s} simulated s; {buffered} readings buffered"}
        )  # fmt: skip

    def _drain(self, timeout: float) -> None:
        """Wait until every gateway has accepted every reading its node published."""
        for node, g in zip(self.nodes, self.gateways, strict=True):
            node.flush()
            if not g.wait_seq(node.seq, timeout):
                self.problems.append(f"{g.name}: reading {node.seq} not ingested within {timeout:.0f} s")

    def run_hour(self, k: int) -> None:
        for minute in range(0, 60, max(1, self.opts.poll_s // 60)):
            self._fault_schedule(k, minute)
            self._poll_all()
        self._drain(20)

    def measure(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        t0 = self.cfg.t0 + 3600 * k
        imp, exp = np.zeros(len(self.specs)), np.zeros(len(self.specs))
        for i, g in enumerate(self.gateways):
            wh_in, wh_out, complete = g.energy(t0, t0 + 3600)
            imp[i], exp[i] = wh_in / 1000, wh_out / 1000
            self.incomplete_windows += not complete
        self.metered[k] = ([round(x * 1000) for x in imp], [round(x * 1000) for x in exp])  # the meters' Wh
        return imp, exp

    def _trip_a_seller(self, k: int, trades: list[Trade]) -> None:
        """--faults: the household that sold most in this window loses its inverter for 4 hours."""
        first = min(9, max(0, self.cfg.hours - 2))
        if not self.opts.faults or self.cfg.pv_trips or not first <= k <= first + 3 or not trades:
            return
        sold: dict[int, int] = {}
        for t in trades:
            sold[t.seller] = sold.get(t.seller, 0) + t.wh
        seller = max(sold, key=lambda h: (sold[h], -h))
        end = min(k + 4, self.cfg.hours)
        self.tripped[seller].windows.append((self.cfg.t0 + 3600.0 * k, self.cfg.t0 + 3600.0 * end))
        self.cfg.pv_trips = (PvTrip(seller, k, end),)
        detail = (
            f"{self.specs[seller].name} PV inverter off for hours {k}-{end}, after selling {sold[seller]} Wh"
        )
        self.events.append(
            {"t": self.cfg.t0 + 3600 * k, "event": "under-delivering seller", "detail": detail}
        )

    def agreements(self, k: int, trades: list[Trade]) -> None:
        self._trip_a_seller(k, trades)
        if self.chain is not None:
            self.chain.submit(k, self.cfg.t0 + 3600 * k, trades)

    def settlements(self, k: int, settled: list[SettledTrade]) -> None:
        hour_start = self.cfg.t0 + 3600 * k
        if self.chain is None:
            return
        on_chain = self.chain.settle(
            k, hour_start, [s.delivered_wh for s in settled], self.metered.pop(k, None)
        )
        for s, (paid, refunded) in zip(settled, on_chain, strict=True):
            if (paid, refunded) != (s.to_seller, s.refund):
                self.problems.append(
                    f"hour {k}: chain paid/refunded {paid}/{refunded}, ledger {s.to_seller}/{s.refund}"
                )
        if self.opts.anchor:
            from gateway.ingest.anchoring import batch_hash

            for i, g in enumerate(self.gateways):
                batch = g.hour_batch(hour_start)
                if batch:
                    self.chain.anchor(i, hour_start, batch_hash(batch), len(batch))

    # ------------------------------------------------------------ after the run

    def taken(self) -> tuple[list[int], int]:
        """Per node the last sequence number it took, and how many readings were replayed late."""
        return [n.seq for n in self.nodes], sum(n.replayed for n in self.nodes)

    def verify(self, result: EngineResult) -> None:
        """Nothing lost (no seq gap, no rejected reading), chain == ledger, tokens conserved on chain."""
        self.verify_readings()
        self.verify_trips_and_chain(result)

    def verify_readings(self) -> None:
        """Every reading a node published was accepted by its gateway (duplicates aside)."""
        lost = 0
        last_seqs, replayed = self.taken()
        for last, g in zip(last_seqs, self.gateways, strict=True):
            gaps = sorted(set(range(1, last + 1)) - set(g.seqs))
            lost += len(gaps)
            # a duplicate is the normal QoS 1 resend (docs/wire/reading-v1.md), anything else is a fault
            bad = {k: v for k, v in g.outcomes.items() if k not in ("accepted", "duplicate")}
            if gaps or bad:
                self.problems.append(f"{g.name}: missing seqs {gaps[:10]}, rejections {bad}")
        published = sum(last_seqs)
        self.checks.append(
            f"readings published {published}, lost {lost}, replayed after the broker outage {replayed}"
        )
        accepted = sum(g.outcomes["accepted"] for g in self.gateways)
        built = sum(g.built_by_service for g in self.gateways)
        self.checks.append(
            f"gateways built by gateway.service.build_runtime: {built} of {len(self.gateways)}; "
            f"readings their own counters accepted (ingest_accepted_total): {accepted}"
        )
        if built != len(self.gateways) or accepted != published:
            self.problems.append(f"the gateways' own counters accepted {accepted} of {published} readings")
        self.checks.append(
            f"delivery windows not fully covered by verified readings: {self.incomplete_windows}"
        )
        if lost:
            self.problems.append(f"{lost} readings lost")

    def verify_trips_and_chain(self, result: EngineResult) -> None:
        """Under-delivery refunded; the community's batches on chain equal the simulation's ledger."""
        for trip in self.cfg.pv_trips:
            hit = [
                st for st in result.settled
                if st.trade.seller == trip.household and trip.start_hour <= st.hour < trip.end_hour
            ]  # fmt: skip
            short = [st for st in hit if st.delivered_wh < st.trade.wh]
            refunded = all(st.refund > 0 for st in short)
            self.checks.append(
                f"under-delivering seller {self.specs[trip.household].name} (PV tripped, hours "
                f"{trip.start_hour}-{trip.end_hour}): {len(hit)} agreements, {len(short)} short, "
                f"each short one refunded: {refunded}"
            )
            if not refunded:
                self.problems.append("an under-delivered agreement was not refunded")
        if self.chain is None:
            self.checks.append(f"chain layer did not run: {self.chain_error}")
            return
        totals = self.chain.totals()
        ledger: Ledger = result.ledger
        same = totals.balances == ledger.balance
        conserved = totals.minted == ledger.minted and totals.market_holds == sum(totals.balances)
        self.checks.append(f"chain balances equal the simulation's ledger: {same}")
        self.checks.append(
            f"tokens conserved on chain (minted {totals.minted / 10**self.cfg.decimals:g} == "
            f"held by the market {totals.market_holds / 10**self.cfg.decimals:g}, nothing in escrow): {conserved}"
        )
        self.checks.append(
            f"on chain: {totals.settled_events} settlements ({totals.meter_settled} from the meters' signed "
            f"statements), {totals.refunded_events} with a refund, {totals.anchors} reading batches anchored, {totals.transactions} transactions, {totals.gas_used} gas"
        )
        if not same or not conserved:
            self.problems.append("the chain disagrees with the simulation")
        self.chain_totals = totals
        self.settlement = {"settled": totals.settled_events, "from_meter_statements": totals.meter_settled}

    def close_nodes(self) -> None:
        for node in self.nodes:
            node.close()

    def close(self) -> None:
        self.close_nodes()
        thread = self.gateway_thread
        if thread is not None:
            thread.cancel(thread.call(asyncio.all_tasks))  # ingest and trading end before the stores close
        for g in self.gateways:
            g.close()
        if thread is not None:
            thread.stop()
        if self.broker is not None:
            self.broker.close()
        self._dir.cleanup()


def run_fullstack(
    cfg: EngineConfig,
    opts: FullStackOptions,
    strategy: Strategy = hourly_concession_market,
    progress: Callable[[int, int, Ledger], None] | None = None,
) -> tuple[EngineResult, dict[str, Any]]:
    """Run the community on the full stack; returns the engine result and the report summary."""
    from hil.community.summary import summarize

    started = time.perf_counter()
    w3, chain_where = connect_chain(opts.chain_url)
    head = int(w3.eth.get_block("latest")["timestamp"])
    cfg.t0 = summer_start_after(head)
    cfg.decimals = 18
    specs = make_community(cfg.households, cfg.seed)
    with quiet_amqtt():
        world = FullStackWorld(cfg, specs, opts, w3)
        try:
            result = run_engine(cfg, strategy, progress=progress, world=world)
            world.verify(result)
        finally:
            world.close()
    result.wall_s = time.perf_counter() - started
    layers = {
        "meters": f"ran: {len(specs)} meter_sim SDM120 meters (battery inside the meter model)",
        "boards": world.nodes_layer,
        "mqtt": f"ran: {world.broker_where}",
        "gateways": "ran (ingest only): per household gateway.service.build_runtime and the Pi's run_ingest "
        "(verifier + IngestHandler + ReadingStore); "
        f"negotiation in process by the '{cfg.strategy_name}' strategy, not by gateway.trading over MQTT",
        "chain": f"ran: contracts.deploy on {chain_where}; agreements signed by each household's key, "
        "submitted and settled in batches by the community, from meter statements it signs with each "
        "household's registered device key (settleByMeters)"
        if world.chain is not None
        else f"NOT RUN on {chain_where}: {world.chain_error} (token accounting by the simulation's ledger only)",
    }
    summary = summarize(result, layers)
    summary["checks"] = world.checks + [f"PROBLEM: {p}" for p in world.problems]
    summary["events"] = world.events
    summary["settlement"] = world.settlement
    summary["community"]["token_conservation"] = bool(
        summary["community"]["token_conservation"] and not world.problems
    )
    if world.chain is not None:
        summary["chain"] = {
            "deployment": {k: v for k, v in world.chain.deployment.items() if k != "markets"}
            | {"market": world.chain.market.address},
            "transactions": world.chain_totals.transactions,
            "gas_used": world.chain_totals.gas_used,
        }
    return result, summary
