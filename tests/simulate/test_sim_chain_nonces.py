"""The engine path's chain layer gives each seller's agreements nonces from the gateway's ring."""

from __future__ import annotations

from gateway.trading.nonces import RING_BASE
from hil.community.chain import CommunityChain
from hil.community.market import Trade
from hil.services import in_process_web3

TOKEN = 10**18


def test_sellers_reuse_the_slots_of_settled_hours() -> None:
    chain = CommunityChain(in_process_web3(), ["a", "b", "c"])
    chain.setup(50 * TOKEN)
    start = (chain.now() // 86400 + 2) * 86400
    price = 200 * TOKEN // 1000

    def nonces(hour: int) -> list[int]:
        return [t.nonce - RING_BASE for t in chain._terms[hour]]

    chain.submit(
        0, start, [Trade(0, 1, 100, price, 0), Trade(0, 2, 100, price, 0), Trade(2, 1, 100, price, 0)]
    )
    chain.submit(1, start + 3600, [Trade(0, 1, 100, price, 1)])  # hour 0 is still open
    assert nonces(0) == [0, 1, 0] and nonces(1) == [2]  # per seller, lowest free
    chain.settle(0, start, [100, 100, 100])
    chain.submit(2, start + 7200, [Trade(0, 1, 100, price, 2), Trade(2, 1, 100, price, 2)])
    assert nonces(2) == [0, 0]  # hour 0's slots, written again
    chain.settle(1, start + 3600, [100])
    chain.settle(2, start + 7200, [100, 100])
    assert chain.totals().settled_events == 6
