"""IngestHandler in process: every message ends counted, whatever its topic or bytes; and the
small CLI tools around the store (status without a service, keygen)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.mqtt import IngestHandler, classify
from gateway.ingest.verifier import ReadingVerifier
from gateway.ops.metrics import Metrics
from gateway.storage import ReadingStore
from gridpact.core.wire import Rejected, encode_health, encode_reading, encode_status

KEY = bytes(range(32))
REPO = Path(__file__).resolve().parents[2]
GRIDPACT = REPO / ".venv" / "bin" / "gridpact"


def make_handler(tmp_path: Path | None = None) -> IngestHandler:
    store = ReadingStore(tmp_path / "h.sqlite3" if tmp_path else ":memory:", "node-01")
    return IngestHandler("gridpact", store, ReadingVerifier({"node-01": KEY}, {}), Metrics(), time.time)


def total(handler: IngestHandler) -> float:
    return sum(handler.accepted.values.values()) + sum(handler.rejected.values.values())


topics = st.one_of(
    st.sampled_from(
        [
            "gridpact/meter/node-01/reading",
            "gridpact/meter/node-01/status",
            "gridpact/meter/node-01/health",
            "gridpact/meter/node-02/status",
            "gridpact/meter/node-01/other",
            "gridpact/meter/node-01",
            "other/meter/node-01/reading",
        ]
    ),
    st.text(max_size=40),
)
payloads = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [b"online", b"offline", b"", b"{}", b"[]", b'{"mem":1e999}', b'{"boot":"x"}', b'{"fw":5}']
    ),
    st.builds(
        lambda boot, n, st_: encode_status(KEY, "node-01", boot, n, st_),
        st.integers(0, 3),
        st.integers(0, 3),
        st.sampled_from(["online", "offline"]),
    ),
    st.builds(
        lambda boot, n: encode_health(KEY, "node-01", boot, n, "power", 5, 0, 0, 0, 1000, "0.1.0"),
        st.integers(0, 3),
        st.integers(0, 3),
    ),
    st.builds(
        lambda seq: encode_reading(KEY, "node-01", seq, 1_767_225_600, 0, "sdm120", {"p1_W": 1.0}),
        st.integers(0, 50),
    ),
)


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(st.tuples(topics, payloads), max_size=20))
def test_every_message_is_counted_once_and_nothing_raises(messages: list[tuple[str, bytes]]) -> None:
    handler = make_handler()
    for i, (topic, payload) in enumerate(messages):
        outcome = handler.handle(topic, payload)
        assert outcome == "accepted" or outcome in {
            "forged", "replayed", "duplicate", "unknown_device", "malformed", "wrong_topic", "unsigned",
        }  # fmt: skip
        assert total(handler) == i + 1
    handler.flush()
    handler.store.close()


def online(boot: int, n: int, key: bytes = KEY) -> bytes:
    return encode_status(key, "node-01", boot, n, "online")


def offline(boot: int, n: int, key: bytes = KEY) -> bytes:
    return encode_status(key, "node-01", boot, n, "offline")


def health(boot: int, n: int, reset: str = "power", key: bytes = KEY) -> bytes:
    return encode_health(key, "node-01", boot, n, reset, 99, 2, 1, 0, 41000, "1.2")


STATUS = "gridpact/meter/node-01/status"
HEALTH = "gridpact/meter/node-01/health"


def test_status_and_health_only_for_the_configured_meter(tmp_path: Path) -> None:
    handler = make_handler(tmp_path)
    assert handler.handle("gridpact/meter/node-02/status", online(1, 0)) == "unknown_device"
    assert handler.handle(STATUS, online(1, 0)) == "accepted"
    assert handler.handle(HEALTH, health(1, 1, "wdt")) == "accepted"
    assert handler.handle(HEALTH, health(2, 1, "power")) == "accepted"
    info = [k for k in handler.health_info.values if k[0] == "node-01"]
    assert info == [("node-01", "power", "1.2")]  # one series per device, whatever it sends
    assert handler.store.status("node-01") is not None
    handler.store.close()


def online_gauge(handler: IngestHandler) -> float | None:
    return handler.online.values.get(("node-01",))


def test_attack_forged_and_unsigned_status_are_rejected_counted_and_ignored(tmp_path: Path) -> None:
    """Anyone who may publish on the household broker tries to mark the node offline (or online)."""
    handler = make_handler(tmp_path)
    assert handler.handle(STATUS, online(4, 0)) == "accepted"
    assert handler.handle(STATUS, b"offline") == "unsigned"  # the old plain form, e.g. a stranger's will
    assert handler.handle(STATUS, offline(4, 0, key=b"not the node's key")) == "forged"
    tampered = online(4, 7).replace(b'"st":"online"', b'"st":"offline"')
    assert handler.handle(STATUS, tampered) == "forged"
    assert handler.handle(STATUS, offline(4, 0)[:-3] + b'"}') == "malformed"
    assert online_gauge(handler) == 1 and handler.store.status("node-01")[0] == "online"  # type: ignore[index]
    rejected = handler.rejected.values
    assert rejected[("status", "unsigned")] == 1 and rejected[("status", "forged")] == 2
    handler.store.close()


def test_attack_replayed_status_and_health_are_rejected_and_survive_a_restart(tmp_path: Path) -> None:
    handler = make_handler(tmp_path)
    assert handler.handle(STATUS, online(4, 0)) == "accepted"
    assert handler.handle(HEALTH, health(4, 1)) == "accepted"
    assert handler.handle(STATUS, offline(4, 0)) == "accepted"  # session (4, 0) ended: its last will
    assert online_gauge(handler) == 0
    assert handler.handle(STATUS, online(4, 0)) == "replayed"  # that session's online, sent again
    assert online_gauge(handler) == 0
    assert handler.handle(STATUS, online(4, 2)) == "accepted"  # the node's next connection
    assert handler.handle(STATUS, online(4, 2)) == "accepted"  # its retained copy, once more: harmless
    assert handler.handle(STATUS, offline(4, 0)) == "replayed"  # an old session's will cannot end this one
    assert handler.handle(STATUS, offline(3, 9)) == "replayed"  # nor one from an earlier boot
    assert online_gauge(handler) == 1
    assert handler.handle(HEALTH, health(4, 3, "fine")) == "accepted"
    assert handler.handle(HEALTH, health(4, 1, "stale")) == "replayed"
    assert handler.health_info.values == {("node-01", "fine", "1.2"): 1}
    handler.store.close()

    again = make_handler(tmp_path)  # a restarted gateway remembers the marks
    assert again.handle(HEALTH, health(4, 1)) == "replayed"
    assert again.handle(STATUS, online(4, 0)) == "replayed"
    assert again.handle(STATUS, online(4, 2)) == "accepted"  # the retained status on resubscribing
    assert again.handle(STATUS, offline(4, 2)) == "accepted"  # this session's will: the node is gone
    assert online_gauge(again) == 0
    assert again.handle(STATUS, online(5, 0)) == "accepted"  # it rebooted
    assert again.rejected.values[("health", "replayed")] == 1
    assert again.rejected.values[("status", "replayed")] == 1
    again.store.close()


def test_control_message_of_another_device_on_our_topic_is_malformed(tmp_path: Path) -> None:
    handler = make_handler(tmp_path)
    other = encode_status(KEY, "node-02", 1, 0, "online")  # same key, another node's message
    assert handler.handle(STATUS, other) == "malformed"
    assert handler.handle(STATUS, health(1, 0)) == "malformed"  # a health report is not a status
    assert handler.handle("gridpact/meter/node-01/reading", online(1, 0)) == "malformed"
    handler.store.close()


def test_classify() -> None:
    assert classify("gp/x/meter/node-1/health", "gp/x") == ("health", "node-1")
    for bad in ("gp/meter/node-1/health", "gp/x/meter/Node/reading", "gp/x/meter/a/b/reading"):
        try:
            classify(bad, "gp/x")
        except Rejected as exc:
            assert exc.reason == "wrong_topic"
        else:
            raise AssertionError(bad)


def test_status_without_a_running_service_exits_3(tmp_path: Path) -> None:
    from hil.services import free_port

    (tmp_path / "k").write_text("00" * 32)
    path = tmp_path / "gw.toml"
    path.write_text(
        f'[gateway]\nid = "g1"\nstate_dir = "s"\n[meter]\ndevice_id = "node-01"\nhmac_key_file = "k"\n'
        f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    store = ReadingStore(tmp_path / "s" / "readings.sqlite3", "node-01")
    store.add(ReadingVerifier({"node-01": KEY}, {}).check(
        "node-01", encode_reading(KEY, "node-01", 7, 1_767_225_600, 0, "sdm120", {"e_imp_kWh": 1.0})
    ))  # fmt: skip
    store.close()
    proc = subprocess.run(
        [GRIDPACT, "gateway", "status", "--config", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 3
    assert "readings=1" in proc.stdout and "last_seq=7" in proc.stdout
    assert "service=unreachable" in proc.stdout


def test_keygen_writes_a_private_hex_key(tmp_path: Path) -> None:
    out = tmp_path / "meter.key"
    proc = subprocess.run([GRIDPACT, "gateway", "keygen", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(bytes.fromhex(out.read_text().strip())) == 32
    assert out.stat().st_mode & 0o777 == 0o600
    again = subprocess.run([GRIDPACT, "gateway", "keygen", "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 1  # never overwrites a key
