"""The settle loop's cadence: prompt while an agreement has a step of its own to take, otherwise asleep
until the next such moment, asking the chain at the idle pace meanwhile."""

from __future__ import annotations

from gateway.chain.journal import AgreementRecord
from gateway.trading.service import settle_wait_s

END = 7200


def rec(state: str, end: int = END) -> AgreementRecord:
    terms = {"deliveryStart": end - 3600, "deliveryEnd": end}
    return AgreementRecord("0x01", "seller", "0xpeer", terms, "sig", "peer", state, end, None, None)


def wait(records: list[AgreementRecord], now: float, grace: float = 0.0) -> float:
    return settle_wait_s(records, now, busy_s=5.0, idle_s=30.0, keeper_grace_s=grace)


def test_nothing_open_waits_at_the_idle_pace() -> None:
    assert wait([], 0.0) == 30.0


def test_signatures_and_submission_are_prompt() -> None:
    for state in ("signing", "signed"):
        assert wait([rec("submitted"), rec(state)], 100.0) == 5.0


def test_delivering_sleeps_until_the_end_of_delivery_at_most_the_idle_pace() -> None:
    assert wait([rec("submitted")], END - 3000) == 30.0
    assert wait([rec("submitted")], END - 12) == 12.0
    assert wait([rec("submitted")], END - 1) == 5.0  # never below the busy pace


def test_after_delivery_the_evidence_or_report_is_prompt_without_a_keeper() -> None:
    assert wait([rec("submitted")], END + 1) == 5.0
    assert wait([rec("submitted", END + 3600), rec("submitted")], END + 1) == 5.0


def test_the_keepers_turn_is_waited_out_at_the_idle_pace() -> None:
    assert wait([rec("submitted")], END + 10, grace=900) == 30.0
    assert wait([rec("submitted")], END + 890, grace=900) == 10.0
    assert wait([rec("submitted")], END + 900, grace=900) == 5.0


def test_reported_waits_for_the_others_at_the_idle_pace() -> None:
    assert wait([rec("reported")], END + 100) == 30.0
