"""The Market contract's settlement arithmetic, mirrored once for every Python part that predicts it.

The gateway (escrow before submitting, what a settled agreement paid), the dashboard and Home
Assistant figures and the community simulator's ledger all compute what the chain will pay; they
call these functions so that none of them drifts from the contract (contracts/INTERFACE.md,
"Settlement"; tests/contracts/test_contracts_settlement_arithmetic.py checks them against the
contract on the EVM). All amounts are integers in token base units; quantities in Wh; prices in
base units per kWh; rates in basis points (10,000 = 100 %).
"""

from __future__ import annotations

from dataclasses import dataclass

BPS = 10_000
DEFAULT_TOLERANCE_BPS = 200  # the contract's default: reports within 2 % of the quantity agree
DEFAULT_PENALTY_BPS = 1_000  # the contract's default: 10 % of the undelivered value


def value(quantity_wh: int, unit_price: int) -> int:
    """What `quantity_wh` costs at `unit_price` per kWh: q * p / 1000, rounded down (the contract's `value`)."""
    return quantity_wh * unit_price // 1000


def penalty(undelivered_wh: int, unit_price: int, penalty_bps: int = DEFAULT_PENALTY_BPS) -> int:
    """The penalty rate on the value of what was not delivered, rounded down (before the cap at the pay)."""
    return value(undelivered_wh, unit_price) * penalty_bps // BPS


def agree(
    quantity_wh: int, seller_wh: int, buyer_wh: int, tolerance_bps: int = DEFAULT_TOLERANCE_BPS
) -> bool:
    """Whether two reports, each capped at the quantity, settle (True) or go to dispute (False)."""
    s, b = min(seller_wh, quantity_wh), min(buyer_wh, quantity_wh)
    return abs(s - b) * BPS <= quantity_wh * tolerance_bps


@dataclass(frozen=True)
class Split:
    """Where a settled agreement's escrow goes; the three always sum to the escrow."""

    seller: int  # value(delivered) less the penalty, less the network fee
    buyer: int  # the escrow less value(charged), plus the credit
    treasury: int  # the operator's: the reports' gap, the penalty not credited back, the fee

    @property
    def escrow(self) -> int:
        return self.seller + self.buyer + self.treasury


def split(
    quantity_wh: int,
    unit_price: int,
    delivered_wh: int,
    charged_wh: int | None = None,
    penalty_bps: int = DEFAULT_PENALTY_BPS,
    fee_per_kwh: int = 0,
) -> Split:
    """The contract's payout for `delivered` <= `charged` <= quantity (charged defaults to delivered).

    The seller is paid value(delivered) less the penalty on quantity - delivered (at most the pay),
    less the network fee value(delivered, fee_per_kwh) (at most what the penalty leaves; pass 0 for a
    trade with the grid provider, which pays none); the buyer is charged value(charged) and credited
    the penalty on quantity - charged (at most the penalty); the operator (`treasury`) keeps the rest
    and the fee. Quantities outside [0, quantity] are capped first.
    """
    q = quantity_wh
    delivered = max(0, min(delivered_wh, q))
    charged = delivered if charged_wh is None else max(delivered, min(charged_wh, q))
    escrow, paid, cost = value(q, unit_price), value(delivered, unit_price), value(charged, unit_price)
    pen = min(paid, penalty(q - delivered, unit_price, penalty_bps))
    credit = min(pen, penalty(q - charged, unit_price, penalty_bps))
    net = paid - pen - min(paid - pen, value(delivered, fee_per_kwh))
    return Split(seller=net, buyer=escrow - cost + credit, treasury=cost - net - credit)


def settle_reports(
    quantity_wh: int,
    unit_price: int,
    seller_wh: int,
    buyer_wh: int,
    tolerance_bps: int = DEFAULT_TOLERANCE_BPS,
    penalty_bps: int = DEFAULT_PENALTY_BPS,
    fee_per_kwh: int = 0,
) -> Split | None:
    """The payout of two reports within tolerance (seller paid the lower, buyer charged the higher); None: dispute."""
    if not agree(quantity_wh, seller_wh, buyer_wh, tolerance_bps):
        return None
    s, b = min(seller_wh, quantity_wh), min(buyer_wh, quantity_wh)
    return split(quantity_wh, unit_price, min(s, b), max(s, b), penalty_bps, fee_per_kwh)
