"""The transaction sender on a real EVM (anvil and py-evm): journal-before-send, idempotency, reverts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from eth_account import Account
from trade_helpers import deploy
from web3 import Web3

from gateway.chain.errors import ChainError, ChainUnavailable, RevertError
from gateway.chain.journal import TX_MINED, Journal
from gateway.chain.sender import TxSender
from hil.services import DEV_PRIVATE_KEYS, AnvilNode, free_port

KEY = bytes.fromhex("11" * 32)


def make_sender(w3: Web3, artifact: dict, tmp_path: Path, key_index: int = 2) -> TxSender:
    return TxSender(w3, Account.from_key(DEV_PRIVATE_KEYS[key_index]), Journal(tmp_path / "journal.db"),
                    artifact["abi"])  # fmt: skip


def test_send_is_idempotent_by_key(web3: Web3, probe_artifact: dict, tmp_path: Path) -> None:
    probe = deploy(web3, probe_artifact)
    sender = make_sender(web3, probe_artifact, tmp_path)
    first = sender.send("act:1", probe.functions.act(KEY, 7))
    rcpt = sender.wait("act:1")
    assert rcpt.status == 1 and rcpt.tx_hash == first.hash
    again = sender.send("act:1", probe.functions.act(KEY, 7))
    assert again.hash == first.hash
    assert probe.functions.count().call() == 1
    assert sender.journal.tx("act:1").state == TX_MINED  # type: ignore[union-attr]
    sender.broadcast(sender.journal.tx("act:1"))  # type: ignore[arg-type]  # mined: "nonce too low" = ok
    assert probe.functions.count().call() == 1


def test_reverts_are_decoded_by_the_abi(web3: Web3, probe_artifact: dict, tmp_path: Path) -> None:
    probe = deploy(web3, probe_artifact)
    sender = make_sender(web3, probe_artifact, tmp_path, key_index=3)
    with pytest.raises(RevertError) as info:
        sender.send("act:big", probe.functions.act(KEY, 200))
    assert info.value.name == "TooBig"
    assert info.value.values == {"value": 200, "limit": 100}
    assert "TooBig(value=200, limit=100)" in str(info.value)
    assert sender.journal.tx("act:big") is None  # nothing journaled for a tx that would revert
    with pytest.raises(RevertError) as info2:
        sender.call(probe.functions.fail("nope"))
    assert info2.value.name == "Error" and info2.value.values == {"reason": "nope"}


def test_crash_after_journal_before_broadcast_recovers(
    web3: Web3, probe_artifact: dict, tmp_path: Path
) -> None:
    probe = deploy(web3, probe_artifact)
    sender = make_sender(web3, probe_artifact, tmp_path, key_index=5)
    # the process journals a signed tx and dies before broadcasting it
    nonce = sender.next_nonce()
    raw, tx_hash = sender._sign(probe.functions.act(KEY, 9), nonce)
    sender.journal.put_tx("act:crash", nonce, raw, tx_hash)
    assert sender.next_nonce() == nonce + 1  # the journaled nonce is reserved
    restarted = make_sender(web3, probe_artifact, tmp_path, key_index=5)
    assert restarted.recover() == ["act:crash"]
    assert restarted.wait("act:crash").tx_hash == tx_hash
    assert probe.functions.done(KEY).call() == 9
    assert restarted.recover() == []  # nothing left to do, nothing sent twice
    assert probe.functions.count().call() == 1


def test_node_down_is_chain_unavailable(probe_artifact: dict, tmp_path: Path) -> None:
    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
    sender = make_sender(w3, probe_artifact, tmp_path)
    with pytest.raises(ChainUnavailable):
        sender.next_nonce()


def test_a_receipt_wait_gives_up_at_once_when_the_gateway_stops(
    fresh_anvil: AnvilNode, probe_artifact: dict, tmp_path: Path
) -> None:
    """SIGTERM must not wait out receipt_timeout_s: the pending tx stays journaled for the next start."""
    w3 = Web3(Web3.HTTPProvider(fresh_anvil.info.url))
    probe = deploy(w3, probe_artifact)
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]  # nothing mines now
    sender = make_sender(w3, probe_artifact, tmp_path, key_index=6)
    sender.send("act:pending", probe.functions.act(KEY, 3))
    threading.Timer(0.5, sender.stopping.set).start()
    started = time.monotonic()
    with pytest.raises(ChainError, match="stopping"):
        sender.wait("act:pending", timeout=60)
    assert time.monotonic() - started < 10
    assert sender.journal.tx("act:pending") is not None  # recovery at the next start finds it
