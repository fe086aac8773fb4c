"""`gridpact dashboard`: the community operator's dashboard process, its config and its command line.

One process, one TaskGroup: the indexer (a step every `INDEX_S` in a worker thread, then a new
snapshot pushed to every viewer), the community broker listener (signed peer messages counted,
public offers shown), and uvicorn. SIGTERM/SIGINT cancel the root; everything stops within 2 s.

The config is one TOML file: `[dashboard]` as the gateway's (listen address, accounts,
cookies, viewers), `[chain]` and `[community]` as the gateway's trading sections (the operator's
keystore and its passphrase credential or file, the community broker), and `[index]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError
from gridpact.core.config import load_toml

if TYPE_CHECKING:  # the read path loads none of these at run time (memory: docs/dashboard.md)
    from eth_account.signers.local import LocalAccount

    from gateway.chain.policy import SenderPolicy
    from gateway.config import DashboardSection, OidcSection
    from gateway.dashboard.community_site import CommunitySite
    from gateway.dashboard.index import ChainIndex, StepResult
    from gateway.dashboard.live import LiveHub
    from gateway.trading.config import ChainConfig, CommunityConfig

log = logging.getLogger("gridpact.dashboard")
NO_PASSWORD_HELP = "no password: the account signs in only through [dashboard.oidc]'s identity provider"
INDEX_S = 0.25
CLOSE_WAIT_S = 1.0  # at most this long for a running index step before closing its database

EXAMPLE = """\
[index]
state_dir = "/var/lib/gridpact-dashboard"   # the index, the accounts and the operator's tx journal
# from_block = 0                   # the Market's deployment block (default: found by a binary search)
reorg_depth = 64                   # block hashes kept to notice a reorg
# database = "postgresql://gridpact@127.0.0.1/gridpact_index"  # default: index.sqlite3 in state_dir;
#                                  # the password from ~/.pgpass or PGPASSFILE, not this file

[dashboard]
listen = "127.0.0.1:8090"          # loopback or a private LAN address only
secure_cookies = true
max_viewers = 64
# [dashboard.oidc]                 # optional: sign-in with the community's OpenID Provider
# issuer = "https://id.example.org"  # (see docs/dashboard.md: client, redirect URI, accounts)

[chain]                            # as the gateway's [chain]: the operator key signs the actions
rpc_url = "http://127.0.0.1:8545"
market = "0x..."
keystore = "/etc/gridpact/operator-key.json"
passphrase_credential = "operator-key-pass"

[community]                        # optional: the community broker, to watch the market's messages
id = "oak-street"
host = "127.0.0.1"
port = 1883
"""


@dataclass(frozen=True)
class IndexSection:
    state_dir: Path
    from_block: int | None
    reorg_depth: int
    database: str | None = None  # a postgresql:// URL; None: index.sqlite3 in state_dir


@dataclass(frozen=True)
class CommunityDashboardConfig:
    index: IndexSection
    dashboard: DashboardSection
    chain: ChainConfig
    community: CommunityConfig | None


def load_dashboard_config(path: Path) -> CommunityDashboardConfig:
    """Read and check the file; ConfigError naming the key on anything wrong."""
    from gateway.config import parse_dashboard
    from gateway.dashboard.indexdb import is_postgres
    from gateway.trading.config import parse_chain, parse_community

    doc = load_toml(path)
    base = path.resolve().parent
    unknown = sorted(set(doc) - {"index", "dashboard", "chain", "community"})
    if unknown:
        raise ConfigError(unknown[0], "unknown section")
    table = doc.get("index", {})
    if not isinstance(table, dict):
        raise ConfigError("index", "must be a table")
    extra = sorted(set(table) - {"state_dir", "from_block", "reorg_depth", "database"})
    if extra:
        raise ConfigError(f"index.{extra[0]}", "unknown key")
    state = Path(str(table.get("state_dir", "state")))
    state = state if state.is_absolute() else base / state
    from_block = table.get("from_block")
    if from_block is not None and (
        not isinstance(from_block, int) or isinstance(from_block, bool) or from_block < 0
    ):
        raise ConfigError("index.from_block", "must be a block number")
    depth = table.get("reorg_depth", 64)
    if not isinstance(depth, int) or isinstance(depth, bool) or not 2 <= depth <= 10_000:
        raise ConfigError("index.reorg_depth", "must be between 2 and 10000")
    database = table.get("database")
    if database is not None and (not isinstance(database, str) or not is_postgres(database)):
        raise ConfigError("index.database", "must be a postgresql:// URL (leave it out for SQLite)")
    dashboard = parse_dashboard({"dashboard": doc.get("dashboard", {})}, state, base)
    assert dashboard is not None  # the table is always given (empty: the defaults)
    if "chain" not in doc or not isinstance(doc["chain"], dict):
        raise ConfigError("chain", "missing: the dashboard reads the Market through [chain]")
    chain = parse_chain(doc["chain"], base)
    community = None
    if "community" in doc:
        if not isinstance(doc["community"], dict):
            raise ConfigError("community", "must be a table")
        community = parse_community(doc["community"], base)
    return CommunityDashboardConfig(
        IndexSection(state, from_block, depth, database), dashboard, chain, community
    )


def artifact_abis() -> dict[str, list[dict[str, Any]]]:
    """Every built contract's ABI (contracts/artifacts), else the Market ABI the gateway ships."""
    from gateway.chain.abis import market_abi

    abis: dict[str, list[dict[str, Any]]] = {}
    try:
        from contracts.build import ARTIFACTS

        for path in sorted(ARTIFACTS.glob("*.json")):
            with contextlib.suppress(ValueError, KeyError, OSError):
                abis[path.stem] = json.loads(path.read_text())["abi"]
    except ImportError:
        pass
    abis.setdefault("Market", market_abi())
    return abis


def sending_web3(chain: Any) -> Any:
    """The web3.Web3 an operator's action is sent with: the caller's own, or one made for an RpcChain."""
    from gateway.dashboard.rpc import RpcChain

    return chain.web3() if isinstance(chain, RpcChain) else chain


class _LazySender:
    """The TxSender and Market contract, made on the first action (web3 loads only when someone acts)."""

    def __init__(
        self,
        chain: Any,
        account: Any,
        policy: Any,
        journal: Path,
        market_address: str,
        abi: list[dict[str, Any]],
    ) -> None:
        self.args = (chain, account, policy, journal, market_address, abi)
        self.lock = threading.Lock()
        self.made: tuple[Any, Any] | None = None

    def get(self) -> tuple[Any, Any]:
        """(TxSender, the Market contract); both made once, under a lock (actions run in worker threads)."""
        from gateway.chain.journal import Journal
        from gateway.chain.sender import TxSender

        with self.lock:
            if self.made is None:
                chain, account, policy, journal, market_address, abi = self.args
                w3 = sending_web3(chain)
                sender = TxSender(w3, account, Journal(journal), abi, policy)
                self.made = (sender, w3.eth.contract(address=market_address, abi=abi))
            return self.made


def _operator(
    account: LocalAccount,
    policy: SenderPolicy | None,
    journal: Path,
    chain: Any,
    market_address: str,
    abi: list[dict[str, Any]],
) -> Any:
    """The operator's sender: dry runs and journaled, idempotent sends through the gateway's TxSender."""
    from gateway.chain.errors import ChainError, RevertError
    from gateway.dashboard.community_app import OperatorSend

    lazy = _LazySender(chain, account, policy, journal, market_address, abi)

    def dry_run(function: str, args: tuple[Any, ...]) -> str | None:
        try:
            sender, contract = lazy.get()
            sender.call(contract.functions[function](*args))
        except RevertError as exc:
            return str(exc)
        except ChainError as exc:
            return f"the chain node did not answer: {exc}"
        return None

    def send(key: str, function: str, args: tuple[Any, ...]) -> dict[str, Any]:
        try:
            sender, contract = lazy.get()
            record = sender.send(key, contract.functions[function](*args))
            receipt = sender.wait(key)
        except RevertError as exc:
            return {"ok": False, "error": str(exc)}
        except ChainError as exc:
            return {"ok": False, "error": f"not sent: {exc}"}
        log.info("event=operator_action function=%s tx=%s status=%d", function, record.hash, receipt.status)
        return {"ok": receipt.status == 1, "tx": receipt.tx_hash, "block": receipt.block,
                "error": None if receipt.status == 1 else "the transaction reverted"}  # fmt: skip

    return OperatorSend(account.address, dry_run, send)


class Throttle:
    """At most one push per `every_s`, the last one never lost (a trailing push carries the newest state)."""

    def __init__(self, push: Callable[[], None], every_s: float = 0.2) -> None:
        self.push, self.every_s = push, every_s
        self.last = float("-inf")
        self.pending: asyncio.TimerHandle | None = None

    def __call__(self) -> None:
        if self.pending is not None:
            return
        wait = self.every_s - (time.monotonic() - self.last)
        if wait <= 0:
            self._fire()
        else:
            self.pending = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        self.pending = None
        self.last = time.monotonic()
        self.push()


def accept_message(raw: bytes, community: str, members: set[str]) -> Any:
    """The envelope of a peer message worth showing: well-formed, of this community, signed by its sender,
    a registered participant. Raises ProtocolError (counted as refused) otherwise."""
    from gateway.trading.protocol import ProtocolError, decode, recover_sender

    env = decode(raw)
    if env.community != community:
        raise ProtocolError("wrong_community", env.community)
    if recover_sender(env).lower() != env.sender.lower():
        raise ProtocolError("bad_signature", "signer is not the sender")
    if env.sender.lower() not in members:
        raise ProtocolError("not_member", env.sender)
    return env


async def _watch_broker(cfg: Any, site: Any, hub: Any) -> None:
    """Count the community's signed peer messages and show the public offers (read-only subscriber)."""
    import aiomqtt

    from gateway.trading.protocol import ProtocolError
    from gateway.trading.transport import community_tls

    password = cfg.password_file.read_text().strip() if cfg.password_file else None
    backoff = 0.5
    # a flood (forged or not) is counted; viewers get the newest counts at most five times a second
    tell = Throttle(lambda: hub.publish({"messages": site.messages.public()}, "message"))
    while True:
        try:
            async with aiomqtt.Client(cfg.host, cfg.port, username=cfg.username, password=password,
                                      identifier=f"gridpact-dashboard-{int(time.time() * 1000) % 10**9}",
                                      keepalive=30, tls_params=community_tls(cfg)) as client:  # fmt: skip
                wanted = f"{cfg.topic_prefix}/{cfg.id}/v1/#"
                await client.subscribe(wanted, qos=0)
                backoff = 0.5
                async for message in client.messages:
                    payload = message.payload
                    # amqtt hands a new subscriber retained messages of other topics (the meters'
                    # status): not a peer message, so neither shown nor counted as refused
                    if not isinstance(payload, (bytes, bytearray)) or not message.topic.matches(wanted):
                        continue
                    members = {m.lower() for m in site.snapshot.get("participants", [])}
                    try:
                        env = accept_message(bytes(payload), cfg.id, members)
                    except ProtocolError:
                        site.messages.rejected += 1
                        tell()
                        continue
                    site.messages.counts[env.type] += 1
                    if env.type == "offer":
                        item = {"type": env.type, "from": env.sender, "ts": env.ts}
                        item |= {k: env.body[k] for k in ("window", "side", "quantity_wh", "price")}
                        site.messages.offers.append(item)
                    tell()
        except aiomqtt.MqttError as exc:
            log.warning("event=community_broker_down error=%s retry_s=%.1f", type(exc).__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30)


def read_view(eth: Any, address: str, abi: list[dict[str, Any]], name: str) -> tuple[Any, ...]:
    """A view function without arguments, called with eth_call and decoded with eth-abi (no web3 needed)."""
    from eth_abi.abi import decode
    from eth_utils.abi import function_abi_to_4byte_selector
    from eth_utils.address import to_checksum_address

    from gateway.dashboard.abi import abi_type

    entry = next(
        e for e in abi if e.get("type") == "function" and e.get("name") == name and not e.get("inputs")
    )
    selector = bytes(function_abi_to_4byte_selector(entry))  # type: ignore[arg-type]
    raw = eth.call({"to": address, "data": "0x" + selector.hex()})
    values = decode([abi_type(o) for o in entry["outputs"]], bytes(raw))
    # addresses checksummed, as web3's contract calls give them
    return tuple(
        to_checksum_address(v) if o["type"] == "address" else v
        for o, v in zip(entry["outputs"], values, strict=True)
    )


def _facts(eth: Any, market: str, abi: list[dict[str, Any]]) -> Any:
    from gateway.dashboard.community_site import ChainFacts

    provider, buy, sell = read_view(eth, market, abi, "provider")
    params = tuple(int(x) for x in read_view(eth, market, abi, "params"))
    zero = int(provider, 16) == 0
    (operator,) = read_view(eth, market, abi, "operator")
    (fee,) = read_view(eth, market, abi, "networkFee")
    return ChainFacts(None if zero else provider, int(buy), int(sell), params, operator, int(fee))  # type: ignore[arg-type]


class IndexWork:
    """The index's database work off the loop, and its close, never at once: closing SQLite while
    another thread runs a statement on the same connection can crash the process (a signal arriving
    while a step runs in the executor)."""

    def __init__(self, index: ChainIndex) -> None:
        self.index = index
        self._lock = threading.Lock()

    def step(self) -> StepResult:
        with self._lock:
            return self.index.step()

    def rebuild(self, site: CommunitySite) -> dict[str, Any]:
        with self._lock:
            return site.rebuild()

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Close once the running step is done; past `wait_s` leave it open (the process is ending)."""
        if not self._lock.acquire(timeout=wait_s):
            log.warning("event=index_close_skipped reason=busy wait_s=%.1f", wait_s)
            return
        try:
            self.index.close()
        finally:
            self._lock.release()


async def _index_loop(
    work: IndexWork, site: CommunitySite, hub: LiveHub, eth: Any, market: str, abi: list[dict[str, Any]]
) -> None:
    """Extend the index as blocks come; after a change, rebuild the snapshot and push it."""
    index = work.index
    failing = False
    while True:
        try:
            result = await asyncio.to_thread(work.step)
            changed = (
                result.events
                or result.txs
                or result.rolled_back_to is not None
                or result.last >= result.first
            )
            if changed:
                site.facts = await asyncio.to_thread(_facts, eth, market, abi)
                snapshot = await asyncio.to_thread(work.rebuild, site)
                hub.publish(site.aggregates(), "summary")
                hub.publish(snapshot, "chain")
            if failing:
                log.info("event=index_recovered block=%d", index.next_block - 1)
                failing = False
            if result.last - result.first + 1 >= index.chunk:
                continue  # catching up: no pause
        except Exception as exc:  # the node is away or answered nonsense: log once, retry quietly
            if not failing:
                log.error("event=index_failed error=%r", exc)
                failing = True
            await asyncio.sleep(2)
        await asyncio.sleep(INDEX_S)


@dataclass(frozen=True)
class Listen:
    """Where and how the app serves, and where its state lives."""

    host: str
    port: int
    state_dir: Path
    accounts_path: Path
    secure_cookies: bool = True
    max_viewers: int = 64
    from_block: int | None = None
    reorg_depth: int = 64
    index_database: str | None = None  # a postgresql:// URL; None: index.sqlite3 in state_dir
    oidc: OidcSection | None = None  # sign-in with the community's identity provider


async def serve_community(
    w3: Any,
    market_address: str,
    listen: Listen,
    operator_account: LocalAccount | None = None,
    policy: SenderPolicy | None = None,
    community: CommunityConfig | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """The dashboard on a chain the caller holds, until cancelled: `w3` is a web3.Web3 (the simulator's,
    an in-process EVM) or a `gateway.dashboard.rpc.RpcChain` (`gridpact dashboard run`: reads without web3).

    `operator_account` (an eth-account LocalAccount holding COMMUNITY_ROLE) signs the operator's
    actions; None serves the views without actions. `community` is a CommunityConfig to watch the
    community broker, or None. This is the seam `gridpact simulate --dashboard` would call.
    """
    from eth_utils.address import to_checksum_address

    from gateway.dashboard.auth import AccountStore
    from gateway.dashboard.community_app import CommunityApp, create_community_app
    from gateway.dashboard.community_site import CommunitySite
    from gateway.dashboard.index import ChainIndex, find_deploy_block
    from gateway.dashboard.indexdb import open_index_db
    from gateway.dashboard.live import LiveHub
    from gateway.dashboard.serving import serve_app
    from gridpact.core.eip712 import Domain

    listen.state_dir.mkdir(parents=True, exist_ok=True)
    abis = artifact_abis()
    market_address = to_checksum_address(market_address)
    market_abi = abis["Market"]
    domain = Domain(int(w3.eth.chain_id), market_address)
    contracts: dict[str, str] = {"Market": market_address}
    with contextlib.suppress(Exception):
        contracts["UtilityToken"] = to_checksum_address(
            read_view(w3.eth, market_address, market_abi, "token")[0]
        )
    deploy = listen.from_block
    if deploy is None:
        deploy = find_deploy_block(w3.eth, market_address, int(w3.eth.block_number))
    # a PostgreSQL server may take its connect timeout to answer: off the loop, so a signal still stops us
    db = await asyncio.to_thread(open_index_db, listen.index_database or listen.state_dir / "index.sqlite3")
    try:
        index = await asyncio.to_thread(
            ChainIndex, db, w3.eth, contracts, abis, domain, deploy, listen.reorg_depth
        )
    except BaseException:
        db.close()
        raise
    accounts = AccountStore(listen.accounts_path)
    hub = LiveHub(listen.max_viewers, snapshots=frozenset({"summary", "chain", "message"}))
    site = CommunitySite(index, community.id if community is not None else "")
    operator = None
    if operator_account is not None:
        journal = listen.state_dir / "operator-journal.db"
        operator = _operator(operator_account, policy, journal, w3, market_address, abis["Market"])
    app = create_community_app(
        CommunityApp(site, hub, accounts, operator, listen.secure_cookies, listen.oidc)
    )
    log.info("event=dashboard_start listen=%s:%d market=%s from_block=%d index=%s operator=%s", listen.host,
             listen.port, market_address, deploy, db.name, operator.address if operator else None)  # fmt: skip
    work = IndexWork(index)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(
                _index_loop(work, site, hub, w3.eth, market_address, market_abi), name="dashboard-index"
            )
            if community is not None:
                tg.create_task(_watch_broker(community, site, hub), name="dashboard-broker")
            tg.create_task(
                serve_app(app, listen.host, listen.port, started, hub.close), name="dashboard-http"
            )
    finally:
        hub.close()
        accounts.close()
        work.close()


async def run_community_dashboard(
    cfg: CommunityDashboardConfig, started: asyncio.Event | None = None
) -> None:
    """`gridpact dashboard run`: the node from [chain] (read without web3), the operator key from its keystore."""
    from gateway.chain.keystore import PassphraseSource, load_account
    from gateway.chain.policy import SenderPolicy
    from gateway.dashboard.rpc import RpcChain

    c = cfg.chain
    w3 = RpcChain(c.rpc_url, c.rpc_timeout_s)
    account = load_account(c.keystore, PassphraseSource(c.passphrase_credential, c.passphrase_file).read())
    policy = SenderPolicy(gas_margin=c.gas_margin, priority_fee_wei=int(c.priority_fee_gwei * 10**9),
                          max_fee_wei=int(c.max_fee_gwei * 10**9), receipt_timeout_s=c.receipt_timeout_s)  # fmt: skip
    d = cfg.dashboard
    listen = Listen(d.host, d.port, cfg.index.state_dir, d.accounts_path, d.secure_cookies, d.max_viewers,
                    cfg.index.from_block, cfg.index.reorg_depth, cfg.index.database, d.oidc)  # fmt: skip
    await serve_community(w3, c.market, listen, account, policy, cfg.community, started)


async def _serve(cfg: CommunityDashboardConfig) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await run_community_dashboard(cfg)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gridpact dashboard", description="the community operator's dashboard")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser(
        "run", help="serve the community view, the block explorer and the operator's actions"
    )
    run.add_argument("--config", required=True, type=Path)
    sub.add_parser("example-config", help="print an example config")
    user = sub.add_parser("user", help="add, remove or list dashboard accounts")
    us = user.add_subparsers(dest="action", required=True)
    add = us.add_parser("add", help="create or replace an account")
    add.add_argument("name")
    add.add_argument("--role", choices=("household", "operator"), default="household")
    add.add_argument("--household", default=None, help="a household account's gateway address (0x...)")
    add.add_argument("--password-stdin", action="store_true")
    add.add_argument("--no-password", action="store_true", help=NO_PASSWORD_HELP)
    add.add_argument("--config", required=True, type=Path)
    rm = us.add_parser("remove")
    rm.add_argument("name")
    rm.add_argument("--config", required=True, type=Path)
    ls = us.add_parser("list")
    ls.add_argument("--config", required=True, type=Path)
    return p


def _user(args: argparse.Namespace) -> int:
    from gateway.dashboard.auth import AccountStore, list_or_remove, read_new_password
    from gateway.dashboard.operator import ADDRESS_RE

    cfg = load_dashboard_config(args.config)
    store = AccountStore(cfg.dashboard.accounts_path)
    try:
        done = list_or_remove(store, args.action, args.name if args.action != "list" else "")
        if done is not None:
            return done
        household = args.household or ""
        if args.role == "household" and not ADDRESS_RE.match(household):
            print("a household account needs --household 0x<its gateway address>", file=sys.stderr)
            return 2
        password = None if args.no_password else read_new_password(args.name, args.password_stdin)
        if password is None and not args.no_password:
            return 2
        try:
            account = store.add(args.name, args.role, household.lower() or "-", password)
        except ValueError as exc:
            print(f"gridpact dashboard user add: {exc}", file=sys.stderr)
            return 2
        print(f"account {account.name} ({account.role}) saved")
        return 0
    finally:
        store.close()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "example-config":
            print(EXAMPLE, end="")
            return 0
        if args.cmd == "user":
            return _user(args)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        return asyncio.run(_serve(load_dashboard_config(args.config)))
    except ConfigError as exc:
        print(f"gridpact dashboard: config error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the node unreachable at start, a wrong passphrase, a port taken: one line
        leaves = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
        for leaf in leaves:
            print(f"gridpact dashboard: {type(leaf).__name__}: {str(leaf)[:300]}", file=sys.stderr)
        return 1
