"""Grid-station auctions, the pure rules: a seller's bid price, the checks a buyer makes of a bid
(each forgery or mismatch refused by name), which bids win, and the two new peer messages."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

import pytest
from eth_account import Account

from gateway.chain.market import sign_terms_hex, terms_from_dict
from gateway.trading.protocol import Envelope, ProtocolError, decode, encode, sign_envelope
from gateway.trading.stations import DECLINE_MEMORY_S, Auction, Bid, DeclineBook, bid_price, check_bid, choose
from gridpact.core.eip712 import Domain, Terms
from hil.services import DEV_PRIVATE_KEYS

SELLER = Account.from_key(DEV_PRIVATE_KEYS[1])
OTHER = Account.from_key(DEV_PRIVATE_KEYS[3])
BUYER = Account.from_key(DEV_PRIVATE_KEYS[2])
DOMAIN = Domain(31337, "0x" + "11" * 20)
WINDOW, WINDOW_S = 1_800_000_000, 3600


async def until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Let the agent's tasks run until `predicate` holds (a loaded machine may be slow; a broken agent
    still fails, later)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def auction(quantity: int = 1000, limit: int = 200) -> Auction:
    return Auction("0x" + "ab" * 32, WINDOW, WINDOW_S, quantity, limit)


def terms(seller: str = SELLER.address, **over: int | str) -> Terms:
    base: dict[str, int | str] = {"seller": seller, "buyer": BUYER.address, "quantityWh": 1000, "unitPrice": 150,
                                  "deliveryStart": WINDOW, "deliveryEnd": WINDOW + WINDOW_S, "nonce": 7,
                                  "expiry": WINDOW + WINDOW_S - 1}  # fmt: skip
    d = base | over
    return Terms(str(d["seller"]), str(d["buyer"]), int(d["quantityWh"]), int(d["unitPrice"]),
                 int(d["deliveryStart"]), int(d["deliveryEnd"]), int(d["nonce"]), int(d["expiry"]))  # fmt: skip


def bid_env(t: Terms, sender=SELLER, signer=None) -> Envelope:
    sig = sign_terms_hex(t, DOMAIN, signer or sender)
    return Envelope("bid", sender.address, BUYER.address, secrets.token_hex(16), WINDOW - 600, "oak-street",
                    {"session": "0x" + "ab" * 32, "terms": t.as_dict(), "sig": sig})  # fmt: skip


def test_bid_price_is_the_ask_capped_at_the_limit_and_never_below_the_floor() -> None:
    assert bid_price(ask=180, floor=110, limit=200) == 180
    assert bid_price(ask=250, floor=110, limit=200) == 200  # the buyer's limit caps the ask
    assert bid_price(ask=120, floor=110, limit=110) == 110  # exactly the floor still sells
    assert bid_price(ask=120, floor=110, limit=109) is None  # below the floor: no bid


def test_a_bid_whose_terms_are_what_the_auction_asked_and_the_sender_signed_is_taken() -> None:
    checked = check_bid(bid_env(terms()), auction(), BUYER.address, DOMAIN, 50)
    assert isinstance(checked, Bid) and checked.terms == terms() and checked.seller == SELLER.address


@pytest.mark.parametrize(
    ("t", "sender", "signer", "reason"),
    [
        (terms(unitPrice=201), SELLER, None, "bid_above_limit"),
        (terms(quantityWh=1001), SELLER, None, "bid_wrong_quantity"),  # more than asked for
        (terms(quantityWh=49), SELLER, None, "bid_wrong_quantity"),  # below the smallest trade
        (terms(deliveryStart=WINDOW + 1), SELLER, None, "bid_wrong_window"),
        (terms(expiry=WINDOW + 2 * WINDOW_S), SELLER, None, "bid_wrong_window"),  # would outlive the window
        (terms(buyer=OTHER.address), SELLER, None, "bid_wrong_parties"),  # terms for someone else
        (terms(seller=OTHER.address), SELLER, None, "bid_wrong_parties"),  # bids in another seller's name
        (terms(), SELLER, OTHER, "bid_bad_signature"),  # signed by someone other than the sender
    ],
)
def test_every_bid_that_is_not_exactly_the_auction_or_not_the_senders_is_refused_by_name(
    t: Terms, sender, signer, reason: str
) -> None:
    assert check_bid(bid_env(t, sender, signer), auction(), BUYER.address, DOMAIN, 50) == reason


def test_the_cheapest_bids_that_fit_win_one_per_seller_in_a_fixed_order() -> None:
    a, b, c = (Account.from_key(DEV_PRIVATE_KEYS[i]) for i in (4, 5, 6))
    bids = [
        Bid(a.address, terms(a.address, unitPrice=150, quantityWh=600), "0x"),
        Bid(b.address, terms(b.address, unitPrice=120, quantityWh=500), "0x"),
        Bid(c.address, terms(c.address, unitPrice=120, quantityWh=700), "0x"),
        Bid(
            c.address, terms(c.address, unitPrice=100, quantityWh=2000, nonce=8), "0x"
        ),  # too big for the need
    ]
    taken = choose(bids, need_wh=1000, min_trade_wh=50)
    # 120 for 700 first (the larger at the same price), then 500 no longer fits, 600 neither
    assert [(t.seller, t.terms.quantityWh) for t in taken] == [(c.address, 700)]
    taken = choose(bids, need_wh=1200, min_trade_wh=50)
    assert [(t.seller, t.terms.quantityWh) for t in taken] == [(c.address, 700), (b.address, 500)]
    assert choose(bids, need_wh=40, min_trade_wh=50) == []
    assert (
        choose(list(reversed(bids)), need_wh=1200, min_trade_wh=50) == taken
    )  # order of arrival is irrelevant


def test_request_and_bid_round_trip_and_a_bid_must_be_addressed() -> None:
    request = Envelope("request", BUYER.address, None, secrets.token_hex(16), WINDOW - 600, "oak-street",
                       {"session": "0x" + "ab" * 32, "window": WINDOW, "window_s": WINDOW_S, "quantity_wh": 1000,
                        "price": 200})  # fmt: skip
    assert decode(encode(sign_envelope(request, BUYER))) == request
    bid = bid_env(terms())
    assert decode(encode(sign_envelope(bid, SELLER))).body == bid.body
    broadcast = Envelope("bid", SELLER.address, None, bid.id, bid.ts, bid.community, bid.body)
    with pytest.raises(ProtocolError) as err:
        decode(encode(sign_envelope(broadcast, SELLER)))
    assert err.value.reason == "malformed"
    extra = Envelope("request", BUYER.address, None, request.id, request.ts, request.community,
                     request.body | {"side": "buy"})  # fmt: skip
    with pytest.raises(ProtocolError):
        decode(encode(sign_envelope(extra, BUYER)))


def test_a_seller_never_bids_capacity_a_declined_bid_still_holds(tmp_path) -> None:
    """A buyer who declines a bid keeps the seller's signature and could still open it. So the seller
    must not sell that energy again: a second buyer's call for the same window gets no bid (else a
    buyer could gather bids, open them all, and leave the seller short and paying penalties)."""
    from trade_helpers import BUYER as B1
    from trade_helpers import OTHER as B2
    from trade_helpers import message, seller_agent

    sent: list[tuple[str | None, Envelope]] = []
    events: list[str] = []
    agent = seller_agent(tmp_path, sent, events, [B1, B2], round_timeout_s=0.2, market="stations",
                         seller={"price": {"ip": 150, "rp": 100, "dl": 10, "cr": 1.0}})  # fmt: skip
    window = (int(time.time()) // 60 + 2) * 60
    agent.selling[window], agent.fees[window] = 1000, 0
    first, second = "0x" + "01" * 32, "0x" + "02" * 32

    def request(buyer, session: str) -> bytes:
        body = {"session": session, "window": window, "window_s": 60, "quantity_wh": 1000, "price": 200}
        env = Envelope(
            "request", buyer.address, None, secrets.token_hex(16), int(time.time()), "oak-street", body
        )
        return encode(sign_envelope(env, buyer))

    async def main() -> None:
        await agent.on_raw(request(B1, first))
        await asyncio.sleep(0.1)
        bid = next(env for _, env in sent if env.type == "bid")
        assert bid.body["terms"]["unitPrice"] == 150 and bid.body["terms"]["quantityWh"] == 1000
        await agent.on_raw(message(B1, "reject", {"session": first, "reason": "outbid"}))
        await asyncio.sleep(0.1)
        await agent.on_raw(request(B2, second))  # another buyer, the same window
        await asyncio.sleep(0.5)
        for task in list(agent._tasks):
            task.cancel()

    asyncio.run(main())
    bids = [env for _, env in sent if env.type == "bid"]
    assert len(bids) == 1 and bids[0].body["session"] == first  # nothing bid to the second buyer
    assert agent.selling[window] == 0 and "bid_declined" in events and "request_not_selling" in events
    rows = agent.journal.agreements("signing", "signed")
    assert [r.peer for r in rows] == [B1.address]  # the declined bid is journaled: its slot stays busy


def test_the_decline_book_lets_a_buyer_leave_two_bids_unconfirmed_net_per_day() -> None:
    book = DeclineBook()
    now = WINDOW - 600
    assert book.may_bid(BUYER.address, now)
    book.record(BUYER.address, WINDOW, confirmed=False)
    assert book.may_bid(BUYER.address, now)
    book.record(BUYER.address.lower(), WINDOW + 3600, confirmed=False)  # the address's case is no escape
    assert not book.may_bid(BUYER.address, now)
    assert book.may_bid(OTHER.address, now)  # only this buyer
    book.record(BUYER.address, WINDOW + 7200, confirmed=True)  # a bid it took earns one more call
    assert book.may_bid(BUYER.address, now)
    book.record(BUYER.address, WINDOW + 10800, confirmed=False)
    assert not book.may_bid(BUYER.address, now)
    # a day after those windows the book has forgotten them (and keeps nothing for the buyer)
    assert book.may_bid(BUYER.address, WINDOW + 10800 + DECLINE_MEMORY_S)
    assert BUYER.address.lower() not in book.marks


def test_a_buyer_that_calls_and_declines_every_window_stops_getting_bids(tmp_path) -> None:
    """The attack: a buyer calls for bids each window and declines them all, or never answers, so
    that the sellers' surplus is locked by bids nobody will open (leaving only its own or a friend's
    energy to buy). After two such bids the seller stays silent to its calls; another buyer's call
    for the same window still gets the surplus."""
    from trade_helpers import BUYER as ATTACKER
    from trade_helpers import OTHER as HONEST
    from trade_helpers import message, seller_agent

    sent: list[tuple[str | None, Envelope]] = []
    events: list[str] = []
    agent = seller_agent(tmp_path, sent, events, [ATTACKER, HONEST], round_timeout_s=0.2, market="stations",
                         seller={"price": {"ip": 150, "rp": 100, "dl": 10, "cr": 1.0}})  # fmt: skip
    first = (int(time.time()) // 60 + 2) * 60
    windows = [first, first + 60, first + 120]
    for w in windows:
        agent.selling[w], agent.fees[w] = 1000, 0

    def request(buyer, session: str, window: int) -> bytes:
        body = {"session": session, "window": window, "window_s": 60, "quantity_wh": 1000, "price": 200}
        env = Envelope(
            "request", buyer.address, None, secrets.token_hex(16), int(time.time()), "oak-street", body
        )
        return encode(sign_envelope(env, buyer))

    def bids_to(buyer) -> list[Envelope]:
        return [env for to, env in sent if env.type == "bid" and to == buyer.address]

    async def main() -> None:
        await agent.on_raw(request(ATTACKER, "0x" + "01" * 32, windows[0]))
        await until(lambda: len(bids_to(ATTACKER)) == 1, "the first bid")
        await agent.on_raw(message(ATTACKER, "reject", {"session": "0x" + "01" * 32, "reason": "outbid"}))
        await until(lambda: not agent.sessions, "the declined bid's session to end")
        await agent.on_raw(request(ATTACKER, "0x" + "02" * 32, windows[1]))
        await until(lambda: len(bids_to(ATTACKER)) == 2, "the second bid")
        await until(lambda: not agent.sessions, "silence: the bid times out unconfirmed")
        await agent.on_raw(request(ATTACKER, "0x" + "03" * 32, windows[2]))  # decided at once
        assert len(bids_to(ATTACKER)) == 2 and "request_from_decliner" in events
        await agent.on_raw(request(HONEST, "0x" + "04" * 32, windows[2]))
        await until(lambda: len(bids_to(HONEST)) == 1, "the honest buyer's bid")
        for task in list(agent._tasks):
            task.cancel()

    asyncio.run(main())
    honest = bids_to(HONEST)
    assert [(b.body["terms"]["deliveryStart"], b.body["terms"]["quantityWh"]) for b in honest] == [
        (windows[2], 1000)
    ]
    assert agent.selling[windows[2]] == 0  # the surplus the attacker could not lock went to the honest call

    # the seller's gateway restarts: the attacker's record is in the journal, not wiped by the restart
    agent.journal.close()
    sent.clear()
    events.clear()
    again = seller_agent(tmp_path, sent, events, [ATTACKER, HONEST], round_timeout_s=0.2, market="stations",
                         seller={"price": {"ip": 150, "rp": 100, "dl": 10, "cr": 1.0}})  # fmt: skip
    again.selling[windows[2]], again.fees[windows[2]] = 1000, 0

    async def after_restart() -> None:
        await again.on_raw(request(ATTACKER, "0x" + "05" * 32, windows[2]))
        await until(lambda: bool(events or bids_to(ATTACKER)), "a bid or a refusal")
        for task in list(again._tasks):
            task.cancel()

    asyncio.run(after_restart())
    assert bids_to(ATTACKER) == [] and events == ["request_from_decliner"], events


def test_the_decline_book_is_kept_as_json_and_a_spoiled_value_starts_empty() -> None:
    book = DeclineBook()
    book.record("0xAbC", 3600, confirmed=False)
    book.record("0xabc", 7200, confirmed=True)
    assert book.dumps() == '{"0xabc":[[3600,1],[7200,-1]]}'
    assert DeclineBook.loads(book.dumps()).marks == book.marks
    for spoiled in ("", "{", "[1, 2]", '{"0xabc": [[1]]}', '{"0xabc": 5}', None):
        assert DeclineBook.loads(spoiled).marks == {}, spoiled


def test_a_confirm_after_the_seller_stopped_waiting_still_counts(tmp_path) -> None:
    """A slow broker delays the buyer's `confirm` past the seller's wait: the seller first counts the bid
    unconfirmed, then takes the late confirm (checked: signed by the buyer over our terms) as it is, so
    an honest buyer on a slow link is not shut out by the decline book; a forged late confirm changes
    nothing."""
    from trade_helpers import BUYER as B
    from trade_helpers import OTHER as FORGER
    from trade_helpers import message, seller_agent

    sent: list[tuple[str | None, Envelope]] = []
    events: list[str] = []
    agent = seller_agent(tmp_path, sent, events, [B, FORGER], round_timeout_s=0.2, market="stations",
                         seller={"price": {"ip": 150, "rp": 100, "dl": 10, "cr": 1.0}})  # fmt: skip
    window = (int(time.time()) // 60 + 2) * 60
    agent.selling[window], agent.fees[window] = 1000, 0
    body = {"session": "0x" + "05" * 32, "window": window, "window_s": 60, "quantity_wh": 1000, "price": 200}
    request = Envelope(
        "request", B.address, None, secrets.token_hex(16), int(time.time()), "oak-street", body
    )

    async def main() -> None:
        await agent.on_raw(encode(sign_envelope(request, B)))
        # the seller's wait (2 x 0.2 s) is over: the bid is counted unconfirmed
        await until(
            lambda: agent.declines.marks.get(B.address.lower()) == [(window, 1)], "the unconfirmed mark"
        )
        bid = next(env for _, env in sent if env.type == "bid")
        t = terms_from_dict(bid.body["terms"])
        aid = agent.journal.agreements("signing")[0].id
        forged = sign_terms_hex(t, agent.domain(), FORGER)
        await agent.on_raw(
            message(B, "confirm", {"session": body["session"], "agreement": aid, "sig": forged})
        )
        rec = agent.journal.agreement(aid)
        assert rec is not None and rec.state == "signing" and "confirm_bad_signature" in events
        good = sign_terms_hex(t, agent.domain(), B)
        await agent.on_raw(message(B, "confirm", {"session": body["session"], "agreement": aid, "sig": good}))
        for task in list(agent._tasks):
            task.cancel()

    asyncio.run(main())
    rec = agent.journal.agreements()[0]
    assert rec.state == "signed" and rec.peer_sig and "confirm_late" in events
    assert agent.declines.marks[B.address.lower()] == [(window, -1)]


def test_a_confirm_whose_signature_recovers_to_no_one_is_counted_not_an_error(tmp_path) -> None:
    """Well-formed hex that is not a signature (r = s = 0) in a confirm, in time and late: counted as
    `confirm_bad_signature` both times, never a session error, and the agreement stays unsigned."""
    from trade_helpers import BUYER as B
    from trade_helpers import message, seller_agent

    sent: list[tuple[str | None, Envelope]] = []
    events: list[str] = []
    agent = seller_agent(tmp_path, sent, events, [B], round_timeout_s=0.3, market="stations",
                         seller={"price": {"ip": 150, "rp": 100, "dl": 10, "cr": 1.0}})  # fmt: skip
    window = (int(time.time()) // 60 + 2) * 60
    agent.selling[window], agent.fees[window] = 1000, 0
    body = {"session": "0x" + "06" * 32, "window": window, "window_s": 60, "quantity_wh": 1000, "price": 200}
    request = Envelope(
        "request", B.address, None, secrets.token_hex(16), int(time.time()), "oak-street", body
    )
    nobody = "0x" + "00" * 64 + "1b"

    async def main() -> None:
        await agent.on_raw(encode(sign_envelope(request, B)))
        await until(lambda: any(env.type == "bid" for _, env in sent), "the bid")
        aid = agent.journal.agreements("signing")[0].id
        confirm = {"session": body["session"], "agreement": aid, "sig": nobody}
        await agent.on_raw(message(B, "confirm", confirm))  # in time: the session's own check
        await until(lambda: "confirm_bad_signature" in events, "the in-time refusal")
        await until(lambda: not agent.sessions, "the session's end")
        await agent.on_raw(message(B, "confirm", confirm | {"sig": nobody}))  # late: the agent's check
        for task in list(agent._tasks):
            task.cancel()

    asyncio.run(main())
    assert events.count("confirm_bad_signature") == 2, events
    assert not any(e.startswith("session_error") for e in events), events
    assert agent.journal.agreements()[0].peer_sig is None


def test_the_buyer_confirms_the_good_bid_and_declines_each_bad_one_by_name(tmp_path) -> None:
    """The buyer's side in-process: during its call for bids a fair bid, a bid above the limit, a bid
    signed by another key and a bid in another seller's name arrive; one late bid comes after the
    bidding time. Only the fair bid is countersigned (journaled, to be submitted by the buyer)."""
    from trade_helpers import BUYER as B
    from trade_helpers import OTHER as S2
    from trade_helpers import SELLER as S1
    from trade_helpers import THIRD as S3
    from trade_helpers import seller_agent

    sent: list[tuple[str | None, Envelope]] = []
    events: list[str] = []
    # the helper's agent is SELLER's; here it buys: its buyer table's rp (the limit) is 200
    agent = seller_agent(tmp_path, sent, events, [B, S2, S3], round_timeout_s=0.3, market="stations",
                         buyer={"price": {"ip": 100, "rp": 200, "dl": 10, "cr": 1.0}})  # fmt: skip
    me = S1.address
    window = (int(time.time()) // 60 + 5) * 60
    domain = Domain(31337, "0x" + "11" * 20)

    def bid(sender, session: str, signer=None, **over: int | str) -> bytes:
        t = Terms(**({"seller": sender.address, "buyer": me, "quantityWh": 1000, "unitPrice": 150,
                      "deliveryStart": window, "deliveryEnd": window + 60, "nonce": 3, "expiry": window + 59}
                     | over))  # type: ignore[arg-type]  # fmt: skip
        body = {"session": session, "terms": t.as_dict(), "sig": sign_terms_hex(t, domain, signer or sender)}
        env = Envelope("bid", sender.address, me, secrets.token_hex(16), int(time.time()), "oak-street", body)
        return encode(sign_envelope(env, sender))

    async def main() -> None:
        buying = asyncio.ensure_future(agent._buy_by_auction(window, 1000))
        while not any(env.type == "request" for _, env in sent):
            await asyncio.sleep(0.01)
        request = next(env for _, env in sent if env.type == "request")
        session = request.body["session"]
        assert request.body["price"] == 200 and request.body["quantity_wh"] == 1000
        await agent.on_raw(bid(S2, session, unitPrice=201))  # above the limit
        await agent.on_raw(bid(S3, session, signer=S2))  # signed by someone else
        await agent.on_raw(bid(S3, session, seller=S2.address, unitPrice=100))  # in another seller's name
        await agent.on_raw(bid(B, session, unitPrice=180))  # fair
        while not any(env.type == "confirm" for _, env in sent):
            await asyncio.sleep(0.01)
        await agent.on_raw(bid(S2, session, unitPrice=90))  # too late: the auction is closed
        buying.cancel()
        await asyncio.gather(buying, return_exceptions=True)

    asyncio.run(main())
    replies = {
        (to, env.type, env.body.get("reason")) for to, env in sent if env.type in ("confirm", "reject")
    }
    assert replies == {
        (B.address, "confirm", None),
        (S2.address, "reject", "bid_above_limit"),
        (S3.address, "reject", "bid_bad_signature"),
        (S3.address, "reject", "bid_wrong_parties"),
    }, replies
    assert "auction_won" in events and "no_session" in events
    rows = agent.journal.agreements("signed")
    assert [(r.peer, r.terms["unitPrice"], r.note) for r in rows] == [(B.address, 180, "submitter")]
    assert rows[0].peer_sig and rows[0].my_sig
