"""The community dashboard's read-only chain access: Ethereum JSON-RPC over the standard library.

The dashboard only reads (blocks, logs, transactions, receipts, code, `eth_call`), so its process
does not load web3 for that: web3's import alone brings aiohttp, requests and websockets, about
17 MB resident of the 80 MB a Pi-sized budget allows (docs/dashboard.md, "Memory"). `RpcChain.eth`
answers the calls `ChainIndex` makes with the shapes web3 gives (quantities as int, log topics,
log data and code as bytes, hashes and addresses as 0x-strings, which the index reads either way).
The operator's signed actions still go through the gateway's `TxSender` on a real Web3, made by
`RpcChain.web3()` on the first action, so a dashboard nobody acts from never loads it.
"""

from __future__ import annotations

import itertools
import json
import urllib.request
from collections.abc import Mapping
from typing import Any

# Fields that JSON-RPC sends as hex quantities and web3 hands over as int (the ones the index reads,
# and their neighbours in the same objects)
QUANTITIES = frozenset({
    "number", "timestamp", "gasUsed", "gasLimit", "baseFeePerGas", "size", "blockNumber",
    "logIndex", "transactionIndex", "status", "gas", "gasPrice", "value", "chainId", "cumulativeGasUsed",
    "effectiveGasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "type",
})  # fmt: skip


class RpcError(RuntimeError):
    """The node answered with a JSON-RPC error (or not in JSON-RPC at all)."""


def _quantity(value: Any) -> Any:
    return int(value, 16) if isinstance(value, str) and value.startswith("0x") else value


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def _block_id(block: Any) -> str:
    if block is None:
        return "latest"
    if isinstance(block, str):
        return block  # "latest", "pending", or a 0x-quantity already
    return hex(int(block))


def normalise(obj: Any) -> Any:
    """A JSON-RPC result in web3's shapes: the quantities as int, logs' topics and data as bytes."""
    if isinstance(obj, list):
        return [normalise(x) for x in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key in QUANTITIES:
            out[key] = _quantity(value)
        elif key == "topics" and isinstance(value, list):
            out[key] = [_bytes(t) for t in value]
        elif key == "data" and isinstance(value, str) and "topics" in obj:
            out[key] = _bytes(value)
        elif isinstance(value, (list, dict)):
            out[key] = normalise(value)
        else:
            out[key] = value
    return out


class RpcEth:
    """`web3.eth`'s read calls the dashboard makes (`gateway.dashboard.index.ChainReader`), over HTTP."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url, self.timeout_s = url, timeout_s
        self._ids = itertools.count(1)

    def request(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; RpcError on an error answer, OSError when the node cannot be reached."""
        body = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params})
        req = urllib.request.Request(
            self.url, body.encode(), {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            answer = json.loads(resp.read())
        if not isinstance(answer, Mapping):
            raise RpcError(f"{method}: not a JSON-RPC answer")
        if answer.get("error") is not None:
            error = answer["error"]
            message = error.get("message") if isinstance(error, Mapping) else error
            raise RpcError(f"{method}: {str(message)[:300]}")
        return answer.get("result")

    @property
    def chain_id(self) -> int:
        return int(self.request("eth_chainId", []), 16)

    @property
    def block_number(self) -> int:
        return int(self.request("eth_blockNumber", []), 16)

    def get_block(self, block_identifier: Any, full_transactions: bool = False) -> Any:
        block = self.request("eth_getBlockByNumber", [_block_id(block_identifier), full_transactions])
        if block is None:
            raise RpcError(f"block {block_identifier} not found")
        return normalise(block)

    def get_logs(self, filter_params: Any) -> Any:
        params = dict(filter_params)
        for key in ("fromBlock", "toBlock"):
            if key in params:
                params[key] = _block_id(params[key])
        return normalise(self.request("eth_getLogs", [params]))

    def get_transaction(self, transaction_hash: Any) -> Any:
        tx = self.request("eth_getTransactionByHash", [_hash(transaction_hash)])
        if tx is None:
            raise RpcError(f"transaction {_hash(transaction_hash)} not found")
        return normalise(tx)

    def get_transaction_receipt(self, transaction_hash: Any) -> Any:
        receipt = self.request("eth_getTransactionReceipt", [_hash(transaction_hash)])
        if receipt is None:
            raise RpcError(f"no receipt for {_hash(transaction_hash)}")
        return normalise(receipt)

    def get_code(self, account: Any, block_identifier: Any = None) -> Any:
        return _bytes(self.request("eth_getCode", [str(account), _block_id(block_identifier)]))

    def call(self, transaction: Any, block_identifier: Any = None) -> bytes:
        tx = {k: (v if isinstance(v, str) else "0x" + bytes(v).hex()) for k, v in dict(transaction).items()}
        return _bytes(self.request("eth_call", [tx, _block_id(block_identifier)]))


def _hash(value: Any) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


class RpcChain:
    """What `serve_community` reads through (`.eth`), and the Web3 an operator's action is sent with."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url, self.timeout_s = url, timeout_s
        self.eth = RpcEth(url, timeout_s)

    def web3(self) -> Any:
        """A web3.Web3 on the same node (imported here: only an operator's action needs it)."""
        from web3 import Web3

        return Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": self.timeout_s}))
