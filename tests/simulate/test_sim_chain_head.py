"""The simulator's chain middleware: the head block is read from the node once per block.

Every gateway's settle loop asks for the latest block each round; the middleware answers a repeat
from the last answer, and must ask the node again as soon as a block may have been mined: after a
transaction, or after the simulator moved the chain's time.
"""

from __future__ import annotations

import time
from collections import Counter

from hil.community.chain import CommunityChain
from hil.community.endpoints import connect_chain, rpc_session
from hil.community.simloop import SimLoop
from hil.community.virtualworld import chain_time_middleware
from hil.services import AnvilNode

T0 = int(time.time()) // 3600 * 3600 + 86400  # a fresh anvil starts at the host's time: ahead of it


def test_a_node_on_this_machine_is_asked_without_a_proxy_lookup() -> None:
    assert rpc_session("http://127.0.0.1:8545").trust_env is False
    assert rpc_session("http://localhost:8545").trust_env is False
    assert rpc_session("https://rpc.example.org").trust_env is True  # a remote node may need the proxy


def test_the_head_is_read_once_per_block_and_again_after_a_send_or_a_time_move(
    fresh_anvil: AnvilNode,
) -> None:
    url = fresh_anvil.info.url
    assert url is not None
    w3, _ = connect_chain(url)
    chain = CommunityChain(w3, ["h0"])
    loop = SimLoop(T0)
    calls: Counter[str] = Counter()
    try:
        chain.set_time(T0)
        w3.middleware_onion.add(chain_time_middleware(chain, loop, calls), "simulated-time")
        first = w3.eth.get_block("latest")
        again = w3.eth.get_block("latest")
        assert again == first
        assert calls["eth_getBlockByNumber"] == 1 and calls["cached head"] == 1

        chain.set_time(T0 + 600)  # the simulator mines a block at a later time
        moved = w3.eth.get_block("latest")
        assert moved["number"] == first["number"] + 1 and moved["timestamp"] == T0 + 600

        sender = w3.eth.accounts[0]
        # web3 reads the head itself while it fills the transaction in: that read must not be kept
        # anvil answers a send before its block is mined; with automine off here (switched behind the
        # middleware's back, as anvil's own miner works) the block comes only when this test mines it
        w3.provider.make_request("evm_setAutomine", [False])
        w3.eth.send_transaction({"from": sender, "to": w3.eth.accounts[1], "value": 1})
        asked = calls["eth_getBlockByNumber"]
        assert w3.eth.get_block("latest")["number"] == moved["number"]
        assert w3.eth.get_block("latest")["number"] == moved["number"]
        assert calls["eth_getBlockByNumber"] == asked + 2  # a head from before the send's block: not kept
        w3.provider.make_request("evm_mine", [])
        after_send = w3.eth.get_block("latest")
        assert after_send["number"] == moved["number"] + 1 and len(after_send["transactions"]) == 1
        cached = calls["cached head"]
        assert w3.eth.get_block("latest") == after_send and calls["cached head"] == cached + 1
    finally:
        loop.close()
