"""pytest plugin of the HIL rig: `--board` and `--rig`, and the fixtures the scenarios use.

Fixtures: `rig` (the bench description), `hil_broker` (a Mosquitto the test may stop and start),
`rs485_line` (the meter side of the RS-485 line: a socat pty on virtual boards, the rig's
adapter on a bench), `meter` (meter_sim answering on that line, with its truth file),
`subscriber` (a broker subscriber that verifies every reading), `board` (the node, started;
its console is attached to the report of a failing test). With no `--board`, every scenario
runs on each virtual backend. Tests marked `hardware` run only on a real board, and say why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.rig import BOARDS, HARDWARE_BOARDS, Rig, RigError, load_rig

VIRTUAL_BACKENDS: tuple[str, ...] = ("virtual-cpython", "virtual-wasm")
UNAVAILABLE: dict[str, str] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop rig")
    group.addoption(
        "--board", choices=BOARDS, default=None, help="board backend (default: every virtual one)"
    )
    group.addoption("--rig", type=Path, default=None, help="rig file describing the bench (TOML)")


def _requested(config: pytest.Config) -> str | None:
    return config.getoption("--board", default=None)


def pytest_configure(config: pytest.Config) -> None:
    board = _requested(config)
    if board in UNAVAILABLE:
        raise pytest.UsageError(f"--board {board}: {UNAVAILABLE[board]}")
    if board in HARDWARE_BOARDS and config.getoption("--rig", default=None) is None:
        raise pytest.UsageError(f"--board {board} needs --rig FILE (see hil/rig.example.toml)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "board_kind" in metafunc.fixturenames:
        board = _requested(metafunc.config)
        metafunc.parametrize("board_kind", [board] if board else list(VIRTUAL_BACKENDS), scope="function")


SUITE_DIR = Path(__file__).resolve().parent / "tests"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the suite's hardware-only tests, with their reason, unless a real board is on the rig."""
    board = _requested(config)
    for item in items:
        if SUITE_DIR not in Path(item.path).resolve().parents:
            continue  # other components' tests keep their own hardware handling
        marker = item.get_closest_marker("hardware")
        if marker is not None and board not in HARDWARE_BOARDS:
            why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "needs real hardware")
            item.add_marker(
                pytest.mark.skip(reason=f"hardware only: {why}; run with --board esp32|pico-w --rig FILE")
            )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    board = getattr(item, "_hil_board", None)
    if board is not None and report.failed:
        report.sections.append(("board console", "\n".join(board.console[-200:])))
    return report


@pytest.fixture
def rig(request: pytest.FixtureRequest, board_kind: str) -> Rig:
    """The bench: from --rig, or the virtual defaults for the backend under test."""
    try:
        return load_rig(request.config.getoption("--rig"), board_kind)
    except RigError as exc:
        raise pytest.UsageError(str(exc)) from exc


@pytest.fixture
def hil_broker(rig: Rig, tmp_path: Path) -> Iterator[Any]:
    """A real Mosquitto the scenario may stop and start (loopback for virtual boards, the bench LAN otherwise)."""
    from hil.bench_broker import start_bench_broker

    broker = start_bench_broker(rig)
    yield broker
    broker.close()


@pytest.fixture
def rs485_line(rig: Rig) -> Iterator[tuple[str, str | None]]:
    """(meter side, board side): a socat pty pair on virtual boards; the rig's adapter on a bench."""
    if rig.hardware:
        assert rig.rs485_port is not None
        yield rig.rs485_port, None
        return
    from hil.pty import PtyPair

    with PtyPair() as pair:
        yield pair.a, pair.b


@pytest.fixture
def meter(rig: Rig, rs485_line: tuple[str, str | None], tmp_path: Path) -> Iterator[Any]:
    """meter_sim answering Modbus RTU on the line, with a truth file; faults injectable."""
    from hil.meter_rig import MeterOnLine

    m = MeterOnLine(
        rs485_line[0], rig.meter_model, rig.unit_id, "constant:load_w=2300,pv_w=0",
        baud=rig.rs485_baud, parity=rig.rs485_parity, truth=tmp_path / "truth.jsonl",
    )  # fmt: skip
    yield m
    m.stop()


@pytest.fixture
def subscriber(rig: Rig, hil_broker: Any) -> Iterator[Any]:
    """Subscribed to the node's topics before the board starts, so nothing is missed."""
    from hil.subscriber import Subscriber

    info = hil_broker.info
    sub = Subscriber(info.host, info.port, rig.device_id, bytes.fromhex(rig.hmac_key_hex), rig.topic_prefix)
    yield sub
    sub.close()


@pytest.fixture
def board(
    request: pytest.FixtureRequest, rig: Rig, meter: Any, subscriber: Any, hil_broker: Any,
    rs485_line: tuple[str, str | None], tmp_path: Path,
) -> Iterator[Any]:  # fmt: skip
    """The node under test, started (flashed on hardware) and stopped after the test."""
    from hil.boards import HardwareBoard, VirtualCpythonBoard, VirtualWasmBoard

    info = hil_broker.info
    state = tmp_path / "flash"
    state.mkdir()
    b: Any
    if rig.hardware:
        b = HardwareBoard(rig, state, (info.host, info.port))
    elif rig.board == "virtual-cpython":
        assert rs485_line[1] is not None
        b = VirtualCpythonBoard(rig, rs485_line[1], state, (info.host, info.port))
    elif rig.board == "virtual-wasm":
        assert rs485_line[1] is not None
        b = VirtualWasmBoard(rig, rs485_line[1], state, (info.host, info.port))
    else:
        raise pytest.UsageError(f"--board {rig.board}: {UNAVAILABLE.get(rig.board, 'unknown backend')}")
    request.node._hil_board = b
    b.start()
    yield b
    b.stop()
