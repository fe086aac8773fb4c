"""`run_trading`: the gateway's trading task (seam with gateway-core's service).

Structured concurrency: one TaskGroup runs the community transport, the agent's window loop,
the settler, the anchorer and the roster refresh; cancelling `run_trading` (SIGTERM on the
service) cancels them all and closes the journal. Start-up order is what makes a crash safe:
the journal's unconfirmed transactions are re-broadcast and every open agreement is checked
against the chain before anything new is negotiated.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import RPCEndpoint

from gateway.chain.errors import ChainError
from gateway.chain.journal import AgreementRecord, Journal
from gateway.chain.keystore import PassphraseSource, load_account
from gateway.chain.market import Market, market_abi, terms_from_dict
from gateway.chain.sender import GWEI, SenderPolicy, TxSender
from gateway.inverter import ModbusInverter
from gateway.trading.agent import Agent
from gateway.trading.chainrun import ChainRunner
from gateway.trading.config import CommunityConfig, TradingConfig
from gateway.trading.entropy import SYSTEM, Entropy
from gateway.trading.inbox import Inbox
from gateway.trading.keeper import (
    Keeper,
    KeeperBook,
    agreements_filter,
    agreements_topic,
    encode_agreement,
    encode_publication,
    meters_filter,
    meters_topic,
)
from gateway.trading.observer import TradeObserver
from gateway.trading.ports import (
    AgentEvents,
    HouseholdPort,
    MarketPort,
    MetricsRegistry,
    NetDemandForecaster,
    ReadingSource,
)
from gateway.trading.roster import Roster
from gateway.trading.settlement import (
    OPEN_STATES,
    Anchorer,
    MeterEvidence,
    Settler,
    Timing,
    evidence_for,
    submit_after,
)
from gateway.trading.store import StorePlan, StoreSchedule, run_store
from gateway.trading.transport import Transport, community_tls
from gridpact.core.clock import Clock
from gridpact.core.config import SecretRef, read_secret
from gridpact.core.eip712 import Domain
from gridpact.core.tariff import Tariff

log = logging.getLogger("gridpact.gateway.trading")
HOUR = 3600
BALANCE_EVERY_S = 60.0  # how often the journal is looked at for moved agreements
BALANCE_REFRESH_S = 900.0  # the chain is asked at least this often


@dataclass
class TradingDeps:
    """What trading takes from the rest of the gateway; `web3`/`account` let the simulator inject its own."""

    store: ReadingSource  # gateway.storage.ReadingStore
    forecaster: NetDemandForecaster | None  # gateway.forecast's model; None: the config's fixed_net_wh only
    metrics: MetricsRegistry  # gateway.ops.metrics.Metrics
    gateway_id: str
    state_dir: Path
    clock: Clock
    web3: Web3 | None = None  # default: HTTPProvider(chain.rpc_url)
    account: LocalAccount | None = None  # default: the keystore, decrypted with the configured passphrase
    observer: TradeObserver | None = None  # the agent's sessions, for the household dashboard
    entropy: Entropy = SYSTEM  # ids and fresh nonces; a simulation hands in a seeded source


def net_demand_wh(forecaster: NetDemandForecaster | None, start: int, window_s: int) -> float | None:
    """Forecast energy (Wh, + = from the grid) of one window; None when the forecaster cannot say."""
    if forecaster is None:
        return None
    steps = max(1, window_s // 300) if window_s >= 300 else 1
    step_s = window_s // steps
    try:
        watts = forecaster.net_demand(start, steps, step_s)
    except (ValueError, ArithmeticError, LookupError):
        return None
    total = float(sum(float(w) for w in watts)) * step_s / 3600.0
    return None if math.isnan(total) else total


class _Counters:
    def __init__(self, metrics: MetricsRegistry) -> None:
        self.events = metrics.counter("trade_events_total", "trading events by kind", ("event",))
        self.dropped = metrics.counter(
            "peer_messages_dropped_total", "peer messages dropped by reason", ("reason",)
        )
        self.accepted = metrics.counter("peer_messages_accepted_total", "authenticated peer messages")
        self.open = metrics.gauge("trade_open_agreements", "agreements not yet closed")
        self.chain_down = metrics.gauge("trade_chain_down", "1 while the chain node does not answer")
        self._reported: dict[str, int] = {}

    def count(self, event: str) -> None:
        self.events.inc(event=event)

    def sync_inbox(self, inbox: Inbox) -> None:
        for reason, n in inbox.dropped.items():
            delta = n - self._reported.get(reason, 0)
            if delta:
                self.dropped.inc(delta, reason=reason)
                self._reported[reason] = n
        delta = inbox.accepted - self._reported.get("__accepted", 0)
        if delta:
            self.accepted.inc(delta)
            self._reported["__accepted"] = inbox.accepted


async def run_trading(cfg: TradingConfig, deps: TradingDeps) -> None:
    """Run until cancelled."""
    clock = deps.clock
    account = deps.account
    if account is None:
        source = PassphraseSource(cfg.chain.passphrase_credential, cfg.chain.passphrase_file)
        account = await asyncio.to_thread(load_account, cfg.chain.keystore, source.read())
    # web3 asks the node's chain id before every call it validates; it never changes for one node
    provider = Web3.HTTPProvider(
        cfg.chain.rpc_url,
        request_kwargs={"timeout": cfg.chain.rpc_timeout_s},
        cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
    )
    w3 = deps.web3 or Web3(provider)
    journal = Journal(Path(deps.state_dir) / "trading.db")
    counters = _Counters(deps.metrics)
    policy = SenderPolicy(gas_margin=cfg.chain.gas_margin, priority_fee_wei=int(cfg.chain.priority_fee_gwei * GWEI),
                          max_fee_wei=int(cfg.chain.max_fee_gwei * GWEI),
                          receipt_timeout_s=cfg.chain.receipt_timeout_s)  # fmt: skip
    abi = market_abi()
    if cfg.demand is not None:  # its reverts decoded too
        abi = abi + [e for e in market_abi("DemandResponse") if e.get("type") == "error"]
    sender = TxSender(w3, account, journal, abi, policy, on_event=lambda e: counters.count(f"tx_{e}"))
    market = Market(w3, cfg.chain.market, sender)
    runner = ChainRunner(clock, cfg.chain.retry_max_s, on_outage=lambda: counters.count("chain_retry"))
    roster = Roster(market, cfg.community.peers)
    inbox = Inbox(
        account.address,
        cfg.community.id,
        roster.allows,
        max_age_s=cfg.community.max_message_age_s,
        not_before=int(clock.now()) + 1,
    )  # fmt: skip (ts are whole seconds)
    transport = Transport(cfg.community.host, cfg.community.port, cfg.community.topic_prefix, cfg.community.id,
                          account.address, cfg.community.username, cfg.community.password_file,
                          community_tls(cfg.community), keepalive_s=cfg.community.keepalive_s,
                          entropy=deps.entropy)  # fmt: skip
    settler = Settler(
        market,
        journal,
        Timing(
            cfg.agent.report_delay_s,
            cfg.agent.confirm_wait_s,
            cfg.agent.keeper_grace_s,
            cfg.agent.keeper_submit_grace_s,
        ),
        counters.count,
    )
    anchorer = Anchorer(market, journal, counters.count)
    wake = asyncio.Event()

    async def balance() -> int | None:
        try:
            value = await runner.once(market.free_balance)
        except ChainError:
            return None
        journal.set("free_balance", str(value))  # for Home Assistant (gateway/ops/hass.py)
        return value

    async def balance_loop() -> None:
        """Ask the chain when our open agreements moved (escrow taken or paid out), else every
        BALANCE_REFRESH_S for what others do (deposits, a provider's trade): a read a minute per gateway
        costs a shared node more than a display needs."""
        seen: tuple[tuple[str, str], ...] | None = None
        asked = 0.0
        while True:
            now_seen = tuple((r.id, r.state) for r in journal.agreements(*OPEN_STATES))
            if now_seen != seen or clock.now() - asked >= BALANCE_REFRESH_S:
                asked = clock.now()
                if await balance() is not None:
                    seen = now_seen
            await clock.sleep(BALANCE_EVERY_S)

    async def posted_tariffs() -> Tariff | None:
        try:
            return await runner.once(lambda: market_tariffs(market))
        except Exception as exc:  # node down or odd answer: the window trades with the fixed strategy
            log.warning("event=tariffs_unavailable error=%s", str(exc)[:200])
            return None

    async def provider_trade(window: int, wh: int, household_buys: bool) -> None:
        try:
            record = await runner.call(market.trade_with_provider, household_buys, wh, window,
                                       window + cfg.agent.window_s)  # fmt: skip
            receipt = await runner.call(sender.wait, record.key)
            journal_provider_trades(market, journal, receipt.logs, counters.count)
            wake.set()
        except ChainError as exc:
            counters.count("provider_failed")
            log.warning("event=provider_trade_failed window=%d error=%s", window, exc)

    async def network_fee() -> int | None:
        """The community's network fee per kWh (a seller's bid must cover it); None when the node is down."""
        try:
            return await runner.once(market.network_fee)
        except Exception as exc:
            log.warning("event=network_fee_unavailable error=%s", str(exc)[:200])
            return None

    async def slot_free(nonce: int) -> bool | None:
        """The chain's word on one of our nonce slots; None (trust the journal) when it is slow or down."""
        try:
            return await asyncio.wait_for(runner.once(market.slot_free, nonce),
                                          max(0.2, min(1.0, cfg.agent.round_timeout_s / 3)))  # fmt: skip
        except Exception as exc:  # timeout, node down: the seller must answer within the round
            log.debug("event=slot_check_skipped nonce=%d error=%s", nonce, type(exc).__name__)
            return None

    def domain() -> Domain:
        return market.domain

    def net_demand(start: int, length: int) -> float | None:
        return _net(cfg, deps, start, length)

    household = HouseholdPort(net_demand)
    store_plan: StorePlan | None = None
    if cfg.store is not None and cfg.battery is not None:  # the community store: its battery plan stands in
        sched = StoreSchedule(cfg.store.buy_hours, cfg.store.sell_hours, cfg.store.reserve_permille)
        store_plan = StorePlan(sched, journal, clock)
        household = HouseholdPort(store_plan.net_demand_wh, store_plan.storage_wh)

    agent = Agent(
        cfg, account, journal, inbox, clock, transport.publish,
        MarketPort(domain, balance, provider_trade, posted_tariffs, slot_free, network_fee),
        household,
        AgentEvents(counters.count, wake.set),
        observer=deps.observer, entropy=deps.entropy,
    )  # fmt: skip

    async def deliver(raw: bytes) -> None:
        await agent.on_raw(raw)
        counters.sync_inbox(inbox)

    try:
        await runner.call(lambda: market.domain)  # chain id, once
        recovered = await runner.call(sender.recover)
        log.info("event=trading_start address=%s recovered_txs=%d open=%d", account.address, len(recovered),
                 len(journal.agreements(*OPEN_STATES)))  # fmt: skip
        for tx in journal.txs("provider:"):  # a crash may have come between receipt and journal
            receipt = await runner.call(sender.receipt, tx.key)
            if receipt is not None:
                journal_provider_trades(market, journal, receipt.logs, counters.count)
        await runner.call(roster.refresh)
        await settle_once(settler, journal, deps.store, runner, clock, counters, cfg)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(transport.run(deliver), name="trading.transport")
            tg.create_task(_agent_when_connected(agent, transport), name="trading.agent")
            tg.create_task(settle_loop(settler, journal, deps.store, runner, clock, counters, cfg, wake),
                           name="trading.settle")  # fmt: skip
            tg.create_task(
                roster_loop(roster, runner, clock, cfg.community.roster_refresh_s), name="trading.roster"
            )
            tg.create_task(balance_loop(), name="trading.balance")
            tg.create_task(publish_statements(journal, deps.store, transport, clock,
                                              meters_topic(cfg.community.topic_prefix, cfg.community.id, account.address),
                                              max(0.2, min(5.0, cfg.agent.window_s / 10)), account.address),
                           name="trading.statements")  # fmt: skip
            if cfg.agent.keeper_submit_grace_s > 0:  # the keeper submits our agreements, batched
                # every 5 s at most (1 s for minute windows): an agreement must reach the keeper before its
                # round (submit_delay_s, 30 s by default); the journal is asked once a pass
                tg.create_task(publish_agreements(journal, transport, clock,
                                                  agreements_topic(cfg.community.topic_prefix, cfg.community.id, account.address),
                                                  max(0.2, min(5.0, cfg.agent.window_s / 60)), cfg.agent.keeper_submit_grace_s),
                               name="trading.agreements")  # fmt: skip
            if cfg.keeper is not None:  # this gateway holds KEEPER_ROLE: it batches every household's window
                keeper = Keeper(market, KeeperBook(), counters.count)
                tg.create_task(
                    run_keeper(
                        keeper,
                        runner,
                        clock,
                        cfg.community,
                        cfg.keeper.settle_delay_s,
                        account.address,
                        cfg.keeper.group_windows,
                        cfg.keeper.submit_delay_s,
                    ),
                    name="trading.keeper",
                )
            if cfg.loans is not None:  # energy loans (gateway/trading/loanagent.py)
                from gateway.trading.loanagent import LoanDeps, run_loans

                loan_deps = LoanDeps(cfg, account, w3, sender, runner, roster, deps.store, deps.forecaster, clock,
                                     Path(deps.state_dir), counters)  # fmt: skip
                tg.create_task(run_loans(loan_deps), name="trading.loans")
            if cfg.demand is not None:  # demand-response events (gateway/trading/demand.py)
                from gateway.trading.demand import BatteryShift, DemandChain, DemandTaker, run_demand

                taker = DemandTaker(DemandChain(w3, cfg.demand.contract, sender), journal, deps.store.statement_at,
                                    account.address, cfg.demand.claim_delay_s, counters.count)  # fmt: skip
                shift = None
                if cfg.battery is not None:  # the battery is charged ahead of each event window
                    b = cfg.battery
                    inverter = ModbusInverter(b.host, b.port, b.unit, b.timeout_s)
                    shift = BatteryShift(inverter, cfg.demand.prepare_s, counters.count, journal)
                tg.create_task(
                    run_demand(taker, runner, clock, cfg.demand.poll_s, shift), name="trading.demand"
                )
            if store_plan is not None and cfg.store is not None and cfg.battery is not None:
                b = cfg.battery
                tg.create_task(run_store(store_plan, ModbusInverter(b.host, b.port, b.unit, b.timeout_s), deps.store,
                                         clock, cfg.agent.window_s, cfg.store.renew_s, counters.count),
                               name="trading.store")  # fmt: skip
            if cfg.chain.anchor:
                tg.create_task(anchor_loop(anchorer, journal, deps.store, runner, clock, cfg.chain.anchor_delay_s),
                               name="trading.anchor")  # fmt: skip
    finally:
        sender.stopping.set()  # a chain call waiting for a receipt must not hold the process past SIGTERM
        runner.close()
        journal.close()


def market_tariffs(market: Market) -> Tariff | None:
    """The provider's posted tariffs (Market.provider()); None when no provider offers both sides."""
    account, buys_at, sells_at = market.contract.functions.provider().call()
    if int(account, 16) == 0 or not buys_at or not sells_at:
        return None
    return Tariff(feed_in=float(buys_at), retail=float(sells_at))


def journal_provider_trades(
    market: Market, journal: Journal, logs: list[Any], count: Callable[[str], None]
) -> None:
    """Journal provider trades like negotiated agreements, so they are reported, settled or reclaimed."""
    me = market.me.lower()
    for agreement_id, terms in market.provider_trades(logs):
        role = "buyer" if terms.buyer.lower() == me else "seller"
        peer = terms.seller if role == "buyer" else terms.buyer
        if journal.put_agreement(agreement_id, role, peer, terms.as_dict(), "", terms.deliveryEnd):
            journal.set_agreement_state(agreement_id, "submitted", note="provider")
            count("provider_agreement")


async def _agent_when_connected(agent: Agent, transport: Transport) -> None:
    """Negotiating needs the community broker: the first window waits for the connection."""
    await transport.connected.wait()
    await agent.run()


def _net(cfg: TradingConfig, deps: TradingDeps, start: int, length: int) -> float | None:
    if cfg.agent.fixed_net_wh is not None:
        return float(cfg.agent.fixed_net_wh)
    return net_demand_wh(deps.forecaster, start, length)


async def settle_once(settler: Settler, journal: Journal, store: ReadingSource, runner: ChainRunner, clock: Clock,
                      counters: _Counters, cfg: TradingConfig) -> None:  # fmt: skip
    """One pass over the open agreements: measure on the loop thread, advance in the chain thread.

    The chain's head is read once first: an agreement's view is asked again only after a new block."""
    records = journal.agreements(*OPEN_STATES)
    if records:
        try:
            await runner.call(settler.new_round)
        except Exception as exc:  # then this round asks the chain about each agreement, as without the cache
            counters.count("settle_error")
            log.warning("event=settle_head_error error=%s", exc)
    for rec in records:
        now = clock.now()
        measured: int | None = None
        evidence: MeterEvidence | None = None
        end = int(rec.terms["deliveryEnd"])
        if rec.state == "submitted" and now >= end:
            evidence = evidence_for(rec.terms, store.statement_at)
        if rec.state == "submitted" and now >= end + cfg.agent.report_delay_s:
            wh, complete = settler.measured(rec, store.energy_between)
            if complete or now >= end + cfg.agent.report_delay_s + cfg.agent.confirm_wait_s:
                measured = wh
                if not complete:
                    counters.count("report_incomplete_data")
        try:
            await runner.call(settler.advance, rec, now, measured, evidence)
        except Exception as exc:  # one bad agreement must not stop the others (or the service)
            counters.count("settle_error")
            log.warning("event=settle_error id=%s error=%s", rec.id, exc)
    counters.open.set(len(journal.agreements(*OPEN_STATES)))
    counters.chain_down.set(1 if runner.down else 0)


def settle_wait_s(
    records: list[AgreementRecord], now: float, busy_s: float, idle_s: float, keeper_grace_s: float
) -> float:
    """How long the settle loop may sleep after a round.

    `busy_s` while an agreement of ours has a step of its own to take soon (signatures, submission, the
    evidence or report after its delivery). Otherwise until the next such moment (a delivery's end, the
    end of the keeper's turn), asking the chain every `idle_s` meanwhile: what others do then (the peer's
    submission, the keeper's or the peer's settlement) only updates the journal and may wait that long
    (so may a report that falls due inside the keeper's turn). Each round reads the chain: this is what
    a gateway costs its node while it just waits."""
    wait = idle_s
    for rec in records:
        end = float(rec.terms["deliveryEnd"])
        if rec.state in ("signing", "signed"):
            return busy_s
        if rec.state == "submitted":
            if now < end:
                wait = min(wait, end - now)
            elif keeper_grace_s > 0 and now < end + keeper_grace_s:
                wait = min(wait, end + keeper_grace_s - now)
            else:
                return busy_s
    return max(busy_s, wait)


async def _wake_or_sleep(event: asyncio.Event, clock: Clock, seconds: float) -> None:
    """Return when `event` is set or after `seconds` on the gateway clock, whichever comes first; clears it."""
    if not event.is_set():
        sleeper = asyncio.ensure_future(clock.sleep(seconds))
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()
    event.clear()


async def settle_loop(settler: Settler, journal: Journal, store: ReadingSource, runner: ChainRunner, clock: Clock,
                      counters: _Counters, cfg: TradingConfig, wake: asyncio.Event) -> None:  # fmt: skip
    busy = max(0.2, min(5.0, cfg.agent.window_s / 10))
    idle = max(busy, min(30.0, cfg.agent.window_s / 120))
    while True:
        wake.clear()  # what is journaled from here on is seen by this round or wakes the next one
        await settle_once(settler, journal, store, runner, clock, counters, cfg)
        interval = settle_wait_s(
            journal.agreements(*OPEN_STATES), clock.now(), busy, idle, cfg.agent.keeper_grace_s
        )
        await _wake_or_sleep(wake, clock, interval)


async def roster_loop(roster: Roster, runner: ChainRunner, clock: Clock, every_s: float) -> None:
    while True:
        await clock.sleep(every_s)
        try:
            await runner.call(roster.refresh)
        except Exception as exc:  # a bad node answer must not stop trading: the old roster stays
            log.warning("event=roster_refresh_failed error=%s", str(exc)[:200])


async def anchor_loop(anchorer: Anchorer, journal: Journal, store: ReadingSource, runner: ChainRunner, clock: Clock,
                      delay_s: float) -> None:  # fmt: skip
    """Anchor every finished hour once, from the hour the gateway first traded in."""
    from gridpact.core.anchor import batch_hash

    stored = journal.get("anchor_next")
    next_hour = int(stored) if stored is not None else int(clock.now()) // HOUR * HOUR
    journal.set("anchor_next", str(next_hour))
    while True:
        while next_hour + HOUR + delay_s <= clock.now():
            payloads = store.hour_batch(next_hour)
            try:
                ok = not payloads or await runner.call(anchorer.anchor_hour, next_hour, batch_hash(payloads),
                                                       len(payloads))  # fmt: skip
            except ChainError as exc:
                log.warning("event=anchor_error hour=%d error=%s", next_hour, exc)
                ok = False
            if not ok:
                break
            next_hour += HOUR
            journal.set("anchor_next", str(next_hour))
        await clock.sleep(min(60.0, max(1.0, next_hour + HOUR + delay_s - clock.now())))


async def publish_statements(
    journal: Journal,
    store: ReadingSource,
    transport: Transport,
    clock: Clock,
    topic: str,
    every_s: float,
    me: str,
) -> None:
    """Publish our meter's signed statement of each finished hour with our open agreements on it (retained),
    for the community keeper (gateway/trading/keeper.py); once per window end, then again after a restart."""
    published: set[int] = set()
    while True:
        now = clock.now()
        by_end: dict[int, list[dict[str, Any]]] = {}
        for rec in journal.agreements("submitted"):
            start, end = int(rec.terms["deliveryStart"]), int(rec.terms["deliveryEnd"])
            if end <= now and end not in published and not start % HOUR and end - start == HOUR:
                by_end.setdefault(end, []).append(dict(rec.terms))
        for end, terms in sorted(by_end.items()):
            evidence = evidence_for(terms[0], store.statement_at)
            if evidence is None:
                continue  # the node's statement has not arrived yet: next pass
            payload = encode_publication(me, evidence.last, evidence.first, terms)
            if await transport.publish_to(topic, payload, retain=True):
                published.add(end)
        await clock.sleep(every_s)


async def publish_agreements(
    journal: Journal, transport: Transport, clock: Clock, topic: str, every_s: float, grace_s: float
) -> None:
    """Publish each doubly-signed agreement we would submit (we confirmed it) for the keeper's batched
    `submitAgreements` (QoS 1, once; again after a restart: the keeper drops a repeat). Past our own
    fallback time the settler submits it instead, so it is no longer published."""
    published: set[str] = set()
    while True:
        now = clock.now()
        pending = [r for r in journal.agreements("signed") if r.note == "submitter" and r.peer_sig]
        published &= {r.id for r in pending}  # submitted, abandoned or closed: forget
        for rec in pending:
            start = int(rec.terms["deliveryStart"])
            if rec.id in published or now >= submit_after(start, True, grace_s):
                continue
            assert rec.peer_sig is not None
            seller_sig, buyer_sig = (
                (rec.my_sig, rec.peer_sig) if rec.role == "seller" else (rec.peer_sig, rec.my_sig)
            )
            payload = encode_agreement(terms_from_dict(rec.terms), seller_sig, buyer_sig)
            if await transport.publish_to(topic, payload):
                published.add(rec.id)
        await clock.sleep(every_s)


async def run_keeper(
    keeper: Keeper,
    runner: ChainRunner,
    clock: Clock,
    c: CommunityConfig,
    delay: float,
    me: str,
    group: int = 1,
    submit_delay: float = 30.0,
) -> None:
    """Collect every household's publication from the community broker, settle each window once; collect
    the doubly-signed agreements, submit each window's in one call `submit_delay` after it starts."""
    password = (
        read_secret(SecretRef("community.password_file", c.password_file)).decode()
        if c.password_file
        else None
    )
    agreements = agreements_filter(c.topic_prefix, c.id)
    meters = meters_filter(c.topic_prefix, c.id)
    backoff = 0.5
    while True:
        try:
            async with aiomqtt.Client(c.host, c.port, username=c.username, password=password,
                                      identifier=f"gridpact-keeper-{me.lower()[2:14]}", keepalive=c.keepalive_s,
                                      tls_params=community_tls(c)) as client:  # fmt: skip
                await client.subscribe(meters, qos=1)
                await client.subscribe(agreements, qos=1)
                backoff = 0.5
                log.info("event=keeper_connected")
                inbox: asyncio.Queue[tuple[bool, bytes]] = asyncio.Queue(maxsize=10_000)
                arrived = asyncio.Event()

                async def receive(
                    inbox: asyncio.Queue[tuple[bool, bytes]] = inbox, arrived: asyncio.Event = arrived
                ) -> None:
                    async for message in client.messages:
                        payload = message.payload
                        if not (message.topic.matches(agreements) or message.topic.matches(meters)):
                            keeper.count("keeper_rejected_topic")  # a broker that delivers beyond the filters
                        elif isinstance(payload, (bytes, bytearray)) and not inbox.full():
                            inbox.put_nowait((message.topic.matches(agreements), bytes(payload)))
                            arrived.set()

                async with asyncio.TaskGroup() as tg:
                    tg.create_task(receive(), name="trading.keeper.receive")
                    while True:
                        while not inbox.empty():
                            is_agreement, payload = inbox.get_nowait()
                            accept = keeper.accept_agreement if is_agreement else keeper.accept
                            try:
                                reason = await runner.call(accept, payload, int(clock.now()))
                            except Exception as exc:  # an odd node answer: drop this message, keep the keeper
                                reason = "error"
                                log.warning("event=keeper_accept_error error=%s", str(exc)[:200])
                            kept = "keeper_agreement" if is_agreement else "keeper_statement"
                            keeper.count(f"keeper_rejected_{reason}" if reason else kept)
                        # what falls due together goes in one call (equal delays: the window that ended and
                        # the one that started, each household's balance slot touched once)
                        due = keeper.submits.due(int(clock.now()), submit_delay)
                        ends = keeper.book.due(int(clock.now()), delay, group)
                        if due or ends:
                            try:
                                await runner.call(keeper.round, due, ends)
                            except (
                                Exception
                            ) as exc:  # the parties' fallbacks submit and settle what this missed
                                keeper.count_failed(settling=bool(ends), opening=bool(due))
                                log.warning(
                                    "event=keeper_failed items=%d ends=%s error=%s", len(due), ends, exc
                                )
                        # asleep until a publication arrives or a round falls due (at most 30 s, at least 0.5 s)
                        due_at = min(keeper.submits.next_at(submit_delay), keeper.book.next_at(delay, group))
                        await _wake_or_sleep(arrived, clock, min(30.0, max(0.5, due_at - clock.now())))
        except aiomqtt.MqttError as exc:
            log.warning("event=keeper_disconnected error=%s retry_s=%.1f", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
