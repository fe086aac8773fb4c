"""A cooperative over time: pair, evaluate, negotiate, implement, dispatch (sections 4-5).

Per period t (an MPC loop, as the paper describes): agents are paired by ε-greedy peer
selection; each negotiating agent forecasts its net demand over the window, draws |S|
scenarios, adds the loans already agreed (its exchange pool), and evaluates the whole
contract grid (Algorithm 3, by the chosen backend); each pair runs Algorithm 1; an
agreement (q, τ) is written into both pools (Eq. 5); then every battery is dispatched
greedily for period t on the real net demand plus the pool. Strategies s0 (no battery) and
s1 (battery, no exchange) are computed on the same real data, and ξ, utilitarian and Nash
welfare follow Eq. 16-18. Contracts whose return would fall after the simulated period are
left out of the grid in the last day, so every loan is repaid within the run.

The agents' net demand comes from their meter_sim profiles, or from the caller (`demand`): the
community simulator prices loans on its own households that way, with hourly periods.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from gateway.negotiation.cooperative import backends
from gateway.negotiation.cooperative.battery import BatteryArrays, BatterySpec, step, theta, xi
from gateway.negotiation.cooperative.cases import START, STEP_S, AgentSpec, net_demand_kwh
from gateway.negotiation.cooperative.contracts import (
    ContractGrid,
    ContractSpace,
    Outcome,
    distance_to_nash,
    nash,
    negotiate,
)
from gateway.negotiation.cooperative.evaluate import EvalBatch
from gateway.negotiation.cooperative.peers import PeerSelector
from gateway.negotiation.cooperative.scenarios import ScenarioModel, forecast, period_rng, scenarios

CHUNK = 8  # agents per evaluation call: bounds memory and spreads work over workers


@dataclass(frozen=True)
class Settings:
    """Table 2 defaults; `w` in periods of `step_s` seconds (15 minutes in the paper)."""

    days: float = 7.0
    w: int = 96
    deadline: int = 5000
    epsilon: float = 0.1
    risk: float = 1.0
    floor: bool = True
    contexts: int = 4
    seed: int = 0
    start: float = START
    backend: str = "auto"
    workers: int = 1
    scenario: ScenarioModel = field(default_factory=ScenarioModel)
    grid: ContractGrid | None = None
    step_s: float = STEP_S

    @property
    def periods(self) -> int:
        return round(self.days * 86400.0 / self.step_s)


@dataclass
class Session:
    """One bilateral session (for traces and the figures of section 5)."""

    t: int
    a: int
    b: int
    agreed: bool
    q: float
    tau: int
    round: int
    distance: float
    nodeal_distance: float


@dataclass
class Result:
    """Everything a case prints."""

    names: list[str]
    xi: dict[str, np.ndarray]
    sessions: list[Session]
    evaluations: int
    battery_steps: int
    eval_seconds: float
    wall_seconds: float
    backend: str
    residual: np.ndarray  # (agents, periods) kWh each agent traded with the grid under s2 (+ import)

    @property
    def success_rate(self) -> float:
        return float(np.mean([s.agreed for s in self.sessions])) if self.sessions else 0.0

    def sw(self, s: str) -> float:
        """Utilitarian social welfare, Eq. 17."""
        return float(self.xi[s].sum())

    def nw(self, s: str, h: str) -> float:
        """Nash social welfare of s relative to h, Eq. 18."""
        return float(np.prod(self.xi[s] - self.xi[h]))

    def fingerprint(self) -> str:
        """SHA-256 of everything the run decided (ξ per strategy, every session), bit for bit.

        Two runs with equal fingerprints made the same choices with the same float results: how
        a cluster run is checked against one process (timings and backend are left out).
        """
        h = hashlib.sha256()
        h.update(repr(self.names).encode())
        for k in sorted(self.xi):
            h.update(k.encode())
            h.update(np.ascontiguousarray(self.xi[k], dtype=np.float64).tobytes())
        for s in self.sessions:
            h.update(
                np.array([s.q, s.distance, s.nodeal_distance], dtype=np.float64).tobytes()
                + np.array([s.t, s.a, s.b, s.agreed, s.tau, s.round], dtype=np.int64).tobytes()
            )
        return h.hexdigest()


@dataclass(frozen=True)
class Window:
    """The negotiating agents' planning window at period t, before their scenarios are drawn.

    real, pool: (A, w) real net demand and agreed loans; agents: their indices (which name their
    random streams). A few kB per agent where the scenarios are |S| times more, so a chunk of it
    travels to a worker cheaply and the worker draws the scenarios itself.
    """

    real: np.ndarray
    pool: np.ndarray
    agents: tuple[int, ...]
    seed: int
    t: int
    model: ScenarioModel

    def part(self, sl: slice) -> Window:
        return Window(self.real[sl], self.pool[sl], self.agents[sl], self.seed, self.t, self.model)

    def demand(self) -> np.ndarray:
        """(A, S, w): each agent's |S| scenarios around its forecast, plus its loans (Eq. 10, Eq. 5)."""
        out = np.empty((len(self.agents), self.model.n_scenarios, self.real.shape[1]))
        for k, i in enumerate(self.agents):
            point = forecast(self.real[k], self.model, period_rng(self.seed, i, self.t, 0))
            out[k] = scenarios(point, self.model, period_rng(self.seed, i, self.t, 1))
            out[k] += self.pool[k]
        return out


@dataclass(frozen=True)
class Chunk:
    """One evaluation call: a window part and the agents' batteries, weights and contract grid."""

    window: Window
    x0: np.ndarray
    batteries: tuple[BatterySpec, ...]
    lam1: np.ndarray
    lam2: np.ndarray
    q: np.ndarray
    tau: np.ndarray
    risk: float

    def batch(self) -> EvalBatch:
        return EvalBatch(
            self.window.demand(), self.x0, self.batteries, self.lam1, self.lam2, self.q, self.tau, self.risk
        )


def _evaluate_chunk(backend: str, chunk: Chunk) -> np.ndarray:
    """Worker entry point (top level so that process pools and Dask can pickle it)."""
    return backends.resolve(backend)[1](chunk.batch())


def run(
    agents: list[AgentSpec],
    settings: Settings,
    executor: Executor | None = None,
    demand: np.ndarray | None = None,
) -> Result:
    """Simulate strategies s0, s1 and s2 for the cooperative; deterministic under settings.seed.

    `demand` (agents, periods), kWh per period, replaces the agents' profiles and sets the number
    of periods (settings.days and start are then unused); the agents' batteries must be specified
    for the same period length (BatterySpec.dt_h). Past the last period the planning window sees
    the last `w` periods again (a day repeated, for a day-long window).

    The contract-space evaluations go to `executor` when one is given (e.g. a Dask cluster's,
    see hil/study/cluster.py), else to a local process pool of `settings.workers`. Chunks depend
    on `settings.workers` only, so any executor gives the same result as one process.
    """
    t_wall = time.perf_counter()
    n, w = len(agents), settings.w
    T = settings.periods if demand is None else int(np.shape(demand)[-1])
    if n < 2 or T < 1:
        raise ValueError("a cooperative needs at least 2 agents and 1 period")
    if any(abs(a.battery.dt_h * 3600.0 - settings.step_s) > 1e-6 for a in agents):
        raise ValueError(f"every battery must step {settings.step_s:g} s periods (BatterySpec.dt_h)")
    grid = settings.grid or ContractGrid.default(w)
    backend_name, evaluator = backends.resolve(settings.backend)
    if demand is None:
        nd = np.stack([net_demand_kwh(a.profile, settings.start, T + w) for a in agents])
    else:
        nd = _extend(np.asarray(demand, dtype=np.float64), n, w)
    pool = np.zeros((n, T + w))
    params = BatteryArrays.stack([a.battery for a in agents])
    x = np.array([a.x0 for a in agents])
    x_init = x.copy()
    e_sum = np.zeros(n)
    r_sum = np.zeros(n)
    selector = PeerSelector(n, settings.epsilon, np.random.default_rng([settings.seed, 7]), settings.contexts)
    per_day = round(86400.0 / settings.step_s)
    sessions: list[Session] = []
    evals = steps = 0
    eval_s = 0.0
    residual = np.zeros((n, T))
    # One process drives an accelerator (and CUDA does not survive a fork): workers are for numpy.
    parallel = not backend_name.startswith("torch") and (settings.workers > 1 or executor is not None)
    own_pool = executor is None and parallel
    pool_exec: Executor | None = ProcessPoolExecutor(settings.workers) if own_pool else executor
    if not parallel:
        pool_exec = None
    try:
        for t in range(T):
            ctx = (t % per_day) * settings.contexts // per_day
            pairs = selector.pairs(ctx)
            who = [i for pair in pairs for i in pair]
            sign = np.array([1.0, -1.0] * len(pairs))
            t0 = time.perf_counter()
            eu = _evaluate(
                evaluator,
                pool_exec,
                backend_name,
                Window(
                    nd[who, t : t + w], pool[who, t : t + w], tuple(who), settings.seed, t, settings.scenario
                ),
                x[who],
                [agents[i] for i in who],
                grid,
                sign,
                settings.risk,
                max(1, settings.workers) if parallel else 1,
            )
            eval_s += time.perf_counter() - t0
            evals += len(who)
            steps += len(who) * settings.scenario.n_scenarios * w * grid.size
            valid = (grid.tau < T - t)[None, :] | (grid.q == 0.0)[:, None]
            for p, (i, j) in enumerate(pairs):
                sa = ContractSpace.build(eu[2 * p], grid, agents[i].quantile, valid, settings.floor)
                sb = ContractSpace.build(eu[2 * p + 1], grid, agents[j].quantile, valid, settings.floor)
                out = negotiate(sa, sb, settings.deadline)
                nf = nash(sa, sb, valid)
                dist = distance_to_nash(sa, sb, out, nf)
                ok = np.asarray(valid).reshape(-1)
                utopia = np.hypot(sa.eu[ok].max() - sa.reservation, sb.eu[ok].max() - sb.reservation)
                selector.update(i, j, min(dist / utopia, 1.0) if out.agreed and utopia > 0 else 1.0, ctx)
                q, tau = grid.contract(out.contract) if out.agreed else (0.0, 0)
                if out.agreed:
                    pool[i, t] += q
                    pool[i, t + tau] -= q
                    pool[j, t] -= q
                    pool[j, t + tau] += q
                nodeal = distance_to_nash(sa, sb, Outcome(False, -1, -1, -1), nf)
                sessions.append(Session(t, i, j, out.agreed, q, tau, out.round, dist, nodeal))
            x, e, res = step(x, nd[:, t] + pool[:, t], params)
            residual[:, t] = nd[:, t] + pool[:, t] + e
            e_sum += e
            r_sum += res
    finally:
        if own_pool and pool_exec is not None:
            pool_exec.shutdown()
    lam1 = np.array([a.lam1 for a in agents])
    lam2 = np.array([a.lam2 for a in agents])
    s2 = -(lam1 * (e_sum + theta(x_init, x, params)) + lam2 * r_sum)
    s1 = np.array([xi(nd[i, :T], a.battery, a.lam1, a.lam2, a.x0) for i, a in enumerate(agents)])
    s0 = np.array(
        [xi(nd[i, :T], a.battery, a.lam1, a.lam2, a.x0, use_battery=False) for i, a in enumerate(agents)]
    )
    return Result(
        [a.name for a in agents],
        {"s0": s0, "s1": s1, "s2": s2},
        sessions,
        evals,
        steps,
        eval_s,
        time.perf_counter() - t_wall,
        backend_name,
        residual,
    )


def _extend(demand: np.ndarray, n: int, w: int) -> np.ndarray:
    """(n, T) given net demand, plus w periods repeating its last w (the window after the end)."""
    if demand.ndim != 2 or demand.shape[0] != n or not np.all(np.isfinite(demand)):
        raise ValueError(f"demand: need finite (agents={n}, periods) kWh, got shape {demand.shape}")
    last = demand[:, -w:]
    tail = np.tile(last, (1, -(-w // last.shape[1])))[:, :w]
    return np.concatenate([demand, tail], axis=1)


def _evaluate(
    evaluator: backends.Evaluator,
    pool_exec: Executor | None,
    backend: str,
    window: Window,
    x0: np.ndarray,
    agents: list[AgentSpec],
    grid: ContractGrid,
    sign: np.ndarray,
    risk: float,
    workers: int,
) -> np.ndarray:
    """EU (A, nq, nt) for the negotiating agents, in chunks, possibly over worker processes."""
    chunks = []
    size = max(1, min(CHUNK, -(-len(agents) // workers)))
    for c in range(0, len(agents), size):
        sl = slice(c, c + size)
        part = agents[sl]
        chunks.append(
            Chunk(
                window.part(sl),
                x0[sl],
                tuple(a.battery for a in part),
                np.array([a.lam1 for a in part]),
                np.array([a.lam2 for a in part]),
                sign[sl, None] * grid.q[None, :],
                grid.tau,
                risk,
            )
        )
    if pool_exec is None or len(chunks) == 1:
        parts = [evaluator(c.batch()) for c in chunks]
    else:
        name = "torch" if backend.startswith("torch") else backend
        # one submission per chunk: a Dask executor's map would ship every chunk in one graph
        futures = [pool_exec.submit(_evaluate_chunk, name, c) for c in chunks]
        parts = [f.result() for f in futures]
    return np.concatenate(parts, axis=0)
