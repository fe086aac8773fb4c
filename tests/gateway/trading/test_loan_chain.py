"""The loans chain adapter on the real Market (anvil and py-evm): ids match the contract, a foreign domain is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from trade_helpers import HOUSEHOLD_KEYS, setup_community
from web3 import Web3

from gateway.chain.errors import ChainError
from gateway.chain.journal import Journal
from gateway.chain.market import SHIPPED_ABI, SHIPPED_LOANS_ABI
from gateway.chain.sender import TxSender
from gateway.trading.loanagent import loan_signer, sign_loan_hex
from gateway.trading.loanchain import LoanChain, LoanStatus, loans_abi
from gridpact.core.eip712 import Loan


def test_loan_ids_signatures_and_status_match_the_contract(web3: Web3, tmp_path: Path) -> None:
    com = setup_community(web3)
    lender, borrower = (Account.from_key(k) for k in HOUSEHOLD_KEYS[:2])
    sender = TxSender(web3, lender, Journal(tmp_path / "trading.db"), json.loads(SHIPPED_ABI.read_text()))
    chain = LoanChain(web3, None, sender, market=com.market.address)  # the loans contract the Market names
    from contracts.build import load_artifact

    loans = web3.eth.contract(
        address=com.market.functions.loansContract().call(), abi=load_artifact("MarketLoans")["abi"]
    )
    assert chain.address == loans.address
    now = int(web3.eth.get_block("latest").get("timestamp", 0))
    loan = Loan(lender.address, borrower.address, 300, 300, now + 3600, 7, now + 600)
    assert chain.loan_id(loan) == "0x" + bytes(loans.functions.loanId(loan.as_tuple()).call()).hex()
    sig_l, sig_b = sign_loan_hex(loan, chain.domain, lender), sign_loan_hex(loan, chain.domain, borrower)
    assert (
        loan_signer(loan, chain.domain, sig_b) == borrower.address
    )  # eth-account's encoder agrees with ours
    assert chain.status(loan)[0] is LoanStatus.NONE
    sender.wait(chain.submit(loan, sig_l, sig_b).key)
    status, deadline = chain.status(loan)
    assert status is LoanStatus.OPEN and deadline > loan.returnBy
    assert com.market.functions.balanceOf(borrower.address).call() == 10**9 - 300  # collateral locked


def test_a_contract_with_another_domain_is_refused(web3: Web3, tmp_path: Path) -> None:
    com = setup_community(web3)
    account = Account.from_key(HOUSEHOLD_KEYS[0])
    sender = TxSender(web3, account, Journal(tmp_path / "trading.db"), json.loads(SHIPPED_ABI.read_text()))
    chain = LoanChain(web3, com.token.address, sender)  # not a loans contract
    with pytest.raises(ChainError):
        _ = chain.domain


def test_the_adapter_needs_only_the_loan_functions_by_name() -> None:
    abi = loans_abi(json.loads(SHIPPED_LOANS_ABI.read_text()))
    names = {e["name"] for e in abi if e["type"] == "function"}
    assert names == {"submitLoan", "reportReturn", "expireLoan", "cancelLoan", "openLoanDispute", "loans", "loanId",
                     "eip712Domain"}  # fmt: skip
