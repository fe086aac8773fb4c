"""Run `--agents gateway` end to end: services, gateways trading, the engine's meters, the checks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hil.community.agentledger import (
    ChainAgreement,
    apply_to_result,
    path_gas,
    read_agreements,
    replay,
    under_delivered,
)
from hil.community.agents import KEEPER, AgentWorld, gateway_events, no_engine_trades
from hil.community.endpoints import connect_chain, quiet_amqtt, summer_start_after
from hil.community.engine import EngineConfig, EngineResult, run_engine
from hil.community.fullstack import FullStackOptions
from hil.community.households import make_community
from hil.community.ledger import Ledger
from hil.community.simdash import SimDashboard
from hil.community.virtualworld import VirtualWorld


def journal_windows(state: Path) -> tuple[dict[bytes, int], dict[str, int]]:
    """From every gateway's journal: agreement id -> delivery start, and agreements per state."""
    from gateway.chain.journal import Journal

    starts: dict[bytes, int] = {}
    states: dict[str, int] = {}
    for db in sorted(state.glob("trading-*/trading.db")):
        journal = Journal(db)
        try:
            for rec in journal.agreements():
                starts[bytes.fromhex(rec.id.removeprefix("0x"))] = int(rec.terms["deliveryStart"])
                states[rec.state] = states.get(rec.state, 0) + 1
        finally:
            journal.close()
    return starts, states


def work_done(world: AgentWorld) -> dict[str, int]:
    """What the run carried: readings taken, peer messages accepted, transactions sent (all senders)."""
    assert world.chain is not None
    peer = sum(int(n) for gw in world.gateways for n in gw.samples("peer_messages_accepted_total").values())
    w3 = world.chain.w3
    senders = [*world.chain.addresses, world.chain.community.account.address]
    return {
        "readings": sum(world.taken()[0]),
        "peer_messages": peer,
        "transactions": sum(int(w3.eth.get_transaction_count(a)) for a in senders),
    }


def check_chain(world: AgentWorld, result: EngineResult, still_open: int) -> None:
    """Chain events -> ledger -> report; per household reconciliation, conservation, refunds."""
    assert world.chain is not None
    cfg = world.cfg
    unit = 10**cfg.decimals
    starts, states = journal_windows(world.state)
    agreements = read_agreements(world.chain.market, world.chain.addresses)

    def hour_of(ag: ChainAgreement) -> int:
        return (starts.get(ag.id, cfg.t0) - cfg.t0) // 3600

    ledger, settled, disagreements = replay(
        agreements, len(world.specs), int(cfg.start_tokens) * unit, unit, hour_of
    )
    apply_to_result(result, ledger, settled, world.hourly_balances)
    world.problems.extend(disagreements)
    market = world.chain.market
    balances = [int(market.functions.balanceOf(a).call()) for a in world.chain.addresses]
    minted = int(world.chain.token.functions.totalSupply().call())
    holds = int(world.chain.token.functions.balanceOf(market.address).call())
    same = balances == ledger.balance
    conserved = (
        minted == ledger.minted
        and holds == sum(balances) + ledger.escrowed() + ledger.treasury
        and ledger.conserved()
    )
    short, in_full, refunded = under_delivered(settled)
    disputes = sum(ag.disputed for ag in agreements)
    by_meters = sum(ag.by_meters for ag in agreements if ag.delivered is not None)
    by_keeper = sum(ag.by_meters and ag.settled_by == KEEPER for ag in agreements if ag.delivered is not None)
    gas, txs = path_gas(market)
    per_agreement = round(gas / len(agreements)) if agreements else 0
    world.settlement = {"settled": len(settled), "from_meter_statements": by_meters, "by_keeper": by_keeper,
                        "gas_per_agreement": per_agreement}  # fmt: skip
    world.checks += [
        f"agreements made by the gateways over MQTT and submitted on chain: {len(agreements)} "
        f"(journals: {', '.join(f'{k} {v}' for k, v in sorted(states.items())) or 'none'})",
        f"settled {len(settled)}, escrow reclaimed {sum(ag.reclaimed is not None for ag in agreements)}, "
        f"disputed {disputes} (resolved by the community at min(seller, buyer) Wh: {world.resolved}), still open after {world.tail_note}: {still_open}",
        f"on chain: {len(settled)} settlements ({by_meters} from the meters' signed statements, "
        f"settleByMeters, {by_keeper} of them in the keeper's hourly call; {len(settled) - by_meters} from "
        "the parties' delivery reports)",
        f"gas on the agreements' path: {per_agreement:,} per agreement ({txs} transactions opening, settling, "
        "reporting or reclaiming them, the keeper's hourly calls included)",
        f"per-household free balances on chain equal the replayed ledger: {same}",
        f"tokens conserved on chain (minted {minted / unit:g}, held by the market {holds / unit:g}, "
        f"in escrow {ledger.escrowed() / unit:g}, treasury {ledger.treasury / unit:g}): {conserved}",
        f"under-delivered agreements {short}, {in_full} of them charged in full on the larger of two reports "
        f"(the contract's rule: the gap to the treasury); each charged below its quantity refunded: {refunded}",
    ]
    if world.agent_errors:
        world.problems += world.agent_errors
    if not same or not conserved:
        world.problems.append("the chain disagrees with the replayed ledger")
    if not refunded:
        world.problems.append("a buyer charged for less than its agreement's quantity was not refunded")


def live_progress(
    world: AgentWorld, progress: Callable[[int, int, Ledger], None] | None
) -> Callable[[int, int, Ledger], None] | None:
    """The progress callback fed the chain's state (the engine's own market is empty here)."""
    if progress is None:
        return None

    def report(done: int, total: int, ledger: Ledger) -> None:
        progress(done, total, world.live_ledger if world.live_ledger is not None else ledger)

    return report


def run_agents(
    cfg: EngineConfig,
    opts: FullStackOptions,
    progress: Callable[[int, int, Ledger], None] | None = None,
    start_hour: int = 0,
    cpu_out: dict[str, float] | None = None,
    dashboard: SimDashboard | None = None,
    keep: contextlib.ExitStack | None = None,
    calls_out: dict[str, int] | None = None,
) -> tuple[EngineResult, dict[str, Any]]:
    """The community with every household's gateway trading on its own; (result, report summary).

    `start_hour` starts the day later (tests: a few sunny hours instead of the night). Under
    `--clock virtual`, `cpu_out` receives the loop's CPU seconds by layer and `calls_out` the JSON-RPC
    requests by method (benches; never in the summary). `dashboard` serves the run live once its gateways
    trade; with `keep`, the run's services, gateways and dashboard are handed to that stack instead of
    being stopped on return (closed on any error).
    """
    from hil.community.summary import summarize
    from hil.services import AnvilNode

    if opts.faults:
        raise ValueError("--faults is not available with --agents gateway yet")
    started = time.perf_counter()
    anvil = None
    url = opts.chain_url
    virtual = opts.clock == "virtual"
    if dashboard is not None and virtual:
        raise ValueError("--dashboard serves the wall-clock run (--clock wall), not --clock virtual")
    with contextlib.ExitStack() as stack:  # closes in reverse: dashboard, world, anvil
        if url is None:  # the gateways reach their chain over JSON-RPC, as a Pi does
            anvil = AnvilNode()
            stack.callback(anvil.close)
            url = anvil.start().url
        assert url is not None
        w3, chain_where = connect_chain(url)
        cfg.t0 = summer_start_after(int(w3.eth.get_block("latest")["timestamp"])) + 3600 * start_hour
        cfg.decimals = 18
        specs = make_community(cfg.households, cfg.seed)
        with quiet_amqtt():
            world = (VirtualWorld(cfg, specs, opts, w3, metering=cpu_out is not None) if virtual
                     else AgentWorld(cfg, specs, opts, w3, url))  # fmt: skip
            if cpu_out is not None and isinstance(world, VirtualWorld):
                stack.callback(cpu_out.update, world.loop.cpu)  # after the world's close
            if calls_out is not None and isinstance(world, VirtualWorld):
                stack.callback(calls_out.update, world.rpc_calls)
            stack.callback(world.close)
            world.start_agents()
            if dashboard is not None:
                stack.callback(dashboard.stop)
                dashboard.start(world, url)
            result = run_engine(cfg, no_engine_trades, progress=live_progress(world, progress), world=world)
            still_open = world.finish()
            world.verify_readings()
            check_chain(world, result, still_open)
            events = gateway_events(world)
            throughput = work_done(world)
        if keep is not None:  # the caller keeps the run's parts up (the dashboard after the report)
            keep.push(stack.pop_all())
    result.wall_s = time.perf_counter() - started
    where = f"anvil {url} (started for this run)" if anvil is not None else chain_where
    if virtual:
        where = (
            "anvil started for this run, called inline over JSON-RPC from the simulation's loop; "
            "block time = the simulated time"
        )
    layers = {
        "meters": f"ran: {len(specs)} meter_sim SDM120 meters (battery inside the meter model)",
        "boards": world.nodes_layer,
        "mqtt": f"ran: {world.broker_where}",
        "gateways": "ran: per household the Pi's assembly (gateway.config.parse_config, "
        "gateway.service.build_runtime) with its run_ingest (verifier + IngestHandler + ReadingStore) and "
        "gateway.trading.run_trading as tasks on the simulated clock: forecast, signed peer negotiation over MQTT, "
        "EIP-712 agreements, settlement from its meter node's device-signed hourly statements (settleByMeters; "
        "delivery reports from its own meter data where no statement counts), refunds, anchoring; "
        f"{specs[KEEPER].name}'s gateway also runs the community keeper ([keeper], docs/keeper.md): each hour's "
        "agreements submitted in one call, each hour's meter windows settled in one call",
        "chain": f"ran: contracts.deploy on {where}; each meter node's device key registered by the community "
        "(setMeter); agreements and settlements sent by the keeper's gateway (a party's own gateway when the keeper "
        "is late), reports and anchors by each household's own; "
        "the report's trades and tokens read back from the Market's events",
    }
    summary = summarize(result, layers)
    summary["config"]["strategy"] = "gateway agents (gateway.trading)"
    summary["checks"] = world.checks + [f"PROBLEM: {p}" for p in world.problems]
    summary["events"] = world.events
    summary["settlement"] = world.settlement
    summary["gateway_events"] = events
    summary["work"] = throughput
    summary["community"]["token_conservation"] = bool(
        summary["community"]["token_conservation"] and not world.problems
    )
    if dashboard is not None and dashboard.urls is not None:
        summary["dashboard"] = dashboard.urls.as_dict()
    return result, summary
