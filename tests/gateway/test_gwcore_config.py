"""Config: the example parses, every error names its key, secrets stay out of reprs and logs."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from gateway.config import SecretRef, load_config, parse_config, read_hmac_key, read_secret
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "gateway" / "config.example.toml"
GRIDPACT = REPO / ".venv" / "bin" / "gridpact"

MINIMAL = {"gateway": {"id": "g1"}, "meter": {"device_id": "node-01", "hmac_key_file": "k"}}


def test_example_config_is_valid() -> None:
    cfg = load_config(EXAMPLE, env={"STATE_DIRECTORY": "/var/lib/gridpact-gateway"})
    assert cfg.gateway.id == "house-07"
    assert cfg.meter.hmac_key == SecretRef("meter.hmac_key_file", None, "meter-hmac-key")
    assert cfg.metrics.port == 9308
    assert cfg.storage.path == Path("/var/lib/gridpact-gateway/readings.sqlite3")
    assert cfg.trading is None


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = parse_config(MINIMAL, tmp_path, env={})
    assert cfg.meter.topic_prefix == "gridpact"
    assert cfg.meter.hmac_key.file == tmp_path / "k"
    assert cfg.meter_broker.port == 1883
    assert cfg.meter_broker.keepalive_s == 30
    assert cfg.forecast.step_s == 900
    off = parse_config(_with("meter_broker", keepalive_s=0), tmp_path, env={})
    assert off.meter_broker.keepalive_s == 0  # MQTT's "no keepalive": the simulator's choice


def test_state_directory_from_systemd(tmp_path: Path) -> None:
    cfg = parse_config(MINIMAL, tmp_path, env={"STATE_DIRECTORY": "/var/lib/x:/var/lib/y"})
    assert cfg.gateway.state_dir == Path("/var/lib/x")


def _with(section: str, **values: object) -> dict:
    doc: dict[str, dict[str, object]] = {k: dict(v) for k, v in MINIMAL.items()}
    doc.setdefault(section, {}).update(values)
    return doc


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"meter": MINIMAL["meter"]}, "gateway.id"),
        (_with("gateway", id="Not Valid"), "gateway.id"),
        (_with("gateway", log_level="loud"), "gateway.log_level"),
        (_with("gateway", colour="red"), "gateway.colour"),
        (_with("meter", model="sdm72"), "meter.model"),
        (_with("meter", topic_prefix="a/#"), "meter.topic_prefix"),
        ({"gateway": {"id": "g1"}, "meter": {"device_id": "node-01"}}, "meter.hmac_key_file"),
        (_with("meter", hmac_key_credential="x"), "meter.hmac_key_file"),
        (_with("meter_broker", port=70000), "meter_broker.port"),
        (_with("meter_broker", keepalive_s=-1), "meter_broker.keepalive_s"),
        (_with("meter_broker", keepalive_s=65536), "meter_broker.keepalive_s"),
        (_with("meter_broker", port="1883"), "meter_broker.port"),
        (_with("meter_broker", tls="yes"), "meter_broker.tls"),
        (_with("meter_broker", password="hunter2"), "meter_broker.password"),
        (_with("storage", retention_days=0), "storage.retention_days"),
        (_with("forecast", step_s=True), "forecast.step_s"),
        (_with("forecast", history_days=500), "forecast.history_days"),
        (_with("metrics", listen="9308"), "metrics.listen"),
        ({**MINIMAL, "meterz": {}}, "meterz"),
        ({**MINIMAL, "storage": 5}, "storage"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, doc: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, tmp_path, env={})
    assert info.value.key == key


def test_trading_sections_go_to_the_trading_parser(tmp_path: Path) -> None:
    """The raw tables are handed over; without a valid trading config the error names a trading key."""
    doc = {**MINIMAL, "chain": {"definitely_not_a_key": 1}}
    with pytest.raises(ConfigError) as info:
        parse_config(doc, tmp_path, env={})
    assert info.value.key.split(".")[0] in ("chain", "community", "agent")


def test_secrets_read_from_file_or_credential(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("00" * 32 + "\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "meter-hmac-key").write_text("ab" * 16)
    assert read_hmac_key(SecretRef("meter.hmac_key_file", tmp_path / "k")) == bytes(32)
    ref = SecretRef("meter.hmac_key_credential", None, "meter-hmac-key")
    assert read_hmac_key(ref, env={"CREDENTIALS_DIRECTORY": str(creds)}) == b"\xab" * 16
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY"):
        read_secret(ref, env={})
    (tmp_path / "bad").write_text("not hex")
    with pytest.raises(ConfigError, match="hex digits") as info:
        read_hmac_key(SecretRef("meter.hmac_key_file", tmp_path / "bad"))
    assert "not hex" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret(SecretRef("meter.hmac_key_file", tmp_path / "missing"))


def test_config_repr_never_holds_secret_values(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("5e" * 32)
    (tmp_path / "pw").write_text("hunter2-broker-password")
    doc = _with("meter_broker", username="gw", password_file="pw")
    text = repr(parse_config(doc, tmp_path, env={}))
    assert "hunter2" not in text and "5e5e5e" not in text
    assert str(tmp_path / "pw") in text


def test_cli_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        '[gateway]\nid = "g1"\n[meter]\ndevice_id = "node-01"\nhmac_key_file = "k"\nmodel = "x"\n'
    )
    proc = subprocess.run([GRIDPACT, "gateway", "run", "--config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "meter.model" in proc.stderr
    path.write_text("[gateway\n")
    proc = subprocess.run(
        [GRIDPACT, "gateway", "check-config", "--config", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr


def test_cli_missing_key_file_exits_2_without_leaking(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        '[gateway]\nid = "g1"\nstate_dir = "s"\n[meter]\ndevice_id = "node-01"\nhmac_key_file = "k"\n'
    )
    proc = subprocess.run(
        [GRIDPACT, "gateway", "run", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "meter.hmac_key_file" in proc.stderr


def test_check_config_prints_without_secrets(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("77" * 32)
    path = tmp_path / "gw.toml"
    path.write_text('[gateway]\nid = "g1"\n[meter]\ndevice_id = "node-01"\nhmac_key_file = "k"\n')
    proc = subprocess.run(
        [GRIDPACT, "gateway", "check-config", "--config", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "ingest-only" in proc.stdout and "7777" not in proc.stdout


def test_example_is_valid_toml_with_every_core_section() -> None:
    doc = tomllib.loads(EXAMPLE.read_text())
    assert {"gateway", "meter", "meter_broker", "storage", "forecast", "metrics"} <= set(doc)


def test_trading_sections_are_parsed_by_the_trading_half(tmp_path: Path) -> None:
    """The seam: core hands [community], [agent] and [chain] over and keeps the result."""
    doc = {
        **MINIMAL,
        "community": {"id": "street-9"},
        "agent": {},
        "chain": {
            "rpc_url": "http://127.0.0.1:8545",
            "market": "0x" + "11" * 20,
            "keystore": "gateway-key.json",
            "passphrase_file": "passphrase",
        },
    }
    cfg = parse_config(doc, tmp_path, env={})
    assert cfg.trading is not None
    assert type(cfg.trading).__name__ == "TradingConfig"
    assert "passphrase" not in repr(cfg.trading).replace("passphrase_", "").replace("/passphrase", "")


def test_start_failure_exits_1_with_one_log_line(tmp_path: Path) -> None:
    """The metrics port is taken: the service logs one line and exits 1 (systemd restarts it)."""
    import socket

    from hil.services import free_port

    (tmp_path / "k").write_text("00" * 32)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "gw.toml"
        path.write_text(
            f'[gateway]\nid = "g1"\nstate_dir = "s"\n[meter]\ndevice_id = "node-01"\nhmac_key_file = "k"\n'
            f'[meter_broker]\nport = {free_port()}\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        )
        proc = subprocess.run(
            [GRIDPACT, "gateway", "run", "--config", str(path)], capture_output=True, text=True, timeout=60
        )
    assert proc.returncode == 1, proc.stderr
    failed = [line for line in proc.stderr.splitlines() if "event=gateway.failed" in line]
    assert len(failed) == 1 and "Traceback" not in proc.stderr
