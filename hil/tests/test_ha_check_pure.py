"""The pure parts of `./tasks ha-check` (hil/ha_check.py): what it calls a failure, and how long it
waits for Home Assistant's statistics. The check itself needs Home Assistant (not in the suite)."""

from __future__ import annotations

import json
from calendar import timegm

from hil.ha_check import GATEWAY_ID, MUST, Seen, check_entities, check_values, issues_of, stats_wait

T = timegm((2026, 1, 1, 12, 0, 0))  # a 5-minute mark


def _seen(uid: str, cls: str | None, unit: str | None, sc: str | None, cat: str | None, state: str) -> Seen:
    dev = uid.rsplit("_", 2)[0] if uid.startswith("gridpact_gw_") else "_".join(uid.split("_")[:2])
    return Seen(uid, "sensor.x", dev, state, cls, unit, sc, cat, {})


def test_stats_wait_covers_the_first_compile_with_time_to_record() -> None:
    # compiles at :00:10, :05:10, ...; 30 s margin after
    assert stats_wait(T + 11) == 299 + 30  # just after a compile: the next one
    assert stats_wait(T + 0) == 10 + 300 + 30  # 10 s before a compile is too close: the one after
    assert stats_wait(T + 250) == 60 + 30
    assert all(30 <= stats_wait(T + s) <= 360 for s in range(0, 600, 7))


def test_a_rejected_config_or_a_changed_unit_is_a_failure() -> None:
    uid = "gridpact_ha-120_e_imp_kWh"
    cfg = {
        "unique_id": uid,
        "device_class": "energy",
        "unit_of_measurement": "kWh",
        "state_class": "total_increasing",
    }
    ok = {uid: _seen(uid, "energy", "kWh", "total_increasing", None, "1.0")}
    problems = check_entities(ok, {uid: cfg})
    assert not [p for p in problems if p.startswith(uid)]
    assert any("no entity" in p for p in check_entities({}, {uid: cfg}))
    wrong = {uid: _seen(uid, "energy", "Wh", "total_increasing", None, "1.0")}
    assert any("published" in p and uid in p for p in check_entities(wrong, {uid: cfg}))
    assert any("missing" in p for p in check_entities(ok, {uid: cfg}))  # the rest of MUST is absent
    assert uid in MUST


def test_values_must_be_ones_the_node_or_gateway_published() -> None:
    uid = "gridpact_ha-120_e_imp_kWh"
    readings = {"ha-120": [{"r": {"e_imp_kWh": 1.25}}, {"r": {"e_imp_kWh": 1.5}}]}
    assert check_values({uid: _seen(uid, "energy", "kWh", None, None, "1.5")}, readings, {}) == []
    assert check_values({uid: _seen(uid, "energy", "kWh", None, None, "0")}, readings, {})  # a made-up 0
    assert check_values({uid: _seen(uid, "energy", "kWh", None, None, "unknown")}, readings, {})
    gw = f"gridpact_gw_{GATEWAY_ID}_token_balance"
    assert check_values({gw: _seen(gw, "monetary", "kWt", "total", None, "unknown")}, {}, {}) == []
    assert check_values({gw: _seen(gw, "monetary", "kWt", "total", None, "0.0")}, {}, {})  # unknown, not 0


def test_issues_are_flattened_with_their_entities() -> None:
    result = json.loads(
        '{"energy_sources": [[{"type": "statistics_not_defined", "affected_entities": [["sensor.a", null]],'
        ' "translation_placeholders": null}]], "device_consumption": [[]]}'
    )
    assert issues_of(result) == ["statistics_not_defined: sensor.a"]
    assert issues_of({"energy_sources": [[]], "device_consumption": []}) == []
