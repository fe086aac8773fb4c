"""The simulator's mirror of the Market's meter rule (`settleByMeters`), by golden vectors.

The full-stack run checks the mirror against the real contract hour by hour; these pin the rule itself.
"""

from __future__ import annotations

from hil.community.ledger import meter_delivery
from hil.community.market import Trade


def trade(seller: int, buyer: int, wh: int) -> Trade:
    return Trade(seller, buyer, wh, 100, 0)


def test_export_matched_to_import_pro_rata() -> None:
    trades = [trade(0, 1, 1_000), trade(0, 2, 1_000), trade(3, 1, 500)]
    # seller 0 exported 1,500 of 2,000 sold: 750 each; buyer 1 imported 1,200 of 1,500 bought: 800 and 400
    assert meter_delivery(trades, [1_500, 0, 0, 9_999], [0, 1_200, 5_000, 0]) == [750, 750, 400]


def test_silent_or_short_meters_deliver_nothing_more_than_measured() -> None:
    trades = [trade(0, 1, 1_000)]
    assert meter_delivery(trades, [0, 0], [0, 5_000]) == [0]  # nothing exported
    assert meter_delivery(trades, [5_000, 0], [0, 0]) == [0]  # nothing imported
    assert meter_delivery(trades, [5_000, 0], [0, 5_000]) == [1_000]  # never above the quantity
    assert meter_delivery(trades, [-3, 0], [0, 5_000]) == [0]
