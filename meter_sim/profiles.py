"""Household power profiles: one source of load and PV data for meters, negotiation and simulation.

Every profile is a pure function of time (and its seed), evaluated on numpy arrays, so
`series()` is vectorised and `power_at(t)` equals `series(t, 1, ...)` bit for bit.
"""

from __future__ import annotations

import csv
import math
from datetime import datetime
from pathlib import Path

import numpy as np

from gridpact.core.battery import (
    HOME_ROUND_TRIP,
    HOME_SOC_MAX,
    HOME_SOC_MIN,
    HOME_SOC_START,
    home_power_kw,
    step1,
)
from gridpact.core.inverter import AUTO, Command, Mode
from meter_sim.noise import smooth_noise, uniform
from meter_sim.solar import pv_fraction

DAY = 86400.0


class ProfileError(ValueError):
    """A profile spec or file that cannot be used, with the reason."""


class Profile:
    """Load and PV power (W, both >= 0) as a function of Unix time."""

    spec: str = ""
    seed: int = 0
    battery_kwh: float = 0.0
    battery_kw: float = 0.0

    def at_times(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(load_w, pv_w) at each time of `t` (float64 seconds)."""
        raise ProfileError(f"{type(self).__name__} does not define at_times")

    def series(self, t0_unix: float, n: int, step_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(load_w, pv_w) at t0, t0 + step, ... (n values each)."""
        if n < 0 or not math.isfinite(step_s):
            raise ProfileError(f"bad series request n={n} step_s={step_s}")
        return self.at_times(np.arange(n, dtype=np.float64) * step_s + t0_unix)

    def power_at(self, t_unix: float) -> tuple[float, float]:
        """(load_w, pv_w) at one time."""
        load, pv = self.at_times(np.array([t_unix], dtype=np.float64))
        return float(load[0]), float(pv[0])


class ConstantProfile(Profile):
    """Fixed load and PV: the reference case for counters and tests."""

    def __init__(self, load_w: float, pv_w: float) -> None:
        if load_w < 0 or pv_w < 0 or not (math.isfinite(load_w) and math.isfinite(pv_w)):
            raise ProfileError("constant profile: load_w and pv_w must be finite and >= 0")
        self.load_w, self.pv_w = float(load_w), float(pv_w)

    def at_times(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full(t.shape, self.load_w), np.full(t.shape, self.pv_w)


# Appliances switched on at random: (power W, duration s). Slots of 15 min, at most one start each.
APPLIANCES: tuple[tuple[float, float], ...] = (
    (2000.0, 180.0),  # kettle
    (1000.0, 300.0),  # microwave
    (1200.0, 3600.0),  # washing machine
    (2200.0, 2700.0),  # oven
    (1500.0, 3000.0),  # dishwasher
    (1800.0, 600.0),  # hair dryer / iron
)
SLOT = 900.0
APPLIANCE_W = np.array([a[0] for a in APPLIANCES])
APPLIANCE_S = np.array([a[1] for a in APPLIANCES])


def _gauss(h: np.ndarray, centre: float | np.ndarray, width: float) -> np.ndarray:
    """A daily bump around `centre` hours (wrapping at midnight)."""
    d = (h - centre + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / width) ** 2)


class HouseholdProfile(Profile):
    """A seeded synthetic household: base load, morning/evening peaks, appliances, seasons, PV.

    Parameters are drawn from the seed so that neighbours differ; nothing depends on call order.
    """

    def __init__(
        self,
        seed: int = 0,
        pv_kwp: float = 0.0,
        scale: float = 1.0,
        lat: float = 48.0,
        utc_offset_h: float = 1.0,
    ) -> None:
        if pv_kwp < 0 or scale <= 0 or not -66.0 <= lat <= 66.0:
            raise ProfileError("household profile: need pv_kwp >= 0, scale > 0, |lat| <= 66")
        self.seed, self.pv_kwp, self.scale = int(seed), float(pv_kwp), float(scale)
        self.lat, self.utc_offset_h = float(lat), float(utc_offset_h)
        u = uniform(self.seed, 1, np.arange(8, dtype=np.int64))
        self.base_w = 120.0 + 220.0 * u[0]
        self.morning_w, self.morning_h = 400.0 + 800.0 * u[1], 6.5 + 1.5 * u[2]
        self.evening_w, self.evening_h = 800.0 + 1400.0 * u[3], 18.0 + 2.0 * u[4]
        self.midday_w = 300.0 * u[5]
        self.appliance_rate = 0.6 + 0.8 * u[6]

    def load(self, t: np.ndarray) -> np.ndarray:
        """Household consumption in W (before PV and battery)."""
        local = t + self.utc_offset_h * 3600.0
        h = (local % DAY) / 3600.0
        doy = (local // DAY) % 365.25
        weekend = ((local // DAY + 3) % 7) >= 5  # 1970-01-01 was a Thursday
        winter = 1.0 + 0.25 * np.cos(2 * np.pi * (doy - 15.0) / 365.25)
        morning = self.morning_w * _gauss(h, self.morning_h + 1.5 * weekend, 0.8)
        evening = self.evening_w * winter * _gauss(h, self.evening_h, 1.6)
        midday = self.midday_w * (1.0 + weekend) * _gauss(h, 12.5, 1.5)
        minute = np.floor(t / 60.0).astype(np.int64)
        jitter = 1.0 + 0.16 * (uniform(self.seed, 2, minute) - 0.5)
        spikes = self._appliances(t)
        return self.scale * ((self.base_w * winter + morning + evening + midday) * jitter + spikes)

    def _appliances(self, t: np.ndarray) -> np.ndarray:
        """Power of appliances started in this slot or the four before it (the longest runs 1 h).

        Whether a slot starts one depends only on the slot (its hour of day), so an appliance
        runs its whole course whenever the profile is looked at.
        """
        slots = np.floor(t / SLOT).astype(np.int64)[None, :] - np.arange(5)[:, None]  # (5, n)
        h = ((slots * SLOT + self.utc_offset_h * 3600.0) % DAY) / 3600.0
        activity = 0.05 + 0.8 * (_gauss(h, self.morning_h, 1.2) + _gauss(h, self.evening_h, 2.0))
        fire = uniform(self.seed, 3, slots) < np.clip(activity * self.appliance_rate * 0.35, 0.0, 0.9)
        kind = np.minimum(
            (uniform(self.seed, 4, slots) * len(APPLIANCES)).astype(np.int64), len(APPLIANCES) - 1
        )
        start = slots * SLOT + uniform(self.seed, 5, slots) * SLOT
        on = fire & (t[None, :] >= start) & (t[None, :] < start + APPLIANCE_S[kind])
        return np.where(on, APPLIANCE_W[kind], 0.0).sum(axis=0)

    def pv(self, t: np.ndarray) -> np.ndarray:
        """PV output in W from sun position, daily weather and passing clouds."""
        if self.pv_kwp == 0.0:
            return np.zeros(t.shape)
        clear = pv_fraction(t, self.lat, self.utc_offset_h * 15.0)
        day = np.floor(t / DAY).astype(np.int64)
        doy = (t / DAY) % 365.25
        cloudy = np.clip(
            uniform(self.seed, 6, day) ** 0.8 + 0.15 * np.cos(2 * np.pi * (doy - 15) / 365.25), 0, 1
        )
        passing = smooth_noise(self.seed, 7, t / 600.0)
        cover = np.clip((cloudy + passing - 1.0) * 4.0, 0.0, 1.0)
        return self.pv_kwp * 1000.0 * 0.85 * clear * (1.0 - 0.75 * cover) * (1.0 - 0.2 * cloudy)

    def at_times(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.load(t), self.pv(t)


class CsvProfile(Profile):
    """Measured data: `timestamp,load_w,pv_w`, linearly interpolated, repeating outside its span."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.times, self.loads, self.pvs = _read_csv(Path(path))
        step = float(np.median(np.diff(self.times))) if len(self.times) > 1 else 1.0
        self.period = float(self.times[-1] - self.times[0]) + step

    def at_times(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.times[0] + (t - self.times[0]) % self.period
        xp = np.append(self.times, self.times[0] + self.period)
        return np.interp(x, xp, np.append(self.loads, self.loads[0])), np.interp(
            x, xp, np.append(self.pvs, self.pvs[0])
        )


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            raise ProfileError(f"timestamp {text!r} has no time zone") from None
        return stamp.timestamp()


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of a profile CSV, checked: increasing timestamps, finite non-negative powers."""
    if not path.is_file():
        raise ProfileError(f"csv profile: no such file {path}")
    rows: list[tuple[float, float, float]] = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"timestamp", "load_w", "pv_w"} - set(reader.fieldnames or [])
        if missing:
            raise ProfileError(f"csv profile {path}: missing columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                t, load, pv = _parse_time(row["timestamp"]), float(row["load_w"]), float(row["pv_w"])
            except (ValueError, TypeError) as exc:
                raise ProfileError(f"csv profile {path} line {line}: {exc}") from None
            if not (math.isfinite(load) and math.isfinite(pv)) or load < 0 or pv < 0:
                raise ProfileError(f"csv profile {path} line {line}: powers must be finite and >= 0")
            if rows and t <= rows[-1][0]:
                raise ProfileError(f"csv profile {path} line {line}: timestamps must increase")
            rows.append((t, load, pv))
    if not rows:
        raise ProfileError(f"csv profile {path}: no rows")
    a = np.array(rows)
    return a[:, 0], a[:, 1], a[:, 2]


def _params(text: str, allowed: set[str], kind: str) -> dict[str, float]:
    """`k=v,k=v` into floats, rejecting unknown keys and non-numbers."""
    out: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in allowed:
            raise ProfileError(f"{kind} profile: unknown parameter {item!r} (allowed: {sorted(allowed)})")
        try:
            out[key] = float(value)
        except ValueError:
            raise ProfileError(f"{kind} profile: {key} must be a number, not {value!r}") from None
        if not math.isfinite(out[key]):
            raise ProfileError(f"{kind} profile: {key} must be finite")
    return out


BATTERY_KEYS = {"battery_kwh", "battery_kw"}


def parse_profile(spec: str) -> Profile:
    """A profile from its spec: `constant:...`, `household:...` or `csv:PATH`."""
    kind, _, rest = spec.strip().partition(":")
    profile: Profile
    if kind == "constant":
        p = _params(rest, {"load_w", "pv_w"} | BATTERY_KEYS, kind)
        profile = ConstantProfile(p.get("load_w", 0.0), p.get("pv_w", 0.0))
    elif kind == "household":
        p = _params(rest, {"seed", "pv_kwp", "scale", "lat", "utc_offset_h"} | BATTERY_KEYS, kind)
        if p.get("seed", 0) != int(p.get("seed", 0)) or p.get("seed", 0) < 0:
            raise ProfileError("household profile: seed must be a non-negative integer")
        profile = HouseholdProfile(
            seed=int(p.get("seed", 0)),
            pv_kwp=p.get("pv_kwp", 0.0),
            scale=p.get("scale", 1.0),
            lat=p.get("lat", 48.0),
            utc_offset_h=p.get("utc_offset_h", 1.0),
        )
    elif kind == "csv":
        if not rest:
            raise ProfileError("csv profile: give a path, csv:PATH")
        profile, p = CsvProfile(rest), {}
    else:
        raise ProfileError(f"unknown profile kind {kind!r} in {spec!r} (constant, household, csv)")
    kwh = p.get("battery_kwh", 0.0)
    kw = p.get("battery_kw", home_power_kw(kwh))
    if kwh < 0 or kw < 0:
        raise ProfileError("battery_kwh and battery_kw must be >= 0")
    profile.spec, profile.battery_kwh, profile.battery_kw = spec, kwh, kw
    return profile


class Battery:
    """A home battery: gridpact.core.battery's model with the home battery's parameters, run for
    self-consumption unless its inverter has a command in force (gridpact.core.inverter)."""

    def __init__(self, capacity_kwh: float, power_w: float, soc_kwh: float | None = None) -> None:
        self.capacity_kwh, self.power_w = capacity_kwh, power_w
        self.min_kwh = HOME_SOC_MIN * capacity_kwh
        self.max_kwh = HOME_SOC_MAX * capacity_kwh
        self.efficiency = HOME_ROUND_TRIP  # half the loss on each way
        self.soc_kwh = HOME_SOC_START * capacity_kwh if soc_kwh is None else soc_kwh
        self.command: Command = AUTO
        self.command_until = -math.inf  # meter time at which the command lapses back to auto

    def obey(self, command: Command, now: float) -> None:
        """Take an inverter command from `now` on, for its lifetime."""
        self.command = command
        self.command_until = now + command.lifetime_s if command.mode != Mode.AUTO else -math.inf

    def command_at(self, t: float) -> Command:
        """The command in force at `t` (auto once it has lapsed)."""
        return self.command if t < self.command_until else AUTO

    def decide(self, surplus_w: float, dt_s: float, t: float = -math.inf) -> float:
        """Battery power for the next `dt_s` from `t`: > 0 discharging into the house, < 0 charging.

        The model's greedy step from the present charge (at least the floor: a battery below it after a
        longer step than planned is not topped up from the grid), on the energy the command in force
        asks for: the house's surplus or need (auto), the surplus only (hold), the set power (charge,
        discharge)."""
        eta = self.efficiency**0.5
        cmd = self.command_at(t)
        limit_kwh = self.power_w * dt_s / 3.6e6
        asked_kwh = -surplus_w * dt_s / 3.6e6  # + the house needs energy, - it has some to spare
        if cmd.mode == Mode.HOLD:
            asked_kwh = min(asked_kwh, 0.0)
        elif cmd.mode in (Mode.CHARGE, Mode.DISCHARGE):
            set_kwh = min(cmd.power_w, self.power_w) * dt_s / 3.6e6
            asked_kwh = set_kwh if cmd.mode == Mode.DISCHARGE else -set_kwh
        x = max(self.soc_kwh, self.min_kwh)
        _, e = step1(x, asked_kwh, self.min_kwh, self.capacity_kwh, limit_kwh, limit_kwh, eta, eta)
        return -e * 3.6e6 / dt_s + 0.0

    def apply(self, battery_w: float, dt_s: float) -> None:
        """Move the state of charge by `battery_w` held for `dt_s`."""
        eta = self.efficiency**0.5
        delta = -battery_w * dt_s / 3.6e6
        self.soc_kwh += delta * eta if delta > 0 else delta / eta
        self.soc_kwh = min(max(self.soc_kwh, 0.0), self.capacity_kwh)


class Household:
    """A profile plus an optional battery: what the meter at the grid connection sees."""

    def __init__(self, profile: Profile, battery: Battery | None = None, step_s: float = 60.0) -> None:
        self.profile = profile
        if battery is None and profile.battery_kwh > 0:
            battery = Battery(profile.battery_kwh, profile.battery_kw * 1000.0)
        self.battery = battery
        self.step_s = step_s  # the battery controller's horizon when no previous step is known
        self.t_last: float | None = None
        self.battery_w = 0.0
        self.soc_trace = np.zeros(0)  # state of charge (kWh) at each time of the last step_times()

    @classmethod
    def from_spec(cls, spec: str) -> Household:
        return cls(parse_profile(spec))

    def step_times(
        self, t: np.ndarray, load_pv: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(load, pv, battery) at increasing times `t`, advancing the battery state.

        `load_pv` is the profile at `t` when the caller already has it (the meter's look-ahead).
        """
        load, pv = self.profile.at_times(t) if load_pv is None else load_pv
        batt = np.zeros(t.shape)
        self.soc_trace = np.zeros(t.shape)
        if self.battery is None:
            if len(t):
                self.t_last = float(t[-1])
            return load, pv, batt
        surplus = pv - load
        for i in range(len(t)):
            ti = float(t[i])
            dt = ti - self.t_last if self.t_last is not None and ti > self.t_last else 0.0
            if dt > 0:
                self.battery.apply(self.battery_w, dt)
            horizon = dt if dt > 0 else self.step_s
            self.battery_w = self.battery.decide(float(surplus[i]), horizon, ti)
            self.t_last = ti
            batt[i] = self.battery_w
            self.soc_trace[i] = self.battery.soc_kwh
        return load, pv, batt

    def grid_power_at(self, t_unix: float) -> float:
        """Grid power (W, + import) at `t_unix`; advances the battery when time moves forward."""
        if self.t_last is not None and t_unix < self.t_last:
            load, pv = self.profile.power_at(t_unix)
            return load - pv - self.battery_w
        load, pv, batt = self.step_times(np.array([t_unix], dtype=np.float64))
        return float(load[0] - pv[0] - batt[0])

    def grid_series(self, t0_unix: float, n: int, step_s: float) -> np.ndarray:
        """Grid power at t0 + i*step from the current battery state, leaving this household unchanged."""
        twin = Household(self.profile, None, step_s)
        if self.battery is not None:
            twin.battery = Battery(self.battery.capacity_kwh, self.battery.power_w, self.battery.soc_kwh)
            twin.battery_w = 0.0
        load, pv, batt = twin.step_times(np.arange(n, dtype=np.float64) * step_s + t0_unix)
        return load - pv - batt


def household_series(spec: str, start: int, days: int, step_s: int, sub_s: int = 60) -> np.ndarray:
    """Mean grid power per `step_s` step of a household spec (sampled every `sub_s`): forecast studies' input."""
    per = step_s // sub_s
    grid = Household.from_spec(spec).grid_series(float(start), days * 86400 // sub_s, float(sub_s))
    return np.asarray(grid, dtype=np.float64).reshape(-1, per).mean(axis=1)
