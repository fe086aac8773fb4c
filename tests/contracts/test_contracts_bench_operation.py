"""`gridpact bench contracts --operation` on py-evm: hourly trading with the sellers' nonce rings.

Small numbers (4 households, 4 agreements an hour) so it runs in seconds; the figures it prints
for batches of 50 come from the same code (`gridpact bench contracts --operation`).
"""

from __future__ import annotations

from benches.contracts import TOKENS, operation, operation_lines
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
    assert 5_000 < op.premium_per_slot < 30_000
    settled = {bytes(e["args"]["id"]) for e in c.market.events.AgreementSettled().get_logs(from_block=0)}
    assert len(settled) == 40  # every agreement settled once, reused slots included
    text = "\n".join(operation_lines(op, 4, 4))
    assert "steady state" in text and "amortised over 30 days" in text
    assert all(c.market.functions.slotOf(h.address, RING_BASE).call()[2] for h in hh)  # all closed: free
