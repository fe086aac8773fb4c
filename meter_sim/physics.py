"""The meter's electrical model: grid voltage and frequency, per-phase power, exact energy counters.

All quantities for a run of ticks are computed as numpy arrays; energy counters integrate the
power held between ticks (sample and hold), so they equal the sum of power x time exactly.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from meter_sim.noise import smooth_noise, uniform
from meter_sim.profiles import Household

NOMINAL_V = 230.0
LINE_R = 0.25  # ohm: voltage drop with import, rise with export
DEMAND_PERIOD = 3600.0  # Eastron default demand period
DEMAND_STEP = 60.0  # the demand value is updated each minute
COUNTERS = ("e_imp", "e_exp", "eq_imp", "eq_exp", "es", "ah")


def grid_frequency(t: np.ndarray) -> np.ndarray:
    """Frequency common to the whole grid: 50 Hz with slow swings of a few tens of mHz."""
    return 50.0 + 0.03 * np.sin(2 * np.pi * t / 1800.0) + 0.04 * (smooth_noise(0, 11, t / 30.0) - 0.5)


def grid_voltage(t: np.ndarray, seed: int, phases: int) -> np.ndarray:
    """Open-circuit voltage per phase (n, phases): daily dip at the evening peak, slow noise, local offset."""
    daily = -3.0 * np.cos(2 * np.pi * (t % 86400.0 - 18.5 * 3600.0) / 86400.0)
    local = 4.0 * (uniform(seed, 12, np.arange(phases)) - 0.5)
    # each phase its own noise: knots of phase k are offset by k * 2**40 (far beyond any time index)
    x = (t / 90.0)[:, None] + (np.arange(phases) * float(2**40))[None, :]
    noise = 2.0 * (smooth_noise(seed, 13, x) - 0.5)
    return NOMINAL_V + 2.0 + daily[:, None] + local[None, :] + noise


class Physics:
    """One meter's electrical state and counters (float64 internally; registers are float32)."""

    def __init__(self, household: Household, phases: int, seed: int) -> None:
        self.household, self.phases, self.seed = household, phases, seed
        w = 0.5 + uniform(seed, 14, np.arange(phases))
        self.weights = w / w.sum()
        self.tan_phi = np.tan(np.arccos(0.90 + 0.08 * uniform(seed, 15, np.arange(1))[0]))
        # counters, in the column order of `rates()`; signed_ws (import - export, W*s) feeds the demand
        self.counter_names = [*COUNTERS, *(f"e_imp{k + 1}" for k in range(phases))]
        self.counter_names += [*(f"e_exp{k + 1}" for k in range(phases)), "signed_ws"]
        self.scales = np.array([3.6e6] * 5 + [3600.0] + [3.6e6] * (2 * phases) + [1.0])
        self.totals = np.zeros(len(self.counter_names))
        self.t_energy: float | None = None  # counters hold the integral up to this time
        self.held_rates: np.ndarray | None = None  # rates of the last tick, held until the next
        self.held: dict[str, np.ndarray] | None = None  # last tick's p, q, s
        self._dmd_shown = (0.0, 0.0)  # demand values in force before the next minute mark
        self.demand_marks: deque[tuple[float, float]] = deque(maxlen=int(DEMAND_PERIOD / DEMAND_STEP) + 1)
        self.p_dmd = 0.0
        self.p_dmd_max = 0.0

    def pure_at(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """The parts that depend on time alone: profile, open-circuit voltage, frequency."""
        load, pv = self.household.profile.at_times(t)
        return {"load": load, "pv": pv, "u0": grid_voltage(t, self.seed, self.phases), "f": grid_frequency(t)}

    def instantaneous(
        self, t: np.ndarray, pure: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Per-tick electrical values at times `t` (advances the household's battery)."""
        pure = self.pure_at(t) if pure is None else pure
        load, pv, batt = self.household.step_times(t, (pure["load"], pure["pv"]))
        gen = (pv + batt)[:, None] / self.phases  # battery > 0: discharging into the house
        load_ph = load[:, None] * self.weights[None, :]
        p = load_ph - gen
        q = load_ph * self.tan_phi
        s = np.hypot(p, q)
        u0 = pure["u0"]
        u = u0 - LINE_R * p / u0
        out: dict[str, np.ndarray] = {"load_w": load, "pv_w": pv, "battery_w": batt, "f": pure["f"]}
        out["soc_kwh"], out["grid_w"] = self.household.soc_trace, load - pv - batt
        safe = np.where(s > 1e-9, s, 1.0)
        pf = np.where(s > 1e-9, p / safe, 1.0)
        phi = np.degrees(np.arctan2(q, p))
        i = s / u
        for k in range(self.phases):
            n = str(k + 1)
            out["u" + n], out["i" + n], out["p" + n] = u[:, k], i[:, k], p[:, k]
            out["s" + n], out["q" + n], out["pf" + n], out["phi" + n] = s[:, k], q[:, k], pf[:, k], phi[:, k]
        p_sys, q_sys, s_sys = p.sum(axis=1), q.sum(axis=1), s.sum(axis=1)
        out.update(p=p_sys, q=q_sys, s=s_sys, u_avg=u.mean(axis=1), i_avg=i.mean(axis=1), i_sum=i.sum(axis=1))
        out["pf"] = np.where(s_sys > 1e-9, p_sys / np.where(s_sys > 1e-9, s_sys, 1.0), 1.0)
        out["phi"] = np.degrees(np.arctan2(q_sys, p_sys))
        if self.phases == 3:
            for a, b, key in ((0, 1, "u12"), (1, 2, "u23"), (2, 0, "u31")):
                out[key] = np.sqrt(u[:, a] ** 2 + u[:, b] ** 2 + u[:, a] * u[:, b])
            out["u_ll_avg"] = (out["u12"] + out["u23"] + out["u31"]) / 3.0
            i1, i2, i3 = i[:, 0], i[:, 1], i[:, 2]
            out["i_n"] = np.sqrt(np.maximum(i1**2 + i2**2 + i3**2 - i1 * i2 - i2 * i3 - i3 * i1, 0.0))
        return out

    def rates(self, inst: dict[str, np.ndarray]) -> np.ndarray:
        """What each counter integrates, one column per counter (`counter_names`), one row per tick."""
        p, q = inst["p"], inst["q"]
        cols = [
            np.maximum(p, 0),
            np.maximum(-p, 0),
            np.maximum(q, 0),
            np.maximum(-q, 0),
            inst["s"],
            inst["i_sum"],
        ]
        per_phase = np.stack([inst[f"p{k + 1}"] for k in range(self.phases)], axis=1)
        cols_2d = [np.stack(cols, axis=1), np.maximum(per_phase, 0), np.maximum(-per_phase, 0), p[:, None]]
        return np.concatenate(cols_2d, axis=1)

    def advance(self, t: np.ndarray, pure: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Run ticks at increasing times `t`: values and counters as the registers show them at each.

        Each counter adds the rate held since the previous tick times the time since then, so
        the counters are exactly the integral of the sampled-and-held power.
        """
        inst = self.instantaneous(t, pure)
        rates = self.rates(inst)
        prev_t = np.concatenate(([t[0] if self.t_energy is None else self.t_energy], t[:-1]))
        held = np.zeros((1, rates.shape[1])) if self.held_rates is None else self.held_rates
        prev_rates = np.concatenate((held, rates[:-1]), axis=0)
        totals = self.totals + np.cumsum(prev_rates * ((t - prev_t)[:, None] / self.scales), axis=0)
        for j, name in enumerate(self.counter_names):
            inst[name] = totals[:, j]
        inst["e_tot"] = inst["e_imp"] + inst["e_exp"]
        inst["eq_tot"] = inst["eq_imp"] + inst["eq_exp"]
        self._demand(t, inst["signed_ws"], inst)
        self.totals = totals[-1].copy()
        self.held_rates = rates[-1:].copy()
        self.t_energy = float(t[-1])
        self.held = {k: inst[k][-1:] for k in ("p", "q", "s")}
        return inst

    def _demand(self, t: np.ndarray, signed: np.ndarray, out: dict[str, np.ndarray]) -> None:
        """Sliding-window mean power over the demand period, updated at each minute boundary."""
        minute = np.floor(t / DEMAND_STEP)
        last = self.demand_marks[-1][0] if self.demand_marks else -np.inf
        new = np.empty(len(t), dtype=bool)
        new[0] = minute[0] > last
        new[1:] = minute[1:] > minute[:-1]
        marks = np.flatnonzero(new)
        dmd_at, max_at = np.empty(len(marks)), np.empty(len(marks))
        for j, i in enumerate(marks.tolist()):  # one step per minute, not per tick
            m, e = float(minute[i]), float(signed[i])
            self.demand_marks.append((m, e))
            m0, e0 = self.demand_marks[0]
            span = (m - m0) * DEMAND_STEP
            self.p_dmd = (e - e0) / span if span > 0 else 0.0
            self.p_dmd_max = max(self.p_dmd_max, self.p_dmd)
            dmd_at[j], max_at[j] = self.p_dmd, self.p_dmd_max
        # each tick shows the value of the last minute mark at or before it
        which = np.cumsum(new) - 1
        before = which < 0
        safe = np.maximum(which, 0)
        if len(marks):
            out["p_dmd"] = np.where(before, self._dmd_shown[0], dmd_at[safe])
            out["p_dmd_max"] = np.where(before, self._dmd_shown[1], max_at[safe])
        else:
            out["p_dmd"] = np.full(len(t), self._dmd_shown[0])
            out["p_dmd_max"] = np.full(len(t), self._dmd_shown[1])
        self._dmd_shown = (self.p_dmd, self.p_dmd_max)

    def integrate_to(self, t: float) -> None:
        """Bring the counters up to `t` between ticks (before a counter reset)."""
        if self.held_rates is None or self.t_energy is None or t <= self.t_energy:
            return
        self.totals = self.totals + self.held_rates[0] * (t - self.t_energy) / self.scales
        self.t_energy = t

    def reset_counters(self) -> None:
        """What an energy reset on the meter does: all counters and the demand to zero."""
        self.totals = np.zeros(len(self.counter_names))
        self.demand_marks.clear()
        self.p_dmd = self.p_dmd_max = 0.0
        self._dmd_shown = (0.0, 0.0)


class Lookahead:
    """Caches the time-only parts for the next `block` ticks of a tick grid t0 + k * tick.

    One vectorised evaluation then serves many single-tick steps: a meter polled once a
    second pays numpy's per-call overhead once a minute instead of every request.
    """

    def __init__(self, physics: Physics, t0: float, tick_s: float, block: int = 64) -> None:
        self.physics, self.t0, self.tick_s, self.block = physics, t0, tick_s, block
        self.k0 = 0
        self.cached: dict[str, np.ndarray] | None = None

    def times(self, k: int, n: int) -> np.ndarray:
        return self.t0 + np.arange(k, k + n, dtype=np.float64) * self.tick_s

    def get(self, k: int, n: int) -> dict[str, np.ndarray]:
        """The pure parts at ticks k .. k+n-1."""
        if n > self.block:
            return self.physics.pure_at(self.times(k, n))
        c = self.cached
        if c is None or k < self.k0 or k + n > self.k0 + len(c["load"]):
            self.k0, self.cached = k, self.physics.pure_at(self.times(k, self.block))
            c = self.cached
        i = k - self.k0
        return {name: a[i : i + n] for name, a in c.items()}
