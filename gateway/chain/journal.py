"""The agreement and settlement journal: SQLite in WAL mode, written BEFORE anything reaches the chain.

Every transaction is journaled (idempotency key, nonce, signed raw bytes, hash) before it is
broadcast, and every agreement before our signature leaves the gateway. After a crash the
journal says exactly what may be in flight: the same signed bytes are re-broadcast (same hash, so
never a second transaction) and agreements are reconciled with the contract's state.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS txs (
    key TEXT PRIMARY KEY,
    nonce INTEGER NOT NULL,
    raw BLOB NOT NULL,
    hash TEXT NOT NULL,
    state TEXT NOT NULL,
    block INTEGER,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS txs_state ON txs(state, nonce);
CREATE TABLE IF NOT EXISTS agreements (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    peer TEXT NOT NULL,
    terms TEXT NOT NULL,
    my_sig TEXT NOT NULL,
    peer_sig TEXT,
    state TEXT NOT NULL,
    window_end INTEGER NOT NULL,
    measured_wh INTEGER,
    note TEXT,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS agreements_state ON agreements(state, window_end);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# tx states: "signed" (journaled; maybe broadcast) -> "mined" | "reverted"
TX_PENDING = "signed"
TX_MINED = "mined"
TX_REVERTED = "reverted"

# agreement states, in order; "closed" covers settled, refunded and reclaimed
AGREEMENT_STATES = ("signing", "signed", "submitted", "reported", "closed", "abandoned")


@dataclass(frozen=True)
class TxRecord:
    """One journaled transaction."""

    key: str
    nonce: int
    raw: bytes
    hash: str
    state: str
    block: int | None
    error: str | None


@dataclass(frozen=True)
class AgreementRecord:
    """One agreement as the journal knows it; `terms` is the EIP-712 message (JSON-able ints/strs)."""

    id: str
    role: str
    peer: str
    terms: dict[str, Any]
    my_sig: str
    peer_sig: str | None
    state: str
    window_end: int
    measured_wh: int | None
    note: str | None


class Journal:
    """One SQLite file per gateway; safe to share between the event loop and chain worker threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a journaled tx must survive power loss
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()
        # agreements(*states) answers, kept while nothing was written: the service's loops ask every
        # few seconds, and between two agreements the answer stays the same for minutes
        self._writes = 0
        self._lists: dict[tuple[str, ...], tuple[tuple[int, int], list[AgreementRecord]]] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._writes += 1
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------ transactions

    def put_tx(self, key: str, nonce: int, raw: bytes, tx_hash: str) -> TxRecord:
        """Journal a signed transaction; the key must be new (one transaction per intent)."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO txs (key, nonce, raw, hash, state, created, updated) VALUES (?,?,?,?,?,?,?)",
                (key, nonce, raw, tx_hash, TX_PENDING, now, now),
            )
        return TxRecord(key, nonce, raw, tx_hash, TX_PENDING, None, None)

    def replace_tx(self, key: str, nonce: int, raw: bytes, tx_hash: str) -> None:
        """Replace a pending tx by a re-signed one with the same nonce (fee bump, lost nonce)."""
        with self._tx() as db:
            db.execute(
                "UPDATE txs SET nonce=?, raw=?, hash=?, state=?, error=NULL, updated=? WHERE key=?",
                (nonce, raw, tx_hash, TX_PENDING, time.time(), key),
            )

    def tx(self, key: str) -> TxRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT key, nonce, raw, hash, state, block, error FROM txs WHERE key=?", (key,)
            ).fetchone()
        return TxRecord(*row) if row else None

    def pending_txs(self) -> list[TxRecord]:
        """Journaled transactions without a receipt yet, in nonce order (the order to re-broadcast)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, nonce, raw, hash, state, block, error FROM txs WHERE state=? ORDER BY nonce",
                (TX_PENDING,),
            ).fetchall()
        return [TxRecord(*r) for r in rows]

    def txs(self, prefix: str) -> list[TxRecord]:
        """Journaled transactions whose key starts with `prefix`, in nonce order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, nonce, raw, hash, state, block, error FROM txs WHERE substr(key, 1, ?) = ? ORDER BY nonce",
                (len(prefix), prefix),
            ).fetchall()
        return [TxRecord(*r) for r in rows]

    def max_nonce(self) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT MAX(nonce) FROM txs").fetchone()
        return None if row[0] is None else int(row[0])

    def mark_tx(self, key: str, state: str, block: int | None = None, error: str | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE txs SET state=?, block=?, error=?, updated=? WHERE key=?",
                (state, block, error, time.time(), key),
            )

    def drop_tx(self, key: str) -> None:
        """Forget a journaled tx that can never be mined (its nonce went to another of ours)."""
        with self._tx() as db:
            db.execute("DELETE FROM txs WHERE key=?", (key,))

    # ------------------------------------------------------------ agreements

    def put_agreement(
        self, agreement_id: str, role: str, peer: str, terms: dict[str, Any], my_sig: str, window_end: int
    ) -> bool:
        """Journal an agreement before our signature is sent; False if it was already there."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO agreements (id, role, peer, terms, my_sig, state, window_end, updated) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (agreement_id, role, peer, json.dumps(terms, sort_keys=True), my_sig, "signing", window_end,
                 time.time()),
            )  # fmt: skip
        return cur.rowcount == 1

    def set_peer_sig(self, agreement_id: str, peer_sig: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE agreements SET peer_sig=?, state=CASE WHEN state='signing' THEN 'signed' ELSE state END, "
                "updated=? WHERE id=?",
                (peer_sig, time.time(), agreement_id),
            )

    def set_agreement_state(
        self, agreement_id: str, state: str, measured_wh: int | None = None, note: str | None = None
    ) -> None:
        if state not in AGREEMENT_STATES:
            raise ValueError(f"unknown agreement state {state!r}")
        with self._tx() as db:
            db.execute(
                "UPDATE agreements SET state=?, measured_wh=COALESCE(?, measured_wh), note=COALESCE(?, note), "
                "updated=? WHERE id=?",
                (state, measured_wh, note, time.time(), agreement_id),
            )

    def agreement(self, agreement_id: str) -> AgreementRecord | None:
        rows = self._agreements("WHERE id=?", (agreement_id,))
        return rows[0] if rows else None

    def agreements(self, *states: str) -> list[AgreementRecord]:
        """Agreements in the given states (all when none given), oldest window first.

        Read again only after a write: ours (counted) or another process's (SQLite's data_version)."""
        with self._lock:
            version = (self._writes, int(self._db.execute("PRAGMA data_version").fetchone()[0]))
            kept = self._lists.get(states)
            if kept is not None and kept[0] == version:
                return list(kept[1])
            if not states:
                records = self._agreements("", ())
            else:
                marks = ",".join("?" * len(states))
                records = self._agreements(f"WHERE state IN ({marks})", tuple(states))
            self._lists[states] = (version, records)
            return list(records)

    def seller_slots(self, now: float) -> list[AgreementRecord]:
        """Our seller agreements that may still hold their nonce slot: open, or window not yet over.

        Bounded by what is open, not by history; the nonce ring filters these exactly.
        """
        return self._agreements(
            "WHERE role='seller' AND (state NOT IN ('closed','abandoned') OR window_end >= ?)", (int(now),)
        )

    def _agreements(self, where: str, params: tuple) -> list[AgreementRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, role, peer, terms, my_sig, peer_sig, state, window_end, measured_wh, note "
                f"FROM agreements {where} ORDER BY window_end, id",
                params,
            ).fetchall()
        return [AgreementRecord(r[0], r[1], r[2], json.loads(r[3]), *r[4:]) for r in rows]

    # ------------------------------------------------------------ small state

    def get(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO kv (key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=?",
                       (key, value, value))  # fmt: skip
