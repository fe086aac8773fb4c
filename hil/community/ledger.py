"""Token accounting that mirrors the Market contract: mint, escrow at agreement, settle or refund.

Kept in integer base units so conservation is exact: at every moment the balances plus the
escrow equal everything minted. The full-stack run compares these figures with the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gridpact.core.settlement import DEFAULT_PENALTY_BPS, split
from hil.community.market import MICRO, Trade


def meter_delivery(trades: list[Trade], export_wh: list[int], import_wh: list[int]) -> list[int]:
    """Delivered Wh per trade by the Market's meter rule (`settleByMeters`): the seller's metered export and the
    buyer's metered import in the window, each shared pro rata to the quantities of the household's trades of
    the window (q * min(metered, claimed) // claimed), matched: the smaller of the two."""
    sold: dict[int, int] = {}
    bought: dict[int, int] = {}
    for t in trades:
        sold[t.seller] = sold.get(t.seller, 0) + t.wh
        bought[t.buyer] = bought.get(t.buyer, 0) + t.wh
    out = []
    for t in trades:
        s_share = t.wh * min(max(export_wh[t.seller], 0), sold[t.seller]) // sold[t.seller]
        b_share = t.wh * min(max(import_wh[t.buyer], 0), bought[t.buyer]) // bought[t.buyer]
        out.append(min(s_share, b_share))
    return out


class LedgerError(RuntimeError):
    """An operation the contract would revert: overspend, double settlement, unknown agreement."""


@dataclass
class Ledger:
    """Balances, open escrows and per-household totals of paid, earned and refunded tokens."""

    n: int
    balance: list[int] = field(default_factory=list)
    paid: list[int] = field(default_factory=list)
    earned: list[int] = field(default_factory=list)
    refunded: list[int] = field(default_factory=list)
    minted: int = 0
    unit: int = MICRO  # base units per token: 10**6 in the engine, 10**18 on chain
    penalty_bps: int = DEFAULT_PENALTY_BPS  # the Market contract's default: 10 % of the undelivered value
    escrow: dict[int, tuple[Trade, int]] = field(default_factory=dict)
    settled: int = 0
    refunds: int = 0
    disputes: int = 0  # agreements whose two reports disagreed (the chain's DisputeOpened)
    treasury: int = 0  # the gap between two differing reports goes here, as on chain
    _next: int = 0

    def __post_init__(self) -> None:
        for name in ("balance", "paid", "earned", "refunded"):
            if not getattr(self, name):
                setattr(self, name, [0] * self.n)

    def mint(self, household: int, amount: int) -> None:
        """Starting tokens (the consortium virtualises fiat deposits, Mezquita et al., 4.1)."""
        if amount < 0:
            raise LedgerError("cannot mint a negative amount")
        self.balance[household] += amount
        self.minted += amount

    def affordable_wh(self, household: int, price: int) -> int:
        """How much energy a buyer can escrow at `price` with its current balance."""
        return 0 if price <= 0 else self.balance[household] * 1000 // price

    def agree(self, trade: Trade) -> int:
        """Lock the buyer's payment in escrow; returns the agreement id."""
        amount = trade.payment
        if amount > self.balance[trade.buyer]:
            raise LedgerError(f"buyer {trade.buyer} cannot cover {amount}")
        self.balance[trade.buyer] -= amount
        aid = self._next
        self._next += 1
        self.escrow[aid] = (trade, amount)
        return aid

    def settle(self, aid: int, delivered_wh: int) -> tuple[int, int]:
        """Pay the seller for what was delivered less the penalty, refund the buyer the rest.

        The contract's rule: pay = value(delivered), penalty = min(pay, value(undelivered) * bps / 1e4);
        the seller gets pay - penalty, the buyer escrow - pay + penalty. Returns (to_seller, refund).
        """
        if aid not in self.escrow:
            raise LedgerError(f"agreement {aid} is not open (settled twice?)")
        trade, amount = self.escrow.pop(aid)
        paid = split(trade.wh, trade.price, delivered_wh, penalty_bps=self.penalty_bps)
        to_seller, refund = paid.seller, amount - paid.seller
        self.balance[trade.seller] += to_seller
        self.earned[trade.seller] += to_seller
        self.paid[trade.buyer] += to_seller
        self.balance[trade.buyer] += refund
        self.refunded[trade.buyer] += refund
        self.settled += 1
        self.refunds += refund > 0
        return to_seller, refund

    def settle_split(self, aid: int, to_seller: int, refund: int) -> int:
        """Book a settlement whose two reports differed, as the chain split it: the seller is paid
        on the lower report, the buyer charged on the higher, the gap goes to the treasury (the
        contract's rule, checked by its own tests). Returns the treasury's share."""
        if aid not in self.escrow:
            raise LedgerError(f"agreement {aid} is not open (settled twice?)")
        trade, amount = self.escrow.pop(aid)
        gap = amount - to_seller - refund
        if to_seller < 0 or refund < 0 or gap < 0:
            raise LedgerError(f"agreement {aid}: split {to_seller}/{refund} exceeds the escrow {amount}")
        self.balance[trade.seller] += to_seller
        self.earned[trade.seller] += to_seller
        self.paid[trade.buyer] += to_seller + gap
        self.balance[trade.buyer] += refund
        self.refunded[trade.buyer] += refund
        self.treasury += gap
        self.settled += 1
        self.refunds += refund > 0
        return gap

    @property
    def agreements(self) -> int:
        """Agreements made so far (open, settled or refunded)."""
        return self._next

    def escrowed(self) -> int:
        return sum(amount for _, amount in self.escrow.values())

    def conserved(self) -> bool:
        """Balances + escrow + treasury == minted: no token created or lost."""
        return sum(self.balance) + self.escrowed() + self.treasury == self.minted
