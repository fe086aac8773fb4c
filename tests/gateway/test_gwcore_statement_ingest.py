"""The node's hourly signed statements reach the gateway's ingest: accepted when the registered
device key signed them, counted rejections otherwise (a household forging its own meter's figures,
a replay, another meter's statement, garbage), never an exception."""

from __future__ import annotations

import json
from pathlib import Path

import coincurve
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import ConfigError
from gateway.ingest.mqtt import IngestHandler
from gateway.ingest.verifier import ReadingVerifier
from gateway.ops.metrics import Metrics
from gateway.storage import ReadingStore
from gridpact.core import statement as stm

KEY = bytes(range(32))
DEVICE_KEY = bytes.fromhex("11" * 32)
HOUSEHOLD_KEY = bytes.fromhex("22" * 32)  # a key the household holds: not the node's
HOUR = 1_767_225_600
TOPIC = "gridpact/meter/node-01/statement"


def address(secret: bytes) -> str:
    return stm.address_of(coincurve.PrivateKey(secret).public_key.format(compressed=False)[1:])


def message(secret: bytes, end: int = HOUR, imp: int = 1000, exp: int = 200, dev: str = "node-01") -> bytes:
    raw = stm.encode(stm.Statement(dev, end, imp, exp, 360, bytes(32)))
    sig = coincurve.PrivateKey(secret).sign_recoverable(stm.digest(raw), hasher=None)
    sig = sig[:64] + bytes([27 + sig[64]])
    return json.dumps({"v": 1, "stmt": raw.hex(), "sig": sig.hex()}).encode()


def handler(signer: str | None, now: float = HOUR + 60.0) -> IngestHandler:
    store = ReadingStore(":memory:", "node-01")
    signers = {"node-01": signer} if signer else None
    return IngestHandler(
        "gridpact", store, ReadingVerifier({"node-01": KEY}, {}), Metrics(), lambda: now, signers
    )


def test_registered_signer_accepts_forward_statements_and_refuses_the_rest() -> None:
    h = handler(address(DEVICE_KEY))
    assert h.handle(TOPIC, message(DEVICE_KEY)) == "accepted"
    assert h.statement_end.values[("node-01",)] == HOUR
    # the household signs higher export with its own key: forged
    assert h.handle(TOPIC, message(HOUSEHOLD_KEY, HOUR + 3600, exp=9_999)) == "forged"
    # the same hour again (a replay), counters going backwards, an unaligned or future hour
    assert h.handle(TOPIC, message(DEVICE_KEY)) == "statement_replay"
    assert h.handle(TOPIC, message(DEVICE_KEY, HOUR + 1800)) == "statement_time"
    assert h.handle(TOPIC, message(DEVICE_KEY, HOUR + 7200)) == "statement_time"
    # another meter's statement on this meter's topic
    assert h.handle(TOPIC, message(DEVICE_KEY, HOUR, dev="node-02")) == "statement_device"
    assert h.accepted.values[("statement",)] == 1
    assert sum(v for k, v in h.rejected.values.items() if k[0] == "statement") == 5


def test_counters_never_go_backwards() -> None:
    """A replayed or rewritten later statement that lowers the import counter is refused."""
    h = handler(address(DEVICE_KEY), now=HOUR + 7200 + 60.0)
    assert h.handle(TOPIC, message(DEVICE_KEY, HOUR, imp=1000)) == "accepted"
    assert h.handle(TOPIC, message(DEVICE_KEY, HOUR + 3600, imp=900)) == "statement_counter"
    assert h.handle(TOPIC, message(DEVICE_KEY, HOUR + 7200, imp=1100)) == "accepted"


def test_without_a_registered_signer_a_valid_signature_is_required() -> None:
    h = handler(None)
    assert h.handle(TOPIC, message(DEVICE_KEY)) == "accepted"
    good = json.loads(message(DEVICE_KEY))
    good["sig"] = good["sig"][:-2] + "1d"  # v = 29
    assert h.handle(TOPIC, json.dumps(good).encode()) == "forged"
    assert h.handle(TOPIC, b"not json") == "statement_json"
    assert (
        h.handle("gridpact/meter/node-09/statement", message(DEVICE_KEY, dev="node-09")) == "unknown_device"
    )


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=400))
def test_any_bytes_end_counted(payload: bytes) -> None:
    h = handler(address(DEVICE_KEY))
    h.handle(TOPIC, payload)
    assert sum(h.accepted.values.values()) + sum(h.rejected.values.values()) == 1


def test_config_takes_the_signer_address_and_refuses_anything_else(tmp_path: Path) -> None:
    from gateway.config import load_config

    (tmp_path / "k").write_text(KEY.hex())
    base = '[gateway]\nid = "g"\nstate_dir = "s"\n[meter]\ndevice_id = "node-01"\nhmac_key_file = "k"\n'
    good = tmp_path / "good.toml"
    good.write_text(base + f'statement_signer = "{address(DEVICE_KEY)}"\n')
    assert load_config(good).meter.statement_signer == address(DEVICE_KEY)
    bad = tmp_path / "bad.toml"
    bad.write_text(base + 'statement_signer = "0x1234"\n')
    with pytest.raises(ConfigError, match="statement_signer"):
        load_config(bad)
