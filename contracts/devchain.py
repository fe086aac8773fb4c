"""Local development chains: anvil's well-known dev keys and an in-process EVM funded from them.

For local chains only (tests, `gridpact simulate`, `gridpact contracts deploy --dev-key`); the
keys are public knowledge. The in-process EVM needs the `sim` extra (eth-tester, py-evm).
"""

from __future__ import annotations

import contextlib

# anvil's well-known development mnemonic ("test test ... junk"): its first keys, public knowledge,
# for local chains only. The in-process EVM is seeded with the same keys so both paths agree.
DEV_PRIVATE_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


def in_process_web3():  # -> web3.Web3
    """A Web3 on py-evm through eth-tester, its accounts funded from the same dev keys as anvil."""
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import Web3
    from web3.providers.eth_tester import EthereumTesterProvider

    backend = PyEVMBackend(
        genesis_state=PyEVMBackend.generate_genesis_state(num_accounts=0) | _funded_genesis(DEV_PRIVATE_KEYS)
    )
    tester = EthereumTester(backend=backend)
    for key in DEV_PRIVATE_KEYS:
        with contextlib.suppress(ValueError):  # already known
            tester.add_account(key)
    return Web3(EthereumTesterProvider(tester))


def _funded_genesis(keys: tuple[str, ...]) -> dict:
    from eth_account import Account

    state = {}
    for key in keys:
        address = bytes.fromhex(Account.from_key(key).address[2:])
        state[address] = {"balance": 10_000 * 10**18, "nonce": 0, "code": b"", "storage": {}}
    return state
