"""The chain layer on the in-process EVM: the contract settles exactly as the simulation's ledger."""

from __future__ import annotations

import pytest

from hil.community.chain import CommunityChain, household_keys
from hil.community.ledger import Ledger
from hil.community.market import Trade
from hil.services import DEV_PRIVATE_KEYS, in_process_web3

TOKEN = 10**18


def test_household_keys_extend_past_the_dev_accounts() -> None:
    keys = household_keys(12)
    assert keys[:9] == list(DEV_PRIVATE_KEYS[1:]) and len(set(keys)) == 12


def test_partial_delivery_settles_on_chain_like_the_ledger() -> None:
    w3 = in_process_web3()
    chain = CommunityChain(w3, ["a", "b", "c"])
    chain.setup(50 * TOKEN)
    hour_start = (chain.now() // 86400 + 2) * 86400
    trades = [Trade(0, 1, 1000, 200 * TOKEN // 1000, 3), Trade(2, 1, 500, 210 * TOKEN // 1000, 4)]
    ledger = Ledger(3, unit=TOKEN)
    for i in range(3):
        ledger.mint(i, 50 * TOKEN)
    ids = [ledger.agree(t) for t in trades]
    chain.submit(0, hour_start, trades)
    on_chain = chain.settle(0, hour_start, [600, 500])
    assert on_chain == [ledger.settle(ids[0], 600), ledger.settle(ids[1], 500)]
    assert on_chain[0][1] > 0 and on_chain[1][1] == 0  # the short delivery was refunded, the full one not
    totals = chain.totals()
    assert totals.balances == ledger.balance
    assert totals.minted == 150 * TOKEN == totals.market_holds == sum(totals.balances)
    assert totals.settled_events == 2 and totals.refunded_events == 1


def test_settling_an_hour_with_the_wrong_count_is_an_error() -> None:
    from hil.community.chain import ChainLayerError

    w3 = in_process_web3()
    chain = CommunityChain(w3, ["a", "b"])
    chain.setup(10 * TOKEN)
    hour_start = (chain.now() // 86400 + 2) * 86400
    chain.submit(0, hour_start, [Trade(0, 1, 100, 100 * TOKEN // 1000, 0)])
    with pytest.raises(ChainLayerError, match="1 agreements but 2 deliveries"):
        chain.settle(0, hour_start, [100, 100])
