"""What trading needs from the rest of the gateway and from the chain, as small typed seams.

The gateway's service passes its store, forecaster and metrics registry (`TradingDeps`); the
simulator passes its own, built the same way. The agent meets the Market, the household and the
gateway's counters through three named collaborators instead of a row of loose callables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from gridpact.core.eip712 import Domain
from gridpact.core.energy import EnergyDelta
from gridpact.core.tariff import Tariff


class ReadingSource(Protocol):
    """The reads trading makes of the household's verified readings (gateway.storage.ReadingStore)."""

    def energy_between(self, t0: int, t1: int) -> EnergyDelta: ...

    def hour_batch(self, hour_start: int) -> list[bytes]: ...

    def statement_at(self, window_end: int, dev: str | None = None) -> tuple[bytes, bytes] | None: ...


class NetDemandForecaster(Protocol):
    """gateway.forecast's model: mean net power (W, + = from the grid) per step from `start`."""

    def net_demand(self, start: int, steps: int, step_s: int) -> Iterable[float]: ...


class CounterFamily(Protocol):
    def inc(self, n: float = 1, **labels: object) -> None: ...


class GaugeFamily(Protocol):
    def set(self, value: float, **labels: object) -> None: ...


class MetricsRegistry(Protocol):
    """The gateway's metrics (gateway.ops.metrics.Metrics): counters and gauges by name."""

    def counter(
        self, name: str, help_: str, labelnames: tuple[str, ...] | list[str] = ()
    ) -> CounterFamily: ...

    def gauge(
        self, name: str, help_: str, labelnames: tuple[str, ...] | list[str] = (), *, absent: bool = False
    ) -> GaugeFamily: ...


@dataclass(frozen=True)
class MarketPort:
    """The agent's view of the Market contract, each call already routed through the chain runner.

    `provider_trade` (trade with the provider when no peer does), `tariffs` (the provider's posted
    ones), `slot_free` (is a nonce slot of ours free on chain) and `network_fee` (the community's
    fee per kWh a seller pays the grid operator) are optional: without them the agent falls back to
    the grid, its configured tariffs, its journal and no fee."""

    domain: Callable[[], Domain]
    balance: Callable[[], Awaitable[int | None]]
    provider_trade: Callable[[int, int, bool], Awaitable[None]] | None = None
    tariffs: Callable[[], Awaitable[Tariff | None]] | None = None
    slot_free: Callable[[int], Awaitable[bool | None]] | None = None
    network_fee: Callable[[], Awaitable[int | None]] | None = None


@dataclass(frozen=True)
class HouseholdPort:
    """What the household expects: net demand of a window (Wh, + = import) and its battery's charge (Wh)."""

    net_demand_wh: Callable[[int, int], float | None]
    storage_wh: Callable[[], float | None] | None = None


@dataclass(frozen=True)
class AgentEvents:
    """Where the agent reports: a counted event by name, and "an agreement was signed" (wakes the settler)."""

    count: Callable[[str], None]
    on_agreement: Callable[[], None]
