"""Helpers of the trading tests: a probe contract compiled by the real solc, and a real community on chain."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

from eth_account import Account

from hil.services import DEV_PRIVATE_KEYS, NODE_BIN

PROBE_SOURCE = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

contract Probe {
    error TooBig(uint256 value, uint256 limit);
    error AlreadyDone(bytes32 key);
    event Did(bytes32 indexed key, uint256 value);
    mapping(bytes32 => uint256) public done;
    uint256 public count;

    function act(bytes32 key, uint256 value) external {
        if (value > 100) revert TooBig(value, 100);
        if (done[key] != 0) revert AlreadyDone(key);
        done[key] = value;
        count += 1;
        emit Did(key, value);
    }

    function fail(string calldata why) external pure {
        require(false, why);
    }
}
"""


def compile_probe() -> dict:
    """Compile the probe with the repo's solcjs (standard JSON in, ABI and bytecode out)."""
    request = {
        "language": "Solidity",
        "sources": {"Probe.sol": {"content": PROBE_SOURCE}},
        "settings": {
            "evmVersion": "cancun",
            "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    proc = subprocess.run(
        [str(NODE_BIN / "solcjs"), "--standard-json"],
        input=json.dumps(request), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    text = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith(">>>"))
    out = json.loads(text)
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError(f"solc failed: {errors}")
    contract = out["contracts"]["Probe.sol"]["Probe"]
    return {"abi": contract["abi"], "bytecode": "0x" + contract["evm"]["bytecode"]["object"]}


def deploy(w3, artifact: dict, key: str = DEV_PRIVATE_KEYS[0]):
    """Deploy an artifact from a dev key; returns the contract object."""
    from eth_account import Account

    acct = Account.from_key(key)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor().build_transaction(
        {
            "from": acct.address,
            "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    signed = acct.sign_transaction(tx)
    h = w3.eth.send_raw_transaction(signed.raw_transaction)
    rcpt = w3.eth.wait_for_transaction_receipt(h, timeout=30)
    return w3.eth.contract(address=rcpt["contractAddress"], abi=artifact["abi"])


# ---------------------------------------------------------------- a community on chain

COMMUNITY_KEY = DEV_PRIVATE_KEYS[0]
HOUSEHOLD_KEYS = (DEV_PRIVATE_KEYS[1], DEV_PRIVATE_KEYS[2], DEV_PRIVATE_KEYS[3], DEV_PRIVATE_KEYS[5])


@dataclass
class Community:
    """Token and Market deployed, households registered and funded: what a gateway trades on."""

    w3: Any
    token: Any
    market: Any
    households: list[str]

    def settled_events(self) -> list[Any]:
        return list(self.market.events.AgreementSettled().get_logs(from_block=0))

    def submitted_events(self) -> list[Any]:
        return list(self.market.events.AgreementSubmitted().get_logs(from_block=0))

    def reclaimed_events(self) -> list[Any]:
        return list(self.market.events.EscrowReclaimed().get_logs(from_block=0))


def setup_community(
    w3: Any,
    keys: tuple[str, ...] = HOUSEHOLD_KEYS[:2],
    report_window: int = 8,
    dispute_window: int = 60,
    tolerance_bps: int = 200,
    penalty_bps: int = 1000,
    deposit: int = 10**9,
) -> Community:
    """Deploy, register each household's gateway key, set short test deadlines, fund and deposit."""
    from contracts.chain import Sender
    from contracts.deploy import contracts_at, deploy_all

    addresses = deploy_all(w3, COMMUNITY_KEY)
    token, market = contracts_at(w3, addresses)
    community = Sender(w3, COMMUNITY_KEY)
    community.transact(market.functions.setParams(report_window, dispute_window, tolerance_bps, penalty_bps))
    households = []
    for n, key in enumerate(keys):
        address = Account.from_key(key).address
        households.append(address)
        community.transact(market.functions.register(address, n.to_bytes(32, "big"), b"\x01" * 32))
        community.transact(token.functions.mint(address, deposit))
        household = Sender(w3, key)
        household.transact(token.functions.approve(market.address, deposit))
        household.transact(market.functions.deposit(deposit))
    return Community(w3, token, market, households)


def mine_every_second(w3: Any) -> None:
    """Switch anvil from automine to a block per second, like a real chain.

    With automine only, block time stands still while nobody transacts, and a report that must
    wait for `deliveryEnd <= block.timestamp` would wait for ever; real chains keep producing blocks.
    """
    w3.provider.make_request("evm_setIntervalMining", [1])
