"""`gridpact bench contracts --operation` on py-evm: hourly trading with the sellers' nonce rings.

Small numbers (4 households, 4 agreements an hour) so it runs in seconds; the figures it prints
for batches of 50 come from the same code (`gridpact bench contracts --operation`).
"""

from __future__ import annotations

import pytest

from benches.contracts import TOKENS, disjoint_traffic, engine_traffic, operation, operation_lines
from contracts.harness import Community, household_key
from gateway.trading.nonces import RING_BASE
from hil.services import DEV_PRIVATE_KEYS, in_process_web3


def test_operation_reuses_slots_and_reports_the_first_use_premium() -> None:
    c = Community(in_process_web3(), DEV_PRIVATE_KEYS[0])
    hh = [c.add_household(household_key(i, "bench-op"), deposit=TOKENS) for i in range(4)]
    op = operation(c, hh, batch=4, rounds=10)
    assert len(op.per_round) == 10 and op.agreements == 40
    assert op.slots <= op.agreements // 2  # the rings reuse slots: far fewer than agreements
    assert 2 <= op.max_ring <= 8  # a seller holds about two hours of agreements at once
    assert op.per_round[0] - op.steady > 8_000  # first use of a slot: a zero -> non-zero SSTORE
    assert op.premium_per_slot == 17_100 and op.total_gas / op.agreements > op.steady
    settled = {bytes(e["args"]["id"]) for e in c.market.events.AgreementSettled().get_logs(from_block=0)}
    assert len(settled) == 40  # every agreement settled once, reused slots included
    text = "\n".join(operation_lines(op, 4, "random pairs"))
    assert "steady state" in text and "amortised over 30 days" in text
    assert "meter windows" in text and op.windows >= op.agreements // 2
    assert all(c.market.functions.slotOf(h.address, RING_BASE).call()[2] for h in hh)  # all closed: free


def test_operation_replays_the_engines_own_trades() -> None:
    """`--traffic engine`: each hour's agreements are the negotiation engine's, hours without trades pass."""
    c = Community(in_process_web3(), DEV_PRIVATE_KEYS[0])
    hh = [c.add_household(household_key(i, "bench-engine"), deposit=TOKENS) for i in range(6)]
    traffic = engine_traffic(6, 24, seed=1)
    trading = [hour for hour in traffic if hour]
    assert trading and len(trading) < len(traffic)  # some hours (nights) trade nothing
    op = operation(c, hh, batch=50, rounds=4, traffic=traffic)
    assert len(op.per_round) == 4
    assert op.agreements == sum(len(hour) for hour in trading[:4])
    settled = c.market.events.AgreementSettled().get_logs(from_block=0)
    assert len(settled) == op.agreements
    text = "\n".join(operation_lines(op, 6, "the engine's trades"))
    assert "the engine's trades" in text and "per agreement" in text


def test_disjoint_traffic_gives_every_agreement_its_own_two_windows() -> None:
    """`--traffic disjoint`: nobody trades twice in an hour, so each agreement settles on two meter windows of
    its own (the sparse pattern whose gas the operation figures show apart)."""
    traffic = disjoint_traffic(8, 6, per_hour=3, hours=5, seed=2)
    for hour in traffic:
        parties = [p for t in hour for p in (t.seller, t.buyer)]
        assert len(parties) == len(set(parties)) == 6 and max(parties) < 6
    with pytest.raises(ValueError):
        disjoint_traffic(8, 5, per_hour=3, hours=1, seed=2)
    c = Community(in_process_web3(), DEV_PRIVATE_KEYS[0])
    hh = [c.add_household(household_key(i, "bench-disjoint"), deposit=TOKENS) for i in range(8)]
    op = operation(c, hh, batch=3, rounds=4, traffic=traffic, combine=True)
    assert op.agreements == 12 and op.windows == 2 * op.agreements
    assert len(c.market.events.AgreementSettled().get_logs(from_block=0)) == 12
