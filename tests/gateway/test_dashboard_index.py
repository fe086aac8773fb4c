"""The community dashboard's chain index, ABI decoder, agreement folding and operator forms.

On the in-process EVM (py-evm) with the real contracts: calls and events decoded from the ABI
artifacts, agreements found by their terms' EIP-712 id, a reorg (a chain snapshot reverted and
a different history mined) rolled back and re-indexed, a reorg deeper than the kept hashes
re-indexed from the deployment block, which a binary search finds without a scan. The index
tests run on both backends: a SQLite file and a real PostgreSQL (a throwaway cluster started
here, stopped by its own id; a missing PostgreSQL fails, it never skips).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contracts.build import load_artifact
from contracts.harness import NO_WINDOW, Community, advance_time, chain_revert, chain_snapshot, household_key
from gateway.dashboard.abi import AbiDecoder
from gateway.dashboard.community import fold_agreements, volumes
from gateway.dashboard.index import ChainIndex, find_deploy_block
from gateway.dashboard.indexdb import open_index_db, redact
from gateway.dashboard.operator import ActionError, Confirmations, parse_action
from gridpact.core.statement import parse_settlement_batch, settlement_batch
from hil.services import DEV_PRIVATE_KEYS, PostgresServer, in_process_web3

HOUR = 3600
Where = Callable[[str], "Path | str"]  # the `where` fixture (tests/gateway/conftest.py)


@pytest.fixture(scope="module")
def community() -> Community:
    c = Community(in_process_web3(), DEV_PRIVATE_KEYS[0])
    for i in range(2):
        c.add_household(household_key(i), deposit=10**21)
    return c


@contextlib.contextmanager
def reverted(c: Community) -> Iterator[None]:
    """The chain as it was before the block, whatever the block did (the module shares one community)."""
    snap = chain_snapshot(c.w3)
    try:
        yield
    finally:
        chain_revert(c.w3, snap)


def _abis() -> dict[str, list[dict]]:
    return {name: load_artifact(name)["abi"] for name in ("Market", "UtilityToken")}


def _index(c: Community, location: Path | str, keep: int = 16) -> ChainIndex:
    contracts = {"Market": c.market.address, "UtilityToken": c.token.address}
    return ChainIndex(open_index_db(location), c.w3.eth, contracts, _abis(), c.domain, 0, keep=keep)


def _run(index: ChainIndex) -> None:
    while index.next_block <= index.eth.block_number:
        index.step()


def _events(index: ChainIndex) -> list[tuple]:
    return index.query("SELECT block, log_index, name, args, agreement FROM events ORDER BY block, log_index")


def test_abi_decoder_calls_and_bad_input(community: Community) -> None:
    c = community
    a, b = c.households
    t = c.terms(a, b)
    sigs = c.sign(t, a, b)
    data = bytes.fromhex(c.market.encode_abi("submitAgreement", args=[t.as_tuple(), *sigs])[2:])
    decoded = AbiDecoder(_abis()).call(data)
    assert decoded is not None and (decoded.contract, decoded.name) == ("Market", "submitAgreement")
    assert decoded.args["t"]["seller"] == a.address and decoded.args["t"]["quantityWh"] == t.quantityWh
    assert decoded.args["sellerSig"]["r"] == "0x" + sigs[0][0].hex()
    assert AbiDecoder(_abis()).call(b"\xde\xad\xbe\xef" + data[4:]) is None  # unknown selector
    assert AbiDecoder(_abis()).call(data[:40]) is None  # truncated: no exception
    assert AbiDecoder(_abis()).event([], b"") is None


def test_index_decodes_agreements_and_follows_a_reorg(community: Community, where: Where) -> None:
    c = community
    a, b = c.households
    with reverted(c):
        t = c.terms(a, b)
        aid = "0x" + c.agreement_id(t).hex()
        c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, a, b)))
        index = _index(c, where("index"), keep=3)
        _run(index)
        submitted = index.query("SELECT fn, seller_sig, buyer_sig FROM terms WHERE id=?", (aid,))
        assert submitted and submitted[0][0] == "submitAgreement" and submitted[0][1] and submitted[0][2]
        # a member's batch with a forged report for this agreement: the batch succeeds, the item is
        # skipped (BatchItemRejected), and the forged report is not shown as the agreement's evidence
        advance_time(c.w3, 2 * HOUR + 1)
        forged = c.settle_item(t, b, b, 0, 0)  # the "seller's" report signed by the buyer's key
        c.admin.transact(c.market.functions.settleBatch([forged]))
        _run(index)
        assert [e[2] for e in _events(index) if e[4] == aid] == ["AgreementSubmitted", "BatchItemRejected"]
        assert [r[0] for r in index.query("SELECT fn FROM terms WHERE id=?", (aid,))] == ["submitAgreement"]
        fork = chain_snapshot(c.w3)
        advance_time(c.w3, 2 * HOUR + 1)
        c.admin.transact(c.market.functions.settleBatch([c.settle_item(t, a, b, 1000, 900)]))
        _run(index)
        assert [e[2] for e in _events(index) if e[4] == aid][-1] == "DisputeOpened"
        # the reports were found inside the batch item, with their signatures
        item = json.loads(index.query("SELECT item FROM terms WHERE fn='settleBatch'")[0][0])
        assert (item["sellerWh"], item["buyerWh"]) == (1000, 900) and item["buyerSig"][
            "r"
        ] != "0x" + "00" * 32

        # a shallow reorg: the same height, a different history (the reports agree this time)
        chain_revert(c.w3, fork)
        advance_time(c.w3, 2 * HOUR + 3)
        c.admin.transact(c.market.functions.settleBatch([c.settle_item(t, a, b, 1000, 1000)]))
        result = index.step()
        assert result.rolled_back_to is not None and result.rolled_back_to < result.first
        _run(index)
        assert [e[2] for e in _events(index) if e[4] == aid][-1] == "AgreementSettled"
        assert "DisputeOpened" not in [e[2] for e in _events(index) if e[4] == aid]
        agreements = fold_agreements(
            index.query(
                "SELECT block, log_index, tx, name, args, agreement FROM events ORDER BY block, log_index"
            ),
            {aid: json.loads(index.query("SELECT terms FROM terms WHERE id=?", (aid,))[0][0])},
        )
        assert agreements[aid].status == "settled" and agreements[aid].delivered_wh == 1000
        assert volumes(agreements.values())["p2p_wh"] == 1000

        # a reorg deeper than the kept hashes: re-indexed from the deployment block, same as a fresh index
        for _ in range(3):  # the kept hashes now all come after the fork
            advance_time(c.w3, 5)
        _run(index)
        chain_revert(c.w3, fork)
        for _ in range(6):
            advance_time(c.w3, 7)
        assert index.step().rolled_back_to == index.deploy_block - 1
        _run(index)
        fresh = _index(c, where("fresh"))
        _run(fresh)
        assert _events(index) == _events(fresh)
        for table in ("txs", "terms", "blocks"):
            assert index.query(f"SELECT * FROM {table} ORDER BY 1, 2") == fresh.query(
                f"SELECT * FROM {table} ORDER BY 1, 2"
            ), table
        assert [e[2] for e in _events(index) if e[4] == aid] == ["AgreementSubmitted", "BatchItemRejected"]
        fresh.close()
        index.close()


def test_deploy_block_found_by_binary_search(community: Community) -> None:
    c = community
    head = int(c.w3.eth.block_number)
    found = find_deploy_block(c.w3.eth, c.market.address, head)
    assert bytes(c.w3.eth.get_code(c.market.address, found)) and not bytes(
        c.w3.eth.get_code(c.market.address, found - 1)
    )
    with pytest.raises(ValueError, match="no contract"):
        find_deploy_block(c.w3.eth, "0x" + "12" * 20, head)


def test_index_refuses_another_markets_file(community: Community, where: Where) -> None:
    c = community
    _index(c, where("i")).close()
    db = open_index_db(where("i"))
    try:
        with pytest.raises(ValueError, match="belongs to") as info:
            ChainIndex(db, c.w3.eth, {"Market": c.token.address}, _abis(),
                       type(c.domain)(c.domain.chain_id, c.token.address), 0)  # fmt: skip
        assert PostgresServer.PASSWORD not in str(info.value)  # never a password in a message
    finally:
        db.close()


def test_postgres_index_has_one_writer(postgres: PostgresServer) -> None:
    url = postgres.create_database("writer")
    first = open_index_db(url)
    with pytest.raises(ValueError, match="another dashboard is indexing") as info:
        open_index_db(url)
    assert PostgresServer.PASSWORD not in str(info.value)
    first.close()
    open_index_db(url).close()  # free again once the first has gone


def test_missing_postgres_fails_loudly(tmp_path: Path) -> None:
    from hil.services import ServiceUnavailable, find_postgres_bin

    with pytest.raises(ServiceUnavailable, match="apt-get install -y postgresql"):
        find_postgres_bin(tmp_path)  # no versions installed under it: an error, never a skip
    assert (find_postgres_bin() / "postgres").exists()


def test_postgres_url_redacted() -> None:
    assert redact("postgresql://u:s3cret@127.0.0.1:5432/db") == "postgresql://u:***@127.0.0.1:5432/db"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"


def test_operator_forms_are_checked() -> None:
    terms = {"seller": "0x" + "11" * 20, "buyer": "0x" + "22" * 20, "quantityWh": 1000, "unitPrice": 5,
             "deliveryStart": 1, "deliveryEnd": 2, "nonce": 3, "expiry": 4}  # fmt: skip
    aid = "0x" + "ab" * 32
    act = parse_action("resolve", {"agreement": aid, "delivered_wh": "1200"}, {aid: terms})
    assert act.function == "resolveDispute" and "1000 Wh delivered of 1000 Wh" in act.summary[0]
    bad = [
        ("resolve", {"agreement": "0x" + "cd" * 32, "delivered_wh": "1"}, "not an agreement waiting"),
        ("resolve", {"agreement": aid, "delivered_wh": "-1"}, "whole number"),
        ("resolve", {"agreement": aid, "delivered_wh": str(2**64)}, "between"),
        ("register", {"gateway": "0x1234", "meter_id": "m"}, "0x address"),
        ("register", {"gateway": "0x" + "11" * 20, "meter_id": ""}, "meter id"),
        ("tariffs", {"provider": "0x" + "11" * 20, "buy_price": "1.5", "sell_price": "2"}, "whole number"),
        (
            "params",
            {"report_window": "0", "dispute_window": "1", "tolerance_bps": "1", "penalty_bps": "1"},
            "between",
        ),
        (
            "params",
            {"report_window": "1", "dispute_window": "1", "tolerance_bps": "10001", "penalty_bps": "1"},
            "10000",
        ),
        ("selfdestruct", {}, "unknown action"),
    ]
    for kind, form, message in bad:
        with pytest.raises(ActionError, match=message):
            parse_action(kind, form, {aid: terms})
    reg = parse_action("register", {"gateway": "0x" + "11" * 20, "meter_id": "SDM630-0042"}, {})
    assert reg.args[1] != b"\0" * 32 and len(reg.args[1]) == 32

    confirmations = Confirmations(b"k" * 32)
    token = confirmations.issue(act, "session-a")
    kind, fields, _ = confirmations.read(token, "session-a")
    assert (kind, fields["delivered_wh"]) == ("resolve", "1200")
    with pytest.raises(ActionError, match="another session"):
        confirmations.read(token, "session-b")
    with pytest.raises(ActionError, match="invalid"):
        confirmations.read(token[:-2] + "xx", "session-a")
    with pytest.raises(ActionError, match="invalid"):
        Confirmations(b"other key" * 4).read(token, "session-a")


def test_dashboard_config_errors_name_the_key(tmp_path: Path) -> None:
    from gateway.dashboard.community_server import load_dashboard_config
    from gateway.errors import ConfigError

    chain = (
        '[chain]\nrpc_url = "http://127.0.0.1:8545"\nmarket = "0x'
        + "11" * 20
        + '"\nkeystore = "k.json"\npassphrase_file = "p"\n'
    )
    cases = [
        ("[bogus]\n" + chain, "bogus"),
        ("[index]\nfrom_block = -1\n" + chain, "index.from_block"),
        ("[index]\nreorg_depth = 1\n" + chain, "index.reorg_depth"),
        ("[index]\nspeed = 1\n" + chain, "index.speed"),
        ('[index]\ndatabase = "mysql://x"\n' + chain, "index.database"),
        ('[dashboard]\nlisten = "0.0.0.0:80"\n' + chain, "dashboard.listen"),
        ("[index]\n", "chain"),
        (chain.replace("http://", "ftp://"), "chain.rpc_url"),
    ]
    for text, key in cases:
        path = tmp_path / "d.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_dashboard_config(path)
        assert key in str(info.value), (key, str(info.value))
    path = tmp_path / "ok.toml"
    path.write_text('[index]\nstate_dir = "s"\n' + chain)
    cfg = load_dashboard_config(path)
    assert (
        cfg.index.state_dir == tmp_path / "s"
        and cfg.dashboard.accounts_path == tmp_path / "s" / "dashboard.sqlite3"
        and cfg.index.database is None
    )
    path.write_text('[index]\ndatabase = "postgresql://gridpact@127.0.0.1/index"\n' + chain)
    assert load_dashboard_config(path).index.database == "postgresql://gridpact@127.0.0.1/index"


def test_postgres_index_recovers_when_the_server_restarts(community: Community) -> None:
    """The server goes away under a running index: that step fails, a later one reconnects and goes on."""
    import psycopg

    c = community
    snap = chain_snapshot(c.w3)
    server = PostgresServer()
    try:
        server.start()
        index = _index(c, server.create_database("restart"))
        _run(index)
        before = len(_events(index))
        server.restart()  # same port; the index's connection is now broken
        advance_time(c.w3, 5)
        a, b = c.households
        t = c.terms(a, b)
        c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, a, b)))
        with pytest.raises(psycopg.OperationalError):
            index.step()
        _run(index)  # the next step opens a new connection
        assert len(_events(index)) == before + 1
        index.close()
    finally:
        pid = server.pid
        server.close()
        assert pid is None or not os.path.exists(f"/proc/{pid}")
        chain_revert(c.w3, snap)


def test_the_keepers_packed_call_shows_its_terms_and_signatures(community: Community, where: Where) -> None:
    """`settleByMeters(batch)` is packed (docs/wire/meter-settlement-v1.md): the explorer expands it with the
    core's parser, so an agreement the keeper opened there has its terms and both signatures in the index,
    and a settled item its window indexes."""
    c = community
    a, b = c.households
    with reverted(c):
        t = c.terms(a, b)
        aid = "0x" + c.agreement_id(t).hex()
        sigs = c.sign(t, a, b)
        batch = settlement_batch([], [(t.as_tuple(), NO_WINDOW, NO_WINDOW)], [(t.as_tuple(), *sigs)])
        assert parse_settlement_batch(batch) == (
            [],
            [(t.as_tuple(), NO_WINDOW, NO_WINDOW)],
            [(t.as_tuple(), *sigs)],
        )
        c.admin.transact(c.market.functions.settleByMeters(settlement_batch([], [], [(t.as_tuple(), *sigs)])))
        index = _index(c, where("index"))
        _run(index)
        rows = index.query("SELECT fn, seller_sig, buyer_sig, terms FROM terms WHERE id=?", (aid,))
        assert rows and rows[0][0] == "settleByMeters"
        assert (
            rows[0][1] == "0x" + sigs[0][0].hex() + sigs[0][1].hex()
            and rows[0][2] == "0x" + sigs[1][0].hex() + sigs[1][1].hex()
        )
        assert json.loads(rows[0][3])["deliveryEnd"] == t.deliveryEnd
        decoded = AbiDecoder(_abis()).call(
            bytes.fromhex(c.market.encode_abi("settleByMeters", args=[batch])[2:])
        )
        assert decoded is not None and decoded.args["items"][0]["sellerWindow"] == NO_WINDOW
        bad = AbiDecoder(_abis()).call(
            bytes.fromhex(c.market.encode_abi("settleByMeters", args=[batch[:-1]])[2:])
        )
        assert bad is not None and set(bad.args) == {"batch"}  # does not parse: shown as sent
        with pytest.raises(ValueError):
            parse_settlement_batch(batch[:-1])
        index.close()
