"""The community store's plan and dispatch (gateway/trading/store.py), pure, and its config."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.chain.journal import AgreementRecord
from gateway.errors import ConfigError
from gateway.trading.config import parse_trading_config
from gateway.trading.store import StoreSchedule, agreed_wh, dispatch, store_net_wh
from gridpact.core.inverter import Command, InverterStatus, Mode

HOUR = 3600
DAY0 = 1_776_038_400  # 00:00 UTC
SCHED = StoreSchedule(frozenset({11, 12}), frozenset({18, 19}), reserve_permille=100)
ST = InverterStatus(Mode.HOLD, 0, 400, 0, 100_000, 20_000)  # 40 of 100 kWh, 20 kW
TABLES = tomllib.loads(
    (Path(__file__).resolve().parents[3] / "gateway/trading/config.example.toml").read_text()
)


def rec(role: str, q: int, start: int, state: str = "submitted") -> AgreementRecord:
    terms: dict[str, Any] = {"quantityWh": q, "deliveryStart": start, "deliveryEnd": start + HOUR}
    return AgreementRecord(
        f"{role}{q}{start}", role, "0xpeer", terms, "", None, state, start + HOUR, None, None
    )


def test_the_store_buys_its_room_in_buy_hours_and_sells_its_charge_in_sell_hours() -> None:
    assert store_net_wh(DAY0 + 11 * HOUR, HOUR, ST, 0, SCHED) == 18_000  # 90 % of the power limit
    assert store_net_wh(DAY0 + 11 * HOUR, HOUR, ST, 50_000, SCHED) == pytest.approx(0.95 * 10_000)
    assert store_net_wh(DAY0 + 11 * HOUR, HOUR, ST, 70_000, SCHED) == 0  # already bought its room
    assert store_net_wh(DAY0 + 18 * HOUR, HOUR, ST, 0, SCHED) == -18_000
    down_to_the_reserve = pytest.approx(-0.95 * 10_000)
    assert store_net_wh(DAY0 + 18 * HOUR, HOUR, ST, -20_000, SCHED) == down_to_the_reserve
    assert store_net_wh(DAY0 + 18 * HOUR, HOUR, ST, -40_000, SCHED) == 0
    assert store_net_wh(DAY0 + 15 * HOUR, HOUR, ST, 0, SCHED) == 0  # neither: no trade
    assert store_net_wh(DAY0 + 11 * HOUR, 900, ST, 0, SCHED) == 4_500  # a quarter-hour window


def test_only_agreements_it_must_deliver_count_and_each_side_by_its_sign() -> None:
    w = DAY0 + 11 * HOUR
    records = [rec("buyer", 3000, w), rec("buyer", 1000, w), rec("seller", 500, w), rec("buyer", 700, w, "signing"),
               rec("buyer", 900, w, "abandoned"), rec("buyer", 2000, w + HOUR), rec("seller", 100, w, "closed")]  # fmt: skip
    assert agreed_wh(records, w, w + 1) == 3000 + 1000 - 500 - 100
    assert agreed_wh(records, w, w + 2 * HOUR) == 3400 + 2000


def test_dispatch_moves_what_is_left_at_an_even_rate_and_holds_once_done() -> None:
    w = DAY0 + 11 * HOUR  # each aims 2 % past the agreed energy
    assert dispatch(2000, 0, w, w, w + HOUR) == Command(Mode.CHARGE, 2040, HOUR)
    assert dispatch(2000, 1540, w + 1800, w, w + HOUR) == Command(Mode.CHARGE, 1000, 1800)  # caught up
    assert dispatch(-3000, -1060, w + 1800, w, w + HOUR) == Command(Mode.DISCHARGE, 4000, 1800)
    assert dispatch(2000, 2040, w + 3000, w, w + HOUR) == Command(Mode.HOLD, 0, 600)  # done
    assert dispatch(-3000, -3100, w + 3000, w, w + HOUR) == Command(Mode.HOLD, 0, 600)  # overshot: stop
    assert dispatch(0, 0, w + 10, w, w + HOUR) == Command(Mode.HOLD, 0, HOUR - 10)  # nothing agreed
    assert dispatch(10**6, 0, w + 3599.5, w, w + HOUR).power_w == 0xFFFF  # the register's limit


def _tables(**extra: dict[str, Any]) -> dict[str, Any]:
    tables = copy.deepcopy(TABLES)
    tables["agent"].pop("fixed_net_wh", None)
    tables.update(copy.deepcopy(extra))
    return tables


def test_the_store_table_is_checked(tmp_path: Path) -> None:
    battery = {"host": "10.0.0.9"}
    cfg = parse_trading_config(
        _tables(store={"buy_hours": [10, 11], "sell_hours": [18]}, battery=battery), tmp_path
    )
    assert cfg.store is not None and cfg.store.buy_hours == {10, 11} and cfg.store.reserve_permille == 100
    for tables, key in (
        (_tables(store={"buy_hours": [10]}), "store"),  # no [battery]
        (_tables(store={"buy_hours": [24]}, battery=battery), "store.buy_hours"),
        (_tables(store={"buy_hours": "10"}, battery=battery), "store.buy_hours"),
        (_tables(store={}, battery=battery), "store.buy_hours"),
        (_tables(store={"buy_hours": [10], "sell_hours": [10]}, battery=battery), "store.sell_hours"),
        (
            _tables(store={"buy_hours": [10], "reserve_permille": 1001}, battery=battery),
            "store.reserve_permille",
        ),
        (_tables(store={"buy_hours": [10], "renew_s": 0}, battery=battery), "store.renew_s"),
        (
            _tables(
                store={"buy_hours": [10]}, battery=battery, demand_response={"contract": "0x" + "22" * 20}
            ),
            "demand_response.prepare_s",
        ),
    ):
        with pytest.raises(ConfigError) as err:
            parse_trading_config(tables, tmp_path)
        assert key in str(err.value), tables.get("store")
    fixed = _tables(store={"buy_hours": [10]}, battery=battery)
    fixed["agent"]["fixed_net_wh"] = 100
    with pytest.raises(ConfigError, match="fixed_net_wh"):
        parse_trading_config(fixed, tmp_path)
