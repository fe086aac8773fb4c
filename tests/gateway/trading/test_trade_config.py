"""[community], [agent], [chain]: the shipped example parses, and every bad value names its key."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.trading.config import TradingConfig, parse_trading_config

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "gateway" / "trading" / "config.example.toml"
TABLES = tomllib.loads(EXAMPLE.read_text())


def test_example_parses(tmp_path: Path) -> None:
    cfg = parse_trading_config(copy.deepcopy(TABLES), tmp_path)
    assert cfg.community.id == "oak-street"
    assert cfg.community.keepalive_s == 30
    assert cfg.agent.window_s == 3600 and cfg.agent.seller["price"]["ip"] == 300
    assert cfg.chain.passphrase_credential == "gateway-key-pass"
    assert cfg.chain.keystore == Path("/var/lib/gridpact-gateway/key.json")


def test_seam_with_gateway_core_config(tmp_path: Path) -> None:
    core = (ROOT / "gateway" / "config.example.toml").read_text()
    path = tmp_path / "gateway.toml"
    path.write_text(core + "\n" + EXAMPLE.read_text())
    cfg = load_config(path, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert isinstance(cfg.trading, TradingConfig)
    assert cfg.trading.chain.market == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert cfg.trading.demand is None
    # the optional [demand_response] table, as the gateway's own config loader reads it
    path.write_text(path.read_text() + '\n[demand_response]\ncontract = "0x' + "ab" * 20 + '"\npoll_s = 60\n')
    cfg = load_config(path, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert cfg.trading is not None and cfg.trading.demand is not None
    assert (cfg.trading.demand.contract, cfg.trading.demand.poll_s) == ("0x" + "ab" * 20, 60.0)


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("chain", "market"), "0x1234", "chain.market"),
        (("chain", "rpc_url"), "ws://x", "chain.rpc_url"),
        (("chain", "gas_margin"), -1, "chain.gas_margin"),
        (("chain", "anchor"), "yes", "chain.anchor"),
        (("community", "id"), "Oak Street", "community.id"),
        (("community", "id"), "meter", "community.id"),  # its topics would be the readings'
        (("community", "keepalive_s"), -1, "community.keepalive_s"),
        (("community", "keepalive_s"), 65536, "community.keepalive_s"),
        (("community", "keepalive_s"), 1.5, "community.keepalive_s"),
        (("community", "id"), "gateway", "community.id"),
        (("community", "port"), 70000, "community.port"),
        (("community", "peers"), ["0xnope"], "community.peers[0]"),
        (("agent", "window_s"), 0, "agent.window_s"),
        (("agent", "round_timeout_s"), True, "agent.round_timeout_s"),
        (("agent", "acceptance"), "sometimes", "agent.acceptance"),
        (("agent", "provider_fallback"), "barter", "agent.provider_fallback"),
        (("agent", "market"), "auction", "agent.market"),
        (("agent", "seller"), {"price": {"ip": 1}}, "agent.seller"),
        (("agent", "buyer"), {"quantity": {"ip": 1, "rp": 2, "dl": 3, "cr": 1.0}}, "agent.buyer.price"),
        (("agent", "surprise"), 1, "agent.surprise"),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, path: tuple[str, str], value: object, key: str) -> None:
    tables = copy.deepcopy(TABLES)
    tables[path[0]][path[1]] = value
    with pytest.raises(ConfigError) as info:
        parse_trading_config(tables, tmp_path)
    assert info.value.key == key


def test_missing_pieces(tmp_path: Path) -> None:
    tables = copy.deepcopy(TABLES)
    del tables["agent"]
    with pytest.raises(ConfigError) as info:
        parse_trading_config(tables, tmp_path)
    assert info.value.key == "agent"
    tables = copy.deepcopy(TABLES)
    del tables["chain"]["passphrase_credential"]
    with pytest.raises(ConfigError) as info:
        parse_trading_config(tables, tmp_path)
    assert info.value.key == "chain.passphrase_credential"
    tables = copy.deepcopy(TABLES)
    del tables["chain"]["market"]
    with pytest.raises(ConfigError, match="missing") as info:
        parse_trading_config(tables, tmp_path)
    assert info.value.key == "chain.market"


def test_demand_response_table_is_optional_and_checked(tmp_path: Path) -> None:
    assert parse_trading_config(copy.deepcopy(TABLES), tmp_path).demand is None
    tables = copy.deepcopy(TABLES) | {"demand_response": {"contract": "0x" + "ab" * 20}}
    cfg = parse_trading_config(tables, tmp_path).demand
    assert cfg is not None and (cfg.poll_s, cfg.claim_delay_s) == (300.0, 120.0)
    for table, key in (
        ({}, "demand_response.contract"),
        ({"contract": "0x12"}, "demand_response.contract"),
        ({"contract": "0x" + "ab" * 20, "poll_s": 0}, "demand_response.poll_s"),
        ({"contract": "0x" + "ab" * 20, "claim_delay_s": -1}, "demand_response.claim_delay_s"),
        ({"contract": "0x" + "ab" * 20, "reward": 5}, "demand_response.reward"),
    ):
        with pytest.raises(ConfigError) as info:
            parse_trading_config(copy.deepcopy(TABLES) | {"demand_response": table}, tmp_path)
        assert info.value.key == key, table
