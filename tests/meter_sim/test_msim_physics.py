"""Physics and counters: consistent quantities, energy = integral of power, monotone counters, faults."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from meter_sim.clock import SimClock
from meter_sim.faults import FaultError, make_fault, parse_timeline
from meter_sim.maps import load_map
from meter_sim.meter import Meter
from meter_sim.truth import TruthWriter, read_truth, registers_at

T0 = 1767225600.0 + 171 * 86400.0


def _meter(
    model: str, spec: str, tmp_path: Path, tick_s: float = 10.0
) -> tuple[Meter, SimClock, TruthWriter]:
    clock = SimClock(T0)
    truth = TruthWriter(tmp_path / "truth.jsonl")
    return Meter(load_map(model), 1, spec, clock, seed=3, tick_s=tick_s, truth=truth), clock, truth


@pytest.mark.parametrize("model", ["sdm120", "sdm630"])
def test_energy_counters_match_integral_of_power(model: str, tmp_path: Path) -> None:
    meter, clock, truth = _meter(model, "household:seed=7,pv_kwp=5,battery_kwh=5", tmp_path)
    for _ in range(48):
        clock.advance(1800.0)
        meter.sync()
    truth.close()
    rows = read_truth(tmp_path / "truth.jsonl")
    t = np.array([r["t"] for r in rows])
    p = np.array([r["r"]["p" if model == "sdm630" else "p1"] for r in rows])
    dt = np.diff(t)
    imp = float(np.sum(np.maximum(p[:-1], 0) * dt)) / 3.6e6
    exp = float(np.sum(np.maximum(-p[:-1], 0) * dt)) / 3.6e6
    assert imp > 1.0 and exp > 1.0  # a real day: both directions
    last = rows[-1]["r"]
    assert last["e_imp"] == pytest.approx(imp, rel=1e-3)
    assert last["e_exp"] == pytest.approx(exp, rel=1e-3)
    e_imp = np.array([r["r"]["e_imp"] for r in rows])
    e_exp = np.array([r["r"]["e_exp"] for r in rows])
    assert np.all(np.diff(e_imp) >= 0) and np.all(np.diff(e_exp) >= 0)


def test_quantities_are_consistent(tmp_path: Path) -> None:
    meter, clock, _ = _meter("sdm630", "household:seed=2,pv_kwp=8", tmp_path, tick_s=5.0)
    for step in (0.0, 3600.0 * 5, 3600.0 * 7):
        clock.advance(step)
        r = meter.registers()
        for k in "123":
            p, q, s, u, i = r["p" + k], r["q" + k], r["s" + k], r["u" + k], r["i" + k]
            assert s == pytest.approx(math.hypot(p, q), rel=1e-5)
            assert i == pytest.approx(s / u, rel=1e-5)
            assert 215.0 < u < 245.0
            if s > 1:
                assert r["pf" + k] == pytest.approx(p / s, rel=1e-5, abs=1e-6)
        assert r["p"] == pytest.approx(r["p1"] + r["p2"] + r["p3"], rel=1e-5, abs=1e-3)
        assert 49.9 < r["f"] < 50.1
        assert r["e_tot"] == pytest.approx(r["e_imp"] + r["e_exp"], rel=1e-6)
        assert r["u12"] == pytest.approx(math.sqrt(r["u1"] ** 2 + r["u2"] ** 2 + r["u1"] * r["u2"]), rel=1e-5)


def test_export_is_negative_power(tmp_path: Path) -> None:
    meter, clock, _ = _meter("sdm120", "constant:load_w=300,pv_w=2300", tmp_path)
    clock.advance(3600.0)
    r = meter.registers()
    assert r["p1"] == pytest.approx(-2000.0, rel=1e-6)
    assert r["e_exp"] == pytest.approx(2.0, rel=1e-4) and r["e_imp"] == 0.0
    assert r["u1"] > 230.0  # export lifts the voltage at the connection


def test_faults_stuck_nan_reset(tmp_path: Path) -> None:
    meter, clock, truth = _meter("sdm120", "household:seed=4", tmp_path, tick_s=1.0)
    clock.advance(600.0)
    before = meter.registers()
    meter.inject("stuck", 300.0)
    clock.advance(200.0)
    assert meter.registers() == before
    clock.advance(200.0)
    assert meter.registers()["e_imp"] > before["e_imp"]  # counters kept running underneath
    meter.inject("nan", 60.0, keys=["u1", "f"])
    r = meter.registers()
    assert math.isnan(r["u1"]) and math.isnan(r["f"]) and not math.isnan(r["p1"])
    clock.advance(60.0)
    assert not math.isnan(meter.registers()["u1"])
    e = meter.registers()["e_imp"]
    meter.inject("reset", 0.0)
    assert meter.registers()["e_imp"] == 0.0
    clock.advance(600.0)
    assert 0.0 < meter.registers()["e_imp"] < e
    truth.close()
    rows = read_truth(tmp_path / "truth.jsonl")
    assert any("stuck" in r["faults"] for r in rows)
    assert any(r["r"]["u1"] is None for r in rows)  # NaN written as null


def test_timeline_fault_at_future_time(tmp_path: Path) -> None:
    meter, clock, _ = _meter("sdm120", "constant:load_w=1000,pv_w=0", tmp_path, tick_s=1.0)
    for unit, fault in parse_timeline(
        [{"at": 100, "fault": "reset"}, {"at": 50, "fault": "slow", "duration_s": 5}], T0
    ):
        assert unit is None
        meter.schedule(fault)
    clock.advance(3600.0)
    # reset at t0+100: the counter holds only the energy since then
    assert meter.registers()["e_imp"] == pytest.approx(1000.0 * 3500.0 / 3.6e6, rel=1e-4)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("bogus", {}),
        ("exception", {"code": 0}),
        ("slow", {"delay_s": -1}),
        ("garbage", {"length": 0}),
        ("nan", {"keys": "u1"}),
        ("stuck", {"x": 1}),
    ],
)
def test_bad_faults_rejected(name: str, params: dict) -> None:
    with pytest.raises(FaultError):
        make_fault(name, T0, 1.0, params)


def test_bad_timeline_rejected() -> None:
    for entries in (
        {"x": 1},
        [{"at": 1}],
        [{"fault": "stuck", "at": "soon"}],
        [{"fault": "stuck", "at": 1, "unit": 0}],
    ):
        with pytest.raises(FaultError):
            parse_timeline(entries, T0)


def test_registers_at_picks_the_line_in_force() -> None:
    rows = [
        {"t": 10.0, "unit": 1, "meter": "a", "r": {"p1": 1.0}},
        {"t": 20.0, "unit": 1, "meter": "a", "r": {"p1": 2.0}},
        {"t": 15.0, "unit": 2, "meter": "b", "r": {"p1": 9.0}},
    ]
    assert registers_at(rows, 19.9, unit=1) == {"p1": 1.0}
    assert registers_at(rows, 20.0, meter="a") == {"p1": 2.0}
    assert registers_at(rows, 100.0, unit=2) == {"p1": 9.0}
    with pytest.raises(LookupError):
        registers_at(rows, 5.0, unit=1)


def test_demand_is_a_sliding_hour(tmp_path: Path) -> None:
    csv = tmp_path / "step.csv"
    csv.write_text(
        f"timestamp,load_w,pv_w\n{T0},1000,0\n{T0 + 3599},1000,0\n{T0 + 3600},3000,0\n{T0 + 86400},3000,0\n"
    )
    meter, clock, _ = _meter("sdm120", f"csv:{csv}", tmp_path, tick_s=1.0)
    clock.advance(3600.0)
    assert meter.registers()["p_dmd"] == pytest.approx(1000.0, rel=1e-3)
    clock.advance(1800.0)
    r = meter.registers()
    assert r["p_dmd"] == pytest.approx(2000.0, rel=2e-3)  # half an hour at 1 kW, half at 3 kW
    assert r["p_dmd_max"] == r["p_dmd"]
    clock.advance(3600.0)
    assert meter.registers()["p_dmd"] == pytest.approx(3000.0, rel=1e-3)
