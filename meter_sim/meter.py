"""One software meter: household physics on a clock, register images, faults, ground truth."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from gridpact.core.clock import TimeSource
from meter_sim.faults import Fault, make_fault
from meter_sim.maps import RegisterMap
from meter_sim.physics import Lookahead, Physics
from meter_sim.profiles import Household, Profile, parse_profile
from meter_sim.truth import TruthWriter, clean

MAX_TICKS_PER_RUN = 50_000  # bounds memory when a clock jumps far ahead
STATE_KEYS = ("load_w", "pv_w", "battery_w", "grid_w", "soc_kwh")


def nan_keys(fault: Fault | None, keys: list[str]) -> list[str]:
    """The register keys a `nan` fault blanks: its `keys` parameter, or all of them."""
    if fault is None:
        return []
    chosen = fault.params.get("keys")
    return [k for k in (chosen if isinstance(chosen, list) else keys) if k in keys]


class Meter:
    """An Eastron meter in software. Physics ticks every `tick_s` of meter time (sample and hold)."""

    def __init__(
        self,
        rmap: RegisterMap,
        unit_id: int,
        household: Household | Profile | str,
        clock: TimeSource,
        *,
        seed: int = 0,
        name: str | None = None,
        tick_s: float = 1.0,
        truth: TruthWriter | None = None,
        truth_every_s: float | None = None,
        faults: Sequence[Fault] = (),
    ) -> None:
        if not 1 <= unit_id <= 247:
            raise ValueError(f"unit id {unit_id} outside 1..247")
        if not tick_s > 0:
            raise ValueError("tick_s must be > 0")
        if isinstance(household, str):
            household = parse_profile(household)
        if isinstance(household, Profile):
            household = Household(household)
        self.rmap, self.unit_id, self.household, self.clock = rmap, unit_id, household, clock
        self.name = name or f"{rmap.model}-{unit_id}"
        self.seed, self.tick_s, self.truth = seed, tick_s, truth
        self.truth_every_s = tick_s if truth_every_s is None else truth_every_s
        self.physics = Physics(household, rmap.phases, seed)
        self.holding = {h.key: h.default for h in rmap.holdings}
        if "unit_id" in self.holding:
            self.holding["unit_id"] = float(unit_id)
        self.faults: list[Fault] = list(faults)
        self.values: dict[str, float] = {}
        self.last_state: dict[str, float] = {k: 0.0 for k in STATE_KEYS}
        self.frozen: dict[str, float] | None = None
        self.t0 = clock.now()
        self.k_next = 0  # index of the next tick to run: its time is t0 + k * tick_s
        self.lookahead = Lookahead(self.physics, self.t0, tick_s)
        self.t_synced = self.t0
        self._truth_next = self.t0
        self._image_cache: tuple[tuple[object, ...], bytes] | None = None
        self._float_index = np.array([r.address // 2 for r in rmap.inputs], dtype=np.int64)
        self._run_ticks(self.t0)
        if any(f.start <= self.t0 for f in self.faults):
            self._boundary(self.t0)

    # ---- time -------------------------------------------------------------------------------
    def sync(self, now: float | None = None) -> None:
        """Bring physics, counters and fault state up to `now` (the clock's time by default)."""
        now = self.clock.now() if now is None else now
        if now <= self.t_synced:
            return
        bounds = sorted({b for f in self.faults for b in (f.start, f.end) if self.t_synced < b <= now})
        for b in bounds:
            self._run_ticks(b)
            self._boundary(b)
        self._run_ticks(now)
        self.t_synced = now

    def _run_ticks(self, until: float) -> None:
        """Run every tick at or before `until`, in chunks, then refresh the register values."""
        while self.t_tick <= until:
            n = min(int((until - self.t_tick) / self.tick_s) + 1, MAX_TICKS_PER_RUN)
            times = self.lookahead.times(self.k_next, n)
            rows = self.physics.advance(times, self.lookahead.get(self.k_next, n))
            self.k_next += n
            self.values = {r.key: float(rows[r.key][-1]) for r in self.rmap.inputs if r.key in rows}
            self.last_state = {k: float(rows[k][-1]) for k in STATE_KEYS}
            self._image_cache = None
            if self.truth is not None:
                self._write_truth_rows(times, rows)

    def _boundary(self, t: float) -> None:
        """A fault starts or ends at `t`: freeze, unfreeze or reset, and log it."""
        if any(f.name == "reset" and f.start == t for f in self.faults):
            self.physics.integrate_to(t)
            self.physics.reset_counters()
            for key in list(self.values):
                if key.startswith(("e_", "eq_", "es", "ah", "p_dmd")):
                    self.values[key] = 0.0
        stuck = any(f.name == "stuck" and f.active(t) for f in self.faults)
        if stuck and self.frozen is None:
            self.frozen = self.served_values(t, ignore_stuck=True)
        elif not stuck:
            self.frozen = None
        self._image_cache = None
        self._write_truth(t, self.served_values(t), self._state())

    @property
    def t_tick(self) -> float:
        """Time of the next tick to run."""
        return self.t0 + self.k_next * self.tick_s

    # ---- faults -----------------------------------------------------------------------------
    def inject(self, fault_name: str, duration_s: float, **params: object) -> Fault:
        """Start a fault now (meter clock) for `duration_s` seconds of meter time."""
        now = self.clock.now()
        self.sync(now)
        fault = make_fault(fault_name, now, duration_s, params)
        self.schedule(fault)
        return fault

    def schedule(self, fault: Fault) -> None:
        """Add a fault from a timeline; one that has already started takes effect at once."""
        self.faults.append(fault)
        if fault.start <= self.t_synced:
            self._boundary(self.t_synced)

    def active(self, name: str, t: float | None = None) -> Fault | None:
        t = self.clock.now() if t is None else t
        return next((f for f in self.faults if f.name == name and f.active(t)), None)

    # ---- registers --------------------------------------------------------------------------
    def served_values(self, t: float | None = None, ignore_stuck: bool = False) -> dict[str, float]:
        """The input register values as served at `t`, faults applied, rounded to float32."""
        t = self.t_synced if t is None else t
        values = dict(self.values) if (ignore_stuck or self.frozen is None) else dict(self.frozen)
        for key in nan_keys(self.active("nan", t), list(values)):
            values[key] = math.nan
        rounded = np.array(list(values.values()), dtype=np.float32).tolist()
        return dict(zip(values, rounded, strict=True))

    def registers(self) -> dict[str, float]:
        """What a reader would get now: the input registers by map key (float32 values)."""
        self.sync()
        return self.served_values()

    def input_image(self) -> bytes:
        """The input register space (2 bytes per register), cached until values or faults change."""
        key = (self.t_tick, id(self.frozen), self.active("nan", self.t_synced) is not None)
        if self._image_cache is None or self._image_cache[0] != key:
            values = self.served_values()
            image = np.zeros(self.rmap.max_address // 2, dtype=">f4")  # all addresses are even
            image[self._float_index] = [values.get(r.key, 0.0) for r in self.rmap.inputs]
            self._image_cache = (key, image.tobytes())
        return self._image_cache[1]

    def holding_image(self) -> bytes:
        image = bytearray(2 * self.rmap.max_address)
        for h in self.rmap.holdings:
            struct.pack_into(">f", image, 2 * h.address, self.holding[h.key])
        return bytes(image)

    def set_holding(self, key: str, value: float) -> None:
        """A validated configuration write: a new unit id takes effect at once."""
        self.holding[key] = value
        if key == "unit_id":
            self.unit_id = int(value)
        self._write_truth(self.t_synced, self.served_values(), self._state())

    # ---- truth ------------------------------------------------------------------------------
    @property
    def state(self) -> dict[str, float]:
        """The household behind the meter now: load, PV, battery power and charge, grid power."""
        self.sync()
        return self._state()

    def _state(self) -> dict[str, float]:
        return dict(self.last_state)

    def _write_truth_rows(self, times: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        """Truth lines for the ticks just run, at most one per `truth_every_s`."""
        keys = [r.key for r in self.rmap.inputs if r.key in rows]
        table = {k: rows[k].astype(np.float32).tolist() for k in keys}
        state = {k: rows[k].tolist() for k in STATE_KEYS}
        for i, t in enumerate(times.tolist()):
            if t + 1e-9 < self._truth_next:
                continue
            self._truth_next = t + self.truth_every_s
            values = {k: table[k][i] for k in keys}
            if self.frozen is not None:
                values = dict(self.frozen)
            for k in nan_keys(self.active("nan", t), keys):
                values[k] = math.nan
            st = {k: state[k][i] for k in STATE_KEYS}
            self._write_truth(t, values, st)

    def _write_truth(self, t: float, values: dict[str, float], state: dict[str, float]) -> None:
        if self.truth is None:
            return
        self.truth.write(
            {
                "t": t,
                "meter": self.name,
                "unit": self.unit_id,
                "model": self.rmap.model,
                "r": {k: clean(v) for k, v in values.items()},
                "state": {k: clean(v) for k, v in state.items()},
                "faults": sorted(f.name for f in self.faults if f.active(t)),
            }
        )
