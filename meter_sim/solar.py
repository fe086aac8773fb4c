"""Sun position, enough for PV output: declination and hour angle give the elevation."""

from __future__ import annotations

import numpy as np

DAY = 86400.0


def sin_elevation(t: np.ndarray, lat_deg: float, lon_deg: float) -> np.ndarray:
    """Sine of the sun's elevation at Unix time `t`, latitude and longitude (degrees)."""
    doy = (t / DAY) % 365.25
    decl = np.radians(23.44) * np.sin(2.0 * np.pi * (284.0 + doy) / 365.25)
    solar_h = (t % DAY) / 3600.0 + lon_deg / 15.0
    omega = np.radians(15.0 * (solar_h - 12.0))
    lat = np.radians(lat_deg)
    return np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(omega)


def pv_fraction(t: np.ndarray, lat_deg: float, lon_deg: float) -> np.ndarray:
    """Clear-sky output of a tilted array as a fraction of its peak power (0..1)."""
    s = np.clip(sin_elevation(t, lat_deg, lon_deg), 0.0, 1.0)
    return np.clip(1.1 * s**1.2, 0.0, 1.0)
