"""The gateway's reading store: SQLite in WAL mode, one file in the state directory.

Holds the verified raw payloads (for anchoring), the counters extracted from them (for energy),
the last accepted sequence number per device (so a replay after a restart is still a replay) and
the node's availability. Writes are batched (`add` queues, `commit` writes now, `commit_soon` in a
writer thread) so ingest keeps up with a broker; the sequence state is written in the same
transaction as the readings it covers.
"""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gridpact.core.energy import (
    DEFAULT_ROLLOVER_WH,
    EnergyDelta,
    Steps,
    increments,
    net_power,
    window_energy,
)
from gridpact.core.wire import COUNTER_RESET, ControlMarks, Reading

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    dev TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL, q INTEGER NOT NULL,
    imp_wh INTEGER, exp_wh INTEGER, payload BLOB NOT NULL, PRIMARY KEY (dev, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_ts ON readings (dev, ts);
CREATE TABLE IF NOT EXISTS seq_state (dev TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, ts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS availability (dev TEXT PRIMARY KEY, status TEXT NOT NULL, since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS control_state (
    dev TEXT PRIMARY KEY, online_boot INTEGER NOT NULL, online_n INTEGER NOT NULL, ended INTEGER NOT NULL,
    health_boot INTEGER NOT NULL, health_n INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS statements (
    dev TEXT NOT NULL, window_end INTEGER NOT NULL, stmt BLOB NOT NULL, sig BLOB NOT NULL,
    PRIMARY KEY (dev, window_end)
) WITHOUT ROWID;
"""


class ReadingStore:
    """Verified readings of this household's meter (`device_id`) and any other known device."""

    def __init__(
        self,
        path: Path | str,
        device_id: str,
        max_gap_s: int = 120,
        rollover_wh: int = DEFAULT_ROLLOVER_WH,
        readonly: bool = False,
    ) -> None:
        self.path = Path(path)
        self.device_id = device_id
        self.max_gap_s = max_gap_s
        self.rollover_wh = rollover_wh
        self._history_db: sqlite3.Connection | None = None
        self._history_lock = threading.Lock()
        self._rows: list[tuple[object, ...]] = []
        self._pending_seq: dict[str, tuple[int, int]] = {}
        self._writer: ThreadPoolExecutor | None = None
        self._in_flight: Future[None] | None = None
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._db.commit()

    def close(self) -> None:
        """Commit what is queued and close the database."""
        try:
            self.commit()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
        with self._history_lock:
            if self._history_db is not None:
                self._history_db.close()
                self._history_db = None
        self._db.close()

    # ------------------------------------------------------------ writes

    def add(self, reading: Reading) -> None:
        """Queue a verified reading; it and the device's new last seq are written together by `commit`."""
        self._rows.append(
            (
                reading.dev,
                reading.seq,
                reading.ts,
                reading.q,
                reading.import_wh,
                reading.export_wh,
                reading.raw,
            )
        )
        last = self._pending_seq.get(reading.dev)
        if last is None or reading.seq > last[0]:
            self._pending_seq[reading.dev] = (reading.seq, reading.ts)

    def commit(self) -> None:
        """Write the queued readings and sequence state in one transaction, now."""
        self._join_writer()
        rows, seqs = self._take()
        self._write(rows, seqs)

    def commit_soon(self) -> None:
        """Hand the queued readings to the store's writer thread and return at once.

        sqlite3 releases the GIL while SQLite inserts, so the batch is written beside ingest (on a
        second core where there is one). One batch is in flight at a time; every other use of the
        connection waits for it first, and a failed write raises here or in the next call.
        """
        self._join_writer()
        if not self._rows:
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        rows, seqs = self._take()
        self._in_flight = self._writer.submit(self._write, rows, seqs)

    def _take(self) -> tuple[list[tuple[object, ...]], dict[str, tuple[int, int]]]:
        rows, seqs = self._rows, self._pending_seq
        self._rows, self._pending_seq = [], {}
        return rows, seqs

    def _write(self, rows: list[tuple[object, ...]], seqs: dict[str, tuple[int, int]]) -> None:
        if rows:
            self._db.executemany("INSERT OR IGNORE INTO readings VALUES (?,?,?,?,?,?,?)", rows)
            self._db.executemany(
                "INSERT INTO seq_state VALUES (?,?,?) ON CONFLICT(dev) DO UPDATE SET last_seq=excluded.last_seq,"
                " ts=excluded.ts WHERE excluded.last_seq > seq_state.last_seq",
                [(dev, seq, ts) for dev, (seq, ts) in seqs.items()],
            )
        self._db.commit()

    def _join_writer(self) -> None:
        """Wait for the batch in flight, if any; raises its error."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def _sync(self) -> None:
        """Reads see queued readings too: commit them first."""
        self._join_writer()
        if self._rows:
            self.commit()

    def set_status(self, dev: str, status: str, now: float) -> None:
        self._join_writer()
        self._db.execute(
            "INSERT INTO availability VALUES (?,?,?) ON CONFLICT(dev) DO UPDATE SET status=excluded.status,"
            " since=excluded.since WHERE availability.status != excluded.status",
            (dev, status, now),
        )
        self._db.commit()

    def set_control(self, dev: str, marks: ControlMarks) -> None:
        """The node's newest accepted control marks, so replays stay refused after a restart."""
        self._join_writer()
        self._db.execute(
            "INSERT OR REPLACE INTO control_state VALUES (?,?,?,?,?,?)",
            (dev, *marks.online, int(marks.ended), *marks.health),
        )
        self._db.commit()

    def add_statement(self, dev: str, window_end: int, raw: bytes, sig: bytes) -> None:
        """Keep a meter statement the registered device key signed: the evidence settlement sends on chain."""
        self._join_writer()
        self._db.execute("INSERT OR IGNORE INTO statements VALUES (?,?,?,?)", (dev, window_end, raw, sig))
        self._db.commit()

    def statement_at(self, window_end: int, dev: str | None = None) -> tuple[bytes, bytes] | None:
        """(statement bytes, r || s || v) of the meter's statement for the hour ending at `window_end`."""
        self._join_writer()
        row = self._db.execute(
            "SELECT stmt, sig FROM statements WHERE dev=? AND window_end=?",
            (dev or self.device_id, window_end),
        ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def prune(self, before_ts: int) -> int:
        """Retention: delete readings older than `before_ts`; the sequence state is kept."""
        self._sync()
        deleted = 0
        for (dev,) in self._db.execute("SELECT dev FROM seq_state").fetchall():  # per device: uses the index
            deleted += self._db.execute(
                "DELETE FROM readings WHERE dev=? AND ts<?", (dev, before_ts)
            ).rowcount
        self._db.commit()
        return deleted

    # ------------------------------------------------------------ reads

    def last_seqs(self) -> dict[str, int]:
        self._sync()
        return dict(self._db.execute("SELECT dev, last_seq FROM seq_state").fetchall())

    def control_marks(self) -> dict[str, ControlMarks]:
        self._join_writer()
        rows = self._db.execute("SELECT * FROM control_state").fetchall()
        return {
            str(r[0]): ControlMarks((int(r[1]), int(r[2])), bool(r[3]), (int(r[4]), int(r[5]))) for r in rows
        }

    def status(self, dev: str) -> tuple[str, float] | None:
        self._join_writer()
        row = self._db.execute("SELECT status, since FROM availability WHERE dev=?", (dev,)).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def summary(self) -> dict[str, object]:
        """Counts and the newest reading, for `gridpact gateway status`."""
        self._sync()
        count, first, last = self._db.execute(
            "SELECT count(*), min(ts), max(ts) FROM readings WHERE dev=?", (self.device_id,)
        ).fetchone()
        status = self.status(self.device_id)
        return {
            "device": self.device_id,
            "readings": count,
            "first_ts": first,
            "last_ts": last,
            "last_seq": self.last_seqs().get(self.device_id),
            "node_status": status[0] if status else "unknown",
        }

    def hour_batch(self, hour_start: int) -> list[bytes]:
        """The raw verified payloads of [hour_start, hour_start + 3600) in sequence order."""
        self._sync()
        rows = self._db.execute(
            "SELECT payload FROM readings WHERE dev=? AND ts>=? AND ts<? ORDER BY seq",
            (self.device_id, hour_start, hour_start + 3600),
        )
        return [bytes(r[0]) for r in rows]

    def _counter_steps(self, t0: int, t1: int, db: sqlite3.Connection | None = None) -> tuple[Steps, Steps]:
        """Import and export increments from the samples in [t0, t1] plus the nearest on either side.

        Rows are fetched in chunks into int64 arrays: a month of 10-second readings stays a few MB.
        """
        if db is None:
            self._sync()
            db = self._db
        query = (
            "SELECT ts, coalesce(imp_wh, -1), coalesce(exp_wh, -1), q FROM ("
            " SELECT * FROM (SELECT ts, imp_wh, exp_wh, q FROM readings WHERE dev=:d AND imp_wh IS NOT NULL"
            "  AND ts<:a ORDER BY ts DESC LIMIT 1)"
            " UNION ALL SELECT ts, imp_wh, exp_wh, q FROM readings WHERE dev=:d AND imp_wh IS NOT NULL"
            "  AND ts>=:a AND ts<=:b"
            " UNION ALL SELECT * FROM (SELECT ts, imp_wh, exp_wh, q FROM readings WHERE dev=:d"
            "  AND imp_wh IS NOT NULL AND ts>:b ORDER BY ts LIMIT 1)"
            ") ORDER BY ts"
        )
        cursor = db.execute(query, {"d": self.device_id, "a": t0, "b": t1})
        chunks = [np.zeros((0, 4), np.int64)]
        while rows := cursor.fetchmany(20_000):
            chunks.append(np.array(rows, dtype=np.int64))
        data = np.concatenate(chunks)
        ts, imp, exp = data[:, 0], data[:, 1], data[:, 2]
        reset = (data[:, 3] & COUNTER_RESET) != 0
        has_exp = exp >= 0
        return (
            increments(ts, imp, reset, self.max_gap_s, self.rollover_wh),
            increments(ts[has_exp], exp[has_exp], reset[has_exp], self.max_gap_s, self.rollover_wh),
        )

    def energy_between(self, t0: int, t1: int) -> EnergyDelta:
        """Imported and exported Wh in [t0, t1) from the counters (seam with trading)."""
        imp_steps, exp_steps = self._counter_steps(t0, t1)
        imp, imp_ok = window_energy(imp_steps, t0, t1)
        exp, exp_ok = window_energy(exp_steps, t0, t1)
        return EnergyDelta(imp, exp, imp_ok and exp_ok)

    def net_power(self, start: int, steps: int, step_s: int) -> np.ndarray:
        """Mean net power per step (W, import positive), NaN where not covered: the forecast's history.

        Reads committed readings through a connection of its own, so it may run in a worker thread
        (a month of history takes a while on a Pi) while ingest goes on.
        """
        with self._history_lock:
            if self._history_db is None:
                uri = f"file:{self.path}?mode=ro"
                self._history_db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            imp, exp = self._counter_steps(start, start + steps * step_s, self._history_db)
        return net_power(imp, exp, start, steps, step_s)
