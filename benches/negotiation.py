"""`gridpact bench negotiation`: speed of the engine's parts, printed (never asserted in tests).

`--case 2|3` is the cooperative engine's bench (gateway.negotiation.cooperative.bench), imported
only when asked for.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from gateway.negotiation.negotiator import Negotiator, run_session
from gateway.negotiation.strategy import strategy_from_config
from gridpact.core.concession import ConcessionParams, negotiate_price

SELLER = {"price": {"ip": 80, "rp": 20, "dl": 20, "cr": 2.0}}
BUYER = {"price": {"ip": 20, "rp": 80, "dl": 20, "cr": 0.5}}


def _rate(fn: Callable[[], object], seconds: float) -> tuple[int, float]:
    """Call `fn` repeatedly for about `seconds`; returns (calls, elapsed)."""
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        calls += 1
    return calls, elapsed


def _engine(seconds: float) -> None:
    def session() -> object:
        return run_session(Negotiator(strategy_from_config(SELLER)), Negotiator(strategy_from_config(BUYER)))

    fast_s, fast_b = ConcessionParams(80, 20, 20, 2.0), ConcessionParams(20, 80, 20, 0.5)
    n, dt = _rate(session, seconds)
    print(f"case-study session (Negotiator objects): {n / dt:,.0f} sessions/s ({dt / n * 1e6:.1f} us each)")
    n, dt = _rate(lambda: negotiate_price(fast_s, fast_b), seconds)
    print(
        f"case-study session (negotiate_price fast path): {n / dt:,.0f} sessions/s ({dt / n * 1e6:.1f} us each)"
    )

    from gateway.negotiation.market_sim import simulate_market

    start = time.perf_counter()
    summary = simulate_market(20, 24, 0)
    dt = time.perf_counter() - start
    print(
        f"hourly market: 20 households x 24 windows in {dt:.2f} s ({24 / dt:.1f} windows/s, {summary['trades']} trades)"
    )

    from gateway.negotiation.eip_learn import train

    start = time.perf_counter()
    cpu = time.process_time()
    train(20_000, 0)
    dt, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"eco-park training (default: 20,000 episodes + 3 x 6,000 states): {dt:.1f} s wall, {cpu:.1f} s CPU"
    )


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gridpact bench negotiation", description=__doc__)
    p.add_argument("--case", choices=["2", "3"], help="cooperative engine bench (Case 2 or 3)")
    p.add_argument("--seconds", type=float, default=2.0, help="time per micro-benchmark")
    args, rest = p.parse_known_args(argv)
    if args.case is not None:
        from gateway.negotiation.cooperative.bench import main as cooperative_bench

        return int(cooperative_bench(argv) or 0)
    if rest:
        p.error(f"unrecognised arguments: {' '.join(rest)}")
    _engine(args.seconds)
    return 0
