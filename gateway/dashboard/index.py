"""The community's chain index: Market (and token) calls and events, incremental and reorg-safe.

Indexing starts at the Market's deployment block (from the config, or found by a binary search
on the contract's code: O(log n) node calls, never a scan from block 0) and goes on from the
last indexed block. The hashes of the last `keep` blocks are kept; before each step the newest
kept hash is compared with the node's, and on a mismatch the index rolls back to the newest block
both agree on and indexes again from there (a reorg deeper than `keep` re-indexes from the
deployment block). Every row carries its block number, so a rollback is one DELETE per table.

Calls and events are decoded by `AbiDecoder` from the ABI artifacts; agreements are found
generically: any decoded argument shaped like the EIP-712 Terms is hashed to its agreement id,
so the calls that carried an agreement's terms, signatures and signed reports are found for its
page whatever the function is called.

The index lives in SQLite (a file, the default) or PostgreSQL (a large community): this module
holds the logic and sends portable SQL through the `IndexDb` seam (`indexdb.py`), so the two
share every step and rollback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from eth_utils.address import to_checksum_address

from gateway.dashboard.abi import AbiDecoder, Decoded
from gateway.dashboard.indexdb import IndexDb
from gridpact.core.eip712 import TERMS_NAMES, Domain, Terms, agreement_id

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS recent (number BIGINT PRIMARY KEY, hash TEXT NOT NULL, ts BIGINT NOT NULL,
    txs BIGINT NOT NULL, gas_used BIGINT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS blocks (number BIGINT PRIMARY KEY, hash TEXT NOT NULL, ts BIGINT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS txs (hash TEXT PRIMARY KEY, block BIGINT NOT NULL, idx BIGINT NOT NULL,
    sender TEXT NOT NULL, target TEXT NOT NULL, contract TEXT, fn TEXT, args TEXT, status BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS txs_block ON txs(block)",
    "CREATE INDEX IF NOT EXISTS txs_sender ON txs(sender)",
    """CREATE TABLE IF NOT EXISTS events (block BIGINT NOT NULL, log_index BIGINT NOT NULL, tx TEXT NOT NULL,
    address TEXT NOT NULL, contract TEXT, name TEXT, args TEXT, agreement TEXT, parties TEXT,
    PRIMARY KEY (block, log_index))""",
    "CREATE INDEX IF NOT EXISTS events_agreement ON events(agreement)",
    "CREATE INDEX IF NOT EXISTS events_name ON events(name)",
    """CREATE TABLE IF NOT EXISTS terms (id TEXT NOT NULL, block BIGINT NOT NULL, tx TEXT NOT NULL, fn TEXT NOT NULL,
    terms TEXT NOT NULL, seller_sig TEXT, buyer_sig TEXT, item TEXT NOT NULL, PRIMARY KEY (id, tx))""",
    "CREATE INDEX IF NOT EXISTS terms_block ON terms(block)",
)
# Each table's columns and key, for the upserts (portable: ON CONFLICT ... DO UPDATE)
COLUMNS = {
    "recent": (("number", "hash", "ts", "txs", "gas_used"), ("number",)),
    "blocks": (("number", "hash", "ts"), ("number",)),
    "txs": (("hash", "block", "idx", "sender", "target", "contract", "fn", "args", "status"), ("hash",)),
    "events": (
        ("block", "log_index", "tx", "address", "contract", "name", "args", "agreement", "parties"),
        ("block", "log_index"),
    ),
    "terms": (("id", "block", "tx", "fn", "terms", "seller_sig", "buyer_sig", "item"), ("id", "tx")),
    "meta": (("key", "value"), ("key",)),
}


def upsert_sql(table: str) -> str:
    """INSERT that replaces the row with the same key: the SQL both SQLite and PostgreSQL take."""
    columns, key = COLUMNS[table]
    updates = ", ".join(f"{c}=excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


BLOCK_TABLES = ("recent", "blocks", "txs", "events", "terms")
TERMS_KEYS = TERMS_NAMES
REJECTION_EVENTS = frozenset({"BatchItemRejected"})


class ChainReader(Protocol):
    """The node calls the indexer makes (web3.eth satisfies it)."""

    @property
    def block_number(self) -> int: ...

    def get_block(self, block_identifier: Any, full_transactions: bool = False) -> Any: ...

    def get_logs(self, filter_params: Any) -> Any: ...

    def get_transaction(self, transaction_hash: Any) -> Any: ...

    def get_transaction_receipt(self, transaction_hash: Any) -> Any: ...

    def get_code(self, account: Any, block_identifier: Any = None) -> Any: ...


@dataclass(frozen=True)
class StepResult:
    """What one indexing step did: blocks covered, events added, and a rollback if there was a reorg."""

    first: int
    last: int
    events: int
    txs: int
    rolled_back_to: int | None = None


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()


def find_deploy_block(eth: ChainReader, address: str, head: int) -> int:
    """The first block where `address` has code: a binary search (needs a node that keeps old state)."""
    if not bytes(eth.get_code(address, head)):
        raise ValueError(f"no contract at {address} at block {head}")
    low, high = 0, head
    while low < high:
        mid = (low + high) // 2
        if bytes(eth.get_code(address, mid)):
            high = mid
        else:
            low = mid + 1
    return low


def terms_like(value: Any) -> bool:
    return isinstance(value, dict) and all(k in value for k in TERMS_KEYS)


def find_terms(args: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every Terms-shaped dict inside decoded call arguments, with its path (keys and list indices)."""
    if terms_like(args):
        yield path, args
        return
    if isinstance(args, dict):
        for key, value in args.items():
            yield from find_terms(value, (*path, key))
    elif isinstance(args, list):
        for i, value in enumerate(args):
            yield from find_terms(value, (*path, i))


def _sig_hex(sig: Any) -> str | None:
    """A compact (r, vs) signature as one 0x-hex string, None when absent or all zero (no signature)."""
    if isinstance(sig, dict) and "r" in sig and "vs" in sig:
        joined = str(sig["r"])[2:] + str(sig["vs"])[2:]
        return None if not joined.strip("0") else "0x" + joined
    return None


def evidence_of(
    call_args: dict[str, Any], path: tuple[Any, ...]
) -> tuple[str | None, str | None, dict[str, Any]]:
    """(seller sig, buyer sig, the item holding the terms) for terms found at `path` of a call.

    Terms at the top level come with `sellerSig`/`buyerSig` beside them; terms in an array come with
    `sellerSigs`/`buyerSigs` at the same index; terms inside a struct (a batch item) bring the
    struct, whose other fields (signed reports, delivered Wh) are the evidence shown.
    """
    if len(path) >= 2 and isinstance(path[-1], str):  # inside a struct: the struct is the item
        parent: Any = call_args
        for key in path[:-1]:
            parent = parent[key]
        item = {k: v for k, v in parent.items() if k != path[-1]} if isinstance(parent, dict) else {}
        return None, None, item
    if len(path) == 2 and isinstance(path[1], int):
        i = path[1]
        sellers, buyers = call_args.get("sellerSigs"), call_args.get("buyerSigs")
        s = sellers[i] if isinstance(sellers, list) and i < len(sellers) else None
        b = buyers[i] if isinstance(buyers, list) and i < len(buyers) else None
        return _sig_hex(s), _sig_hex(b), {}
    rest = {k: v for k, v in call_args.items() if (k,) != path}
    return _sig_hex(call_args.get("sellerSig")), _sig_hex(call_args.get("buyerSig")), rest


def terms_of(d: dict[str, Any]) -> Terms:
    seller, buyer = to_checksum_address(d["seller"]), to_checksum_address(d["buyer"])
    return Terms(seller, buyer, *(int(d[k]) for k in TERMS_KEYS[2:]))


class ChainIndex:
    """The index and the step that extends it, on an `IndexDb`; reads are safe from other threads (one lock)."""

    def __init__(
        self,
        db: IndexDb,
        eth: ChainReader,
        contracts: dict[str, str],
        abis: dict[str, list[dict[str, Any]]],
        domain: Domain,
        deploy_block: int,
        keep: int = 64,
        chunk: int = 2000,
    ) -> None:
        self.eth = eth
        self.contracts: dict[str, str] = {to_checksum_address(a): name for name, a in contracts.items()}
        self.decoder = AbiDecoder(abis)
        self.domain = domain
        self.deploy_block = deploy_block
        self.keep = keep
        self.chunk = chunk
        self.lock = threading.Lock()
        self.db = db
        with self.lock, db.transaction():
            for statement in SCHEMA:
                db.execute(statement)
        stored = self.meta("market")
        market = to_checksum_address(domain.market)
        if stored is not None and stored != f"{domain.chain_id}:{market}":
            raise ValueError(
                f"index {db.name} belongs to {stored}, not {domain.chain_id}:{market}: use another file"
            )
        self.set_meta("market", f"{domain.chain_id}:{market}")

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # ------------------------------------------------------------------ state

    def meta(self, key: str) -> str | None:
        rows = self.db.query("SELECT value FROM meta WHERE key=?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(upsert_sql("meta"), (key, value))

    @property
    def next_block(self) -> int:
        value = self.meta("next_block")
        return self.deploy_block if value is None else int(value)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.db.query(sql, params)

    # ------------------------------------------------------------------ reorgs

    def _fork_point(self) -> int | None:
        """None when the newest kept block still matches the node; else the newest block both agree on."""
        with self.lock:
            rows = self.db.query("SELECT number, hash FROM recent ORDER BY number DESC")
        if not rows:
            return None
        number, stored = rows[0]
        if _hex(self.eth.get_block(number)["hash"]) == stored:
            return None
        for number, stored in rows[1:]:
            if _hex(self.eth.get_block(number)["hash"]) == stored:
                return int(number)
        return self.deploy_block - 1  # deeper than `keep`: index again from the deployment block

    def rollback(self, to_block: int) -> None:
        """Forget everything above `to_block` (inclusive below)."""
        with self.lock, self.db.transaction():
            for table in BLOCK_TABLES:
                column = "number" if table in ("recent", "blocks") else "block"
                self.db.execute(f"DELETE FROM {table} WHERE {column} > ?", (to_block,))
            self.set_meta("next_block", str(to_block + 1))

    # ------------------------------------------------------------------ the step

    def step(self) -> StepResult:
        """Index from the next block up to the node's head (at most `chunk` blocks); blocking node calls."""
        rolled: int | None = None
        fork = self._fork_point()
        if fork is not None:
            self.rollback(fork)
            rolled = fork
        head = int(self.eth.block_number)
        first = self.next_block
        if head < first:
            return StepResult(first, first - 1, 0, 0, rolled)
        last = min(head, first + self.chunk - 1)
        logs = list(self.eth.get_logs({"fromBlock": first, "toBlock": last, "address": list(self.contracts)}))
        block_rows: dict[int, tuple[str, int]] = {}
        event_rows, tx_hashes = [], {}
        for log in logs:
            number = int(log["blockNumber"])
            block_hash = _hex(log["blockHash"])
            if number not in block_rows:
                header = self.eth.get_block(number)
                if _hex(header["hash"]) != block_hash:  # the chain moved under us: try again next step
                    return StepResult(first, first - 1, 0, 0, rolled)
                block_rows[number] = (block_hash, int(header["timestamp"]))
            address = to_checksum_address(log["address"])
            decoded = self.decoder.event([bytes(t) for t in log["topics"]], bytes(log["data"]))
            tx = _hex(log["transactionHash"])
            tx_hashes[tx] = number
            event_rows.append(self._event_row(number, int(log["logIndex"]), tx, address, decoded))
        tail_from = max(first, last - self.keep + 1)
        recent_rows, tail_txs = [], []
        for number in range(tail_from, last + 1):
            block = self.eth.get_block(number, full_transactions=True)
            recent_rows.append(
                (
                    number,
                    _hex(block["hash"]),
                    int(block["timestamp"]),
                    len(block["transactions"]),
                    int(block["gasUsed"]),
                )
            )
            for tx in block["transactions"]:
                to = tx.get("to")
                if to and to_checksum_address(to) in self.contracts and _hex(tx["hash"]) not in tx_hashes:
                    tail_txs.append(tx)
        tx_rows, terms_rows = [], []
        for tx_hash in tx_hashes:
            tx = self.eth.get_transaction(tx_hash)
            rows = self._tx_rows(tx, 1)
            tx_rows.append(rows[0])
            terms_rows += rows[1]
        for tx in tail_txs:
            status = int(self.eth.get_transaction_receipt(tx["hash"])["status"])
            rows = self._tx_rows(tx, status)
            tx_rows.append(rows[0])
            terms_rows += rows[1]
            block_rows.setdefault(
                int(tx["blockNumber"]),
                next((r[1], r[2]) for r in recent_rows if r[0] == int(tx["blockNumber"])),
            )
        # Terms (and the signatures and reports beside them) count as an agreement's evidence only from a
        # transaction in which the contract accepted something about that agreement: a batch item it
        # skipped (BatchItemRejected) or terms merely quoted in some call are not evidence of anything.
        accepted = {(row[7], row[2]) for row in event_rows if row[7] and row[5] not in REJECTION_EVENTS}
        terms_rows = [row for row in terms_rows if (row[0], row[2]) in accepted]
        with self.lock, self.db.transaction():
            self.db.executemany(upsert_sql("blocks"), [(n, h, t) for n, (h, t) in block_rows.items()])
            self.db.executemany(upsert_sql("recent"), recent_rows)
            self.db.execute("DELETE FROM recent WHERE number <= ?", (last - self.keep,))
            self.db.executemany(upsert_sql("events"), event_rows)
            self.db.executemany(upsert_sql("txs"), tx_rows)
            self.db.executemany(upsert_sql("terms"), terms_rows)
            self.set_meta("next_block", str(last + 1))
            self.set_meta("head", str(head))
        return StepResult(first, last, len(event_rows), len(tx_rows), rolled)

    def _event_row(
        self, number: int, log_index: int, tx: str, address: str, decoded: Decoded | None
    ) -> tuple[Any, ...]:
        if decoded is None:
            return (number, log_index, tx, address, self.contracts.get(address), None, None, None, None)
        args = decoded.args
        aid = args.get("id") if isinstance(args.get("id"), str) else None
        parties = sorted(
            {str(v) for k, v in args.items() if isinstance(v, str) and len(v) == 42 and v.startswith("0x")}
        )
        terms = args.get("terms")
        if isinstance(terms, dict) and terms_like(terms):
            parties = sorted({*parties, terms["seller"], terms["buyer"]})
        return (
            number,
            log_index,
            tx,
            address,
            decoded.contract,
            decoded.name,
            json.dumps(args),
            aid,
            ",".join(parties),
        )

    def _tx_rows(self, tx: Any, status: int) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        tx_hash = _hex(tx["hash"])
        number = int(tx["blockNumber"])
        if not tx.get("to"):  # a deployment: its constructor's events are indexed, the call is not decoded
            row = (
                tx_hash,
                number,
                int(tx["transactionIndex"]),
                to_checksum_address(tx["from"]),
                "",
                None,
                "(deploy)",
                None,
                status,
            )
            return row, []
        target = to_checksum_address(tx["to"])
        data = tx["input"]
        raw = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
        call = self.decoder.call(raw)
        row = (tx_hash, number, int(tx["transactionIndex"]), to_checksum_address(tx["from"]), target,
               self.contracts.get(target), call.name if call else None, json.dumps(call.args) if call else None, status)  # fmt: skip
        terms_rows = []
        if call is not None and status == 1:
            for path, found in find_terms(call.args):
                try:
                    aid = "0x" + agreement_id(terms_of(found), self.domain).hex()
                except (ValueError, TypeError):
                    continue
                seller_sig, buyer_sig, item = evidence_of(call.args, path)
                terms_rows.append(
                    (
                        aid,
                        number,
                        tx_hash,
                        call.name,
                        json.dumps(found),
                        seller_sig,
                        buyer_sig,
                        json.dumps(item),
                    )
                )
        return row, terms_rows
