"""Fixtures for the contracts tests: one deployed community per chain (anvil and py-evm), reset per test.

Deploying and funding a community costs ~20 transactions, slow on py-evm; so each chain gets one
community per worker, and every test runs inside a chain snapshot that is reverted afterwards
(`evm_snapshot`/`evm_revert` on anvil, eth-tester's snapshots on py-evm).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from contracts.errors import decode_revert
from contracts.harness import Community, advance_time, chain_revert, chain_snapshot, household_key
from hil.services import DEV_PRIVATE_KEYS, AnvilNode, in_process_web3

DEPOSIT = 10**21  # 1,000 tokens each


@pytest.fixture(scope="session", params=["anvil", "py-evm"])
def base_community(request: pytest.FixtureRequest) -> Community:
    """Token + market deployed by dev key 0 with three funded households, on each chain."""
    if request.param == "anvil":
        from web3 import Web3

        node: AnvilNode = request.getfixturevalue("anvil")
        w3 = Web3(Web3.HTTPProvider(node.info.url, request_kwargs={"timeout": 30}))
        if not w3.is_connected():
            pytest.fail(f"anvil at {node.info.url} does not answer")
    else:
        w3 = in_process_web3()
    c = Community(w3, DEV_PRIVATE_KEYS[0])
    for i in range(3):
        c.add_household(household_key(i), deposit=DEPOSIT)
    return c


@pytest.fixture
def community(base_community: Community) -> Iterator[Community]:
    """The chain's community, with every change of the test rolled back afterwards."""
    c = base_community
    snapshot = chain_snapshot(c.w3)
    households = list(c.households)
    advance_time(c.w3, 1)  # re-anchor the node's clock to the latest block after an earlier revert
    yield c
    chain_revert(c.w3, snapshot)
    c.households[:] = households


@pytest.fixture
def reverts(community: Community) -> Callable[..., Any]:
    """`reverts(name, fn, *args)`: call fn, require a revert with the custom error `name`; returns its args."""

    def check(name: str, fn: Callable[..., Any], *args: Any) -> tuple:
        abi = community.market.abi + community.token.abi + community.loans.abi + community.admission.abi
        try:
            fn(*args)
        except Exception as exc:  # web3 and eth-tester raise different types: decode_revert handles both
            info = decode_revert(exc, abi)
            assert info.name == name, f"expected {name}, got {info} from {exc!r}"
            return info.args
        raise AssertionError(f"expected revert {name}, call succeeded")

    return check
