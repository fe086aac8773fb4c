"""Fixtures that start real services for the whole suite.

Every broker and chain here is the real program (Mosquitto, amqtt, anvil, py-evm). A service
that cannot start fails the test loudly with the reason; nothing is skipped for its absence.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from hil.services import (
    AnvilNode,
    BrokerInfo,
    ChainInfo,
    EmbeddedBroker,
    MosquittoBroker,
    in_process_web3,
)


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """A real Mosquitto for the session (restartable: tests may take it down and bring it back)."""
    broker = MosquittoBroker()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def amqtt_broker() -> Iterator[EmbeddedBroker]:
    """The embedded default broker, amqtt, in its own thread: one per test.

    amqtt keeps every persistent session, queued message and retained message for as long as it
    runs, and walks them all on each connect; one broker shared by a worker's tests grew slow
    enough that a later test's message did not come back in time.
    """
    broker = EmbeddedBroker()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker(request: pytest.FixtureRequest) -> BrokerInfo:
    """Each integration test that takes `broker` runs against both brokers."""
    fixture = "mosquitto" if request.param == "mosquitto" else "amqtt_broker"
    return request.getfixturevalue(fixture).info


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilNode]:
    """A real anvil JSON-RPC node for the session."""
    node = AnvilNode()
    node.start()
    yield node
    node.close()


@pytest.fixture
def fresh_anvil() -> Iterator[AnvilNode]:
    """An anvil of the test's own, for tests that stop and restart the node."""
    node = AnvilNode()
    node.start()
    yield node
    node.close()


@pytest.fixture(params=["anvil", "py-evm"])
def web3(request: pytest.FixtureRequest):
    """A Web3 connected to anvil or to the in-process EVM; each test taking it runs on both."""
    from web3 import Web3

    if request.param == "anvil":
        node: AnvilNode = request.getfixturevalue("anvil")
        w3 = Web3(Web3.HTTPProvider(node.info.url, request_kwargs={"timeout": 30}))
        if not w3.is_connected():
            pytest.fail(f"anvil at {node.info.url} does not answer")
        return w3
    return in_process_web3()


@pytest.fixture
def chain_info(anvil: AnvilNode) -> ChainInfo:
    return anvil.info


CHROMIUM = "/usr/bin/chromium"  # Debian's; playwright's own browser download is not available here


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Headless Chromium for the web-page tests; a missing browser fails the test, never skips it."""
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield b
        finally:
            b.close()
