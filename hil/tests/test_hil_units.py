"""The rig's own parts: rig file validation, the reading oracle (golden vectors), truth matching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hil.readings import BadReading, Reading, verify_reading
from hil.rig import RigError, load_rig, parse_rig
from hil.services import REPO_ROOT
from hil.truth import find_truth, matches, split_key

GOLDEN = json.loads((REPO_ROOT / "docs" / "wire" / "golden" / "readings-v1.json").read_text())


@pytest.mark.parametrize("vector", GOLDEN["vectors"], ids=[v["name"] for v in GOLDEN["vectors"]])
def test_reading_oracle_agrees_with_the_golden_vectors(vector: dict) -> None:
    key = bytes.fromhex(GOLDEN["key_hex"])
    payload = vector["payload"].encode()
    if vector["valid"]:
        reading = verify_reading(payload, key)
        assert reading.values == vector.get("values", json.loads(payload)["r"])
        assert reading.raw == payload
    else:
        with pytest.raises(BadReading):
            verify_reading(payload, key)


def test_reading_oracle_rejects_a_wrong_key() -> None:
    payload = GOLDEN["vectors"][0]["payload"].encode()
    with pytest.raises(BadReading, match="bad tag"):
        verify_reading(payload, b"\x00" * 32)


def test_example_rig_file_parses() -> None:
    rig = load_rig(REPO_ROOT / "hil" / "rig.example.toml")
    assert rig.board == "esp32" and rig.hardware and rig.rs485_port and rig.console_port
    assert load_rig(REPO_ROOT / "hil" / "rig.example.toml", "virtual-cpython").board == "virtual-cpython"
    assert load_rig(None).board == "virtual-cpython" and not load_rig(None).hardware


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"board": {"type": "arduino"}}, "board.type"),
        ({"meter": {"unit_id": 0}}, "meter.unit_id"),
        ({"meter": {"model": "sdm72"}}, "meter.model"),
        ({"rs485": {"baud": 115200}}, "rs485.baud"),
        ({"node": {"device_id": "Node 1"}}, "node.device_id"),
        ({"node": {"poll_s": "ten"}}, "node.poll_s"),
        ({"board": {"type": "esp32"}}, "board.console"),
        (
            {"board": {"type": "esp32", "console": "/dev/ttyUSB0"}, "rs485": {"port": "/dev/ttyUSB1"}},
            "wifi.ssid",
        ),
        ({"bogus": {}}, "bogus"),
    ],
)
def test_bad_rig_files_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(RigError) as err:
        parse_rig(data)
    assert err.value.key == key


def test_unreadable_rig_file(tmp_path: Path) -> None:
    bad = tmp_path / "rig.toml"
    bad.write_text("[board\n")
    with pytest.raises(RigError, match="cannot read"):
        load_rig(bad)


def test_truth_matching_uses_the_float_rule() -> None:
    assert (
        split_key("u1_V") == ("u1", 2) and split_key("e_imp_kWh") == ("e_imp", 3) and split_key("pf1")[1] == 3
    )
    regs = {"u1": 230.004999, "p1": 1127.45, "e_imp": 12.3455, "pf1": 0.98}
    assert matches({"u1_V": 230.0, "p1_W": 1127.5, "e_imp_kWh": 12.346, "pf1": 0.98}, regs) == []
    assert matches({"u1_V": 230.02, "p1_W": 1127.5}, regs) == ["u1_V"]
    assert matches({"q1_var": 1.0}, regs) == ["q1_var"]  # a value the meter does not hold
    reading = Reading("n", 1, 100, 0, "sdm120", {"u1_V": 230.0}, b"")
    assert (
        find_truth(reading, [{"t": 99.0, "r": {"u1": 231.0}}, {"t": 100.0, "r": {"u1": 230.0}}]) is not None
    )
    assert find_truth(reading, [{"t": 90.0, "r": {"u1": 230.0}}]) is None


def test_node_config_and_deploy_command_for_a_bench(tmp_path: Path) -> None:
    from hil.boards import HardwareBoard, node_config

    rig = load_rig(REPO_ROOT / "hil" / "rig.example.toml")
    cfg = node_config(rig, "192.168.1.20", 1883)
    assert cfg["broker"]["host"] == "192.168.1.20" and cfg["device_id"] == rig.device_id
    assert cfg["wifi"]["ssid"] == "bench-wifi" and cfg["meter"]["unit_id"] == 1 and cfg["poll_s"] == 1
    board = HardwareBoard(rig, tmp_path, ("192.168.1.20", 1883))
    cmd = board.deploy_command()
    assert cmd[cmd.index("firmware") + 1] == "deploy"
    assert cmd[cmd.index("--port") + 1] == "/dev/ttyUSB0" and cmd[cmd.index("--board") + 1] == "esp32"
    assert json.loads(Path(cmd[cmd.index("--config") + 1]).read_text()) == cfg
