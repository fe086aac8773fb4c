"""The trading agent: per delivery window, sell forecast surplus or buy forecast deficit from peers.

Timeline of window W (length `window_s`): negotiation opens `lead_s` before W and closes a
little before W. A seller publishes a signed `offer` and answers buyers' sessions until its
surplus is committed; a buyer collects offers, then negotiates with sellers one at a time,
cheapest ask first, each session bounded by per-round timeouts, until its need is covered.
What is left goes to the grid provider (the fallback): by the meter's normal import/export
("grid"), or as an on-chain agreement at the posted tariff ("contract").

With `strategy = "learned"` the policy learned as in Kröhling et al. decides at each decision step (learned.py): wait,
go to the provider now, or negotiate with the (ip, rp, dl, cr) it picks for the context.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from eth_account.signers.local import LocalAccount

from gateway.chain.journal import Journal
from gateway.chain.market import terms_from_dict
from gateway.negotiation import Decision, Negotiate, Negotiator, Provider, Wait, strategy_from_config
from gateway.trading import observer as tob
from gateway.trading.config import TradingConfig, load_policy
from gateway.trading.entropy import SYSTEM, Entropy
from gateway.trading.inbox import Inbox
from gateway.trading.learned import PeerMemory, step_seconds, steps_to_deadline, window_context
from gateway.trading.nonces import NonceRing, busy_nonces
from gateway.trading.ports import AgentEvents, HouseholdPort, MarketPort
from gateway.trading.protocol import Envelope, encode, sign_envelope
from gateway.trading.sessions import (
    Session,
    SessionContext,
    countersign,
    new_session_id,
    run_session,
    sign_and_offer,
    take_confirm,
)
from gateway.trading.stations import DECLINES_KEY, Auction, Bid, DeclineBook, bid_price, check_bid, choose
from gridpact.core.clock import Clock
from gridpact.core.settlement import value
from gridpact.core.tariff import Tariff

log = logging.getLogger("gridpact.gateway.trading")
MAX_SESSIONS = 64
AUCTION_CALLS = 3  # calls for bids per window at most (stations market)


class Agent:
    """Hosts the negotiation engine; one instance per gateway."""

    def __init__(
        self,
        cfg: TradingConfig,
        account: LocalAccount,
        journal: Journal,
        inbox: Inbox,
        clock: Clock,
        publish: Callable[[str | None, bytes], Awaitable[bool]],
        market: MarketPort,
        household: HouseholdPort,
        events: AgentEvents,
        observer: tob.TradeObserver | None = None,
        entropy: Entropy = SYSTEM,
    ) -> None:
        self.cfg = cfg
        self.agent = cfg.agent
        self.me = account
        self.journal = journal
        self.publish = publish  # the community transport: (recipient or None for all, signed envelope)
        self.inbox = inbox
        self.clock = clock
        self.market = market
        self.domain = market.domain
        self.balance = market.balance
        self.fallback = market.provider_trade
        self.posted_tariffs = market.tariffs  # the Market's provider tariffs, when the config gives none
        self.slot_free = market.slot_free  # the Market's slotOf(me, nonce).free; None: trust the journal
        self.network_fee = market.network_fee  # the Market's fee per kWh out of a seller's payout
        self.net_demand_wh = household.net_demand_wh
        self.storage_wh = household.storage_wh
        self.count = events.count
        self.on_agreement = events.on_agreement
        self.observer = observer  # sessions and their messages, for the dashboard (observer.py)
        self.entropy = entropy  # ids and fresh nonces: `secrets`, or a seeded source in a simulation
        self.ring = NonceRing(cfg.agent.nonce_ring, entropy=entropy)
        self.policy = load_policy(cfg.agent.policy) if cfg.agent.strategy == "learned" else None
        self.peers = PeerMemory(journal)
        self.learned: dict[int, Tariff] = {}  # window -> tariffs, for windows the policy trades
        self.net: dict[int, int] = {}  # window -> forecast net demand (Wh)
        self.to_provider: set[int] = set()  # windows the policy sent to the provider
        self.sessions: dict[str, Session] = {}
        self.selling: dict[int, int] = {}  # window -> Wh still offered
        self.buying: dict[int, int] = {}  # window -> Wh still needed
        self.budget: dict[int, int] = {}  # window -> tokens the buyer may still escrow
        self.offers: dict[int, dict[str, dict[str, Any]]] = {}  # window -> seller -> offer body
        self.auctions: dict[str, Auction] = {}  # our open calls for bids (market = "stations")
        self.fees: dict[int, int] = {}  # window -> the network fee a seller's bid must cover
        # buyers that leave our bids unconfirmed get no more of them; kept across restarts
        self.declines = DeclineBook.loads(journal.get(DECLINES_KEY))
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ctx = SessionContext(
            me=account, domain=market.domain, journal=journal, send=self.send, clock=clock,
            round_timeout_s=self.agent.round_timeout_s, max_rounds=self.agent.max_rounds,
            count=events.count, reserve=self.reserve, on_agreement=events.on_agreement,
        )  # fmt: skip

    # ------------------------------------------------------------ messages

    async def send(self, kind: str, to: str | None, body: dict[str, Any]) -> None:
        env = Envelope(kind, self.me.address, to, self.entropy.token_hex(16), int(self.clock.now()),
                       self.cfg.community.id, body)  # fmt: skip
        if await self.publish(to, encode(sign_envelope(env, self.me))):
            self.count(f"sent_{kind}")
            self._note(tob.message_event("sent", kind, body, self.clock.now()))
        else:
            self.count("send_failed")

    async def on_raw(self, raw: bytes) -> None:
        """Every message from the broker enters here; the inbox drops and counts bad ones."""
        env = self.inbox.check(raw, self.clock.now())
        if env is not None:
            self.dispatch(env)

    def dispatch(self, env: Envelope) -> None:
        body = env.body
        if env.type == "offer":
            if (
                body["side"] == "sell"
                and body["window_s"] == self.agent.window_s
                and body["window"] > self.clock.now()
            ):
                self.offers.setdefault(body["window"], {})[env.sender] = body
            return
        if env.type == "propose":
            self._on_propose(env)
            return
        if env.type == "request":
            self._on_request(env)
            return
        if env.type == "bid":
            auction = self.auctions.get(body["session"])
            if auction is None:  # not ours, or its bidding time is over
                self.count("no_session")
                return
            auction.bids.append(env)
            self._note(tob.message_event("received", env.type, body, self.clock.now()))
            return
        session = self.sessions.get(body["session"])
        if session is None or session.peer.lower() != env.sender.lower():
            if not (env.type == "confirm" and self._late_confirm(env)):
                self.count("no_session")
            return
        session.inbox.put_nowait(env)
        self._note(tob.message_event("received", env.type, body, self.clock.now()))

    def _late_confirm(self, env: Envelope) -> bool:
        """A `confirm` after our session gave up waiting (a slow peer or broker): if it countersigns terms
        we signed and sent to this peer, keep its signature (the agreement is known at once instead of at
        the settler's next look on chain) and, for a bid, count the buyer as having confirmed."""
        rec = self.journal.agreement(str(env.body["agreement"]))
        if rec is None or rec.state != "signing" or rec.peer.lower() != env.sender.lower():
            return False
        terms = terms_from_dict(rec.terms)
        if (
            take_confirm(self.ctx, rec.id, terms, env.sender, env.body["sig"], "confirm_late")
            and rec.role == "seller"
        ):
            self.declines.confirmed_late(env.sender, terms.deliveryStart)
            self.journal.set(DECLINES_KEY, self.declines.dumps())
        return True

    def _note(self, event: tob.TradeEvent | None) -> None:
        if self.observer is not None and event is not None:
            self.observer.trade_event(event)

    def _on_propose(self, env: Envelope) -> None:
        body = env.body
        if body["session"] in self.sessions:
            self.count("duplicate_session")
            return
        busy = len(self.sessions) >= MAX_SESSIONS or any(
            s.peer.lower() == env.sender.lower() for s in self.sessions.values()
        )
        if busy:  # one open session per peer, a bounded number in all: a flood cannot exhaust the agent
            self.count("busy")
            self._spawn(self.send("reject", env.sender, {"session": body["session"], "reason": "busy"}))
            return
        window = int(body["window"])
        remaining = self.selling.get(window, 0)
        ok = (body["window_s"] == self.agent.window_s and window > self.clock.now()
              and remaining >= self.agent.min_trade_wh)  # fmt: skip
        if not ok:
            self._spawn(
                self.send("reject", env.sender, {"session": body["session"], "reason": "not_selling"})
            )
            return
        price_cfg: dict[str, Any] = {"price": self.agent.seller["price"]}
        if window in self.learned:
            decision = self.decide(window, env.sender)
            if not isinstance(decision, Negotiate):
                if isinstance(decision, Provider):
                    self.to_provider.add(window)
                self._spawn(
                    self.send("reject", env.sender, {"session": body["session"], "reason": "not_selling"})
                )
                return
            price_cfg = self.price_config(decision)
        negotiator = Negotiator(strategy_from_config(price_cfg), self.agent.acceptance)
        s = Session(body["session"], env.sender, "seller", window, self.agent.window_s,
                    min(int(body["quantity_wh"]), remaining), negotiator)  # fmt: skip
        self.sessions[s.id] = s
        self._spawn(self._run(s, env))

    async def _run(self, s: Session, opening: Envelope | None) -> str | None:
        agreed: str | None = None
        now = self.clock.now()
        self._note(tob.opened(s.id, s.peer, s.role, s.window, s.quantity_wh, s.negotiator.strategy, now))
        self._note(
            None if opening is None else tob.message_event("received", opening.type, opening.body, now)
        )
        try:
            if s.role == "seller" and not await self._allocate_nonce(s):
                await self.send("reject", s.peer, {"session": s.id, "reason": "busy"})
                return None
            agreed = await run_session(self.ctx, s, opening)
            return agreed
        finally:
            self._note(tob.SessionClosed(s.id, agreed, self.clock.now()))
            self.sessions.pop(s.id, None)
            if s.role == "seller":
                self.ring.release(s.nonce)  # an agreement made is in the journal, which keeps its slot busy
            try:
                self.peers.observe(s.peer, s.peer_prices)
            except Exception as exc:  # the journal may be closing at shutdown: memory is a hint, not state
                self.count("peer_memory_error")
                log.warning("event=peer_memory_error peer=%s error=%s", s.peer, str(exc)[:200])

    async def _allocate_nonce(self, s: Session) -> bool:
        """Reserve the seller's slot nonce for this session (before our first reply names it)."""
        now = self.clock.now()
        try:
            in_use = busy_nonces(self.journal.seller_slots(now), now)
            s.nonce = await self.ring.allocate_checked(in_use, now, self.slot_free)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the journal closing at shutdown: no session, never a crash
            self.count("nonce_error")
            log.warning("event=nonce_error session=%s error=%s", s.id, str(exc)[:200])
            return False
        if not self.ring.in_ring(s.nonce):
            self.count("nonce_ring_full")
        return True

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def reserve(self, s: Session, quantity: int, price: int) -> bool:
        """Commit capacity (seller) or need and budget (buyer) just before signing."""
        if quantity < self.agent.min_trade_wh:
            return False
        if s.role == "seller":
            if self.selling.get(s.window, 0) < quantity:
                return False
            self.selling[s.window] -= quantity
            return True
        return self._reserve_buy(s.window, quantity, price)

    def _reserve_buy(self, window: int, quantity: int, price: int) -> bool:
        cost = value(quantity, price)
        if self.buying.get(window, 0) < quantity or self.budget.get(window, 0) < cost:
            self.count("no_budget")
            return False
        self.buying[window] -= quantity
        self.budget[window] -= cost
        return True

    # ------------------------------------------------------------ windows

    async def run(self) -> None:
        """The window loop; cancelled by the service."""
        ws, lead = self.agent.window_s, self.agent.lead_s
        done: set[int] = set()
        try:
            while True:
                now = self.clock.now()
                window = (int(now) // ws + 1) * ws
                if window in done:
                    await self.clock.sleep(window - now + 0.01)
                    continue
                if now < window - lead:
                    await self.clock.sleep(window - lead - now)
                    continue
                done.add(window)
                await self.trade_window(window)
                self._forget_before(window - 2 * ws)
        finally:
            for task in list(self._tasks):
                task.cancel()

    def _forget_before(self, t: int) -> None:
        for table in (self.selling, self.buying, self.budget, self.offers, self.learned, self.net, self.fees):
            for w in [w for w in table if w < t]:
                del table[w]
        self.to_provider = {w for w in self.to_provider if w >= t}

    def close_time(self, window: int) -> float:
        return window - min(self.agent.round_timeout_s, self.agent.lead_s / 4)

    async def trade_window(self, window: int) -> None:
        net = self.net_demand_wh(window, self.agent.window_s)
        if net is None:
            self.count("forecast_unavailable")
            return
        wh = round(net)
        log.info("event=window_open window=%d net_wh=%d", window, wh)
        self.net[window] = wh
        if self.policy is not None and abs(wh) >= self.agent.min_trade_wh:
            tariffs = await self.window_tariffs()
            if tariffs is None:
                self.count("tariffs_unknown")  # this window falls back to the fixed strategy
            else:
                self.learned[window] = tariffs
        stations = self.agent.market == "stations"
        if wh <= -self.agent.min_trade_wh:
            await (self._sell_by_bids(window, -wh) if stations else self._sell(window, -wh))
        elif wh >= self.agent.min_trade_wh:
            await (self._buy_by_auction(window, wh) if stations else self._buy(window, wh))

    async def _sell(self, window: int, surplus: int) -> None:
        self.selling[window] = surplus
        close = self.close_time(window)
        price = int(self.agent.seller["price"]["ip"])
        if window in self.learned:
            price = round(self.learned[window].retail)  # every seller preset opens at the import tariff
        while self.clock.now() < close and self.selling.get(window, 0) >= self.agent.min_trade_wh:
            if window in self.learned and isinstance(self.decide(window, None), Provider):
                self.to_provider.add(window)
            if window in self.to_provider:
                break
            await self.send("offer", None, {"window": window, "window_s": self.agent.window_s, "side": "sell",
                                            "quantity_wh": self.selling[window], "price": price})  # fmt: skip
            await self.clock.sleep(min(self.agent.round_timeout_s, max(0.05, close - self.clock.now())))
        unsold = self.selling.get(window, 0)
        if unsold >= self.agent.min_trade_wh:
            await self._fallback(window, unsold, household_buys=False)

    async def _open_budget(self, window: int, need: int) -> None:
        """What we need this window, and what we may escrow for it: our free balance less what
        agreements we signed and have not yet opened will take."""
        self.buying[window] = need
        balance = await self.balance()
        if balance is None:
            self.count("balance_unknown")
            balance = 0
        pending = sum(value(int(r.terms["quantityWh"]), int(r.terms["unitPrice"]))
                      for r in self.journal.agreements("signing", "signed") if r.role == "buyer")  # fmt: skip
        self.budget[window] = max(0, balance - pending)

    async def _buy(self, window: int, need: int) -> None:
        await self._open_budget(window, need)
        close = self.close_time(window)
        tried: set[str] = set()
        await self.clock.sleep(min(self.agent.round_timeout_s, max(0.0, (close - self.clock.now()) / 3)))
        while self.clock.now() < close and self.buying[window] >= self.agent.min_trade_wh:
            asks = sorted(
                (b["price"], seller)
                for seller, b in self.offers.get(window, {}).items()
                if seller not in tried
            )
            seller = asks[0][1] if asks else None
            price_cfg: dict[str, Any] = {"price": self.agent.buyer["price"]}
            if window in self.learned:
                decision = self.decide(window, seller)
                if isinstance(decision, Provider):
                    break
                if isinstance(decision, Wait) or seller is None:
                    await self.clock.sleep(self._to_next_step(close))
                    continue
                price_cfg = self.price_config(decision)
            if seller is None:
                await self.clock.sleep(min(0.25, max(0.01, close - self.clock.now())))
                continue
            tried.add(seller)
            negotiator = Negotiator(strategy_from_config(price_cfg), self.agent.acceptance)
            s = Session(
                new_session_id(self.entropy),
                seller,
                "buyer",
                window,
                self.agent.window_s,
                self.buying[window],
                negotiator,
            )
            self.sessions[s.id] = s
            await self._run(s, None)
        unmet = self.buying.get(window, 0)
        if unmet >= self.agent.min_trade_wh:
            await self._fallback(window, unmet, household_buys=True)

    # ------------------------------------------------------------ grid-station auctions (stations.py)

    def _on_request(self, env: Envelope) -> None:
        """A buyer's call for bids: bid our uncommitted surplus once, or stay silent (a broadcast)."""
        body = env.body
        window = int(body["window"])
        if self.agent.market != "stations" or body["session"] in self.sessions:
            self.count("request_ignored")
            return
        remaining = self.selling.get(window, 0)
        if (body["window_s"] != self.agent.window_s or window <= self.clock.now() or window not in self.fees
                or remaining < self.agent.min_trade_wh):  # fmt: skip
            self.count("request_not_selling")
            return
        if len(self.sessions) >= MAX_SESSIONS or any(
            s.peer.lower() == env.sender.lower() for s in self.sessions.values()
        ):
            self.count("busy")
            return
        if not self.declines.may_bid(env.sender, self.clock.now()):
            self.count("request_from_decliner")
            return
        price = bid_price(*self._ask_and_floor(window), int(body["price"]))
        quantity = min(int(body["quantity_wh"]), remaining)
        if price is None or quantity < self.agent.min_trade_wh:
            self.count("request_below_floor" if price is None else "request_too_small")
            return
        negotiator = Negotiator(
            strategy_from_config({"price": self.agent.seller["price"]}), self.agent.acceptance
        )
        s = Session(body["session"], env.sender, "seller", window, self.agent.window_s, quantity, negotiator)
        self.sessions[s.id] = s
        self._spawn(self._bid(s, price, env))

    def _ask_and_floor(self, window: int) -> tuple[int, int]:
        """Our ask (the seller table's opening price, or the import tariff when learned tariffs are
        known) and our floor (its reserve price, at least the export tariff, plus the network fee)."""
        price = self.agent.seller["price"]
        ask, floor = int(price["ip"]), int(price["rp"])
        tariffs = self.learned.get(window)
        if tariffs is not None:
            ask, floor = round(tariffs.retail), max(floor, math.ceil(tariffs.feed_in))
        fee = self.fees.get(window, 0)
        return max(ask, floor) + fee, floor + fee

    async def _bid(self, s: Session, price: int, request: Envelope) -> None:
        """Sign terms at our bid price and send them; the buyer's `confirm` makes it an agreement."""
        now = self.clock.now()
        self._note(tob.opened(s.id, s.peer, s.role, s.window, s.quantity_wh, s.negotiator.strategy, now))
        self._note(tob.message_event("received", request.type, request.body, now))
        agreed: str | None = None
        try:
            if await self._allocate_nonce(s):
                agreed = await sign_and_offer(self.ctx, s, price, "bid")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bid must never take the agent down
            self.count(f"session_error_{type(exc).__name__}")
        finally:
            if s.offered:  # declined, unanswered or confirmed: the buyer's record with us
                self.declines.record(s.peer, s.window, agreed is not None)
                self.journal.set(DECLINES_KEY, self.declines.dumps())
            self._note(tob.SessionClosed(s.id, agreed, self.clock.now()))
            self.sessions.pop(s.id, None)
            self.ring.release(s.nonce)  # a bid sent is in the journal, which keeps its slot busy

    async def _sell_by_bids(self, window: int, surplus: int) -> None:
        """Hold the surplus for buyers' calls until the window closes; what nobody took goes to the
        provider. The bid floor needs the network fee: unknown, we do not bid."""
        fee = 0
        if self.network_fee is not None:
            known = await self.network_fee()
            if known is None:
                self.count("network_fee_unknown")
                await self._fallback(window, surplus, household_buys=False)
                return
            fee = known
        self.fees[window] = fee
        self.selling[window] = surplus
        close = self.close_time(window)
        while self.clock.now() < close and self.selling.get(window, 0) >= self.agent.min_trade_wh:
            await self.clock.sleep(min(self.agent.round_timeout_s, max(0.05, close - self.clock.now())))
        self.fees.pop(window, None)  # no more bids for this window
        unsold = self.selling.get(window, 0)
        if unsold >= self.agent.min_trade_wh:
            await self._fallback(window, unsold, household_buys=False)

    async def _buy_by_auction(self, window: int, need: int) -> None:
        """Call for bids (a few times while the window is open), take the cheapest that fit."""
        await self._open_budget(window, need)
        close = self.close_time(window)
        limit = int(self.agent.buyer["price"]["rp"])
        if window in self.learned:  # never pay a peer more than the provider asks
            limit = min(limit, int(self.learned[window].retail))
        bidding_s = self.agent.round_timeout_s
        await self.clock.sleep(min(bidding_s, max(0.0, (close - self.clock.now()) / 6)))  # sellers open too
        for _ in range(AUCTION_CALLS):
            if self.clock.now() + bidding_s > close or self.buying[window] < self.agent.min_trade_wh:
                break
            a = Auction(new_session_id(self.entropy), window, self.agent.window_s, self.buying[window], limit)
            self.auctions[a.id] = a
            try:
                await self.send("request", None, {"session": a.id, "window": window, "window_s": a.window_s,
                                                  "quantity_wh": a.quantity_wh, "price": limit})  # fmt: skip
                await self.clock.sleep(bidding_s)
            finally:
                self.auctions.pop(a.id, None)  # later bids find no auction: counted, never taken
            if not await self._award(a):
                await self.clock.sleep(bidding_s)  # nobody could sell: ask again a little later
        unmet = self.buying.get(window, 0)
        if unmet >= self.agent.min_trade_wh:
            await self._fallback(window, unmet, household_buys=True)

    async def _award(self, a: Auction) -> int:
        """Check the bids, confirm the cheapest that fit, decline the rest; returns how many we took."""
        domain = self.domain()
        bids: list[Bid] = []
        for env in a.bids:
            checked = check_bid(env, a, self.me.address, domain, self.agent.min_trade_wh)
            if isinstance(checked, str):
                self.count(checked)
                await self.send("reject", env.sender, {"session": a.id, "reason": checked})
            else:
                bids.append(checked)
        taken = 0
        for bid in choose(bids, self.buying[a.window], self.agent.min_trade_wh):
            if await self._commit(a, bid):
                taken += 1
                bids.remove(bid)
        for bid in bids:
            self.count("bid_outbid")
            await self.send("reject", bid.seller, {"session": a.id, "reason": "outbid"})
        return taken

    async def _commit(self, a: Auction, bid: Bid) -> bool:
        """Countersign a bid: journal both signatures (we submit), then `confirm`."""
        t = bid.terms
        if not self._reserve_buy(a.window, t.quantityWh, t.unitPrice):
            return False
        await countersign(self.ctx, a.id, "buyer", bid.seller, t, bid.sig)
        self.count("auction_won")
        return True

    async def _fallback(self, window: int, wh: int, household_buys: bool) -> None:
        side = "import" if household_buys else "export"
        self.count(f"fallback_{side}")
        log.info("event=provider_fallback window=%d wh=%d side=%s mode=%s", window, wh, side,
                 self.agent.provider_fallback)  # fmt: skip
        if self.agent.provider_fallback == "contract" and self.fallback is not None:
            await self.fallback(window, wh, household_buys)

    # ------------------------------------------------------------ learned strategy

    async def window_tariffs(self) -> Tariff | None:
        """The config's tariffs, else the Market's posted ones; None when neither is usable."""
        if self.agent.import_tariff is not None and self.agent.export_tariff is not None:
            tariffs: Tariff | None = Tariff(feed_in=self.agent.export_tariff, retail=self.agent.import_tariff)
        elif self.posted_tariffs is not None:
            tariffs = await self.posted_tariffs()
        else:
            tariffs = None
        return tariffs if tariffs is not None and tariffs.usable else None

    def _to_next_step(self, close: float) -> float:
        """Seconds until just inside the next decision step, so a late wake-up cannot skip the last one."""
        step = step_seconds(self.agent.lead_s)
        left = close - self.clock.now()
        return max(0.01, left - (steps_to_deadline(0.0, left, step) - 1) * step + 0.01)

    def decide(self, window: int, peer: str | None) -> Decision:
        """The policy's decision for this window now, against `peer` (None: no peer available)."""
        assert self.policy is not None
        storage = self.storage_wh() if self.storage_wh is not None else None
        steps = steps_to_deadline(self.clock.now(), self.close_time(window), step_seconds(self.agent.lead_s))
        ctx = window_context(self.net.get(window, 0), storage or 0.0, steps, self.learned[window],
                             peer is not None, self.peers.get(peer) if peer is not None else None)  # fmt: skip
        decision = self.policy.decide(ctx)
        action = decision.to_dict()["action"]
        self.count(f"policy_{action}")
        log.info("event=policy_decision window=%d peer=%s steps=%d opponent_cr=%s decision=%s", window, peer,
                 steps, ctx.opponent_concession, decision.to_dict())  # fmt: skip
        return decision

    def price_config(self, decision: Negotiate) -> dict[str, Any]:
        from gateway.trading.learned import price_strategy

        return price_strategy(decision, self.agent.max_rounds)
