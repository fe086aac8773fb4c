"""One small adapter for sending signed transactions, the same way to anvil, py-evm or any JSON-RPC node.

Transactions are signed locally with the caller's key (nodes need no unlocked accounts) and gas is
estimated first, so a revert surfaces before sending, with its custom error decodable by
`contracts.errors.decode_revert`.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from contracts.errors import decode_revert


class TransactionReverted(RuntimeError):
    """A mined transaction reverted (status 0): the receipt is attached."""

    def __init__(self, receipt: Any) -> None:
        super().__init__(f"transaction {receipt['transactionHash'].hex()} reverted (status 0)")
        self.receipt = receipt


class Sender:
    """Signs and sends transactions from one key; `abi` is used only to explain reverts."""

    def __init__(self, w3: Any, private_key: str | bytes, gas_margin: float = 1.2) -> None:
        self.w3 = w3
        self.account: LocalAccount = Account.from_key(private_key)
        self.gas_margin = gas_margin

    @property
    def address(self) -> str:
        return self.account.address

    def send(self, tx: dict[str, Any]) -> Any:
        """Sign and send a prepared transaction (filled in: sender, nonce, chain id, fees, gas); the receipt."""
        tx.setdefault("from", self.address)
        tx["nonce"] = self.w3.eth.get_transaction_count(self.address, "pending")
        tx.setdefault("chainId", self.w3.eth.chain_id)
        if "gasPrice" not in tx and "maxFeePerGas" not in tx:
            base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
            tx["maxPriorityFeePerGas"] = 10**9
            tx["maxFeePerGas"] = 2 * base + 10**9
        if "gas" not in tx:
            tx["gas"] = int(self.w3.eth.estimate_gas(tx) * self.gas_margin) + 10_000
        signed = self.account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
        if receipt["status"] != 1:
            raise TransactionReverted(receipt)
        return receipt

    def transact(self, call: Any, gas: int | None = None) -> Any:
        """Send a bound contract function call (`contract.functions.f(...)`); returns the receipt."""
        params: dict[str, Any] = {"from": self.address}
        if gas is not None:
            params["gas"] = gas
        return self.send(call.build_transaction(params))

    def deploy(self, artifact: dict[str, Any], *args: Any) -> str:
        """Deploy a compiled contract; returns its checksum address."""
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = self.send(factory.constructor(*args).build_transaction({"from": self.address}))
        return receipt["contractAddress"]


def explain(exc: BaseException, abi: list[dict[str, Any]]) -> str:
    """A one-line reason for a failed call, for CLI messages."""
    return str(decode_revert(exc, abi))
