"""Fixtures of the trading tests (helpers live in trade_helpers.py).

This folder is `tests/gateway/trading`, and pytest puts `tests/` on sys.path: without the
repository root ahead of it, `import gateway.trading` would find this test folder as a namespace
package. The root goes first, and a `gateway` namespace made of test folders is dropped.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[3])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
if getattr(sys.modules.get("gateway"), "__file__", "") is None:
    for _name in [m for m in sys.modules if m == "gateway" or m.startswith("gateway.")]:
        del sys.modules[_name]

import json  # noqa: E402

import pytest  # noqa: E402
from trade_helpers import compile_probe  # noqa: E402

from hil.services import AnvilNode  # noqa: E402


@pytest.fixture(scope="session")
def probe_artifact(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.getbasetemp().parent / "gridpact-probe.json"
    if cache.exists():
        return json.loads(cache.read_text())
    artifact = compile_probe()
    cache.write_text(json.dumps(artifact))
    return artifact


@pytest.fixture
def mined_anvil(fresh_anvil: AnvilNode) -> AnvilNode:
    """An anvil of the test's own; call `trade_helpers.mine_every_second` after the (fast, automined) setup."""
    return fresh_anvil
