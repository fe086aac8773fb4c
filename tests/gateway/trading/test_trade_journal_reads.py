"""The journal's agreement lists: asked every few seconds, read from SQLite only after a write.

A write by this journal or by another connection to the same file (another process: the trade
CLI, a restored backup) must show in the next answer.
"""

from __future__ import annotations

from pathlib import Path

from gateway.chain.journal import Journal

TERMS = {
    "seller": "0x01",
    "buyer": "0x02",
    "nonce": 1,
    "quantityWh": 100,
    "deliveryStart": 0,
    "deliveryEnd": 3600,
}


def test_a_write_here_or_elsewhere_shows_in_the_next_list(tmp_path: Path) -> None:
    path = tmp_path / "trading.db"
    journal, other = Journal(path), Journal(path)
    try:
        assert journal.agreements("signing") == []
        assert journal.put_agreement("0xa1", "seller", "0x02", TERMS, "0xsig", 3600)
        assert [r.id for r in journal.agreements("signing")] == ["0xa1"]  # our own write
        assert journal.agreements("signing") == journal.agreements("signing")  # asked again: the same

        other.set_agreement_state("0xa1", "signed")  # another connection's commit
        assert journal.agreements("signing") == []
        assert [(r.id, r.state) for r in journal.agreements("signed")] == [("0xa1", "signed")]

        listed = journal.agreements()
        listed.clear()  # a caller's list is its own
        assert [r.id for r in journal.agreements()] == ["0xa1"]

        journal.set_agreement_state("0xa1", "submitted", note="submitter")
        assert [(r.state, r.note) for r in journal.agreements()] == [("submitted", "submitter")]
        assert [r.state for r in other.agreements()] == ["submitted"]
    finally:
        journal.close()
        other.close()
