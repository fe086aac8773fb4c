"""Dashboard accounts, signed session cookies, CSRF tokens and login rate limiting.

Passwords are hashed with Argon2id (memory-hard, via pwdlib); only the hash is stored. A session is
a cookie signed with a key kept in the accounts database (HMAC, itsdangerous) holding the account
name, its role, its household, a per-session CSRF token and the time it was issued; nothing secret
is logged. The rate limiter is pure (time passed in) so it is tested without sleeping.
"""

from __future__ import annotations

import getpass
import hmac
import secrets
import sqlite3
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from gateway.config import ACCOUNT_NAME_RE

ROLES = ("household", "operator")
MIN_PASSWORD = 10
SESSION_MAX_AGE_S = 12 * 3600
NO_PASSWORD = "-"  # the stored hash of an account without a password (never a valid Argon2 hash)

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, household TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Account:
    """Who is signed in: `household` is the gateway id whose private data the account may see."""

    name: str
    role: str
    household: str

    def may_see(self, household: str) -> bool:
        """A household sees only its own private pages; the operator sees every household."""
        return self.role == "operator" or self.household == household


@dataclass(frozen=True)
class Session:
    account: Account
    csrf: str


def _hasher() -> PasswordHash:
    # Argon2id, 64 MiB, 3 passes: OWASP's first recommended setting; about 0.1 s on a Pi 4.
    return PasswordHash((Argon2Hasher(memory_cost=65536, time_cost=3, parallelism=1),))


class AccountStore:
    """Accounts in one SQLite file (mode 0600) beside the gateway's other state."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if new:
            path.chmod(0o600)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._hash = _hasher()
        # a dummy hash so an unknown name costs as much as a wrong password (no user enumeration)
        self._dummy = self._hash.hash(secrets.token_hex(16))

    def close(self) -> None:
        self._db.close()

    def secret_key(self) -> bytes:
        """The cookie-signing key, made once on first use and kept in the database."""
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key='cookie_key'").fetchone()
            if row is None:
                value = secrets.token_hex(32)
                self._db.execute("INSERT INTO kv VALUES ('cookie_key', ?)", (value,))
                return bytes.fromhex(value)
            return bytes.fromhex(row[0])

    def add(self, name: str, role: str, household: str, password: str | None) -> Account:
        """Create or replace an account; ValueError on a bad name, role or a short password.

        `password` None: an account that signs in only through the community's identity provider
        (`[dashboard.oidc]`); the password form never accepts it.
        """
        if not ACCOUNT_NAME_RE.fullmatch(name):
            raise ValueError("account name must match [a-z0-9][a-z0-9_.-]{0,31}")
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        if password is not None and len(password) < MIN_PASSWORD:
            raise ValueError(f"password must have at least {MIN_PASSWORD} characters")
        digest = self._hash.hash(password) if password is not None else NO_PASSWORD
        with self._lock:
            self._db.execute(
                "INSERT INTO accounts VALUES (?,?,?,?) ON CONFLICT(name) DO UPDATE SET role=excluded.role,"
                " household=excluded.household, hash=excluded.hash",
                (name, role, household, digest),
            )
        return Account(name, role, household)

    def remove(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM accounts WHERE name=?", (name,)).rowcount == 1

    def names(self) -> list[Account]:
        with self._lock:
            rows = self._db.execute("SELECT name, role, household FROM accounts ORDER BY name").fetchall()
        return [Account(*r) for r in rows]

    def verify(self, name: str, password: str) -> Account | None:
        """The account when the password matches; None otherwise (same work either way)."""
        with self._lock:
            row = self._db.execute(
                "SELECT name, role, household, hash FROM accounts WHERE name=?", (name,)
            ).fetchone()
        digest = row[3] if row and row[3] != NO_PASSWORD else self._dummy
        ok = self._hash.verify(password, digest)
        return Account(row[0], row[1], row[2]) if ok and row and row[3] != NO_PASSWORD else None

    def get(self, name: str) -> Account | None:
        """The account named `name` (for a sign-in already proven another way: the identity provider)."""
        with self._lock:
            row = self._db.execute(
                "SELECT name, role, household FROM accounts WHERE name=?", (name,)
            ).fetchone()
        return Account(*row) if row else None


class SessionCodec:
    """Signs and reads the session cookie's value; a tampered or expired cookie reads as None."""

    def __init__(self, key: bytes, max_age_s: int = SESSION_MAX_AGE_S) -> None:
        self._s = URLSafeTimedSerializer(key, salt="gridpact-dashboard-session")
        self.max_age_s = max_age_s

    def issue(self, account: Account) -> str:
        return self._s.dumps([account.name, account.role, account.household, secrets.token_urlsafe(24)])

    def read(self, value: str | None) -> Session | None:
        if not value:
            return None
        try:
            data = self._s.loads(value, max_age=self.max_age_s)
        except BadSignature:
            return None
        if not (isinstance(data, list) and len(data) == 4 and all(isinstance(x, str) for x in data)):
            return None
        return Session(Account(data[0], data[1], data[2]), data[3])


def list_or_remove(store: AccountStore, action: str, name: str) -> int | None:
    """`list` or `remove NAME`, as both dashboards' user commands do: the exit status; None for `add`."""
    if action == "list":
        for a in store.names():
            print(f"{a.name}\t{a.role}\t{a.household}")
        return 0
    if action == "remove":
        if not store.remove(name):
            print(f"no account {name!r}", file=sys.stderr)
            return 1
        print(f"removed {name}")
        return 0
    return None


def read_new_password(name: str, from_stdin: bool) -> str | None:
    """The new account's password: one line of stdin, or typed twice (None when they differ)."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != password:
        print("the passwords differ", file=sys.stderr)
        return None
    return password


def csrf_ok(session: Session | None, token: str | None) -> bool:
    """A form post carries the session's CSRF token (constant-time compare)."""
    return session is not None and token is not None and hmac.compare_digest(session.csrf, token)


@dataclass
class LoginLimiter:
    """At most `attempts` failed sign-ins per key (client address, account) in `window_s`; bounded memory."""

    attempts: int = 5
    window_s: float = 60.0
    max_keys: int = 10_000
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def allowed(self, key: str, now: float) -> bool:
        recent = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return len(recent) < self.attempts

    def failed(self, key: str, now: float) -> None:
        if key not in self._failures and len(self._failures) >= self.max_keys:
            oldest = min(self._failures, key=lambda k: self._failures[k][-1])
            del self._failures[oldest]
        self._failures.setdefault(key, []).append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
