"""Reading wire format v1: the shared golden vectors, the signer, and hypothesis fuzzing of the parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.verifier import ReadingVerifier
from gridpact.core.wire import (
    MAX_PAYLOAD,
    Rejected,
    encode_health,
    encode_reading,
    encode_status,
    parse_body,
    split_tag,
    verify,
)

GOLDEN = json.loads((Path(__file__).resolve().parents[2] / "docs/wire/golden/readings-v1.json").read_text())
KEY = bytes.fromhex(GOLDEN["key_hex"])
VECTORS = GOLDEN["vectors"]


def _payload(vector: dict) -> bytes:
    try:
        return vector["payload"].encode("utf-8")
    except UnicodeEncodeError:
        return vector["payload"].encode("latin-1")


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_golden_vector_verdict(vector: dict) -> None:
    payload = _payload(vector)
    if vector["valid"]:
        reading = verify(KEY, payload)
        assert reading.raw == payload
        if "values" in vector:
            assert reading.values == vector["values"]
    else:
        with pytest.raises(Rejected) as info:
            verify(KEY, payload)
        assert info.value.reason == vector["reason"]


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["valid"]], ids=lambda v: v["name"])
def test_signer_reproduces_golden_bytes(vector: dict) -> None:
    r = verify(KEY, _payload(vector))
    assert encode_reading(KEY, r.dev, r.seq, r.ts, r.q, r.model, r.values) == _payload(vector)


def test_counters_in_wh() -> None:
    reading = verify(KEY, _payload(VECTORS[0]))
    assert (reading.import_wh, reading.export_wh) == (1_234_500, 56_250)
    assert verify(KEY, _payload(VECTORS[1])).import_wh is None


def test_wrong_key_is_forged() -> None:
    with pytest.raises(Rejected, match="forged"):
        verify(bytes(32), _payload(VECTORS[0]))


def test_split_tag_rejects_huge_payload_before_hashing() -> None:
    with pytest.raises(Rejected, match="exceeds"):
        split_tag(b"{" + b" " * MAX_PAYLOAD + b"}")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"v":2,"dev":"node-01","seq":1,"ts":1,"q":0,"m":"sdm120","r":{}}', "version"),
        (b'{"dev":"node-01","v":1,"seq":1,"ts":1,"q":0,"m":"sdm120","r":{}}', "order"),
        (b'{"v":1,"dev":"Node","seq":1,"ts":1,"q":0,"m":"sdm120","r":{}}', "dev"),
        (b'{"v":1,"dev":"node-01","seq":"1","ts":1,"q":0,"m":"sdm120","r":{}}', "seq"),
        (b'{"v":1,"dev":"node-01","seq":true,"ts":1,"q":0,"m":"sdm120","r":{}}', "seq"),
        (b'{"v":1,"dev":"node-01","seq":-1,"ts":1,"q":0,"m":"sdm120","r":{}}', "seq"),
        (b'{"v":1,"dev":"node-01","seq":1,"ts":1.5,"q":0,"m":"sdm120","r":{}}', "ts"),
        (b'{"v":1,"dev":"node-01","seq":1,"ts":1,"q":0,"m":"sdm999","r":{}}', "model"),
        (b'{"v":1,"dev":"node-01","seq":1,"ts":1,"q":0,"m":"sdm120","r":[]}', "'r'"),
        (b'{"v":1,"dev":"node-01","seq":1,"ts":1,"q":0,"m":"sdm120","r":{"p1_W":NaN}}', "non-finite"),
        (b'{"v":1,"dev":"node-01","seq":1,"ts":1,"q":0,"m":"sdm120","r":{"p1_W":"5"}}', "finite number"),
        (b'{"v":1,"dev":"node-01","seq":1,"ts":1,"q":0,"m":"sdm120","r":{"e_imp_kWh":-1.0}}', "negative"),
        (b'{"a":[1,2,3]}', "members"),
    ],
)
def test_signed_but_wrong_types_are_malformed(body: bytes, why: str) -> None:
    """A correct tag does not make a payload acceptable: every member is type-checked."""
    payload = _sign_raw(body)
    with pytest.raises(Rejected, match=why) as info:
        verify(KEY, payload)
    assert info.value.reason == "malformed"


def _sign_raw(body: bytes) -> bytes:
    """Sign arbitrary JSON bytes the way the spec says (body = bytes before the mac member + '}')."""
    import hashlib
    import hmac

    tag = hmac.new(KEY, body, hashlib.sha256).hexdigest()
    return body[:-1] + b',"mac":"' + tag.encode() + b'"}'


values_st = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,10}_(V|A|W|kWh)", fullmatch=True),
    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
    max_size=16,
)


@settings(max_examples=200, deadline=None)
@given(
    dev=st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True),
    seq=st.integers(0, 2**53),
    ts=st.integers(0, 2**40),
    q=st.integers(0, 0x1FF),
    model=st.sampled_from(["sdm120", "sdm630"]),
    values=values_st,
)
def test_signed_readings_round_trip(dev: str, seq: int, ts: int, q: int, model: str, values: dict) -> None:
    reading = verify(KEY, encode_reading(KEY, dev, seq, ts, q, model, values))
    assert (reading.dev, reading.seq, reading.ts, reading.q, reading.model) == (dev, seq, ts, q, model)
    assert reading.values == values


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_ever_rejected(payload: bytes) -> None:
    with pytest.raises(Rejected) as info:
        verify(KEY, payload)
    assert info.value.reason in ("malformed", "forged")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["v", "dev", "seq", "ts", "q", "m", "r", "x"]), json_values, max_size=8)
)
def test_correctly_signed_junk_is_malformed_not_a_crash(obj: dict) -> None:
    """Even a holder of the key cannot crash the parser with wrong types."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    if not body.endswith(b"}") or body == b"{}":
        body = b'{"x":1}'
    try:
        reading = parse_body(_sign_raw(body))
    except Rejected as exc:
        assert exc.reason == "malformed"
    else:
        pytest.fail(f"accepted junk {reading}")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=40))
def test_sequence_rule(seqs: list[int]) -> None:
    """Accepted iff above the last accepted; equal is `duplicate`, below is `replayed`."""
    verifier = ReadingVerifier({"node-01": KEY}, {})
    last: int | None = None
    for seq in seqs:
        payload = encode_reading(KEY, "node-01", seq, 1000 + seq, 0, "sdm120", {})
        try:
            verifier.accept(verifier.check("node-01", payload))
            outcome = "accepted"
        except Rejected as exc:
            outcome = exc.reason
        expected = "accepted" if last is None or seq > last else ("duplicate" if seq == last else "replayed")
        assert outcome == expected
        if outcome == "accepted":
            last = seq


def test_verifier_unknown_device_and_topic_mismatch() -> None:
    verifier = ReadingVerifier({"node-01": KEY, "node-02": KEY}, {"node-01": 5})
    good = encode_reading(KEY, "node-01", 6, 1, 0, "sdm120", {})
    with pytest.raises(Rejected, match="unknown_device"):
        verifier.check("node-99", good)
    with pytest.raises(Rejected, match="published on the topic"):
        verifier.check("node-02", good)
    with pytest.raises(Rejected, match="duplicate"):
        verifier.check("node-01", encode_reading(KEY, "node-01", 5, 1, 0, "sdm120", {}))
    assert verifier.check("node-01", good).seq == 6


number_text = st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,6})?([eE][-+]?[0-9]{1,3})?", fullmatch=True)


@settings(max_examples=400, deadline=None)
@given(
    dev=st.sampled_from(["node-01", "a", "x" * 32, "x" * 33, "Node"]),
    seq=st.integers(0, 2**60),
    ts=st.integers(0, 2**45),
    q=st.integers(0, 2**17),
    model=st.sampled_from(["sdm120", "sdm630", "sdm72"]),
    pairs=st.lists(
        st.tuples(
            st.sampled_from(["p1_W", "e_imp_kWh", "e_exp_kWh", "pf1", "bad key", "k" * 25]), number_text
        ),
        max_size=6,
    ),
)
def test_fast_path_agrees_with_the_general_parser(
    dev: str, seq: int, ts: int, q: int, model: str, pairs: list[tuple[str, str]]
) -> None:
    """The canonical fast path accepts a subset of what `parse_body` accepts, with the same result."""
    from gridpact.core.wire import parse_canonical

    r = ",".join(f'"{k}":{v}' for k, v in pairs)
    body = f'{{"v":1,"dev":"{dev}","seq":{seq},"ts":{ts},"q":{q},"m":"{model}","r":{{{r}}}}}'.encode()
    raw = _sign_raw(body)
    fast = parse_canonical(body, raw)
    try:
        slow = parse_body(raw)
    except Rejected:
        slow = None
    assert fast is None or fast == slow
    if slow is not None and all(k.isidentifier() for k, _ in pairs):
        assert fast == slow  # the firmware's compact form always takes the fast path


FIRMWARE = Path(__file__).resolve().parents[2] / "docs/wire/golden/readings-v1-firmware.json"


def test_firmware_vectors_are_accepted_on_the_fast_path() -> None:
    """The firmware's own golden readings (its float formatting included) pass, via the fast path."""
    from gridpact.core.wire import TagChecker, parse_canonical

    vectors = json.loads(FIRMWARE.read_text())
    assert vectors["readings"]
    for vec in vectors["readings"]:
        payload = vec["payload"].encode()
        reading = verify(KEY, payload)
        assert (reading.dev, reading.seq, reading.ts, reading.q) == (
            vec["dev"],
            vec["seq"],
            vec["ts"],
            vec["q"],
        )
        assert parse_canonical(TagChecker(KEY).check(payload), payload) == reading


def test_firmware_status_and_health_are_accepted_and_match_the_host_encoder(tmp_path: Path) -> None:
    import time

    from gateway.ingest.mqtt import IngestHandler
    from gateway.ops.metrics import Metrics
    from gateway.storage import ReadingStore

    handler = IngestHandler(
        "gridpact",
        ReadingStore(tmp_path / "s.db", "node-01"),
        ReadingVerifier({"node-01": KEY}, {}),
        Metrics(),
        time.time,
    )
    vectors = json.loads(FIRMWARE.read_text())
    for vec in vectors["health"]:
        assert encode_health(KEY, *vec["args"]).decode() == vec["payload"]
        assert handler.handle("gridpact/meter/node-01/health", vec["payload"].encode()) == "accepted"
    for vec in vectors["status"]:  # online, its last will, the next connection's online
        assert encode_status(KEY, *vec["args"]).decode() == vec["payload"]
        assert handler.handle("gridpact/meter/node-01/status", vec["payload"].encode()) == "accepted"
    assert handler.store.status("node-01") == ("online", pytest.approx(time.time(), abs=60))
    handler.store.close()


CONTROL = json.loads((Path(__file__).resolve().parents[2] / "docs/wire/golden/control-v1.json").read_text())


def test_control_golden_sequence(tmp_path: Path) -> None:
    """docs/wire/golden/control-v1.json: a node's status and health messages, with attacks between
    them, in order, and what a gateway must answer to each."""
    import time

    from gateway.ingest.mqtt import IngestHandler
    from gateway.ops.metrics import Metrics
    from gateway.storage import ReadingStore

    key = bytes.fromhex(CONTROL["key_hex"])
    handler = IngestHandler(
        "gridpact",
        ReadingStore(tmp_path / "c.db", "node-01"),
        ReadingVerifier({"node-01": key}, {}),
        Metrics(),
        time.time,
    )
    for step in CONTROL["sequence"]:
        got = handler.handle(f"gridpact/meter/node-01/{step['kind']}", step["payload"].encode())
        assert got == step["outcome"], step["name"]
        assert handler.online.values.get(("node-01",)) == step["online_after"], step["name"]
    handler.store.close()
