"""The contract side of the meter statement: the EVM (anvil and py-evm) recovers the same device
address from the firmware's signatures as the gateway does, and refuses forged or malleated ones."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.build import load_artifact
from contracts.chain import Sender
from contracts.errors import decode_revert
from firmware.host.golden import device_namespace
from firmware.host.statement_vectors import STATEMENT_VECTORS_PATH
from gridpact.core import statement as st
from hil.services import DEV_PRIVATE_KEYS

VECTORS = json.loads(STATEMENT_VECTORS_PATH.read_text())


@pytest.fixture
def probe(web3: Any) -> Any:
    artifact = load_artifact("MeterStatementProbe")
    address = Sender(web3, DEV_PRIVATE_KEYS[0]).deploy(artifact)
    return web3.eth.contract(address=address, abi=artifact["abi"])


def _args(raw: bytes) -> tuple[Any, ...]:
    s = st.decode(raw)
    return (
        s.dev.encode().ljust(32, b"\0"),
        s.window_end,
        s.import_wh,
        s.export_wh,
        s.readings,
        s.readings_digest,
    )


def _address(secret_hex: str) -> str:
    ns = device_namespace()
    return ns.load("keccak").address(ns.load("ecdsa").public_key(bytes.fromhex(secret_hex)))


def test_contract_recovers_the_meter_from_every_vector(probe: Any) -> None:
    for v in VECTORS["statements"]:
        raw = bytes.fromhex(v["hex"])
        sig = bytes.fromhex(v["r"] + v["s"]) + bytes([v["v"]])
        assert probe.functions.digest(_args(raw)).call() == bytes.fromhex(v["digest"])
        assert probe.functions.signer(_args(raw), sig).call() == _address(v["secret"])


def test_contract_recovers_a_signature_made_by_the_firmware(probe: Any) -> None:
    ns = device_namespace()
    ecdsa, stmt = ns.load("ecdsa"), ns.load("statement")
    secret = bytes.fromhex(VECTORS["keys"][11]["secret"])
    raw = stmt.encode("node-42", 1767232800, 987654, 321, 360, bytes(range(32)))
    sig = ecdsa.signature_bytes(ecdsa.sign(stmt.digest(raw), secret))
    assert probe.functions.signer(_args(raw), sig).call() == VECTORS["keys"][11]["address"]


def test_contract_gives_a_forged_figure_another_signer_and_refuses_high_s(probe: Any) -> None:
    v = VECTORS["statements"][1]
    raw = bytes.fromhex(v["hex"])
    sig = bytes.fromhex(v["r"] + v["s"]) + bytes([v["v"]])
    forged = st.encode(st.decode(raw)._replace(export_wh=v["export_wh"] + 1))
    assert probe.functions.signer(_args(forged), sig).call() != _address(v["secret"])
    high = sig[:32] + (st.SECP256K1_N - int(v["s"], 16)).to_bytes(32, "big") + bytes([55 - v["v"]])
    try:
        probe.functions.signer(_args(raw), high).call()
    except Exception as exc:  # web3 and eth-tester raise different types: decode_revert handles both
        info = decode_revert(exc, probe.abi)
        assert (info.name, info.args) == ("ECDSAInvalidSignatureS", (high[32:64],)), info
    else:
        raise AssertionError("a high-s signature was accepted")
