"""The community dashboard's own JSON-RPC reader (gateway/dashboard/rpc.py) against a real anvil.

The reader replaces web3 on the dashboard's read path (memory: docs/dashboard.md), so it must give
the index exactly what web3 gives: the same chain indexed through both gives the same rows in every
table; the view calls decode as web3's contract calls do; a node error is an error, not a guess;
and `gridpact dashboard run`'s read path loads no web3 (checked in a fresh interpreter).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from web3 import Web3

from contracts.build import load_artifact
from contracts.harness import Community, advance_time, household_key
from gateway.dashboard.community_server import read_view
from gateway.dashboard.index import BLOCK_TABLES, ChainIndex, find_deploy_block
from gateway.dashboard.indexdb import open_index_db
from gateway.dashboard.rpc import RpcChain, RpcError
from hil.services import DEV_PRIVATE_KEYS, AnvilNode

REPO = Path(__file__).resolve().parents[2]


def _abis() -> dict[str, list[dict]]:
    return {name: load_artifact(name)["abi"] for name in ("Market", "UtilityToken")}


def _url(node: AnvilNode) -> str:
    assert node.info.url is not None
    return node.info.url


def _rows(index: ChainIndex) -> dict[str, list[tuple]]:
    while index.next_block <= index.eth.block_number:
        index.step()
    return {t: index.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in (*BLOCK_TABLES, "meta")}


def test_the_same_chain_indexed_through_rpc_and_web3_gives_the_same_rows(
    fresh_anvil: AnvilNode, tmp_path: Path
) -> None:
    w3 = Web3(Web3.HTTPProvider(_url(fresh_anvil), request_kwargs={"timeout": 30}))
    c = Community(w3, DEV_PRIVATE_KEYS[0])
    a, b = (c.add_household(household_key(i), deposit=10**21) for i in range(2))
    t = c.terms(a, b)
    c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, a, b)))
    advance_time(w3, 2 * 3600 + 1)
    c.admin.transact(c.market.functions.settleBatch([c.settle_item(t, a, b, 1000, 500)]))  # a dispute
    rpc = RpcChain(_url(fresh_anvil), 30)
    head = int(w3.eth.block_number)
    assert rpc.eth.block_number == head and rpc.eth.chain_id == w3.eth.chain_id
    deploy = find_deploy_block(rpc.eth, c.market.address, head)
    assert deploy == find_deploy_block(w3.eth, c.market.address, head) > 0
    contracts = {"Market": c.market.address, "UtilityToken": c.token.address}
    via_rpc = ChainIndex(
        open_index_db(tmp_path / "rpc.sqlite3"), rpc.eth, contracts, _abis(), c.domain, deploy
    )
    via_web3 = ChainIndex(
        open_index_db(tmp_path / "web3.sqlite3"), w3.eth, contracts, _abis(), c.domain, deploy
    )
    rows = _rows(via_rpc)
    assert rows == _rows(via_web3)
    assert any("AgreementSubmitted" in str(r) for r in rows["events"]) and rows["terms"], rows["events"]
    assert any("Disput" in str(r) for r in rows["events"]), "the settlement with a dispute is indexed"
    abi = _abis()["Market"]
    for name in ("provider", "params", "token"):
        web3_says = c.market.functions[name]().call()
        expected = tuple(web3_says) if isinstance(web3_says, (list, tuple)) else (web3_says,)
        assert read_view(rpc.eth, c.market.address, abi, name) == expected, name


def test_a_node_error_is_raised_not_guessed(fresh_anvil: AnvilNode) -> None:
    rpc = RpcChain(_url(fresh_anvil), 30)
    with pytest.raises(RpcError, match="not found"):
        rpc.eth.get_block(10**9)
    with pytest.raises(RpcError):
        rpc.eth.request("eth_noSuchMethod", [])
    with pytest.raises(OSError):
        assert RpcChain("http://127.0.0.1:9", 5).eth.block_number  # nothing listens on the discard port


READ_PATH = """
import sys
from gateway.dashboard import community_server as cs
from gateway.dashboard.rpc import RpcChain
import gateway.dashboard.auth, gateway.dashboard.community_app, gateway.dashboard.community_site
import gateway.dashboard.index, gateway.dashboard.indexdb, gateway.dashboard.live, gateway.dashboard.serving
import gateway.chain.keystore, gateway.chain.policy, gateway.trading.protocol, gateway.trading.transport
chain = RpcChain(sys.argv[1])
abis = cs.artifact_abis()
market = sys.argv[2]
print(chain.eth.chain_id, cs.read_view(chain.eth, market, abis["Market"], "params"))
print(sorted(m for m in ("web3", "aiohttp", "requests", "websockets") if m in sys.modules))
"""


def test_the_dashboards_read_path_loads_no_web3(anvil: AnvilNode) -> None:
    w3 = Web3(Web3.HTTPProvider(_url(anvil), request_kwargs={"timeout": 30}))
    c = Community(w3, DEV_PRIVATE_KEYS[0])
    out = subprocess.run(
        [sys.executable, "-c", READ_PATH, _url(anvil), c.market.address],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={"PYTHONPATH": str(REPO)}, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    first, loaded = out.stdout.splitlines()
    assert first.startswith("31337 (")
    assert loaded == "[]", f"the read path loaded {loaded}"
