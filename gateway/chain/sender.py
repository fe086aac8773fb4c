"""The transaction sender: nonces, gas, fees, journal-before-send, receipts and idempotent retries.

Each transaction has an idempotency key ("submit:<agreement id>", "anchor:<hour>", ...). `send`
journals the signed bytes under that key before the first broadcast; asking again for the same
key never signs a second transaction, it re-broadcasts the journaled one. Node answers that
mean "we have it" ("already known", or "nonce too low" for a hash that is mined) are success.
Blocking web3 calls: the async service runs them in a worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import TransactionNotFound

from gateway.chain.errors import (
    ChainError,
    ChainUnavailable,
    RevertError,
    SendOutcome,
    classify_send_error,
    decode_revert,
    revert_data_of,
)
from gateway.chain.journal import TX_MINED, TX_PENDING, TX_REVERTED, Journal, TxRecord
from gateway.chain.policy import GWEI, SenderPolicy

log = logging.getLogger("gridpact.gateway.chain")

T = TypeVar("T")
__all__ = ["GWEI", "Receipt", "SenderPolicy", "TxSender"]


@dataclass(frozen=True)
class Receipt:
    """What the gateway keeps of a receipt."""

    key: str
    tx_hash: str
    status: int
    block: int
    gas_used: int
    logs: list[Any]


class TxSender:
    """One per gateway key; `abi` decodes reverts of the contracts it talks to."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        journal: Journal,
        abi: list[dict],
        policy: SenderPolicy | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.journal = journal
        self.abi = abi
        self.policy = policy or SenderPolicy()
        self._chain_id: int | None = None
        self._on_event = on_event or (lambda name: None)
        self.stopping = threading.Event()  # set at shutdown: a receipt wait gives up at once
        self.broadcasts = 0  # raw transactions handed to the node: what we know of the chain may have moved

    # ------------------------------------------------------------ node access

    def _rpc(self, call: Callable[[], T]) -> T:
        """Run one node call, turning connection failures into ChainUnavailable."""
        try:
            return call()
        except ChainError:
            raise
        except Exception as exc:
            if classify_send_error(exc) is SendOutcome.UNAVAILABLE:
                raise ChainUnavailable(f"chain node unavailable: {type(exc).__name__}") from exc
            raise

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self._rpc(lambda: self.w3.eth.chain_id))
        return self._chain_id

    def call(self, fn: Any) -> Any:
        """A read-only contract call with reverts decoded."""
        try:
            return self._rpc(lambda: fn.call({"from": self.account.address}))
        except ChainError:
            raise
        except Exception as exc:
            raise self._as_revert(exc) from exc

    def _as_revert(self, exc: BaseException) -> BaseException:
        data = revert_data_of(exc)
        return decode_revert(data, self.abi) if data is not None else exc

    # ------------------------------------------------------------ sending

    def next_nonce(self) -> int:
        """max(node's pending count, journal's highest + 1): a journaled tx not yet seen keeps its nonce."""
        chain = int(self._rpc(lambda: self.w3.eth.get_transaction_count(self.account.address, "pending")))
        journaled = self.journal.max_nonce()
        return max(chain, (journaled + 1) if journaled is not None else 0)

    def _fees(self) -> dict[str, int]:
        block = self._rpc(lambda: self.w3.eth.get_block("latest"))
        base = block.get("baseFeePerGas")
        if base is None:
            return {"gasPrice": min(int(self._rpc(lambda: self.w3.eth.gas_price)), self.policy.max_fee_wei)}
        priority = self.policy.priority_fee_wei
        return {
            "maxPriorityFeePerGas": priority,
            "maxFeePerGas": min(2 * int(base) + priority, self.policy.max_fee_wei),
        }

    def _sign(self, fn: Any, nonce: int) -> tuple[bytes, str]:
        params: dict[str, Any] = {"from": self.account.address, "nonce": nonce, "chainId": self.chain_id}
        try:
            gas = self._rpc(lambda: fn.estimate_gas({"from": self.account.address}))
        except ChainError:
            raise
        except Exception as exc:
            raise self._as_revert(exc) from exc
        params["gas"] = int(gas * self.policy.gas_margin) + 10_000
        params |= self._fees()
        tx = self._rpc(lambda: fn.build_transaction(params))
        signed = self.account.sign_transaction(tx)
        return bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex()

    def send(self, key: str, fn: Any) -> TxRecord:
        """Journal then broadcast the call under `key`; if the key is journaled, re-broadcast that tx."""
        existing = self.journal.tx(key)
        if existing is not None:
            if existing.state == TX_PENDING:
                self.broadcast(existing)
            return existing
        nonce = self.next_nonce()
        raw, tx_hash = self._sign(fn, nonce)
        record = self.journal.put_tx(key, nonce, raw, tx_hash)  # BEFORE the first broadcast
        self._on_event("journaled")
        self.broadcast(record)
        return record

    def broadcast(self, record: TxRecord) -> None:
        """Send the journaled bytes; "already known" and "nonce too low" for a mined hash are success."""
        self.broadcasts += 1
        try:
            self.w3.eth.send_raw_transaction(record.raw)
            self._on_event("broadcast")
            return
        except Exception as exc:
            outcome = classify_send_error(exc)
            if outcome is SendOutcome.UNAVAILABLE:
                raise ChainUnavailable(f"chain node unavailable: {type(exc).__name__}") from exc
            if outcome is SendOutcome.ALREADY_KNOWN:
                self._on_event("already_known")
                return
            if outcome is SendOutcome.NONCE_TOO_LOW:
                if self.receipt(record.key) is not None:
                    self._on_event("nonce_too_low_mined")
                    return
                raise ChainError(
                    f"nonce {record.nonce} of {record.key} was used by another transaction"
                ) from exc
            if outcome is SendOutcome.REVERT:
                raise self._as_revert(exc) from exc
            raise

    def resign(self, key: str, fn: Any) -> TxRecord:
        """Re-sign a journaled intent whose nonce was taken, with a fresh nonce (never mined: safe)."""
        nonce = self.next_nonce()
        raw, tx_hash = self._sign(fn, nonce)
        self.journal.replace_tx(key, nonce, raw, tx_hash)
        record = self.journal.tx(key)
        assert record is not None
        self.broadcast(record)
        return record

    # ------------------------------------------------------------ receipts

    def receipt(self, key: str) -> Receipt | None:
        """The receipt of the journaled tx, recording the outcome in the journal; None while pending."""
        record = self.journal.tx(key)
        if record is None:
            return None
        try:
            rcpt = self._rpc(lambda: self.w3.eth.get_transaction_receipt(record.hash))  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        except ChainUnavailable:
            raise
        except Exception as exc:
            if "not found" in str(exc).lower():
                return None
            raise
        if rcpt is None:
            return None
        status = int(rcpt["status"])
        block = int(rcpt["blockNumber"])
        if record.state == TX_PENDING:
            self.journal.mark_tx(key, TX_MINED if status == 1 else TX_REVERTED, block)
        return Receipt(key, record.hash, status, block, int(rcpt["gasUsed"]), list(rcpt["logs"]))

    def wait(self, key: str, timeout: float | None = None) -> Receipt:
        """Poll for the receipt (automine nodes answer at once); re-broadcast once halfway through."""
        limit = self.policy.receipt_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + limit
        rebroadcast_at = time.monotonic() + limit / 2
        while True:
            rcpt = self.receipt(key)
            if rcpt is not None:
                return rcpt
            now = time.monotonic()
            if now > deadline:
                raise ChainError(f"no receipt for {key} after {limit:.0f} s")
            if now > rebroadcast_at:
                record = self.journal.tx(key)
                if record is not None:
                    self.broadcast(record)
                rebroadcast_at = deadline + 1
            if self.stopping.wait(self.policy.poll_s):
                raise ChainError(f"stopping: the receipt of {key} is left to the next start's recovery")

    def recover(self) -> list[str]:
        """At start: re-broadcast every journaled tx without a receipt, in nonce order; returns their keys."""
        keys = []
        for record in self.journal.pending_txs():
            if self.receipt(record.key) is not None:
                continue
            try:
                self.broadcast(record)
            except RevertError as exc:
                log.warning("event=tx_recover_revert key=%s error=%s", record.key, exc)
            except ChainError as exc:
                if isinstance(exc, ChainUnavailable):
                    raise
                log.warning("event=tx_recover_lost key=%s error=%s", record.key, exc)
                self.journal.drop_tx(record.key)
                continue
            keys.append(record.key)
        return keys
