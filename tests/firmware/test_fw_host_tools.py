"""Host tools: the mpy-cross bundle, the compact maps, deploy/monitor command lines, type checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from firmware.host import cli
from firmware.host.build import BuildError, build, device_sources
from firmware.host.devload import DEVICE_DIR
from firmware.host.golden import device_namespace
from firmware.host.maps_gen import MAPS_DIR, render
from firmware.host.stubs import ensure_stubs, typecheck

EXAMPLE = Path(__file__).resolve().parents[2] / "firmware" / "config.example.json"


@pytest.mark.parametrize("board", ["esp32", "pico-w"])
def test_every_device_file_compiles_with_mpy_cross(board: str, tmp_path: Path) -> None:
    bundle = build(board, tmp_path / "out", regenerate_maps=False)
    names = {p.name for p in bundle.files}
    for src in device_sources():
        want = src.name if src.name == "main.py" else src.stem + ".mpy"
        assert want in names
    for f in bundle.files:
        if f.suffix == ".mpy":
            assert f.read_bytes()[:2] == b"M\x06", f  # .mpy header, version 6
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["board"] == board and set(manifest["files"]) == names


def test_mpy_cross_errors_are_reported(tmp_path: Path) -> None:
    dev = tmp_path / "device"
    shutil.copytree(DEVICE_DIR, dev)
    (dev / "broken.py").write_text("def f(:\n    pass\n")
    with pytest.raises(BuildError, match=r"broken\.py"):
        build("esp32", tmp_path / "out", device_dir=dev, regenerate_maps=False)


def test_compact_maps_match_the_json_maps() -> None:
    assert (DEVICE_DIR / "maps.py").read_text() == render(), "maps.py is stale: run gridpact firmware build"
    maps = device_namespace().load("maps")
    for model in maps.MODELS:
        spec = json.loads((MAPS_DIR / f"{model}.json").read_text())
        by_key = {r["key"]: r for r in spec["input_registers"]}
        fc, start, count, entries = maps.MAPS[model]
        assert (fc, start, count) == (4, 0, 76)
        assert count % 2 == 0 and count <= spec["limits"]["max_registers"]
        for name, unit, off, label in entries:
            key = name[: -len(unit) - 1] if unit else name
            reg = by_key[key]
            assert (reg["unit"], reg["address"], reg["name"], reg["type"]) == (
                unit,
                start + off,
                label,
                "float32",
            )
            assert off + 2 <= count


def test_deploy_dry_run_builds_the_mpremote_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = build("esp32", tmp_path / "b", regenerate_maps=False)
    rc = cli.main(["deploy", "--port", "/dev/ttyUSB9", "--board", "esp32", "--config", str(EXAMPLE),
                   "--bundle", str(bundle.out), "--dry-run"])  # fmt: skip
    assert rc == 0
    stage, swap = cli.deploy_commands("/dev/ttyUSB9", bundle.out, EXAMPLE)
    assert stage[2:6] == ["mpremote", "connect", "/dev/ttyUSB9", "exec"]
    cp = stage.index("cp")
    copied = stage[cp + 1 : stage.index(f":{cli.STAGING}/")]
    assert sorted(Path(c).name for c in copied) == sorted(p.name for p in bundle.files)
    assert stage[-2:] == [str(EXAMPLE), f":{cli.STAGING}/config.json"]
    assert swap[2:6] == ["mpremote", "connect", "/dev/ttyUSB9", "exec"] and swap[-2:] == ["+", "reset"]
    assert "'app.py'" in swap[6] and "'main.py'" not in swap[6].split("for n in")[-1]
    assert "mpremote connect /dev/ttyUSB9 exec" in capsys.readouterr().out


def test_deploy_refuses_a_bad_config_or_wrong_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = json.loads(EXAMPLE.read_text())
    bad["hmac_key"] = "xyz"
    bad["poll_s"] = 0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert cli.main(["deploy", "--port", "p", "--board", "esp32", "--config", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "config error: hmac_key" in err and "config error: poll_s" in err
    path.write_text("{not json")
    assert cli.main(["deploy", "--port", "p", "--board", "esp32", "--config", str(path), "--dry-run"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    bundle = build("pico-w", tmp_path / "b", regenerate_maps=False)
    argv = [
        "deploy",
        "--port",
        "p",
        "--board",
        "esp32",
        "--config",
        str(EXAMPLE),
        "--bundle",
        str(bundle.out),
    ]
    assert cli.main([*argv, "--dry-run"]) == 2
    assert "bundle is for pico-w" in capsys.readouterr().err


def test_monitor_and_argument_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.monitor_command("/dev/ttyACM0")[2:] == [
        "mpremote",
        "connect",
        "/dev/ttyACM0",
        "resume",
        "repl",
    ]
    assert cli.main(["monitor", "--port", "/dev/ttyACM0", "--dry-run"]) == 0
    assert "resume repl" in capsys.readouterr().out
    assert cli.main(["build", "--board", "esp8266"]) == 2
    assert cli.main(["deploy", "--board", "esp32"]) == 2
    assert cli.main([]) == 2


@pytest.mark.parametrize("port", ["esp32", "rp2"])
def test_device_code_type_checks_against_the_port_stubs(port: str) -> None:
    proc = typecheck(port)
    assert proc.returncode == 0, proc.stdout
    assert "0 errors" in proc.stdout


def test_type_check_catches_a_misuse(tmp_path: Path) -> None:
    fw = tmp_path / "firmware"
    shutil.copytree(DEVICE_DIR, fw / "device")
    (fw / "device" / "oops.py").write_text(
        "import time\n\nimport machine\n\nmachine.UART(1).bogus()\ntime.ticks_diff(1)\n"
    )
    cfg = json.loads((DEVICE_DIR.parent / "pyrightconfig.esp32.json").read_text())
    stubs = str(ensure_stubs("esp32"))
    cfg.update(stubPath=stubs, typeshedPath=stubs)
    (fw / "pyrightconfig.json").write_text(json.dumps(cfg))
    proc = typecheck("esp32", fw / "pyrightconfig.json")
    assert proc.returncode != 0, proc.stdout
    assert "2 errors" in proc.stdout and proc.stdout.count("oops.py:") == 2, proc.stdout


def test_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benches.firmware import main

    assert main(["--polls", "5"]) == 0
    out = capsys.readouterr().out
    assert "us/poll" in out and "3276 readings = 9.1 h" in out
    assert out.count("ms/signature") == 4 and "not measured on a board" in out


def test_bundle_loads_in_micropython(tmp_path: Path) -> None:
    """The .mpy files (not the sources) import in the real MicroPython interpreter and produce the
    golden reading: the bundle's bytecode format is one MicroPython accepts."""
    from firmware.host.golden import GOLDEN_PATH
    from firmware.host.statement_vectors import STATEMENT_VECTORS_PATH
    from hil.mpy_wasm import run_micropython

    bundle = build("pico-w", tmp_path / "b", regenerate_maps=False)
    mpys = {f.name: f.read_bytes().hex() for f in bundle.files if f.suffix == ".mpy"}
    vec = json.loads(GOLDEN_PATH.read_text())
    stv = json.loads(STATEMENT_VECTORS_PATH.read_text())["statements"][1]
    code = f"""
import os, sys, binascii, json, struct
os.mkdir('/mpy')
for name, hx in {mpys!r}.items():
    with open('/mpy/' + name, 'wb') as f:
        f.write(binascii.unhexlify(hx))
sys.path.insert(0, '/mpy')
import app, payload, maps
assert payload.__file__.endswith('.mpy'), payload.__file__
p = json.loads({vec["vectors"][0]["payload"]!r})
keys = maps.MAPS['sdm120'][3]
vals = bytearray(64)
for i, k in enumerate(keys):
    struct.pack_into('>f', vals, 4 * i, p['r'][k[0]])
mac = payload.Hmac(binascii.unhexlify({vec["key_hex"]!r}))
print(payload.reading(mac, p['dev'], p['seq'], p['ts'], p['q'], p['m'], keys, vals, len(keys)).decode())
import ecdsa, statement
assert ecdsa.__file__.endswith('.mpy') and statement.__file__.endswith('.mpy')
st = binascii.unhexlify({stv["hex"]!r})
sig = ecdsa.signature_bytes(ecdsa.sign(statement.digest(st), binascii.unhexlify({stv["secret"]!r})))
print(binascii.hexlify(sig).decode())
"""
    wasm_board = [DEVICE_DIR.parents[1] / "hil" / "wasm_board" / d for d in ("shims", "memory")]
    res = run_micropython(code, libs=wasm_board).check()
    reading, sig = res.stdout.split()
    assert reading == vec["vectors"][0]["payload"]
    assert sig == stv["r"] + stv["s"] + f"{stv['v']:02x}"
