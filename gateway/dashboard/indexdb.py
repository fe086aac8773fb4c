"""Where the community's chain index lives: one SQLite file (the default) or a PostgreSQL database.

`ChainIndex` holds the index logic (incremental steps, reorg rollback) and talks SQL through the
`IndexDb` seam only. The SQL it sends is portable (SQLite >= 3.24 and PostgreSQL both take
`INSERT ... ON CONFLICT ... DO UPDATE` and `excluded.`), written with `?` placeholders; the
PostgreSQL adapter turns them into psycopg's `%s`. So the two adapters differ only in how they
connect, run a transaction and spell a placeholder.

SQLite suits a community of some households on one small machine (no server to run); PostgreSQL
suits a large community whose operator already runs one (one dashboard writes a database).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, LiteralString, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from psycopg import Connection

WRITER_LOCK = 0x67726964  # the advisory lock key of the one process writing an index database ("grid")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class IndexDb(Protocol):
    """The SQL the chain index needs from a database: statements with `?` placeholders."""

    name: str  # where it is, for messages (never with a password)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def transaction(self) -> contextlib.AbstractContextManager[None]: ...

    def close(self) -> None: ...


def is_postgres(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def redact(url: str) -> str:
    """A PostgreSQL URL without its password (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def open_index_db(location: str | Path) -> IndexDb:
    """A `postgresql://` URL opens PostgreSQL; anything else is the path of a SQLite file."""
    if is_postgres(location):
        return PostgresIndexDb(str(location))
    return SqliteIndexDb(Path(location))


class SqliteIndexDb:
    """One SQLite file in WAL mode; explicit transactions (autocommit otherwise)."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, tuple(params)).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.db.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.db.executemany(sql, [tuple(r) for r in rows])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def _pg_sql(sql: str) -> LiteralString:
    """`?` placeholders as psycopg's `%s` (a literal `%` doubled); the index's SQL has no `?` in strings.

    The statements are the index's own (table names from code, values always as parameters), so
    the text is trusted as a literal query.
    """
    return cast(LiteralString, sql.replace("%", "%%").replace("?", "%s"))


class PostgresIndexDb:
    """A PostgreSQL database through psycopg 3, autocommit outside `transaction()`.

    A connection the server dropped is opened again on the next call, so the index loop (which
    logs a failed step once and retries) recovers when the server comes back. Each connection
    holds a session advisory lock on the database: a second dashboard indexing into it (whose
    rollbacks would race this one's steps) is refused at start.
    """

    def __init__(self, url: str, connect_timeout_s: int = 10) -> None:
        self.url = url
        self.name = redact(url)
        self._timeout = connect_timeout_s
        self._lock = threading.RLock()
        self._in_tx = False
        self.conn = self._connect()

    def _connect(self) -> Connection[tuple[Any, ...]]:
        import psycopg  # only a PostgreSQL index needs the driver

        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self._timeout)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK,)).fetchone()
        if not row or not row[0]:
            conn.close()
            raise ValueError(f"another dashboard is indexing into {self.name}: one writer per index database")
        return conn

    def _live(self) -> Connection[tuple[Any, ...]]:
        if (self.conn.closed or self.conn.broken) and not self._in_tx:  # never half a transaction
            self.conn = self._connect()
        return self.conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._live().cursor() as cur:
            cur.execute(_pg_sql(sql), tuple(params))
            return list(cur.fetchall()) if cur.description is not None else []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock:
            self._live().execute(_pg_sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self._lock, self._live().cursor() as cur:
            cur.executemany(_pg_sql(sql), [tuple(r) for r in rows])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock, self._live().transaction():
            self._in_tx = True
            try:
                yield
            finally:
                self._in_tx = False

    def close(self) -> None:
        with self._lock:
            self.conn.close()
