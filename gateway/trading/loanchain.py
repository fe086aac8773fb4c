"""The loan functions on chain (MarketLoans) as the gateway uses them: typed views and journaled sends.

The loans live in their own contract (`MarketLoans`) deployed beside the Market, which names it once
(`Market.loansContract()`, set by `setLoans` and never changed): the address is `[loans] contract`
when given, else the one the Market names. Loan ids are the EIP-712 digest under the loans
contract's domain, read from the chain (`eip712Domain()`) and checked against the domain this
gateway signs for.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import Web3

from gateway.chain.errors import ChainError
from gateway.chain.journal import TxRecord
from gateway.chain.market import market_abi, to_compact
from gateway.chain.sender import TxSender
from gridpact.core.eip712 import DOMAIN_NAME, DOMAIN_VERSION, Domain, Loan, loan_id

LOAN_FUNCTIONS = frozenset(
    {
        "submitLoan",
        "reportReturn",
        "expireLoan",
        "cancelLoan",
        "openLoanDispute",
        "loans",
        "loanId",
        "eip712Domain",
    }
)
LOAN_EVENTS = frozenset({"LoanOpened", "LoanCancelled", "LoanDisputed", "LoanClosed", "ReturnReported"})


class LoanStatus(IntEnum):
    """MarketLoans' LoanStatus."""

    NONE = 0
    OPEN = 1
    DISPUTED = 2
    CLOSED = 3
    CANCELLED = 4


def loans_abi(abi: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The loan functions and events of an ABI, with every custom error (for revert decoding)."""
    return [
        e for e in abi
        if e.get("type") == "error"
        or (e.get("type") == "function" and e.get("name") in LOAN_FUNCTIONS)
        or (e.get("type") == "event" and e.get("name") in LOAN_EVENTS)
    ]  # fmt: skip


class LoanChain:
    """One loans deployment seen through this gateway's sender (blocking: call in the chain thread)."""

    def __init__(self, w3: Web3, address: str | None, sender: TxSender, market: str | None = None) -> None:
        """`address`: the loans contract; None: the one `market` names, looked up on first use (in the
        chain thread, so a chain that is down at start delays loans instead of stopping the gateway)."""
        if address is None and market is None:
            raise ValueError("LoanChain needs the loans contract's address or the Market's")
        self.w3 = w3
        self.sender = sender
        self._address = to_checksum_address(address) if address else None
        self._market = market
        self._contract: Any = None
        self._domain: Domain | None = None

    @property
    def contract(self) -> Any:
        if self._contract is None:
            if self._address is None:
                assert self._market is not None
                named = self.w3.eth.contract(address=to_checksum_address(self._market), abi=market_abi())
                found = str(self.sender.call(named.functions.loansContract()))
                if int(found, 16) == 0:
                    raise ChainError(
                        f"the Market at {self._market} names no loans contract (setLoans never called)"
                    )
                self._address = to_checksum_address(found)
            self._contract = self.w3.eth.contract(
                address=self._address, abi=loans_abi(market_abi("MarketLoans"))
            )
        return self._contract

    @property
    def address(self) -> str:
        return str(self.contract.address)

    @property
    def domain(self) -> Domain:
        """The domain loans are signed under; a contract whose domain differs is refused loudly."""
        if self._domain is None:
            raw = self.sender.call(self.contract.functions.eip712Domain())
            name, version, chain_id, verifying = raw[1], raw[2], int(raw[3]), to_checksum_address(raw[4])
            if (name, version) != (DOMAIN_NAME, DOMAIN_VERSION) or verifying != to_checksum_address(
                self.address
            ):
                raise ChainError(
                    f"loans contract {self.address} signs under ({name!r}, {version!r}, {verifying}); "
                    f"this gateway signs loans under ({DOMAIN_NAME!r}, {DOMAIN_VERSION!r}, the contract)"
                )
            self._domain = Domain(chain_id, self.address)
        return self._domain

    def loan_id(self, loan: Loan) -> str:
        return "0x" + loan_id(loan, self.domain).hex()

    def status(self, loan: Loan) -> tuple[LoanStatus, int]:
        """(status, deadline) on chain."""
        status, deadline = self.sender.call(
            self.contract.functions.loans(bytes.fromhex(self.loan_id(loan)[2:]))
        )
        return LoanStatus(int(status)), int(deadline)

    def closed(self, loan: Loan) -> dict[str, int] | None:
        """The LoanClosed event's figures (lent, returned, to borrower, to lender, to treasury), None when open."""
        aid = bytes.fromhex(self.loan_id(loan)[2:])
        logs = self.contract.events.LoanClosed().get_logs(argument_filters={"id": aid}, from_block=0)
        if not logs:
            return None
        a = logs[0]["args"]
        return {k: int(a[k]) for k in ("lentWh", "returnedWh", "toBorrower", "toLender", "toTreasury")}

    def submit(self, loan: Loan, lender_sig: str, borrower_sig: str) -> TxRecord:
        fn = self.contract.functions.submitLoan(
            loan.as_tuple(), to_compact(lender_sig), to_compact(borrower_sig)
        )
        return self.sender.send(f"loan-submit:{self.loan_id(loan)}", fn)

    def report(self, loan: Loan, lent_wh: int, returned_wh: int) -> TxRecord:
        fn = self.contract.functions.reportReturn(loan.as_tuple(), lent_wh, returned_wh)
        return self.sender.send(f"loan-report:{self.loan_id(loan)}", fn)

    def expire(self, loan: Loan) -> TxRecord:
        fn = self.contract.functions.expireLoan(loan.as_tuple())
        return self.sender.send(f"loan-expire:{self.loan_id(loan)}", fn)
