"""`gridpact simulate --dashboard`: the community view and every household's view, live, while the run goes.

The product's own dashboards, unchanged: `gateway.dashboard.community_server.serve_community` on the
run's anvil and community broker, and `gateway.dashboard.server.serve_households` with one
`HouseholdData` per household (its gateway's verified readings, trading journal, agent's sessions and
forecast), both on the simulation's clock, in one thread with its own event loop so a slow page never
holds up the gateways' loop. Both bind loopback only, on ports printed at start.

Sign-in: one operator account made for this run, with a random password printed on the terminal
(never in simulate.log) and its account file in a temporary folder removed with the run. Even on
loopback every local user and every page the researcher's browser opens can reach the ports, and the
household views are private by design; a password-less viewer would be the one place that rule broke.
The operator role sees every household and the explorer; it has no actions here (the simulator is the
community and sends the Market's community transactions itself: a second sender would race its nonces).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.dashboard.household import HouseholdData, local_midnight
from gridpact.core.wire import Reading
from hil.community.agents import AgentWorld, ProfileForecaster
from hil.community.gateways import SimGateway
from hil.community.market import MICRO

HOST = "127.0.0.1"
ACCOUNT = "researcher"
START_S = 60.0  # first index of a fresh chain and two servers, on a loaded machine
STOP_S = 1.0  # the run's StopGuard ends the process 1.3 s after a signal anyway


class GatewaySource:
    """A simulated household gateway as the household view's ReadingSource (its reads run on the
    gateways' loop, through the gateway's own interface)."""

    def __init__(self, gateway: SimGateway, forecaster: ProfileForecaster) -> None:
        self.gateway, self.forecaster = gateway, forecaster

    def newest(self) -> Reading | None:
        return self.gateway.newest()

    def energy_today(self, now: float) -> tuple[int, int, bool]:
        return self.gateway.energy(local_midnight(now), int(now) + 1)

    def net_power(self, start: int, steps: int, step_s: int) -> list[float]:
        return self.gateway.net_power(start, steps, step_s)

    def forecast(self, start: int, steps: int, step_s: int) -> list[float]:
        return [float(v) for v in self.forecaster.profile_net(start, steps, step_s)]


def _say(line: str) -> None:
    print(line, flush=True)  # at once, also when stdout is a pipe: the researcher needs it now


@dataclass(frozen=True)
class DashboardUrls:
    community: str
    households: str
    names: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """For the report's summary (no password: it is for this run's terminal only)."""
        return {
            "community": self.community,
            "households": self.households,
            "household_pages": {n: f"{self.households}household/{n}" for n in self.names},
            "account": ACCOUNT,
        }


class SimDashboard:
    """Starts with the run's world, stops with the run (`stop` within STOP_S; the thread is a daemon)."""

    def __init__(
        self, ports: tuple[int, int] | None = None, say: Callable[[str], None] | None = None
    ) -> None:
        from hil.services import free_port

        self.ports = ports or (free_port(HOST), free_port(HOST))
        self.password = secrets.token_urlsafe(12)
        self.say = say or _say
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.urls: DashboardUrls | None = None

    def start(self, world: AgentWorld, rpc_url: str) -> DashboardUrls:
        """Serve the world's community and households; RuntimeError when they do not come up."""
        from gateway.dashboard.auth import AccountStore

        self._dir = tempfile.TemporaryDirectory(prefix="gridpact-simdash-")
        accounts_path = Path(self._dir.name) / "accounts.sqlite3"
        store = AccountStore(accounts_path)
        store.add(ACCOUNT, "operator", "-", self.password)
        store.close()
        self._thread = threading.Thread(
            target=self._run, args=(world, rpc_url, accounts_path), name="gridpact-simdash", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(START_S) or self._error is not None:
            self.stop()
            raise RuntimeError(f"the dashboard did not start: {self._error!r}")
        community, households = (f"http://{HOST}:{p}/" for p in self.ports)
        self.urls = DashboardUrls(community, households, tuple(s.name for s in world.specs))
        self.say(
            f"dashboard: community {community} · households {households}\n"
            f"dashboard: sign in as {ACCOUNT} with password {self.password} (made for this run only)"
        )
        return self.urls

    def _run(self, world: AgentWorld, rpc_url: str, accounts_path: Path) -> None:
        try:
            asyncio.run(self._serve(world, rpc_url, accounts_path))
        except BaseException as exc:  # reported by start(), or the run has ended
            self._error = exc
            self._ready.set()

    async def _serve(self, world: AgentWorld, rpc_url: str, accounts_path: Path) -> None:
        from gateway.dashboard.auth import AccountStore
        from gateway.dashboard.community_server import Listen, serve_community
        from gateway.dashboard.rpc import RpcChain
        from gateway.dashboard.server import serve_households
        from gateway.trading.config import parse_community

        assert world.chain is not None
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        chain = RpcChain(rpc_url, 30.0)  # the read path `gridpact dashboard run` takes
        state = accounts_path.parent
        community = parse_community(
            {"id": "simulate", "host": world.broker_host, "port": world.broker_port}, state
        )
        listen = Listen(HOST, self.ports[0], state / "community", accounts_path, secure_cookies=False)
        accounts = AccountStore(accounts_path)
        unit = 10**world.cfg.decimals
        tariff = (
            float(round(world.cfg.tariff.day * MICRO) * (unit // MICRO)),
            float(round(world.cfg.tariff.feed_in * MICRO) * (unit // MICRO)),
        )  # token base units per kWh, as the agents' configs (hil/community/agents.py trading_tables)
        parts = zip(world.specs, world.gateways, world.forecasters, world.feeds, strict=True)
        households = [
            HouseholdData(GatewaySource(gw, fc), world.state / f"trading-{spec.name}" / "trading.db",
                          spec.name, feed, tariff)
            for spec, gw, fc, feed in parts
        ]  # fmt: skip
        up = [asyncio.Event(), asyncio.Event()]

        async def ready() -> None:
            await asyncio.gather(*(e.wait() for e in up))
            self._ready.set()

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(
                    serve_community(
                        chain, world.chain.market.address, listen, community=community, started=up[0]
                    )
                )
                households_app = serve_households(
                    households, accounts, HOST, self.ports[1], world.clock.now, False, started=up[1]
                )
                tg.create_task(households_app)
                tg.create_task(ready())
        finally:
            accounts.close()

    def stop(self) -> None:
        """Cancel the servers and wait for their thread (bounded); remove the run's account file."""
        loop, main = self._loop, self._main
        if loop is not None and main is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(main.cancel)
        if self._thread is not None:
            self._thread.join(STOP_S)
        if self._dir is not None:
            self._dir.cleanup()  # an open SQLite file in it goes with it (Linux); nothing else holds it
