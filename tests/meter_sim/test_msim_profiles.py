"""Profiles: spec parsing, determinism, vectorised == scalar, household shape, CSV, battery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from meter_sim.profiles import Household, HouseholdProfile, ProfileError, parse_profile

JAN1 = 1767225600.0  # 2026-01-01T00:00Z
JUN21 = JAN1 + 171 * 86400.0


def test_constant_exact_syntax() -> None:
    p = parse_profile("constant:load_w=2300,pv_w=0")
    assert p.power_at(JAN1) == (2300.0, 0.0)
    load, pv = p.series(JAN1, 4, 60.0)
    assert load.tolist() == [2300.0] * 4 and pv.tolist() == [0.0] * 4


@pytest.mark.parametrize(
    "spec",
    [
        "nonsense",
        "constant:load_w=abc",
        "constant:load_w=-5",
        "constant:volts=3",
        "household:seed=1.5",
        "household:seed=-1",
        "household:pv_kwp=-1",
        "household:lat=80",
        "csv:",
        "csv:/nonexistent/file.csv",
        "constant:load_w=nan",
        "constant:load_w=1,battery_kwh=-1",
    ],
)
def test_bad_specs_raise_clear_errors(spec: str) -> None:
    with pytest.raises(ProfileError):
        parse_profile(spec)


def test_household_deterministic_and_vectorised() -> None:
    spec = "household:seed=7,pv_kwp=5,battery_kwh=7"
    a, b = parse_profile(spec), parse_profile(spec)
    load, pv = a.series(JUN21, 288, 300.0)
    load2, pv2 = b.series(JUN21, 288, 300.0)
    assert np.array_equal(load, load2) and np.array_equal(pv, pv2)
    for i in (0, 17, 100, 287):
        assert a.power_at(JUN21 + i * 300.0) == (load[i], pv[i])
    other, _ = parse_profile("household:seed=8,pv_kwp=5").series(JUN21, 288, 300.0)
    assert not np.array_equal(load, other)
    assert isinstance(a, HouseholdProfile) and a.battery_kwh == 7.0


def test_household_shape() -> None:
    hours = np.arange(0, 24 * 60)  # one value per minute over 60 days
    load_sum = np.zeros(24)
    pv_sum = np.zeros(24)
    p = parse_profile("household:seed=3,pv_kwp=4")
    for day in range(60):
        load, pv = p.series(JAN1 + day * 86400.0, len(hours), 60.0)
        load_sum += load.reshape(24, 60).mean(axis=1)
        pv_sum += pv.reshape(24, 60).mean(axis=1)
    # local time is UTC+1: the night (02-04 local) is far below the evening peak (18-21 local)
    assert load_sum[17:20].mean() > 2.0 * load_sum[1:3].mean()
    assert load_sum[5:8].mean() > load_sum[1:3].mean()
    assert pv_sum[0:4].max() == 0.0 and pv_sum[10:13].mean() > 0.0


def test_pv_seasons_and_spikes() -> None:
    p = parse_profile("household:seed=5,pv_kwp=5")
    _, winter = p.series(JAN1, 60 * 24 * 30, 60.0)
    _, summer = p.series(JUN21 - 15 * 86400.0, 60 * 24 * 30, 60.0)
    assert summer.mean() > 2.0 * winter.mean()
    assert summer.max() <= 5000.0 and winter.min() >= 0.0
    load, _ = p.series(JAN1, 60 * 24 * 7, 60.0)
    assert load.max() > 1500.0  # appliances (kettle, oven...) appear within a week


def test_csv_profile(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text(
        "timestamp,load_w,pv_w\n0,100,0\n60,200,50\n2026-01-01T00:02:00Z,300,10\n".replace(
            "2026-01-01T00:02:00Z", "1970-01-01T00:02:00Z"
        )
    )
    p = parse_profile(f"csv:{f}")
    assert p.power_at(30.0) == (150.0, 25.0)
    assert p.power_at(120.0) == (300.0, 10.0)
    assert p.power_at(180.0 + 30.0) == p.power_at(30.0)  # repeats with its period (180 s)
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,load_w,pv_w\n0,1,0\n0,1,0\n")
    with pytest.raises(ProfileError, match="line 3"):
        parse_profile(f"csv:{bad}")
    bad.write_text("time,load\n")
    with pytest.raises(ProfileError, match="missing columns"):
        parse_profile(f"csv:{bad}")
    bad.write_text("timestamp,load_w,pv_w\n0,x,0\n")
    with pytest.raises(ProfileError, match="line 2"):
        parse_profile(f"csv:{bad}")


def test_battery_self_consumption() -> None:
    spec = "household:seed=7,pv_kwp=6,battery_kwh=7"
    hh = Household.from_spec(spec)
    plain = Household.from_spec("household:seed=7,pv_kwp=6")
    n, step = 24 * 60 * 3, 60.0
    grid = hh.grid_series(JUN21, n, step)
    grid_plain = plain.grid_series(JUN21, n, step)
    assert hh.battery is not None and hh.battery.soc_kwh == 3.5  # grid_series left it unchanged
    # the battery moves energy from export to later import: both shrink, never beyond its size
    exp_b, exp_p = -grid[grid < 0].sum() * step / 3.6e6, -grid_plain[grid_plain < 0].sum() * step / 3.6e6
    imp_b, imp_p = grid[grid > 0].sum() * step / 3.6e6, grid_plain[grid_plain > 0].sum() * step / 3.6e6
    assert exp_b < exp_p and imp_b < imp_p
    assert np.abs(grid - grid_plain).max() <= 3500.0 + 1e-6
    # stateful stepping equals the pure series from the same start
    stepped = [hh.grid_power_at(JUN21 + i * step) for i in range(200)]
    assert np.allclose(stepped, grid[:200])
    assert 0.7 <= hh.battery.soc_kwh <= 7.0
