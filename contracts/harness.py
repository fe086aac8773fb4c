"""A deployed token + market with a community of households: the common ground of tests and the bench.

It only drives the real contracts through signed transactions (no shortcuts into storage), so
what tests and `gridpact bench contracts` see is what gateways will see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import coincurve
from eth_account import Account
from eth_utils.crypto import keccak
from web3.logs import DISCARD

from contracts.chain import Sender
from contracts.deploy import AdmissionRules, admission_at, contracts_at, deploy_all, loans_at
from contracts.errors import RevertInfo, decode_revert_data
from gridpact.core import statement
from gridpact.core.eip712 import (
    NO_SIG,
    Domain,
    Loan,
    Terms,
    agreement_id,
    loan_id,
    sign_loan,
    sign_report,
    sign_terms,
)
from gridpact.core.statement import NO_READING as NO_READING  # re-exported for tests and benches
from gridpact.core.statement import NO_WINDOW as NO_WINDOW

Sig = tuple[bytes, bytes]
EMPTY_DIGEST = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")  # sha256("")


def meter_reading(dev: str, secret: bytes, window_end: int, import_wh: int, export_wh: int) -> tuple:
    """A window's reading tuple (docs/wire/meter-settlement-v1.md): the figures of the statement at `window_end` and the device key's signature."""
    st = statement.Statement(dev, window_end, import_wh, export_wh, 1, EMPTY_DIGEST)
    r, vs = statement.to_compact(statement.sign(statement.encode(st), secret))
    return (import_wh, export_wh, 1, EMPTY_DIGEST, (r, vs))


def household_key(index: int, salt: str = "gridpact-household") -> str:
    """A deterministic throwaway key for household `index` (test and bench chains only)."""
    return "0x" + keccak(text=f"{salt}-{index}").hex()


def advance_time(w3: Any, seconds: int) -> int:
    """Move the chain's clock forward and mine a block, on anvil or py-evm; returns the new timestamp."""
    latest = int(w3.eth.get_block("latest")["timestamp"])
    tester = getattr(w3.provider, "ethereum_tester", None)
    if tester is not None:
        pending = int(tester.get_block_by_number("pending")["timestamp"])
        tester.time_travel(max(latest, pending - 1) + seconds)
    else:
        w3.provider.make_request("evm_setNextBlockTimestamp", [latest + seconds])
        w3.provider.make_request("evm_mine", [])
    return int(w3.eth.get_block("latest")["timestamp"])


def chain_snapshot(w3: Any) -> Any:
    """Snapshot the chain state (anvil `evm_snapshot`, eth-tester snapshots), for cheap per-test resets."""
    tester = getattr(w3.provider, "ethereum_tester", None)
    if tester is not None:
        return tester.take_snapshot()
    return w3.provider.make_request("evm_snapshot", [])["result"]


def chain_revert(w3: Any, snapshot: Any) -> None:
    """Return to a snapshot taken by `chain_snapshot`."""
    tester = getattr(w3.provider, "ethereum_tester", None)
    if tester is not None:
        tester.revert_to_snapshot(snapshot)
    elif w3.provider.make_request("evm_revert", [snapshot])["result"] is not True:
        raise RuntimeError(f"anvil could not revert to snapshot {snapshot}")


@dataclass
class Household:
    """A registered gateway key with its sender."""

    key: str
    sender: Sender
    meter_secret: bytes = b""  # the meter node's device key (set by Community.set_meter)
    device: str = ""

    @property
    def address(self) -> str:
        return self.sender.address


@dataclass
class Community:
    """Token + market deployed by `admin_key` (the community), plus registered households."""

    w3: Any
    admin_key: str
    utility: str = "electricity"
    households: list[Household] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.admin = Sender(self.w3, self.admin_key)
        self.addresses = deploy_all(self.w3, self.admin_key, (self.utility,), admission=AdmissionRules())
        self.token, self.market = contracts_at(self.w3, self.addresses, self.utility)
        self.domain = Domain.of(self.w3, self.market.address)
        self.loans = loans_at(self.w3, self.addresses, self.utility)
        self.loans_domain = Domain.of(self.w3, self.loans.address)
        self.admission = admission_at(self.w3, self.addresses, self.utility)
        self._nonce = 0

    # -------------------------------------------------------------- setup

    def add_household(self, key: str, deposit: int = 0, eth: int = 10**18) -> Household:
        """Fund gas, register, mint and deposit `deposit` tokens into the market."""
        address = Account.from_key(key).address
        if self.w3.eth.get_balance(address) < eth // 2:
            self.admin.send({"to": address, "value": eth, "gas": 21_000})
        hh = Household(key, Sender(self.w3, key))
        self.admin.transact(
            self.market.functions.register(address, keccak(text=f"meter-{address}"), b"\x11" * 32)
        )
        if deposit:
            self.fund(hh, deposit)
        self.households.append(hh)
        return hh

    def fund(self, hh: Household, amount: int) -> None:
        """Mint `amount` to the household, which approves and deposits it."""
        self.admin.transact(self.token.functions.mint(hh.address, amount))
        hh.sender.transact(self.token.functions.approve(self.market.address, amount))
        hh.sender.transact(self.market.functions.deposit(amount))

    def set_meter(self, hh: Household, salt: str = "gridpact-meter") -> str:
        """Give the household a meter node with its own device key and register its address on chain."""
        hh.meter_secret = keccak(text=f"{salt}-{hh.address}")
        hh.device = f"meter-{hh.address[2:10].lower()}"
        pub = coincurve.PrivateKey(hh.meter_secret).public_key.format(compressed=False)[1:]
        meter = statement.address_of(pub)
        self.admin.transact(self.market.functions.setMeter(hh.address, meter))
        return meter

    def meter_window(
        self,
        hh: Household,
        start: int,
        end: int,
        start_counters: tuple[int, int] | None,
        end_counters: tuple[int, int],
    ) -> tuple:
        """A window tuple (`gridpact.core.statement.settlement_batch`) signed by the household's meter; counters are (import, export) cumulative Wh;
        `start_counters` None chains from the meter's last used window on chain."""
        frm = (
            NO_READING
            if start_counters is None
            else meter_reading(hh.device, hh.meter_secret, start, *start_counters)
        )
        to = meter_reading(hh.device, hh.meter_secret, end, *end_counters)
        return (hh.address, statement.device_word(hh.device), start, end, frm, to)

    # -------------------------------------------------------------- agreements

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def terms(
        self,
        seller: Household,
        buyer: Household,
        quantity_wh: int = 1_000,
        unit_price: int = 250_000_000_000_000_000,
        delivery_end: int | None = None,
        expiry: int | None = None,
        nonce: int | None = None,
    ) -> Terms:
        """Terms for an hour of delivery ending in two hours, expiring in one (fresh nonce unless given)."""
        if nonce is None:
            self._nonce += 1
            nonce = self._nonce
        now = self.now()
        end = now + 7200 if delivery_end is None else delivery_end
        return Terms(
            seller.address, buyer.address, quantity_wh, unit_price, end - 3600, end, nonce,
            now + 3600 if expiry is None else expiry,
        )  # fmt: skip

    def sign(self, t: Terms, seller: Household, buyer: Household) -> tuple[Sig, Sig]:
        return sign_terms(t, self.domain, seller.key), sign_terms(t, self.domain, buyer.key)

    def agreement_id(self, t: Terms) -> bytes:
        return agreement_id(t, self.domain)

    def settle_item(
        self, t: Terms, seller: Household | None, buyer: Household | None, seller_wh: int, buyer_wh: int
    ) -> tuple:
        """A SettleItem tuple with signed reports (None: that party reported on chain, no signature)."""
        aid = self.agreement_id(t)
        s_sig = sign_report(aid, seller_wh, self.domain, seller.key) if seller else NO_SIG
        b_sig = sign_report(aid, buyer_wh, self.domain, buyer.key) if buyer else NO_SIG
        return (t.as_tuple(), seller_wh, buyer_wh, s_sig, b_sig)

    def rejected(self, receipt: Any) -> list[tuple[int, RevertInfo]]:
        """The batch items a transaction skipped: (index, the custom error the single call would revert with)."""
        logs = self.market.events.BatchItemRejected().process_receipt(receipt, errors=DISCARD)
        return [
            (int(e["args"]["index"]), decode_revert_data(bytes(e["args"]["reason"]), self.market.abi))
            for e in logs
        ]

    def status(self, t: Terms) -> int:
        return int(self.market.functions.agreementOf(t.as_tuple()).call()[0])

    # -------------------------------------------------------------- loans

    def loan(
        self, lender: Household, borrower: Household, quantity_wh: int, collateral: int, tau: int
    ) -> Loan:
        self._nonce += 1
        now = self.now()
        return Loan(
            lender.address, borrower.address, quantity_wh, collateral, now + tau, self._nonce, now + 3600
        )

    def sign_loan(self, loan: Loan, lender: Household, borrower: Household) -> tuple[Sig, Sig]:
        return sign_loan(loan, self.loans_domain, lender.key), sign_loan(
            loan, self.loans_domain, borrower.key
        )

    def loan_id(self, loan: Loan) -> bytes:
        return loan_id(loan, self.loans_domain)

    # -------------------------------------------------------------- accounting

    def free(self, address: str) -> int:
        return int(self.market.functions.balanceOf(address).call())

    def held(self) -> int:
        """Tokens the market contract holds."""
        return int(self.token.functions.balanceOf(self.market.address).call())
