"""Deploy the UtilityToken and one Market per utility (with its loans, admission and demand response
contracts beside it), with the community's roles set.

`deploy_all` is what the CLI, the simulator and tests use; it works on anvil, on the in-process
EVM and on any standard JSON-RPC node, because it only sends locally signed transactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils.crypto import keccak

from contracts.build import load_artifact
from contracts.chain import Sender

DEFAULT_UTILITIES: tuple[str, ...] = ("electricity",)
COMMUNITY_ROLE = keccak(text="COMMUNITY_ROLE")


@dataclass(frozen=True)
class AdmissionRules:
    """Admission by vote: share of members whose yes votes are needed, voting and execution periods (s)."""

    quorum_bps: int = 5_000
    voting_period: int = 3 * 86_400
    execution_window: int = 7 * 86_400

    def __post_init__(self) -> None:
        if not 0 < self.quorum_bps <= 10_000:
            raise ValueError(f"quorum_bps must be 1..10000, not {self.quorum_bps}")
        for name in ("voting_period", "execution_window"):
            if not 0 < getattr(self, name) <= 90 * 86_400:
                raise ValueError(f"{name} must be 1 s..90 days, not {getattr(self, name)}")


def deploy_all(
    w3: Any,
    deployer_private_key: str | bytes,
    utilities: tuple[str, ...] | list[str] = DEFAULT_UTILITIES,
    community: str | None = None,
    token_name: str = "gridpact Community Token",
    token_symbol: str = "GPC",
    admission: AdmissionRules | None = None,
) -> dict[str, Any]:
    """Deploy token + markets; `community` (default: the deployer) gets admin, minter and community roles.

    Each market gets its MarketLoans contract deployed beside it and named in `setLoans` (the loan
    functions moved there for room; same names and arguments, another address and EIP-712 domain).
    Each market also gets an Admission contract (households admitted by a vote of the members).
    It can register households only once it holds the market's COMMUNITY_ROLE: granted here when
    `admission` rules are given and the deployer is the community, otherwise by the community when
    it opts in (`gridpact contracts admission grant`). Opt-in, because Admission's member list must be
    in step with the Market's registrations (docs/contracts.md, "Admission by vote").
    Each market also gets a DemandResponse contract (demand response events of its operator, paid on
    meter statements; docs/contracts.md, "Demand response"); it needs no role on the market.
    Returns {"chainId", "deployer", "community", "token", "markets": {utility: address},
    "loans": {utility: address}, "admission": {utility: address}, "demand": {utility: address}}.
    """
    rules = admission or AdmissionRules()
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
    admission_artifact = load_artifact("Admission")
    admissions: dict[str, str] = {}
    for name, address in markets.items():
        admissions[name] = sender.deploy(
            admission_artifact, address, rules.quorum_bps, rules.voting_period, rules.execution_window
        )
        if admission is not None and owner.lower() == sender.address.lower():
            market = w3.eth.contract(address=address, abi=market_artifact["abi"])
            sender.transact(market.functions.grantRole(COMMUNITY_ROLE, admissions[name]))
    demand_artifact = load_artifact("DemandResponse")
    demand = {name: sender.deploy(demand_artifact, address) for name, address in markets.items()}
    return {
        "chainId": int(w3.eth.chain_id),
        "deployer": sender.address,
        "community": owner,
        "token": token,
        "markets": markets,
        "loans": loans,
        "admission": admissions,
        "demand": demand,
    }


def contracts_at(w3: Any, addresses: dict[str, Any], utility: str = "electricity") -> tuple[Any, Any]:
    """(token, market) web3 contract objects for a `deploy_all` result."""
    token = w3.eth.contract(address=addresses["token"], abi=load_artifact("UtilityToken")["abi"])
    market = w3.eth.contract(address=addresses["markets"][utility], abi=load_artifact("Market")["abi"])
    return token, market


def loans_at(w3: Any, addresses: dict[str, Any], utility: str = "electricity") -> Any:
    """The MarketLoans web3 contract object beside a `deploy_all` market."""
    return w3.eth.contract(address=addresses["loans"][utility], abi=load_artifact("MarketLoans")["abi"])


def admission_at(w3: Any, addresses: dict[str, Any], utility: str = "electricity") -> Any:
    """The Admission web3 contract object beside a `deploy_all` market."""
    return w3.eth.contract(address=addresses["admission"][utility], abi=load_artifact("Admission")["abi"])


def demand_at(w3: Any, addresses: dict[str, Any], utility: str = "electricity") -> Any:
    """The DemandResponse web3 contract object beside a `deploy_all` market."""
    return w3.eth.contract(address=addresses["demand"][utility], abi=load_artifact("DemandResponse")["abi"])
