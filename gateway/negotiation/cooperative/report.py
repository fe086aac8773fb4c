"""What a case prints: per-agent ξ, welfare (Eq. 17-18), success rates, and the paper's claims as checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.negotiation.cooperative.simulation import Result


@dataclass(frozen=True)
class Check:
    """One of the paper's claims, tested on this run."""

    name: str
    ok: bool
    detail: str


def log10_nash_welfare(r: Result, s: str, h: str) -> tuple[float, int]:
    """(log10 |nws_{s|h}|, sign): the product of 100 terms overflows, its logarithm does not."""
    diff = r.xi[s] - r.xi[h]
    if np.any(diff == 0):
        return -math.inf, 0
    sign = int(np.prod(np.sign(diff)))
    return float(np.log10(np.abs(diff)).sum()), sign


def checks(r: Result, random_run: Result | None) -> list[Check]:
    """Case 2's properties: s2 dominates s1 for every agent, nws2|s0 > nws1|s0, learned > random."""
    d1 = r.xi["s1"] - r.xi["s0"]
    d2 = r.xi["s2"] - r.xi["s0"]
    worst = int(np.argmin(d2 - d1))
    out = [
        Check(
            "every agent: xi(s2)-xi(s0) >= xi(s1)-xi(s0)",
            bool(np.all(d2 >= d1 - 1e-9)),
            f"{int(np.sum(d2 >= d1 - 1e-9))}/{d1.size} agents; smallest margin {float((d2 - d1)[worst]):.4f}"
            f" (agent {r.names[worst]})",
        )
    ]
    l2, s2 = log10_nash_welfare(r, "s2", "s0")
    l1, s1 = log10_nash_welfare(r, "s1", "s0")
    out.append(
        Check(
            "Nash welfare nws(s2|s0) > nws(s1|s0)",
            (s2 > 0 and (s1 <= 0 or l2 > l1)),
            f"log10 nws(s2|s0) = {l2:.3f} (sign {s2:+d}), log10 nws(s1|s0) = {l1:.3f} (sign {s1:+d})",
        )
    )
    if random_run is not None:
        p1, p2 = r.success_rate, random_run.success_rate
        n1, n2 = max(len(r.sessions), 1), max(len(random_run.sessions), 1)
        # two-sample binomial standard error: how far apart two runs differ by chance alone
        se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
        out.append(
            Check(
                "learned peer selection succeeds more often than random",
                p1 > p2,
                f"learned {100 * p1:.1f} % vs random {100 * p2:.1f} % "
                f"({100 * (p1 - p2):+.1f} points, standard error {100 * se:.1f})",
            )
        )
    return out


def summary(r: Result) -> dict[str, Any]:
    """JSON-able summary of a run."""
    agreed = [s for s in r.sessions if s.agreed]
    rounds = [s.round for s in agreed]
    return {
        "agents": r.names,
        "xi": {k: [round(float(v), 6) for v in r.xi[k]] for k in ("s0", "s1", "s2")},
        "utilitarian_welfare": {k: round(r.sw(k), 6) for k in ("s0", "s1", "s2")},
        "nash_welfare": {
            "s2|s0": r.nw("s2", "s0"),
            "s1|s0": r.nw("s1", "s0"),
            "log10_s2|s0": log10_nash_welfare(r, "s2", "s0")[0],
            "log10_s1|s0": log10_nash_welfare(r, "s1", "s0")[0],
        },
        "sessions": len(r.sessions),
        "agreements": len(agreed),
        "success_rate": round(r.success_rate, 6),
        "mean_distance_to_nash": {
            "agreements": float(np.mean([s.distance for s in agreed])) if agreed else None,
            # the same sessions' no-deal points: how much closer to fair the agreements got
            "no_deal": float(np.mean([s.nodeal_distance for s in agreed])) if agreed else None,
        },
        "mean_agreement_round": float(np.mean(rounds)) if rounds else None,
        "traded_kwh": round(float(sum(abs(s.q) for s in agreed)), 6),
        "evaluations": r.evaluations,
        "battery_steps_equivalent": r.battery_steps,
        "eval_seconds": round(r.eval_seconds, 3),
        "wall_seconds": round(r.wall_seconds, 3),
        "backend": r.backend,
        "fingerprint": r.fingerprint(),
    }


def text(case: int, r: Result, random_run: Result | None, found: list[Check]) -> str:
    """Human-readable report of a case."""
    s = summary(r)
    lines = [
        f"Case {case}: {len(r.names)} agents, {len(r.sessions)} sessions, backend {r.backend}, "
        f"{r.wall_seconds:.1f} s ({r.evaluations} contract-space evaluations)",
    ]
    if len(r.names) <= 12:
        lines.append(f"{'agent':>6} {'xi(s0)':>9} {'xi(s1)':>9} {'xi(s2)':>9} {'s1-s0':>8} {'s2-s0':>8}")
        for i, name in enumerate(r.names):
            x0, x1, x2 = (float(r.xi[k][i]) for k in ("s0", "s1", "s2"))
            lines.append(f"{name:>6} {x0:9.3f} {x1:9.3f} {x2:9.3f} {x1 - x0:8.3f} {x2 - x0:8.3f}")
    sw = s["utilitarian_welfare"]
    lines.append(f"utilitarian welfare (Eq. 17): s0 {sw['s0']:.3f}  s1 {sw['s1']:.3f}  s2 {sw['s2']:.3f}")
    nw = s["nash_welfare"]
    lines.append(
        f"Nash welfare (Eq. 18): nws(s2|s0) = {nw['s2|s0']:.4g}  nws(s1|s0) = {nw['s1|s0']:.4g}"
        f"  (log10 {nw['log10_s2|s0']:.3f} vs {nw['log10_s1|s0']:.3f})"
    )
    md = s["mean_distance_to_nash"]
    lines.append(
        f"success rate {100 * r.success_rate:.1f} %, mean agreement round {s['mean_agreement_round']}, "
        f"traded {s['traded_kwh']:.2f} kWh"
    )
    if md["agreements"] is not None:
        lines.append(
            f"mean distance to the Nash solution over the agreed sessions: agreements "
            f"{md['agreements']:.4f}, their no-deal points {md['no_deal']:.4f} (Figure 9)"
        )
    if random_run is not None:
        lines.append(f"random peer selection: success rate {100 * random_run.success_rate:.1f} %")
    for c in found:
        lines.append(f"[{'PASS' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    lines.append(f"result fingerprint {s['fingerprint']}")
    return "\n".join(lines)
