"""The Market contract as the gateway uses it (contracts/INTERFACE.md): typed calls and journaled sends.

Views answer what the chain says about an agreement, an anchor or a participant; every state
change goes through `TxSender.send` with an idempotency key, so a restart re-sends the same
transaction instead of a new one. Terms are signed as EIP-712 typed data with the gateway key
(`gridpact.core.eip712`, tested against the contract's own `agreementId`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3

from gateway.chain.abis import SHIPPED_ABI as SHIPPED_ABI  # re-exported: the ABIs live apart from web3
from gateway.chain.abis import SHIPPED_ABIS as SHIPPED_ABIS
from gateway.chain.abis import SHIPPED_LOANS_ABI as SHIPPED_LOANS_ABI
from gateway.chain.abis import market_abi as market_abi
from gateway.chain.errors import decode_revert
from gateway.chain.journal import TxRecord
from gateway.chain.sender import TxSender
from gridpact.core import settlement
from gridpact.core.eip712 import TERMS_NAMES, Domain, Terms, agreement_id, compact, typed_data
from gridpact.core.statement import NO_WINDOW as NO_WINDOW  # re-exported for the keeper
from gridpact.core.statement import settlement_batch


class Status(IntEnum):
    """Agreement status, as the contract's enum."""

    NONE = 0
    ACTIVE = 1
    DISPUTED = 2
    SETTLED = 3
    REFUNDED = 4
    CANCELLED = 5


FINAL = (Status.SETTLED, Status.REFUNDED, Status.CANCELLED)


@dataclass(frozen=True)
class AgreementView:
    status: Status
    deadline: int
    seller_reported: bool
    buyer_reported: bool
    seller_wh: int
    buyer_wh: int


@dataclass(frozen=True)
class Head:
    """The chain's latest block. Chain state changes only with a new block, so views read at one
    head stay true while it is the head; another number or hash (a new block, a reorg) ends that."""

    number: int
    hash: bytes


def terms_from_dict(d: dict[str, Any]) -> Terms:
    """Terms from the JSON form used on the wire and in the journal (raises ValueError when out of range)."""
    return Terms(
        to_checksum_address(d["seller"]), to_checksum_address(d["buyer"]), int(d["quantityWh"]),
        int(d["unitPrice"]), int(d["deliveryStart"]), int(d["deliveryEnd"]), int(d["nonce"]), int(d["expiry"]),
    )  # fmt: skip


def sign_terms_hex(terms: Terms, domain: Domain, account: LocalAccount) -> str:
    """The 65-byte signature (hex) of the terms' EIP-712 digest, as carried in peer messages."""
    signed = Account.unsafe_sign_hash(agreement_id(terms, domain), account.key)
    return "0x" + bytes(signed.signature).hex()


def terms_signer(terms: Terms, domain: Domain, signature: str) -> str:
    """Who signed these terms (recovered through eth-account's independent EIP-712 encoder)."""
    return Account.recover_message(
        encode_typed_data(full_message=typed_data(terms, domain)), signature=signature
    )


def signed_by(terms: Terms, domain: Domain, signature: object, who: str) -> bool:
    """Whether `who` signed these terms; anything that is not a recoverable signature is simply not its."""
    try:
        return terms_signer(terms, domain, str(signature)).lower() == who.lower()
    except Exception:  # not hex, wrong length, not a point on the curve: a peer's bad input, never a crash
        return False


def to_compact(signature: str) -> tuple[bytes, bytes]:
    raw = bytes.fromhex(signature.removeprefix("0x"))
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    return compact(v, r, s)


class PreparedView:
    """A view function whose selector and ABI types are worked out once, not on every call.

    A settler asks about every open agreement every few seconds; building a web3 ContractFunction
    per call recomputes the selector (keccak) and matches the ABI each time. `view(*args)` returns
    an object with web3's `.call(tx)` shape, so `TxSender.call` (revert decoding) takes it as is.
    """

    def __init__(self, w3: Web3, address: str, abi: list[dict], name: str) -> None:
        from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types, get_abi_output_types

        (fn,) = [e for e in abi if e.get("type") == "function" and e.get("name") == name]
        self.w3, self.address, self.name = w3, address, name
        self.selector = bytes(function_abi_to_4byte_selector(fn))  # type: ignore[arg-type]
        self.inputs = list(get_abi_input_types(fn))  # type: ignore[arg-type]
        self.outputs = list(get_abi_output_types(fn))  # type: ignore[arg-type]

    def __call__(self, *args: Any) -> _BoundView:
        from eth_abi.abi import encode

        return _BoundView(self, self.selector + encode(self.inputs, list(args)))


class _BoundView:
    """One encoded call of a PreparedView; `.call(tx)` answers like web3's ContractFunction.call."""

    def __init__(self, view: PreparedView, data: bytes) -> None:
        self.view, self.data = view, data

    def call(self, transaction: dict[str, Any] | None = None) -> Any:
        from eth_abi.abi import decode

        tx: Any = dict(transaction or {}) | {"to": self.view.address, "data": "0x" + self.data.hex()}
        raw = self.view.w3.eth.call(tx)
        out = decode(self.view.outputs, bytes(raw))
        return out[0] if len(out) == 1 else list(out)


class Market:
    """One Market deployment seen through this gateway's sender."""

    def __init__(self, w3: Web3, address: str, sender: TxSender) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.sender = sender
        self.contract = w3.eth.contract(address=self.address, abi=sender.abi)
        self._domain: Domain | None = None
        views = ("agreementOf", "slotOf", "balanceOf", "anchors")
        self._views = {name: PreparedView(w3, self.address, sender.abi, name) for name in views}

    @property
    def me(self) -> str:
        return self.sender.account.address

    @property
    def domain(self) -> Domain:
        if self._domain is None:
            self._domain = Domain(self.sender.chain_id, self.address)
        return self._domain

    def agreement_id(self, terms: Terms) -> str:
        return "0x" + agreement_id(terms, self.domain).hex()

    # ------------------------------------------------------------ views

    def head(self) -> Head:
        """The latest block's number and hash (one `eth_getBlockByNumber`)."""
        block = self.w3.eth.get_block("latest")
        return Head(int(block["number"]), bytes(block["hash"]))  # type: ignore[arg-type]

    def agreement(self, terms: Terms) -> AgreementView:
        """What the chain holds for these terms (NONE when their (seller, nonce) slot holds something else)."""
        raw = self.sender.call(self._views["agreementOf"](terms.as_tuple()))
        return AgreementView(
            Status(int(raw[0])), int(raw[1]), bool(raw[2]), bool(raw[3]), int(raw[4]), int(raw[5])
        )

    def closed_status(self, agreement_id: str) -> Status | None:
        """How an agreement closed, read from its events (SETTLED / REFUNDED), None when it did not.

        `agreementOf` answers NONE once the seller's slot holds newer terms (the seller reuses the
        nonce of a closed agreement), so a party that was away learns the outcome from the logs.
        """
        aid = bytes.fromhex(agreement_id.removeprefix("0x"))
        events = self.contract.events
        for event, status in (
            (events.AgreementSettled, Status.SETTLED),
            (events.EscrowReclaimed, Status.REFUNDED),
        ):
            if event().get_logs(argument_filters={"id": aid}, from_block=0):
                return status
        return None

    def slot_free(self, nonce: int, seller: str | None = None) -> bool:
        """Whether new terms of `seller` (default: us) may use `nonce` now (`slotOf(seller, nonce).free`)."""
        raw = self.sender.call(self._views["slotOf"](to_checksum_address(seller or self.me), nonce))
        return bool(raw[2])

    def is_participant(self, address: str) -> bool:
        return bool(self.sender.call(self.contract.functions.isParticipant(to_checksum_address(address))))

    def network_fee(self) -> int:
        """The community's network fee: token base units per kWh delivered, out of the seller's payout."""
        return int(self.sender.call(self.contract.functions.networkFee()))

    def free_balance(self, address: str | None = None) -> int:
        return int(self.sender.call(self._views["balanceOf"](to_checksum_address(address or self.me))))

    def anchored(self, hour_start: int, gateway: str | None = None) -> bytes:
        batch_hash, _anchored_at = self.sender.call(
            self._views["anchors"](to_checksum_address(gateway or self.me), hour_start)
        )
        return bytes(batch_hash)

    def value(self, quantity_wh: int, unit_price: int) -> int:
        """Escrow of q Wh at p per kWh: q * p / 1000, floored (the contract's rule, computed locally)."""
        return settlement.value(quantity_wh, unit_price)

    def report_window(self) -> int:
        return int(self.sender.call(self.contract.functions.params())[0])

    # ------------------------------------------------------------ journaled sends

    def submit(self, terms: Terms, seller_sig: str, buyer_sig: str) -> TxRecord:
        fn = self.contract.functions.submitAgreement(
            terms.as_tuple(), to_compact(seller_sig), to_compact(buyer_sig)
        )
        return self.sender.send(f"submit:{self.agreement_id(terms)}", fn)

    def _events(self, logs: list[Any], name: str) -> list[Any]:
        """The Market's events called `name` among a receipt's logs, decoded (others' logs left out)."""
        event = self.contract.events[name]()
        found = []
        for entry in logs:
            if to_checksum_address(entry["address"]) != self.address:
                continue
            try:
                found.append(event.process_log(entry))
            except Exception:  # another event of the Market
                continue
        return found

    def batch_rejections(self, logs: list[Any], first: int = 0) -> list[str]:
        """The custom error name of each item a batch call skipped (its `BatchItemRejected` events), of
        those from index `first` on (a keeper's round: its settlement items, then the agreements it opens)."""
        return [
            decode_revert(bytes(e["args"]["reason"]), self.sender.abi).name
            for e in self._events(logs, "BatchItemRejected")
            if int(e["args"]["index"]) >= first
        ]

    def report(self, terms: Terms, delivered_wh: int) -> TxRecord:
        fn = self.contract.functions.report(terms.as_tuple(), delivered_wh)
        return self.sender.send(f"report:{self.agreement_id(terms)}", fn)

    def meter_used_until(self, household: str | None = None) -> int:
        """End of the household's meter's last window used on chain (0: none yet)."""
        return int(
            self.sender.call(self.contract.functions.meterOf(to_checksum_address(household or self.me)))[1]
        )

    def settle_by_meters(self, key: str, window: tuple, agreements: list[tuple[Terms, bool]]) -> TxRecord:
        """Send this household's meter window with all its agreements on it (`settleByMeters`): each
        (terms, we are the seller). The window counts once on chain, so they go together."""
        items = [(t.as_tuple(), *((0, NO_WINDOW) if seller else (NO_WINDOW, 0))) for t, seller in agreements]
        fn = self.contract.functions.settleByMeters(settlement_batch([window], items))
        return self.sender.send(f"meters:{key}", fn)

    def settle_windows(
        self, key: str, windows: list[tuple], items: list[tuple], opens: Sequence[tuple[Terms, str, str]] = ()
    ) -> TxRecord:
        """A keeper's `settleByMeters`: every household's window of one delivery window and every agreement
        on it, each item (terms, seller's window index, buyer's window index); then the agreements to open,
        each (terms, seller's signature, buyer's signature), in the same call."""
        signed = [(t.as_tuple(), to_compact(s), to_compact(b)) for t, s, b in opens]
        return self.sender.send(
            key, self.contract.functions.settleByMeters(settlement_batch(windows, items, signed))
        )

    def evidence_of(self, terms: Terms) -> tuple[bool, bool]:
        """(seller's, buyer's) meter figure recorded on chain for an agreement still waiting for the other."""
        raw = self.sender.call(
            self.contract.functions.evidenceOf(bytes.fromhex(self.agreement_id(terms)[2:]))
        )
        return bool(raw[0]), bool(raw[1])

    def reclaim(self, terms: Terms) -> TxRecord:
        fn = self.contract.functions.reclaim(terms.as_tuple())
        return self.sender.send(f"reclaim:{self.agreement_id(terms)}", fn)

    def anchor(self, hour_start: int, batch_hash: bytes, count: int) -> TxRecord:
        fn = self.contract.functions.anchorReadings(hour_start, batch_hash, count)
        return self.sender.send(f"anchor:{hour_start}", fn)

    def provider_trades(self, logs: list[Any]) -> list[tuple[str, Terms]]:
        """(agreement id, terms) of each `ProviderTraded` event in a receipt's logs."""
        out = []
        for decoded in self._events(logs, "ProviderTraded"):
            raw = decoded["args"]["terms"]
            terms = terms_from_dict(dict(raw) if not isinstance(raw, (tuple, list)) else
                                    dict(zip(TERMS_NAMES, raw, strict=True)))  # fmt: skip
            out.append(("0x" + bytes(decoded["args"]["id"]).hex(), terms))
        return out

    def trade_with_provider(self, household_buys: bool, quantity_wh: int, start: int, end: int) -> TxRecord:
        fn = self.contract.functions.tradeWithProvider(household_buys, quantity_wh, start, end)
        return self.sender.send(f"provider:{start}:{'buy' if household_buys else 'sell'}", fn)


class AgreementCache:
    """`Market.agreement` answers reused while the chain's head block stays the same.

    A settler asks about every open agreement every few seconds, while the chain changes a few
    times an hour. So the settler reads the head once per round (`new_round`) and `agreement`
    asks the chain only about terms not yet read at that head. Any other head (a new block, a
    lower number or another hash at the same number: a reorg) drops every answer, and so does a
    transaction of our own (the sender's broadcast count moves): until the next round's head
    read, answers are then read fresh, as without the cache.
    """

    def __init__(self, market: Market) -> None:
        self.market = market
        self._head: Head | None = None  # None: no head read this round (or it failed): no reuse
        self._broadcasts = 0  # the sender's count when the head was read
        self._views: dict[Terms, AgreementView] = {}

    def _current(self) -> bool:
        return self._head is not None and self.market.sender.broadcasts == self._broadcasts

    def new_round(self) -> Head:
        """Read the head; answers read at an earlier head are dropped."""
        previous = self._head if self._current() else None
        self._head = None
        head = self.market.head()
        if head != previous:
            self._views.clear()
        self._head, self._broadcasts = head, self.market.sender.broadcasts
        return head

    def agreement(self, terms: Terms) -> AgreementView:
        """What the chain holds for these terms, asked at most once per head."""
        if not self._current():
            self._views.clear()
            return self.market.agreement(terms)
        view = self._views.get(terms)
        if view is None:
            view = self._views[terms] = self.market.agreement(terms)
        return view
