"""Peer protocol v1: golden vectors, and every way a message is dropped (counted, never raised)."""

from __future__ import annotations

import json
from pathlib import Path

from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.trading.inbox import Inbox
from gateway.trading.protocol import (
    MAX_MESSAGE_BYTES,
    Envelope,
    ProtocolError,
    canonical,
    decode,
    encode,
    recover_sender,
    sign_envelope,
)
from hil.services import DEV_PRIVATE_KEYS

GOLDEN = json.loads(Path(__file__).with_name("golden_peer_v1.json").read_text())
SELLER = Account.from_key(DEV_PRIVATE_KEYS[1])
BUYER = Account.from_key(DEV_PRIVATE_KEYS[2])
STRANGER = Account.from_key(DEV_PRIVATE_KEYS[6])
NOW = 1767222000
SESSION = "0x" + "ab" * 32


def envelope(kind: str = "counter", sender=SELLER, to: str | None = None, ts: int = NOW, mid: str = "0a" * 16,
             community: str = "oak-street", body: dict | None = None) -> Envelope:  # fmt: skip
    body = body or {"session": SESSION, "round": 2, "quantity_wh": 1000, "price": 150, "nonce": 2**63}
    return Envelope(kind, sender.address, BUYER.address if to is None and kind != "offer" else to, mid, ts,
                    community, body)  # fmt: skip


def wire(env: Envelope, signer=None) -> bytes:
    signed = sign_envelope(Envelope(env.type, (signer or SELLER).address, env.to, env.id, env.ts, env.community,
                                    env.body), signer or SELLER)  # fmt: skip
    if signer is not None and signer.address != env.sender:  # a forged claim: signature of another key
        return encode(
            Envelope(env.type, env.sender, env.to, env.id, env.ts, env.community, env.body, signed.sig)
        )
    return encode(signed)


def inbox(roster=(SELLER.address, BUYER.address)) -> Inbox:
    members = {a.lower() for a in roster}
    return Inbox(BUYER.address, "oak-street", lambda a: a.lower() in members)


def test_golden_vectors_encode_decode_and_verify() -> None:
    keys = {addr: Account.from_key(key) for addr, key in GOLDEN["keys"].items()}
    assert len(GOLDEN["vectors"]) == 6
    for vector in GOLDEN["vectors"]:
        e = vector["envelope"]
        env = Envelope(e["type"], e["from"], e["to"], e["id"], e["ts"], e["community"], e["body"])
        assert encode(sign_envelope(env, keys[e["from"]])).decode() == vector["wire"]
        decoded = decode(vector["wire"].encode())
        assert decoded.unsigned() == e
        assert recover_sender(decoded) == e["from"]


def test_canonical_json_is_sorted_and_compact() -> None:
    assert canonical({"b": 1, "a": [1, {"d": None, "c": "x"}]}) == b'{"a":[1,{"c":"x","d":null}],"b":1}'


def test_a_valid_message_passes_once() -> None:
    box = inbox()
    raw = wire(envelope())
    assert box.check(raw, NOW) is not None
    assert box.check(raw, NOW + 1) is None
    assert box.accepted == 1 and box.dropped == {"replay": 1}


def test_every_drop_reason_is_counted() -> None:
    box = inbox()
    good = json.loads(wire(envelope()))
    cases = {
        "too_large": b"{" + b" " * MAX_MESSAGE_BYTES + b"}",
        "malformed": b"\xff\xfe not json",
        "wrong_version": json.dumps(good | {"v": 2}).encode(),
        "wrong_community": wire(envelope(community="elm-street")),
        "not_for_us": wire(envelope(to=STRANGER.address)),
        "stale": wire(envelope(ts=NOW - 31)),
        "future": wire(envelope(ts=NOW + 6)),
        "unknown_sender": wire(envelope(sender=STRANGER), STRANGER),
        "bad_signature": wire(envelope(sender=SELLER), STRANGER),
        "own": wire(envelope(sender=BUYER, to=SELLER.address), BUYER),
    }
    for reason, raw in cases.items():
        assert box.check(raw, NOW) is None, reason
        assert box.dropped[reason] == 1, (reason, dict(box.dropped))
    tampered = dict(good)
    tampered["body"] = dict(good["body"], price=1)  # signed 150, says 1
    assert box.check(json.dumps(tampered).encode(), NOW) is None
    assert box.dropped["bad_signature"] == 2
    assert box.accepted == 0


def test_schema_rejects_floats_extra_members_and_wrong_types() -> None:
    good = json.loads(wire(envelope()))
    bad_bodies = [
        dict(good["body"], price=150.5),  # floats are not portable in canonical JSON
        dict(good["body"], extra=1),
        {k: v for k, v in good["body"].items() if k != "round"},
        dict(good["body"], price=-1),
        dict(good["body"], price=True),
        dict(good["body"], session="0x1234"),
        {k: v for k, v in good["body"].items() if k != "nonce"},  # v1 counters name the seller's slot
        dict(good["body"], nonce=2**64),  # the Market's nonces are uint64
        dict(good["body"], nonce=-1),
    ]
    for body in bad_bodies:
        try:
            decode(json.dumps(good | {"body": body}).encode())
        except ProtocolError as exc:
            assert exc.reason == "malformed"
        else:
            raise AssertionError(f"accepted {body}")
    for member, value in (
        ("type", "bribe"),
        ("from", "0x12"),
        ("id", "xyz"),
        ("ts", -5),
        ("sig", "0x00"),
        ("to", None),
    ):
        try:
            decode(json.dumps(good | {member: value}).encode())
        except ProtocolError as exc:
            assert exc.reason == "malformed", member
        else:
            raise AssertionError(f"accepted {member}={value!r}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_bytes_never_raise(raw: bytes) -> None:
    box = inbox()
    assert box.check(raw, NOW) is None
    assert sum(box.dropped.values()) == 1


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["v", "type", "from", "to", "id", "ts", "community", "body", "sig"]), JSON_VALUES)
def test_fuzz_mutated_members_are_dropped_not_raised(member: str, value: object) -> None:
    box = inbox()
    good = json.loads(wire(envelope()))
    mutated = good | {member: value}
    result = box.check(json.dumps(mutated).encode(), NOW)
    if json.dumps(mutated, sort_keys=True) == json.dumps(
        good, sort_keys=True
    ):  # True == 1 in Python, not in JSON
        assert result is not None
    else:
        assert result is None and sum(box.dropped.values()) == 1


def test_replay_cache_forgets_ids_once_they_are_stale() -> None:
    box = inbox()
    box.prune_every = 32
    for n in range(200):
        ts = NOW + n  # one message per second for 200 s
        assert box.check(wire(envelope(ts=ts, mid=f"{n:032x}")), ts) is not None
    assert box.accepted == 200
    assert len(box._seen) <= 31 + 32  # the last 30 s of ids, plus at most one pruning interval
    old = wire(envelope(ts=NOW, mid=f"{0:032x}"))
    assert box.check(old, NOW + 200) is None and box.dropped["stale"] == 1  # and the age check still holds


def test_a_restarted_gateway_drops_what_was_signed_before_it_started() -> None:
    """Its replay cache is new: a message seen by the previous run, replayed right after a restart,
    would pass the age check; everything signed before the start is refused instead."""
    box = inbox()
    box.not_before = NOW + 1  # started during second NOW
    assert box.check(wire(envelope(ts=NOW, mid=f"{1:032x}")), NOW + 2) is None
    assert box.dropped["before_start"] == 1
    assert box.check(wire(envelope(ts=NOW + 1, mid=f"{2:032x}")), NOW + 2) is not None
