"""Deploy the UtilityToken and one Market per utility, with the community's roles set.

`deploy_all` is what the CLI, the simulator and tests use; it works on anvil, on the in-process
EVM and on any standard JSON-RPC node, because it only sends locally signed transactions.
"""

from __future__ import annotations

from typing import Any

from contracts.build import load_artifact
from contracts.chain import Sender

DEFAULT_UTILITIES: tuple[str, ...] = ("electricity",)


def deploy_all(
    w3: Any,
    deployer_private_key: str | bytes,
    utilities: tuple[str, ...] | list[str] = DEFAULT_UTILITIES,
    community: str | None = None,
    token_name: str = "gridpact Community Token",
    token_symbol: str = "GPC",
) -> dict[str, Any]:
    """Deploy token + markets; `community` (default: the deployer) gets admin, minter and community roles.

    Each market gets its MarketLoans contract deployed beside it and named in `setLoans` (the loan
    functions moved there for room; same names and arguments, another address and EIP-712 domain).
    Returns {"chainId", "deployer", "community", "token", "markets": {utility: address},
    "loans": {utility: address}}.
    """
    if not utilities:
        raise ValueError("at least one utility is needed")
    if len(set(utilities)) != len(utilities):
        raise ValueError(f"duplicate utility in {list(utilities)}")
    sender = Sender(w3, deployer_private_key)
    owner = community or sender.address
    token = sender.deploy(load_artifact("UtilityToken"), token_name, token_symbol, owner)
    market_artifact = load_artifact("Market")
    markets = {name: sender.deploy(market_artifact, token, name, owner) for name in utilities}
    loans_artifact = load_artifact("MarketLoans")
    loans: dict[str, str] = {}
    for name, address in markets.items():
        loans[name] = sender.deploy(loans_artifact, address)
        market = w3.eth.contract(address=address, abi=market_artifact["abi"])
        sender.transact(market.functions.setLoans(loans[name]))
    return {
        "chainId": int(w3.eth.chain_id),
        "deployer": sender.address,
        "community": owner,
        "token": token,
        "markets": markets,
        "loans": loans,
    }


def contracts_at(w3: Any, addresses: dict[str, Any], utility: str = "electricity") -> tuple[Any, Any]:
    """(token, market) web3 contract objects for a `deploy_all` result."""
    token = w3.eth.contract(address=addresses["token"], abi=load_artifact("UtilityToken")["abi"])
    market = w3.eth.contract(address=addresses["markets"][utility], abi=load_artifact("Market")["abi"])
    return token, market


def loans_at(w3: Any, addresses: dict[str, Any], utility: str = "electricity") -> Any:
    """The MarketLoans web3 contract object beside a `deploy_all` market."""
    return w3.eth.contract(address=addresses["loans"][utility], abi=load_artifact("MarketLoans")["abi"])
