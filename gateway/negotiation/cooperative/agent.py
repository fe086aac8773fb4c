"""One prosumer of the cooperative energy-loan model (Chakraborty, Baarslag and Kaisers): battery,
criteria weights and aspiration quantile. Product code: the gateway's loan agent validates its
`[loans]` table with it; the paper's cases (cases.py) build theirs from it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.negotiation.cooperative.battery import BatterySpec


@dataclass(frozen=True)
class AgentSpec:
    """One prosumer: data source, battery, criteria weights and aspiration quantile."""

    name: str
    profile: str
    battery: BatterySpec
    lam1: float
    lam2: float
    quantile: float
    soc0: float = 0.5

    def __post_init__(self) -> None:
        if not (self.lam1 >= 0 and self.lam2 >= 0 and abs(self.lam1 + self.lam2 - 1.0) < 1e-6):
            raise ValueError(f"{self.name}: criteria weights must be >= 0 and sum to 1")
        if not (0.0 <= self.quantile <= 1.0 and 0.0 <= self.soc0 <= 1.0):
            raise ValueError(f"{self.name}: quantile and soc0 must lie in [0, 1]")

    @property
    def x0(self) -> float:
        b = self.battery
        return min(max(self.soc0 * b.capacity_kwh, b.xmin), b.xmax)
