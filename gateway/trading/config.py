"""`[community]`, `[agent]` and `[chain]`: the trading half of the gateway's TOML, validated.

Handed the raw tables by `gateway.config`; every error is a ConfigError naming the dotted key.
Secrets (the keystore passphrase, the broker password) are referenced by file or systemd
credential name, never given as values, so the config can be printed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridpact.core.config import ConfigError, Table, get, reject_unknown

ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
COMMUNITY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
RESERVED_COMMUNITY_IDS = frozenset({"meter", "gateway"})
TOPIC_RE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


@dataclass(frozen=True)
class CommunityConfig:
    """The community broker and who may speak on it."""

    id: str
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password_file: Path | None = None
    topic_prefix: str = "gridpact"
    peers: tuple[str, ...] = ()  # addresses trusted besides those registered on the Market
    max_message_age_s: float = 30.0
    roster_refresh_s: float = 60.0
    tls: bool = False  # TLS to the community broker; required to send a password off this machine
    ca_file: Path | None = None  # the CA that signed the broker's certificate (default: the system's)
    cert_file: Path | None = None  # optional client certificate and its key (brokers that require one)
    key_file: Path | None = None
    keepalive_s: int = 30  # MQTT keepalive; 0 sends no pings (the simulator's choice, docs/simulate.md)


@dataclass(frozen=True)
class AgentConfig:
    """How the agent trades: windows, deadlines, strategies (engine configs), fallback."""

    window_s: int = 3600
    lead_s: int = 600  # negotiation for a window opens this long before it starts
    round_timeout_s: float = 5.0
    max_rounds: int = 20
    min_trade_wh: int = 50
    acceptance: str = "next"
    seller: Mapping[str, Any] = field(
        default_factory=lambda: {"price": {"ip": 300, "rp": 90, "dl": 10, "cr": 2.0}}
    )
    buyer: Mapping[str, Any] = field(
        default_factory=lambda: {"price": {"ip": 90, "rp": 300, "dl": 10, "cr": 0.5}}
    )
    provider_fallback: str = "grid"  # "grid": import/export at the tariff; "contract": tradeWithProvider
    report_delay_s: float = 60.0  # after a window ends, before the seller reports
    confirm_wait_s: float = 60.0  # how long the buyer waits for the seller's report before reporting alone
    keeper_grace_s: float = (
        0.0  # a community keeper batches windows: send our own only this long after the end
    )
    keeper_submit_grace_s: float = (
        0.0  # a community keeper batches submission: submit our own only this long after the start
    )
    fixed_net_wh: int | None = None  # demos and tests: a fixed net demand per window (negative = surplus)
    strategy: str = "fixed"  # "fixed": seller/buyer tables; "learned": the policy file learned as in Kröhling et al. decides per window
    policy: Path | None = None  # the learned policy (default: the shipped eip_policy.json)
    import_tariff: float | None = (
        None  # what the provider charges per kWh (default: the Market's posted tariff)
    )
    export_tariff: float | None = None  # what the provider pays per kWh (default: the Market's posted tariff)
    nonce_ring: int = 256  # seller slot nonces reused in turn: at least the most agreements open at once
    market: str = "p2p"  # "p2p": bilateral negotiation; "stations": the buyer calls for bids (stations.py)


@dataclass(frozen=True)
class ChainConfig:
    """The chain node, the Market, the key, and the sender's gas policy."""

    rpc_url: str
    market: str
    keystore: Path
    passphrase_credential: str | None = None
    passphrase_file: Path | None = None
    gas_margin: float = 1.25
    priority_fee_gwei: float = 1.0
    max_fee_gwei: float = 200.0
    receipt_timeout_s: float = 60.0
    anchor: bool = True
    anchor_delay_s: float = 300.0
    retry_max_s: float = 30.0
    rpc_timeout_s: float = 10.0


@dataclass(frozen=True)
class LoansConfig:
    """`[loans]`: energy loans of the residential cooperative (Chakraborty, Baarslag and Kaisers).

    A period is `period_s` long; a gateway plans over `window` periods, offers contracts (q, tau)
    on the grid of `n_q` volumes in [-q_max_wh, q_max_wh] and return offsets tau_min..window-1,
    ranks them by the expected utility of its criteria weights `lam1` (loss in flexibility) and
    `lam2` (autarky) over `scenarios` forecast scenarios, and accepts above its `quantile`.
    Strategy s0 (no battery, no loans) and s1 (battery, no loans) never negotiate; s2 does.
    """

    strategy: str = "s2"
    period_s: int = 900
    lead_s: int = 300  # a period's loans are negotiated this long before it starts
    window: int = 96
    q_max_wh: int = 700
    n_q: int = 15
    tau_min: int = 2
    scenarios: int = 100
    risk: float = 1.0
    lam1: float = 0.5
    lam2: float = 0.5
    quantile: float = 0.6
    capacity_kwh: float = 7.0
    soc_min: float = 0.2
    soc_max: float = 0.9
    soc0: float = 0.5
    charge_kw: float = 1.3
    discharge_kw: float = 3.3
    efficiency: float = 0.9  # round trip, split evenly between charge and discharge
    degradation: float = 0.0004
    epsilon: float = 0.1
    contexts: int = 4
    max_rounds: int = 400
    round_timeout_s: float = 2.0
    collateral_per_kwh: int = 1000  # token base units the borrower locks per kWh borrowed
    contract: str | None = None  # where the loan functions live (default: chain.market)
    report_delay_s: float = 60.0  # after the return period ends, before reporting
    seed: int = 0  # the scenario draws' stream


@dataclass(frozen=True)
class KeeperConfig:
    """`[keeper]`: this gateway (its account holds KEEPER_ROLE) settles every household's window in one call."""

    settle_delay_s: float = 30.0  # after a window ends, how long statements may arrive before the call
    group_windows: int = 1  # consecutive windows settled in one call (cheaper; gateways' grace must cover it)
    submit_delay_s: float = (
        30.0  # after a window starts, how long agreements may arrive; equal to settle_delay_s: one call
    )


@dataclass(frozen=True)
class DemandConfig:
    """`[demand_response]`: take part in the operator's demand-response events (Ali et al., 3.3): claim
    the reward for the cut this household's meter proves, then collect it (gateway/trading/demand.py)."""

    contract: str  # the community's DemandResponse contract
    poll_s: float = 300.0  # how often the contract is asked for new events and due claims
    claim_delay_s: float = 120.0  # after an event window ends, for its closing statement to arrive
    prepare_s: float = 7200.0  # with a [battery]: how early before a window it may charge for it (0: never)


@dataclass(frozen=True)
class StoreConfig:
    """`[store]`: this gateway is the community store's (gateway/trading/store.py): its battery, behind
    `[battery]`'s inverter, buys in `buy_hours` and sells in `sell_hours` (UTC hours of a window's start)."""

    buy_hours: frozenset[int]
    sell_hours: frozenset[int]
    reserve_permille: int = 100  # charge kept back from sales
    renew_s: float = 60.0  # how often the inverter's command is renewed and its rate corrected


@dataclass(frozen=True)
class BatteryConfig:
    """`[battery]`: the household battery's inverter on the LAN (gridpact.core.inverter's Modbus TCP map),
    which demand response charges ahead of an event window (gateway/inverter.py)."""

    host: str
    port: int = 502
    unit: int = 1
    timeout_s: float = 3.0


@dataclass(frozen=True)
class TradingConfig:
    community: CommunityConfig
    agent: AgentConfig
    chain: ChainConfig
    loans: LoansConfig | None = None
    keeper: KeeperConfig | None = None
    demand: DemandConfig | None = None
    battery: BatteryConfig | None = None
    store: StoreConfig | None = None


def parse_keeper(table: Mapping[str, Any]) -> KeeperConfig:
    s = "keeper"
    _unknown(s, table, set(KeeperConfig.__dataclass_fields__))
    d = KeeperConfig()
    delay = _positive(
        s, "settle_delay_s", float(_get(table, s, "settle_delay_s", (int, float), d.settle_delay_s)), True
    )
    group = _get(table, s, "group_windows", int, d.group_windows)
    if not 1 <= group <= 24:
        raise ConfigError("keeper.group_windows", f"must be 1..24, got {group}")
    submit = _positive(
        s, "submit_delay_s", float(_get(table, s, "submit_delay_s", (int, float), d.submit_delay_s)), True
    )
    return KeeperConfig(settle_delay_s=delay, group_windows=group, submit_delay_s=submit)


def parse_demand(table: Mapping[str, Any]) -> DemandConfig:
    s = "demand_response"
    _unknown(s, table, set(DemandConfig.__dataclass_fields__))
    contract = _get(table, s, "contract", str, None)
    if contract is None or not ADDRESS_RE.match(contract):
        raise ConfigError("demand_response.contract", "needed: the DemandResponse contract's 0x address")
    d = DemandConfig(contract)
    poll = _positive(s, "poll_s", float(_get(table, s, "poll_s", (int, float), d.poll_s)))
    delay = _positive(
        s, "claim_delay_s", float(_get(table, s, "claim_delay_s", (int, float), d.claim_delay_s)), True
    )
    prepare = _positive(s, "prepare_s", float(_get(table, s, "prepare_s", (int, float), d.prepare_s)), True)
    if prepare > 86400:
        raise ConfigError("demand_response.prepare_s", f"at most 86400 (a day), got {prepare:g}")
    return DemandConfig(contract, poll_s=poll, claim_delay_s=delay, prepare_s=prepare)


def _hours(t: Table, key: str) -> frozenset[int]:
    hours = t.get_list(key)
    t.check(key, lambda v: all(type(h) is int and 0 <= h <= 23 for h in v), "must be a list of UTC hours 0..23",
            hours)  # fmt: skip
    return frozenset(hours)


def parse_store(table: Mapping[str, Any]) -> StoreConfig:
    t = Table("store", dict(table))
    buy = _hours(t, "buy_hours")
    sell = _hours(t, "sell_hours")
    if not buy and not sell:
        raise ConfigError("store.buy_hours", "give buy_hours, sell_hours or both")
    if buy & sell:
        raise ConfigError("store.sell_hours", f"hours {sorted(buy & sell)} are also buy_hours")
    reserve = t.get_int("reserve_permille", 100, 0, 1000)
    renew = t.get_float("renew_s", 60.0, 0.05, 3600.0)
    t.done()
    return StoreConfig(buy, sell, reserve, renew)


def parse_battery(table: Mapping[str, Any]) -> BatteryConfig:
    t = Table("battery", dict(table))
    host = t.get_str("host", required=True)
    if not host:
        raise ConfigError("battery.host", "needed: the battery inverter's host name or address")
    port = t.get_int("port", 502, 1, 65535)
    unit = t.get_int("unit", 1, 1, 247)  # a Modbus unit id
    timeout = t.get_float("timeout_s", 3.0, 0.1, 60.0)
    t.done()
    return BatteryConfig(host, port, unit, timeout)


_get = get


def _positive(section: str, key: str, value: float, allow_zero: bool = False) -> float:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{section}.{key}", f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def _path(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


_unknown = reject_unknown


def parse_community(table: Mapping[str, Any], base: Path) -> CommunityConfig:
    s = "community"
    _unknown(s, table, {"id", "host", "port", "username", "password_file", "topic_prefix", "peers",
                        "max_message_age_s", "roster_refresh_s", "tls", "ca_file", "cert_file",
                        "key_file", "keepalive_s"})  # fmt: skip
    cid = _get(table, s, "id", str)
    if not COMMUNITY_RE.match(cid):
        raise ConfigError("community.id", "must match [a-z0-9][a-z0-9-]{0,31}")
    if cid in RESERVED_COMMUNITY_IDS:
        # PREFIX/meter/... are the readings, PREFIX/gateway/... the gateway's status: a bridge
        # carrying the community's topics (docs/bridging.md) would carry those too
        raise ConfigError("community.id", f"{cid!r} is reserved: its topics are the meters' or gateways'")
    port = _get(table, s, "port", int, 1883)
    if not 0 < port < 65536:
        raise ConfigError("community.port", f"not a TCP port: {port}")
    prefix = _get(table, s, "topic_prefix", str, "gridpact")
    if not TOPIC_RE.match(prefix):
        raise ConfigError("community.topic_prefix", "letters, digits, _ and - in /-separated levels")
    peers = _get(table, s, "peers", list, [])
    for n, peer in enumerate(peers):
        if not isinstance(peer, str) or not ADDRESS_RE.match(peer):
            raise ConfigError(f"community.peers[{n}]", "not a 0x address")
    keepalive = _get(table, s, "keepalive_s", int, 30)
    if not 0 <= keepalive <= 65535:
        raise ConfigError("community.keepalive_s", f"{keepalive} is not 0 (no pings) to 65535 seconds")
    pw = _get(table, s, "password_file", str, None)
    host = _get(table, s, "host", str, "127.0.0.1")
    tls = _get(table, s, "tls", bool, False)
    files = {k: _get(table, s, k, str, None) for k in ("ca_file", "cert_file", "key_file")}
    if not tls and any(files.values()):
        raise ConfigError("community.tls", "certificate files given but tls = false")
    if (files["cert_file"] is None) != (files["key_file"] is None):
        raise ConfigError(
            "community.cert_file", "a client certificate needs its key_file (and the other way)"
        )
    if pw and not tls and not _loopback(host):
        raise ConfigError(
            "community.tls", f"refusing to send the broker password in clear to {host}: set tls = true"
        )
    return CommunityConfig(
        id=cid,
        host=host,
        port=port,
        username=_get(table, s, "username", str, None),
        password_file=_path(base, pw) if pw else None,
        topic_prefix=prefix,
        peers=tuple(peers),
        max_message_age_s=_positive(
            s, "max_message_age_s", float(_get(table, s, "max_message_age_s", (int, float), 30))
        ),
        roster_refresh_s=_positive(
            s, "roster_refresh_s", float(_get(table, s, "roster_refresh_s", (int, float), 60))
        ),
        tls=tls,
        ca_file=_path(base, files["ca_file"]) if files["ca_file"] else None,
        cert_file=_path(base, files["cert_file"]) if files["cert_file"] else None,
        key_file=_path(base, files["key_file"]) if files["key_file"] else None,
        keepalive_s=keepalive,
    )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def parse_agent(table: Mapping[str, Any], base: Path | None = None) -> AgentConfig:
    s = "agent"
    d = AgentConfig()
    _unknown(s, table, set(AgentConfig.__dataclass_fields__))
    strategy = _get(table, s, "strategy", str, d.strategy)
    if strategy not in ("fixed", "learned"):
        raise ConfigError("agent.strategy", "must be 'fixed' or 'learned'")
    policy = _policy_path(_get(table, s, "policy", str, None), base or Path.cwd())
    if strategy == "learned":
        load_policy(policy)
    tariffs = [_get(table, s, k, (int, float), None) for k in ("import_tariff", "export_tariff")]
    for key, value in zip(("import_tariff", "export_tariff"), tariffs, strict=True):
        if value is not None:
            _positive(s, key, float(value), allow_zero=key == "export_tariff")
    if (tariffs[0] is None) != (tariffs[1] is None):
        missing = "import_tariff" if tariffs[0] is None else "export_tariff"
        raise ConfigError(f"agent.{missing}", "give both import_tariff and export_tariff, or neither")
    if tariffs[0] is not None and tariffs[0] <= tariffs[1]:
        raise ConfigError("agent.import_tariff", "must be above agent.export_tariff")
    acceptance = _get(table, s, "acceptance", str, d.acceptance)
    if acceptance not in ("next", "current"):
        raise ConfigError("agent.acceptance", "must be 'next' or 'current'")
    fallback = _get(table, s, "provider_fallback", str, d.provider_fallback)
    if fallback not in ("grid", "contract"):
        raise ConfigError("agent.provider_fallback", "must be 'grid' or 'contract'")
    market = _get(table, s, "market", str, d.market)
    if market not in ("p2p", "stations"):
        raise ConfigError("agent.market", "must be 'p2p' or 'stations'")
    strategies = {}
    for role in ("seller", "buyer"):
        cfg = dict(_get(table, s, role, dict, dict(getattr(d, role))))
        _check_strategy(f"agent.{role}", cfg)
        strategies[role] = cfg
    fixed = _get(table, s, "fixed_net_wh", int, None)
    window_s = int(_positive(s, "window_s", _get(table, s, "window_s", int, d.window_s)))
    ring = _get(table, s, "nonce_ring", int, d.nonce_ring)
    submit_grace = _positive(s, "keeper_submit_grace_s", float(_get(table, s, "keeper_submit_grace_s", (int, float),
                                                                     d.keeper_submit_grace_s)), True)  # fmt: skip
    if submit_grace * 4 > window_s:  # the other party falls back at twice the grace: well before the expiry
        raise ConfigError("agent.keeper_submit_grace_s", f"must be at most window_s / 4 ({window_s / 4:g})")
    if not 1 <= ring <= 65536:
        raise ConfigError("agent.nonce_ring", f"must be 1..65536, got {ring}")
    return AgentConfig(
        window_s=window_s,
        lead_s=int(_positive(s, "lead_s", _get(table, s, "lead_s", int, d.lead_s))),
        round_timeout_s=_positive(s, "round_timeout_s", float(_get(table, s, "round_timeout_s", (int, float), d.round_timeout_s))),
        max_rounds=int(_positive(s, "max_rounds", _get(table, s, "max_rounds", int, d.max_rounds))),
        min_trade_wh=int(_positive(s, "min_trade_wh", _get(table, s, "min_trade_wh", int, d.min_trade_wh))),
        acceptance=acceptance,
        seller=strategies["seller"],
        buyer=strategies["buyer"],
        provider_fallback=fallback,
        report_delay_s=_positive(s, "report_delay_s", float(_get(table, s, "report_delay_s", (int, float), d.report_delay_s)), True),
        confirm_wait_s=_positive(s, "confirm_wait_s", float(_get(table, s, "confirm_wait_s", (int, float), d.confirm_wait_s)), True),
        keeper_grace_s=_positive(s, "keeper_grace_s", float(_get(table, s, "keeper_grace_s", (int, float), d.keeper_grace_s)), True),
        keeper_submit_grace_s=submit_grace,
        fixed_net_wh=fixed,
        strategy=strategy,
        policy=policy,
        import_tariff=None if tariffs[0] is None else float(tariffs[0]),
        export_tariff=None if tariffs[1] is None else float(tariffs[1]),
        nonce_ring=ring,
        market=market,
    )  # fmt: skip


def _policy_path(value: str | None, base: Path) -> Path:
    if value is None:
        from gateway.negotiation import default_policy_path

        return Path(default_policy_path())
    return _path(base, value)


def load_policy(path: Path | None) -> Any:
    """Load the learned policy (gateway.negotiation.Policy); a missing or corrupt file names `agent.policy`."""
    from gateway.negotiation import Policy

    path = path if path is not None else _policy_path(None, Path.cwd())

    try:
        return Policy.load(path)
    except FileNotFoundError:
        raise ConfigError("agent.policy", f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError("agent.policy", f"not a usable policy file ({path}): {exc}") from None


def _check_strategy(key: str, cfg: dict[str, Any]) -> None:
    """Build the strategy once so a bad one fails at start, naming the key."""
    from gateway.negotiation import strategy_from_config

    try:
        strategy_from_config(cfg)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    if "price" not in cfg:
        raise ConfigError(f"{key}.price", "the price issue is required")


def parse_chain(table: Mapping[str, Any], base: Path) -> ChainConfig:
    s = "chain"
    _unknown(s, table, set(ChainConfig.__dataclass_fields__))
    rpc = _get(table, s, "rpc_url", str)
    if not rpc.startswith(("http://", "https://")):
        raise ConfigError("chain.rpc_url", "must be an http(s) JSON-RPC URL")
    market = _get(table, s, "market", str)
    if not ADDRESS_RE.match(market):
        raise ConfigError("chain.market", "not a 0x address")
    cred = _get(table, s, "passphrase_credential", str, None)
    pw_file = _get(table, s, "passphrase_file", str, None)
    if not cred and not pw_file:
        raise ConfigError("chain.passphrase_credential", "give passphrase_credential or passphrase_file")

    def num(key: str, default: float, allow_zero: bool = False) -> float:
        return _positive(s, key, float(_get(table, s, key, (int, float), default)), allow_zero)

    d = ChainConfig(rpc_url=rpc, market=market, keystore=Path())
    return ChainConfig(
        rpc_url=rpc,
        market=market,
        keystore=_path(base, _get(table, s, "keystore", str)),
        passphrase_credential=cred,
        passphrase_file=_path(base, pw_file) if pw_file else None,
        gas_margin=num("gas_margin", d.gas_margin),
        priority_fee_gwei=num("priority_fee_gwei", d.priority_fee_gwei, True),
        max_fee_gwei=num("max_fee_gwei", d.max_fee_gwei),
        receipt_timeout_s=num("receipt_timeout_s", d.receipt_timeout_s),
        anchor=_get(table, s, "anchor", bool, d.anchor),
        anchor_delay_s=num("anchor_delay_s", d.anchor_delay_s, True),
        retry_max_s=num("retry_max_s", d.retry_max_s),
        rpc_timeout_s=num("rpc_timeout_s", d.rpc_timeout_s),
    )


def parse_loans(table: Mapping[str, Any]) -> LoansConfig:
    """`[loans]`, checked against the engine's own validation (battery, weights, grid)."""
    s = "loans"
    d = LoansConfig()
    _unknown(s, table, set(LoansConfig.__dataclass_fields__))
    strategy = _get(table, s, "strategy", str, d.strategy)
    if strategy not in ("s0", "s1", "s2"):
        raise ConfigError("loans.strategy", "must be 's0', 's1' or 's2'")

    def num(key: str, allow_zero: bool = False) -> float:
        return _positive(s, key, float(_get(table, s, key, (int, float), getattr(d, key))), allow_zero)

    def whole(key: str, low: int, high: int) -> int:
        value = _get(table, s, key, int, getattr(d, key))
        if not low <= value <= high:
            raise ConfigError(f"loans.{key}", f"must be {low}..{high}, got {value}")
        return value

    period_s = whole("period_s", 1, 86400)
    window = whole("window", 3, 672)
    values = {
        "strategy": strategy, "period_s": period_s, "lead_s": whole("lead_s", 1, period_s), "window": window,
        "q_max_wh": whole("q_max_wh", 1, 10**9), "n_q": whole("n_q", 2, 101),
        "tau_min": whole("tau_min", 1, window - 1), "scenarios": whole("scenarios", 1, 1000),
        "risk": num("risk", True), "lam1": num("lam1", True), "lam2": num("lam2", True),
        "quantile": num("quantile", True), "capacity_kwh": num("capacity_kwh"),
        "soc_min": num("soc_min", True), "soc_max": num("soc_max"), "soc0": num("soc0", True),
        "charge_kw": num("charge_kw", True), "discharge_kw": num("discharge_kw", True),
        "efficiency": num("efficiency"), "degradation": num("degradation", True), "epsilon": num("epsilon", True),
        "contexts": whole("contexts", 1, 96), "max_rounds": whole("max_rounds", 2, 100_000),
        "round_timeout_s": num("round_timeout_s"), "collateral_per_kwh": whole("collateral_per_kwh", 0, 10**30),
        "report_delay_s": num("report_delay_s", True), "seed": whole("seed", 0, 2**63 - 1),
        "contract": _get(table, s, "contract", str, None),
    }  # fmt: skip
    if values["contract"] is not None and not ADDRESS_RE.match(values["contract"]):
        raise ConfigError("loans.contract", "not a 0x address")
    if values["epsilon"] > 1:
        raise ConfigError("loans.epsilon", "must lie in [0, 1]")
    cfg = LoansConfig(**values)
    from gateway.negotiation.cooperative.agent import AgentSpec

    try:
        AgentSpec("gateway", "", loan_battery(cfg), cfg.lam1, cfg.lam2, cfg.quantile, cfg.soc0)
    except ValueError as exc:
        raise ConfigError("loans", str(exc)) from None
    return cfg


def loan_battery(cfg: LoansConfig) -> Any:
    """The engine's BatterySpec of `[loans]` (raises ValueError when out of range)."""
    from gateway.negotiation.cooperative.battery import BatterySpec

    return BatterySpec.round_trip(
        cfg.efficiency, cfg.degradation, capacity_kwh=cfg.capacity_kwh, soc_min=cfg.soc_min,
        soc_max=cfg.soc_max, charge_kw=cfg.charge_kw, discharge_kw=cfg.discharge_kw, dt_h=cfg.period_s / 3600.0,
    )  # fmt: skip


def parse_trading_config(tables: dict[str, dict], base_dir: Path) -> TradingConfig:
    """Seam with gateway.config: all three tables are required once any is given; `[loans]`, `[keeper]`
    `[demand_response]`, `[battery]` and `[store]` are optional."""
    for name in ("community", "agent", "chain"):
        if name not in tables:
            raise ConfigError(name, "missing: trading needs [community], [agent] and [chain]")
        if not isinstance(tables[name], dict):
            raise ConfigError(name, "must be a table")
    loans, keeper, dr = tables.get("loans"), tables.get("keeper"), tables.get("demand_response")
    battery, store = tables.get("battery"), tables.get("store")
    optional = (
        ("loans", loans),
        ("keeper", keeper),
        ("demand_response", dr),
        ("battery", battery),
        ("store", store),
    )
    for name, value in optional:
        if value is not None and not isinstance(value, dict):
            raise ConfigError(name, "must be a table")
    cfg = TradingConfig(
        community=parse_community(tables["community"], base_dir),
        agent=parse_agent(tables["agent"], base_dir),
        chain=parse_chain(tables["chain"], base_dir),
        loans=parse_loans(loans) if loans is not None else None,
        keeper=parse_keeper(keeper) if keeper is not None else None,
        demand=parse_demand(dr) if dr is not None else None,
        battery=parse_battery(battery) if battery is not None else None,
        store=parse_store(store) if store is not None else None,
    )
    if cfg.store is not None:
        if cfg.battery is None:
            raise ConfigError(
                "store", "a store needs [battery]: the inverter its trades are delivered through"
            )
        if cfg.agent.fixed_net_wh is not None:
            raise ConfigError("agent.fixed_net_wh", "a store's net demand is its battery plan; remove it")
        if cfg.demand is not None and cfg.demand.prepare_s > 0:
            raise ConfigError(
                "demand_response.prepare_s", "a store's battery follows its trades: set it to 0"
            )
    grace = cfg.agent.keeper_submit_grace_s
    if cfg.keeper is not None and 0 < grace <= cfg.keeper.submit_delay_s:
        raise ConfigError(
            "agent.keeper_submit_grace_s",
            f"must exceed keeper.submit_delay_s ({cfg.keeper.submit_delay_s:g})",
        )
    return cfg
