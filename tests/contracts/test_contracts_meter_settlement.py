"""Settlement from meter evidence (issue 17, item 2), on anvil and on py-evm.

Every party-behaviour combination of docs/contracts.md's outcome table is a row here: each side is honest
(posts its meter's signed statements for the window), silent (posts and reports nothing), lying low or high
(withholds its meter's statements and reports a figure on chain instead), or has its meter offline (no
statements exist; its gateway reports the truth on chain). The seller's meter exported 600 Wh in the window,
the buyer's imported 1,000 Wh (400 of it from the grid), so 600 Wh were delivered. The expected outcome of
each row is written out by hand as (delivered, charged) or a refund, and the balances checked against it.
"""

from __future__ import annotations

from typing import Any

import pytest
from web3.logs import DISCARD

from contracts.harness import NO_WINDOW, Community, Household, advance_time
from gridpact.core.statement import parse_settlement_batch, settlement_batch

HOUR, DAY = 3600, 86_400
PRICE = 250_000_000_000_000_000
Q = 1_000
SETTLED, REFUNDED = 3, 4
EXPORTED, IMPORTED = 600, 1_000  # what the meters measured in the window
S0 = (5_000, 10_000)  # seller's (import, export) counters at the window's start
B0 = (20_000, 300)
REPORTS = {"low": 300, "high": 1_000, "offline": 600}  # what a side reports on chain (offline: the truth)

# (seller, buyer) -> ("settled", delivered, charged) or ("refunded",); delivered/charged as `_pay` takes them
TABLE: dict[tuple[str, str], tuple] = {
    # the seller's meter evidence is in
    ("honest", "honest"): ("settled", 600, 600),
    ("honest", "silent"): ("settled", 600, 600),
    ("honest", "low"): ("settled", 600, 600),
    ("honest", "high"): ("settled", 600, 600),
    ("honest", "offline"): ("settled", 600, 600),
    # only the buyer's: the seller's meter never spoke, the seller bears it
    ("silent", "honest"): ("settled", 0, 0),
    ("low", "honest"): ("settled", 0, 0),
    ("high", "honest"): ("settled", 0, 0),
    ("offline", "honest"): ("settled", 0, 0),
    # no meter evidence at all: the parties' words on record (a silent side accepts the other's)
    ("silent", "silent"): ("refunded",),
    ("silent", "low"): ("settled", 300, 300),
    ("silent", "high"): ("settled", 1_000, 1_000),
    ("silent", "offline"): ("settled", 600, 600),
    ("low", "silent"): ("settled", 300, 300),
    ("low", "low"): ("settled", 300, 300),
    ("low", "high"): ("settled", 300, 1_000),
    ("low", "offline"): ("settled", 300, 600),
    ("high", "silent"): ("settled", 1_000, 1_000),
    ("high", "low"): ("settled", 300, 1_000),
    ("high", "high"): ("settled", 1_000, 1_000),
    ("high", "offline"): ("settled", 600, 1_000),
    ("offline", "silent"): ("settled", 600, 600),
    ("offline", "low"): ("settled", 300, 600),
    ("offline", "high"): ("settled", 600, 1_000),
    ("offline", "offline"): ("settled", 600, 600),
}


def value(wh: int) -> int:
    return wh * PRICE // 1000


def payout(delivered: int, charged: int) -> tuple[int, int, int]:
    """(seller, buyer, treasury) of the escrow, as docs/contracts.md states `_pay`."""
    penalty = min(value(delivered), value(Q - delivered) * 1000 // 10_000)
    credit = min(penalty, value(Q - charged) * 1000 // 10_000)
    seller = value(delivered) - penalty
    buyer = value(Q) - value(charged) + credit
    return seller, buyer, value(Q) - seller - buyer


def aligned_window(c: Community) -> tuple[int, int]:
    start = (c.now() // HOUR + 1) * HOUR
    return start, start + HOUR


def setup(c: Community) -> tuple[Household, Household, Any, int, int]:
    seller, buyer, _ = c.households
    c.set_meter(seller)
    c.set_meter(buyer)
    start, end = aligned_window(c)
    t = c.terms(seller, buyer, quantity_wh=Q, unit_price=PRICE, delivery_end=end, expiry=c.now() + 60)
    c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, seller, buyer)))
    advance_time(c.w3, end - c.now() + 1)
    return seller, buyer, t, start, end


def seller_window(c: Community, seller: Household, start: int, end: int) -> tuple:
    return c.meter_window(seller, start, end, S0, (S0[0], S0[1] + EXPORTED))


def buyer_window(c: Community, buyer: Household, start: int, end: int) -> tuple:
    return c.meter_window(buyer, start, end, B0, (B0[0] + IMPORTED, B0[1]))


def by_meters(c: Community, caller: Any, windows: list[tuple], items: list[tuple]) -> Any:
    return caller.transact(c.market.functions.settleByMeters(settlement_batch(windows, items)))


@pytest.mark.parametrize(("seller_does", "buyer_does"), list(TABLE))
def test_meter_settlement_outcome_table(community: Community, seller_does: str, buyer_does: str) -> None:
    c = community
    m = c.market
    outsider = c.households[2]  # anyone may close it after the deadline
    seller, buyer, t, start, end = setup(c)
    treasury = m.functions.treasury().call()
    before = (c.free(seller.address), c.free(buyer.address), c.free(treasury))
    for who, does in ((seller, seller_does), (buyer, buyer_does)):
        if does == "honest":
            w = seller_window(c, seller, start, end) if who is seller else buyer_window(c, buyer, start, end)
            item = (t.as_tuple(), 0, NO_WINDOW) if who is seller else (t.as_tuple(), NO_WINDOW, 0)
            by_meters(c, who.sender, [w], [item])  # each gateway carries its own meter's statements
        elif does in REPORTS:
            who.sender.transact(m.functions.report(t.as_tuple(), REPORTS[does]))
    status = m.functions.agreementOf(t.as_tuple()).call()[0]
    if status not in (SETTLED, REFUNDED):  # nobody closed it yet: after the deadline(s) anyone does
        advance_time(c.w3, DAY + 3 * DAY + 2)
        outsider.sender.transact(m.functions.reclaim(t.as_tuple()))
    expected = TABLE[(seller_does, buyer_does)]
    after = (c.free(seller.address), c.free(buyer.address), c.free(treasury))
    gained = tuple(a - b for a, b in zip(after, before, strict=True))
    if expected[0] == "refunded":
        assert m.functions.agreementOf(t.as_tuple()).call()[0] == REFUNDED
        assert gained == (0, value(Q), 0)
    else:
        assert m.functions.agreementOf(t.as_tuple()).call()[0] == SETTLED
        assert gained == payout(expected[1], expected[2])


def test_meter_settlement_both_sides_in_one_call_settles_at_once(community: Community) -> None:
    """A keeper batches both meters' windows with the agreement: settled in one call, delivered = min. A
    household without the keeper role cannot carry another household's statements."""
    c = community
    seller, buyer, t, start, end = setup(c)
    keeper = c.households[2]
    rcpt = by_meters(c, keeper.sender, [seller_window(c, seller, start, end)], [(t.as_tuple(), 0, NO_WINDOW)])
    assert [e["args"]["household"] for e in c.market.events.MeterWindowRejected().process_receipt(
        rcpt, errors=DISCARD)] == [seller.address]  # fmt: skip
    assert [r.name for _, r in c.rejected(rcpt)] == ["MissingEvidence"]
    c.admin.transact(c.market.functions.grantRole(c.market.functions.KEEPER_ROLE().call(), keeper.address))
    rcpt = by_meters(c, keeper.sender, [seller_window(c, seller, start, end), buyer_window(c, buyer, start, end)],
                     [(t.as_tuple(), 0, 1)])  # fmt: skip
    ev = c.market.events.AgreementSettled().process_receipt(rcpt, errors=DISCARD)
    assert [e["args"]["deliveredWh"] for e in ev] == [EXPORTED]
    assert c.rejected(rcpt) == []


def test_meter_settlement_evidence_beats_an_early_dispute(community: Community) -> None:
    """Attack: the buyer reports 0 at once and the seller's old gateway reports the truth, so the reports open a
    dispute; the buyer hopes the community stays idle. The meters' statements settle the dispute."""
    c = community
    m = c.market
    seller, buyer, t, start, end = setup(c)
    buyer.sender.transact(m.functions.report(t.as_tuple(), 0))
    seller.sender.transact(m.functions.report(t.as_tuple(), EXPORTED))
    assert m.functions.agreementOf(t.as_tuple()).call()[0] == 2  # Disputed
    free_s = c.free(seller.address)
    by_meters(c, c.admin,
              [seller_window(c, seller, start, end), buyer_window(c, buyer, start, end)], [(t.as_tuple(), 0, 1)])  # fmt: skip
    assert m.functions.agreementOf(t.as_tuple()).call()[0] == SETTLED
    assert c.free(seller.address) - free_s == payout(EXPORTED, EXPORTED)[0]


def test_meter_settlement_refuses_forged_replayed_and_mismatched_evidence(community: Community) -> None:
    """Attacks on the evidence itself: statements signed by the household's gateway key instead of its meter, a
    window reused for a second agreement (each Wh counts once), another household's window, counters going
    back. Each is refused with its reason and moves nothing."""
    c = community
    m = c.market
    seller, buyer, t, start, end = setup(c)
    keeper = c.admin  # the community keeps
    # 1. forged: the household signs with its own gateway key (the meter key never leaves the node)
    real_secret = seller.meter_secret
    seller.meter_secret = bytes.fromhex(seller.key[2:])
    forged = seller_window(c, seller, start, end)
    seller.meter_secret = real_secret
    rcpt = by_meters(c, keeper, [forged, buyer_window(c, buyer, start, end)], [(t.as_tuple(), 0, 1)])
    rejected = m.events.MeterWindowRejected().process_receipt(rcpt, errors=DISCARD)
    assert [(e["args"]["index"], e["args"]["household"]) for e in rejected] == [(0, seller.address)]
    assert m.functions.evidenceOf(c.agreement_id(t)).call() == [False, True, 0, IMPORTED]  # buyer's side kept
    # 2. the buyer's window again, for the same agreement: its evidence is used, refused
    rcpt = by_meters(c, keeper, [buyer_window(c, buyer, start, end)], [(t.as_tuple(), NO_WINDOW, 0)])
    reasons = [
        c.market.events.MeterWindowRejected().process_receipt(rcpt, errors=DISCARD)[0]["args"]["reason"]
    ]
    assert reasons[0][:4] == c.w3.keccak(text="MeterEvidenceUsed(address,uint40,uint256)")[:4]
    # 3. the buyer's window offered as the seller's: mismatch, the item is rejected
    rcpt = by_meters(c, keeper, [buyer_window(c, buyer, start - HOUR, start)], [(t.as_tuple(), 0, NO_WINDOW)])
    assert [r.name for _, r in c.rejected(rcpt)] == ["MeterWindowMismatch"]
    # 4. counters going back
    back = c.meter_window(seller, start, end, S0, (S0[0], S0[1] - 1))
    rcpt = by_meters(c, keeper, [back], [(t.as_tuple(), 0, NO_WINDOW)])
    ev = m.events.MeterWindowRejected().process_receipt(rcpt, errors=DISCARD)
    assert len(ev) == 1
    # the genuine seller window still settles it (buyer's kept figure + seller's)
    rcpt = by_meters(c, keeper, [seller_window(c, seller, start, end)], [(t.as_tuple(), 0, NO_WINDOW)])
    assert m.functions.agreementOf(t.as_tuple()).call()[0] == SETTLED


def test_meter_settlement_shares_a_window_between_agreements_and_chains_windows(community: Community) -> None:
    """A seller with two sales in one window: its export is shared pro rata to the quantities (order does not
    matter), never counted twice, and an agreement listed twice is refused; the next window chains from the
    statement the first ended with (one signature)."""
    c = community
    m = c.market
    seller, buyer, other = c.households
    for hh in (seller, buyer, other):
        c.set_meter(hh)
    start, end = aligned_window(c)
    t1 = c.terms(seller, buyer, quantity_wh=Q, unit_price=PRICE, delivery_end=end, expiry=c.now() + 60)
    t2 = c.terms(seller, other, quantity_wh=Q, unit_price=PRICE, delivery_end=end, expiry=c.now() + 60)
    t3 = c.terms(seller, buyer, quantity_wh=Q, unit_price=PRICE, delivery_end=end + HOUR, expiry=c.now() + 60)
    for t, b in ((t1, buyer), (t2, other), (t3, buyer)):
        c.admin.transact(m.functions.submitAgreement(t.as_tuple(), *c.sign(t, seller, b)))
    advance_time(c.w3, end - c.now() + 1)
    sw = c.meter_window(seller, start, end, S0, (S0[0], S0[1] + 1_500))
    bw = c.meter_window(buyer, start, end, B0, (B0[0] + 2_000, B0[1]))
    ow = c.meter_window(other, start, end, (0, 0), (2_000, 0))
    items = [(t2.as_tuple(), 0, 2), (t1.as_tuple(), 0, 1), (t2.as_tuple(), 0, 2)]  # t2 twice: padding
    rcpt = by_meters(c, c.admin, [sw, bw, ow], items)
    ev = m.events.AgreementSettled().process_receipt(rcpt, errors=DISCARD)
    assert [e["args"]["deliveredWh"] for e in ev] == [750, 750]
    assert [(i, r.name) for i, r in c.rejected(rcpt)] == [(2, "WrongStatus")]
    advance_time(c.w3, HOUR)
    sw2 = c.meter_window(seller, end, end + HOUR, None, (S0[0], S0[1] + 1_500 + 800))  # chained: no start
    bw2 = c.meter_window(buyer, end, end + HOUR, None, (B0[0] + 2_000 + 900, B0[1]))
    rcpt = by_meters(c, c.admin, [sw2, bw2], [(t3.as_tuple(), 0, 1)])
    ev = m.events.AgreementSettled().process_receipt(rcpt, errors=DISCARD)
    assert [e["args"]["deliveredWh"] for e in ev] == [800]


def test_meter_settlement_provider_side_always_matches(community: Community) -> None:
    """The grid provider has no meter: its side matches the household's meter (the grid takes any export)."""
    c = community
    m = c.market
    household, provider_hh, _ = c.households
    c.set_meter(household)
    c.admin.transact(m.functions.setProvider(provider_hh.address, PRICE, PRICE))
    start, end = aligned_window(c)
    advance_time(c.w3, start - c.now() - 5)
    rcpt = household.sender.transact(m.functions.tradeWithProvider(False, Q, start, end))
    t_args = m.events.ProviderTraded().process_receipt(rcpt, errors=DISCARD)[0]["args"]["terms"]
    fields = ("seller", "buyer", "quantityWh", "unitPrice", "deliveryStart", "deliveryEnd", "nonce", "expiry")
    t = tuple(t_args[k] for k in fields)
    advance_time(c.w3, end - c.now() + 1)
    w = c.meter_window(household, start, end, S0, (S0[0], S0[1] + EXPORTED))
    rcpt = by_meters(c, c.admin, [w], [(t, 0, NO_WINDOW)])
    ev = m.events.AgreementSettled().process_receipt(rcpt, errors=DISCARD)
    assert [e["args"]["deliveredWh"] for e in ev] == [EXPORTED]


def test_meter_settlement_only_the_community_sets_meters(community: Community, reverts) -> None:
    c = community
    a, b, _ = c.households
    reverts(
        "AccessControlUnauthorizedAccount",
        lambda: a.sender.transact(c.market.functions.setMeter(a.address, b.address)),
    )


def test_a_meter_key_serves_one_registered_household_at_a_time(community: Community, reverts) -> None:
    """A meter's key is public (it signs every statement the community sees). Registered for a second
    household, that household could present its neighbour's metered export or cut as its own: refused
    while the holder is a participant; free again once the holder changes key or leaves."""
    c = community
    a, b, h = c.households
    key_a = c.set_meter(a)
    set_meter = c.market.functions.setMeter
    assert reverts("MeterInUse", lambda: c.admin.transact(set_meter(b.address, key_a))) == (key_a, a.address)
    c.admin.transact(set_meter(a.address, key_a))  # setting the same key again is no conflict
    key_a2 = c.set_meter(a, salt="replaced-meter")  # a's node replaced: its old key is free
    c.admin.transact(set_meter(b.address, key_a))
    assert c.market.functions.meterOf(b.address).call()[0] == key_a
    in_use = reverts("MeterInUse", lambda: c.admin.transact(set_meter(h.address, key_a2)))
    assert in_use == (key_a2, a.address)
    c.admin.transact(c.market.functions.remove(a.address))  # a left: its key may serve another household
    c.admin.transact(set_meter(h.address, key_a2))
    # a comes back: re-registering and taking a new key must not free the key h now holds
    c.admin.transact(c.market.functions.register(a.address, b"\x01" * 32, b"\x11" * 32))
    c.set_meter(a, salt="third-meter")
    in_use = reverts("MeterInUse", lambda: c.admin.transact(set_meter(b.address, key_a2)))
    assert in_use == (key_a2, h.address)


def test_meter_settlement_refuses_a_malformed_batch_as_a_whole(community: Community, reverts) -> None:
    """The packed batch (docs/wire/meter-settlement-v1.md) must parse exactly: a truncated window, a start flag
    other than 0 or 1, or a stray byte after the items reverts `MeterBatchMalformed` with where it broke, and
    nothing is settled (and the core's parser refuses each too); the well-formed batch then settles."""
    c = community
    m = c.market
    keeper = c.admin
    seller, buyer, t, start, end = setup(c)
    windows = [seller_window(c, seller, start, end), buyer_window(c, buyer, start, end)]
    good = settlement_batch(windows, [(t.as_tuple(), 0, 1)])
    head = 2 + 63 + 116 + 116  # count, then the seller's window with its start statement
    bad_flag = bytearray(good)
    bad_flag[2 + 62] = 2
    items_at = head + 63 + 232  # the item count, after the buyer's window
    too_many = bytearray(good)
    too_many[items_at + 1] = 2  # two items announced, one there
    for batch, at in [
        (b"", 0),  # no window count
        (good[:100], 2),  # the first window cut short
        (bytes(bad_flag), 2),  # start flag 2
        (good[: items_at + 1], items_at),  # no item count
        (bytes(too_many), items_at),
        (good + b"\0", items_at),  # one byte after the items: not a whole agreement to open
        (good[:-1], items_at),  # the item cut short
    ]:
        args = reverts("MeterBatchMalformed", lambda b=batch: keeper.transact(m.functions.settleByMeters(b)))
        assert tuple(args) == (len(batch), at)
        with pytest.raises(ValueError):  # the explorer's parser refuses what the contract refuses
            parse_settlement_batch(batch)
    assert m.functions.agreementOf(t.as_tuple()).call()[0] == 1  # still Active
    rcpt = keeper.transact(m.functions.settleByMeters(good))
    assert len(m.events.AgreementSettled().process_receipt(rcpt, errors=DISCARD)) == 1


def test_meter_settlement_opens_the_next_windows_agreements_in_the_same_call(
    community: Community, reverts
) -> None:
    """The keeper's hourly call settles the window that ended and opens the one that started: one call, each
    household's balance slot touched once. Opening is for members: an outsider's call with opens reverts; a
    refused open (here: its buyer lacks the balance) is skipped and reported after the settled items."""
    c = community
    m = c.market
    keeper = c.admin
    seller, buyer, t, start, end = setup(c)
    windows = [seller_window(c, seller, start, end), buyer_window(c, buyer, start, end)]
    nxt = c.terms(
        seller, buyer, quantity_wh=Q, unit_price=PRICE, delivery_end=end + HOUR, expiry=end + HOUR - 1
    )
    big = c.terms(
        buyer, seller, quantity_wh=10**15, unit_price=PRICE, delivery_end=end + HOUR, expiry=end + HOUR - 1
    )
    opens = [(x.as_tuple(), *c.sign(x, s_, b_)) for x, s_, b_ in ((nxt, seller, buyer), (big, buyer, seller))]
    batch = settlement_batch(windows, [(t.as_tuple(), 0, 1)], opens)
    outsider = c.households[2]
    c.admin.transact(m.functions.remove(outsider.address))
    reverts("NotRegistered", lambda: outsider.sender.transact(m.functions.settleByMeters(batch)))
    rcpt = keeper.transact(m.functions.settleByMeters(batch))
    assert len(m.events.AgreementSettled().process_receipt(rcpt, errors=DISCARD)) == 1
    opened = m.events.AgreementSubmitted().process_receipt(rcpt, errors=DISCARD)
    assert [bytes(e["args"]["id"]) for e in opened] == [c.agreement_id(nxt)]
    assert [(i, r.name) for i, r in c.rejected(rcpt)] == [(2, "InsufficientBalance")]  # item 0, opens 1 and 2
    assert m.functions.agreementOf(nxt.as_tuple()).call()[0] == 1  # Active


def test_meter_settlement_refuses_an_item_with_dirty_high_bits(community: Community) -> None:
    """Items are read without per-field checks: a Terms word with bits above its field's width (here the
    seller's address word) hashes to another agreement id, which matches no open agreement, so the item is
    refused (`WrongStatus`) and pays nothing."""
    c = community
    m = c.market
    seller, buyer, t, start, end = setup(c)
    windows = [seller_window(c, seller, start, end), buyer_window(c, buyer, start, end)]
    good = settlement_batch(windows, [(t.as_tuple(), 0, 1)])
    item_at = 2 + 2 * (63 + 232) + 2
    dirty = bytearray(good)
    dirty[item_at] = 0x01  # the seller word's top byte
    rcpt = c.admin.transact(m.functions.settleByMeters(bytes(dirty)))
    assert [r.name for _, r in c.rejected(rcpt)] == ["WrongStatus"]
    assert m.events.AgreementSettled().process_receipt(rcpt, errors=DISCARD) == ()
    assert c.status(t) == 1  # still Active


def test_settlement_batch_parses_back_to_what_built_it(community: Community) -> None:
    """The explorer's parser is the encoder's inverse: windows with and without a start statement, items, opens."""
    c = community
    seller, buyer, _ = c.households
    c.set_meter(seller)
    c.set_meter(buyer)
    start, end = aligned_window(c)
    t = c.terms(seller, buyer, quantity_wh=Q, unit_price=PRICE, delivery_end=end, expiry=c.now() + 60)
    windows = [
        seller_window(c, seller, start, end),
        c.meter_window(buyer, start, end, None, (B0[0] + 5, B0[1])),
    ]
    items = [(t.as_tuple(), 0, 1), (t.as_tuple(), NO_WINDOW, 0)]
    opens = [(t.as_tuple(), *c.sign(t, seller, buyer))]
    raw = settlement_batch(windows, items, opens)
    assert len(raw) == 2 + (63 + 232) + (63 + 116) + 2 + 2 * 264 + 384
    assert parse_settlement_batch(raw) == (windows, items, opens)
