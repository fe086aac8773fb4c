"""MQTT over TLS: the node verifies the broker against its configured CA (real Mosquitto, real
certificates made by openssl), and refuses a broker it cannot verify."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.services import find_mosquitto, free_port, wait_for_port
from hil.subscriber import MqttTap
from hil.virtual_board import VirtualBoard
from hil.wiring import SerialLine, verify_reading

EXAMPLE = Path(__file__).resolve().parents[2] / "firmware" / "config.example.json"


def openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed: {proc.stderr}")


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)  # fmt: skip


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, int, Path, Path]]:
    """Mosquitto with a TLS listener (server cert for 127.0.0.1 from our CA) and a plain one."""
    # mosquitto started as root drops to its own user: the PKI must be readable by it
    d = Path(tempfile.mkdtemp(prefix="fw-tls-"))
    d.chmod(0o755)
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr", cwd=d)  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=d)  # fmt: skip
    tls_port, plain_port = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"per_listener_settings false\nallow_anonymous true\npersistence false\n"
        f"listener {plain_port} 127.0.0.1\n"
        f"listener {tls_port} 127.0.0.1\ncafile {d / 'ca.pem'}\ncertfile {d / 'server.pem'}\n"
        f"keyfile {d / 'server.key'}\n"
    )
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=log, stderr=log)
    for f in d.iterdir():
        f.chmod(0o644)
    try:
        wait_for_port("127.0.0.1", plain_port, 10, proc)
        wait_for_port("127.0.0.1", tls_port, 10, proc)
        yield tls_port, plain_port, d / "ca.pem", d / "other-ca.pem"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def test_readings_over_tls(tls_broker: tuple[int, int, Path, Path], tmp_path: Path) -> None:
    tls_port, plain_port, ca, other_ca = tls_broker
    cfg = json.loads(EXAMPLE.read_text())
    cfg.update(device_id="vb-tls", poll_s=1, ntp_hold_s=0)
    cfg["broker"].update(tls=True, ca=str(ca), backoff_max_s=1)
    cfg["meter"]["timeout_ms"] = 200
    tap = MqttTap("127.0.0.1", plain_port, ["gridpact/meter/+/reading"], "tap-tls")
    try:
        with SerialLine() as line:  # no meter: readings are MODBUS_TIMEOUT, which is all TLS needs
            good = VirtualBoard(cfg, line.board, tmp_path / "good", broker=("127.0.0.1", tls_port))
            good.start()
            try:
                good.wait_until(lambda: len(tap.on("/reading")) >= 2, 20, "2 readings over TLS")
            finally:
                good.stop()
        cfg["device_id"] = "vb-tls-bad"
        cfg["broker"]["ca"] = str(other_ca)
        with SerialLine() as line:
            bad = VirtualBoard(cfg, line.board, tmp_path / "bad", broker=("127.0.0.1", tls_port))
            bad.start()
            try:
                bad.wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in "\n".join(bad.console), 20, "refusal")
                assert not bad.stats()["mqtt_up"]
            finally:
                bad.stop()
    finally:
        tap.close()
    rs = [verify_reading(p, bytes.fromhex(cfg["hmac_key"])) for p in tap.on("/reading")]
    assert {r["dev"] for r in rs} == {"vb-tls"}
    assert all(r["q"] & 0x004 and r["r"] == {} for r in rs)
