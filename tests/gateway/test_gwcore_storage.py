"""The SQLite reading store: WAL, sequence state across reopen, energy, hour batches, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from gateway.forecast import Forecaster
from gateway.ingest.anchoring import batch_hash
from gateway.ingest.verifier import ReadingVerifier
from gateway.storage import ReadingStore
from gridpact.core.energy import EnergyDelta
from gridpact.core.wire import COUNTER_RESET, Rejected, encode_reading, verify

KEY = bytes(range(32))
T0 = 1_767_225_600  # 2026-01-01 00:00 UTC


def reading(seq: int, ts: int, imp_wh: int | None, exp_wh: int = 0, q: int = 0, dev: str = "node-01"):
    values = {} if imp_wh is None else {"p1_W": 0.0, "e_imp_kWh": imp_wh / 1000, "e_exp_kWh": exp_wh / 1000}
    return verify(KEY, encode_reading(KEY, dev, seq, ts, q, "sdm120", values))


def fill(store: ReadingStore, n: int, every: int = 10, w_import: float = 3600.0, start_seq: int = 1) -> None:
    for i in range(n):
        store.add(reading(start_seq + i, T0 + i * every, round(10_000 + i * every * w_import / 3600)))
    store.commit()


def test_wal_mode_and_schema(tmp_path: Path) -> None:
    store = ReadingStore(tmp_path / "r.sqlite3", "node-01")
    store.close()
    with sqlite3.connect(tmp_path / "r.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_last_seq_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = ReadingStore(path, "node-01")
    fill(store, 5)
    store.close()
    reopened = ReadingStore(path, "node-01")
    verifier = ReadingVerifier({"node-01": KEY}, reopened.last_seqs())
    assert reopened.last_seqs() == {"node-01": 5}
    with pytest.raises(Rejected, match="duplicate"):
        verifier.check("node-01", reading(5, T0, 1).raw)
    with pytest.raises(Rejected, match="replayed"):
        verifier.check("node-01", reading(2, T0, 1).raw)
    reopened.close()


def test_uncommitted_readings_are_not_visible_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = ReadingStore(path, "node-01")
    store.add(reading(1, T0, 1))
    other = ReadingStore(path, "node-01", readonly=True)
    assert other.last_seqs() == {}
    store.commit()
    assert other.last_seqs() == {"node-01": 1}
    other.close()
    store.close()


def test_energy_between_from_stored_counters(tmp_path: Path) -> None:
    store = ReadingStore(tmp_path / "r.sqlite3", "node-01", max_gap_s=60)
    fill(store, 361)  # one hour at 3.6 kW, a reading every 10 s
    assert store.energy_between(T0, T0 + 3600) == EnergyDelta(3600, 0, True)
    assert store.energy_between(T0 + 900, T0 + 1800) == EnergyDelta(900, 0, True)
    assert store.energy_between(T0 + 1800, T0 + 7200).complete is False
    store.close()


def test_energy_between_skips_fault_readings_and_other_devices(tmp_path: Path) -> None:
    store = ReadingStore(tmp_path / "r.sqlite3", "node-01", max_gap_s=60)
    store.add(reading(1, T0, 1000))
    store.add(reading(2, T0 + 10, None, q=4))  # modbus timeout: no counters
    store.add(reading(3, T0 + 20, 1020, exp_wh=5))
    store.add(reading(1, T0 + 10, 999_999, dev="node-02"))
    store.commit()
    assert store.energy_between(T0, T0 + 20) == EnergyDelta(20, 5, True)
    store.close()


def test_energy_across_reset_is_incomplete(tmp_path: Path) -> None:
    store = ReadingStore(tmp_path / "r.sqlite3", "node-01", max_gap_s=60)
    store.add(reading(1, T0, 50_000))
    store.add(reading(2, T0 + 10, 50_010))
    store.add(reading(3, T0 + 20, 4, q=COUNTER_RESET))
    store.add(reading(4, T0 + 30, 14))
    store.commit()
    assert store.energy_between(T0, T0 + 30) == EnergyDelta(24, 0, False)
    assert store.energy_between(T0 + 20, T0 + 30) == EnergyDelta(10, 0, True)
    store.close()


def test_hour_batch_is_the_hours_raw_payloads_in_seq_order(tmp_path: Path) -> None:
    store = ReadingStore(tmp_path / "r.sqlite3", "node-01")
    readings = [reading(i, T0 + 3590 + (i - 1) * 5, 1000 + i) for i in range(1, 5)]  # 3590..3605
    for r in reversed(readings):
        store.add(r)
    store.commit()
    first_hour = store.hour_batch(T0)
    assert first_hour == [readings[0].raw, readings[1].raw]
    assert store.hour_batch(T0 + 3600) == [readings[2].raw, readings[3].raw]
    assert batch_hash(first_hour) == batch_hash([r.raw for r in readings[:2]])
    store.close()


def test_retention_prunes_old_readings_but_keeps_seq(tmp_path: Path) -> None:
    store = ReadingStore(tmp_path / "r.sqlite3", "node-01")
    fill(store, 10, every=3600)
    assert store.prune(T0 + 5 * 3600) == 5
    assert store.summary()["readings"] == 5
    assert store.last_seqs() == {"node-01": 10}
    store.close()


def test_availability_records_changes_only(tmp_path: Path) -> None:
    store = ReadingStore(tmp_path / "r.sqlite3", "node-01")
    store.set_status("node-01", "online", 100.0)
    store.set_status("node-01", "online", 200.0)
    assert store.status("node-01") == ("online", 100.0)
    store.set_status("node-01", "offline", 300.0)
    assert store.status("node-01") == ("offline", 300.0)
    store.close()


class _FixedClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def test_forecaster_learns_the_stored_daily_shape(tmp_path: Path) -> None:
    """Three days of a meter that imports 1 kW at night and exports 2 kW by day, read every minute."""
    store = ReadingStore(tmp_path / "r.sqlite3", "node-01", max_gap_s=120)
    imp = exp = 0.0
    for i in range(3 * 1440 + 1):
        ts = T0 + 60 * i
        store.add(reading(i + 1, ts, round(imp), round(exp)))
        day = 8 <= (ts % 86400) / 3600 < 18
        exp += 2000 / 60 if day else 0.0
        imp += 0.0 if day else 1000 / 60
    store.commit()
    fc = Forecaster(store, _FixedClock(T0 + 3 * 86400), history_days=3)
    out = fc.net_demand(T0 + 3 * 86400, 24, 3600)
    assert out.shape == (24,)
    assert np.allclose(out[:8], 1000, atol=50)
    assert np.allclose(out[9:17], -2000, atol=50)
    assert np.allclose(out[19:], 1000, atol=50)
    store.close()


class _CountingHistory:
    """The real store, counting how many steps each refit reads."""

    def __init__(self, store: ReadingStore) -> None:
        self.store = store
        self.read: list[int] = []

    def net_power(self, start: int, steps: int, step_s: int) -> np.ndarray:
        self.read.append(steps)
        return self.store.net_power(start, steps, step_s)


def test_forecaster_rereads_only_new_history(tmp_path: Path) -> None:
    store = ReadingStore(tmp_path / "r.sqlite3", "node-01", max_gap_s=120)
    fill(store, 3 * 1440 + 1, every=60, w_import=500.0)
    clock = _FixedClock(T0 + 2 * 86400)
    history = _CountingHistory(store)
    fc = Forecaster(history, clock, history_days=1)
    first = fc.net_demand(T0 + 2 * 86400, 4, 900)
    clock.t += 3600  # an hour later: four new steps plus the re-read tail
    incremental = fc.model(900)
    full = Forecaster(store, clock, history_days=1).model(900)
    assert history.read == [96, 8]
    assert np.allclose(incremental.profile, full.profile)
    assert np.allclose(first, 500.0)
    store.close()
