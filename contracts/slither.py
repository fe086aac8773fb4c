"""Static analysis of the contracts with slither, gated by a triage file (`gridpact contracts slither`).

slither runs in its own environment (`.venv-slither`, pinned in contracts/tools/slither-requirements.txt:
it needs web3 < 8, the gateway pins 8) and compiles through contracts/tools/solc-shim, the pinned npm solcjs
with contracts/build.py's settings. Every high or medium finding must have an entry in
contracts/slither-triage.json saying why it stays; one without is new and fails the step. Entries match
by detector and location (contract.member, no line numbers or signatures), so moving code keeps the triage
and a finding in another function needs its own reason.

Pure core (parse, judge, format) with one thin runner over the slither process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.build import REPO_ROOT
from gridpact.core.signals import sigterm_interrupts

SLITHER = REPO_ROOT / ".venv-slither" / "bin" / "slither"
SHIM = REPO_ROOT / "contracts" / "tools" / "solc-shim"
TRIAGE = REPO_ROOT / "contracts" / "slither-triage.json"
CONFIG = REPO_ROOT / "contracts" / "slither.config.json"
GATED = ("High", "Medium")
IMPACTS = ("High", "Medium", "Low", "Informational", "Optimization")


class SlitherError(RuntimeError):
    """slither could not run or analyse: the message carries its output."""


@dataclass(frozen=True)
class Finding:
    """One slither result, reduced to what the triage matches and what a reader needs."""

    check: str
    impact: str
    confidence: str
    location: str  # Contract.member[.local] of the first element
    summary: str  # the description's first line


@dataclass(frozen=True)
class TriageEntry:
    """Why a finding stays: reviewed, not a bug (or accepted), in the reviewer's words."""

    check: str
    location: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: counts by impact, the explained and unexplained gated findings, unused entries."""

    counts: dict[str, int]
    explained: list[tuple[Finding, TriageEntry]]
    unexplained: list[Finding]
    stale: list[TriageEntry]

    @property
    def ok(self) -> bool:
        return not self.unexplained


def _location(element: dict[str, Any]) -> str:
    """Names from the contract down to the element; nodes (statements) stand for their function."""
    names: list[str] = []
    current: dict[str, Any] | None = element
    while current:
        if current.get("type") != "node":
            names.append(str(current.get("name", "?")))
        current = current.get("type_specific_fields", {}).get("parent")
    return ".".join(reversed(names))


def parse_findings(report: dict[str, Any]) -> list[Finding]:
    """Findings of a slither `--json` report; raises SlitherError when slither says it failed."""
    if not report.get("success", False):
        raise SlitherError(f"slither failed: {report.get('error')}")
    found = []
    for result in report.get("results", {}).get("detectors", []):
        elements = result.get("elements") or [{}]
        found.append(
            Finding(
                check=str(result["check"]),
                impact=str(result["impact"]),
                confidence=str(result["confidence"]),
                location=_location(elements[0]),
                summary=str(result.get("description", "")).strip().splitlines()[0],
            )
        )
    return found


def load_triage(data: dict[str, Any]) -> list[TriageEntry]:
    """Triage entries from the file's JSON; an entry without a written reason is refused."""
    entries = []
    for i, raw in enumerate(data.get("findings", [])):
        entry = TriageEntry(
            str(raw.get("check", "")), str(raw.get("location", "")), str(raw.get("reason", ""))
        )
        if not entry.check or not entry.location or len(entry.reason.split()) < 3:
            raise ValueError(f"triage entry {i} needs a check, a location and a written reason: {raw!r}")
        entries.append(entry)
    return entries


def judge(
    findings: Sequence[Finding], triage: Sequence[TriageEntry], gated: Sequence[str] = GATED
) -> Verdict:
    """Match each gated finding to its triage entry; the rest are counted only."""
    by_key = {(e.check, e.location): e for e in triage}
    used: set[tuple[str, str]] = set()
    explained, unexplained = [], []
    for f in findings:
        if f.impact not in gated:
            continue
        entry = by_key.get((f.check, f.location))
        if entry is None:
            unexplained.append(f)
        else:
            explained.append((f, entry))
            used.add((f.check, f.location))
    counts = Counter(f.impact for f in findings)
    stale = [e for e in triage if (e.check, e.location) not in used]
    return Verdict({i: counts.get(i, 0) for i in IMPACTS}, explained, unexplained, stale)


def format_verdict(v: Verdict) -> str:
    """The report printed by the command: counts, then every gated finding with its reason or UNEXPLAINED."""
    lines = ["slither: " + ", ".join(f"{n} {impact.lower()}" for impact, n in v.counts.items())]
    for f, e in v.explained:
        lines.append(f"  triaged    {f.impact:<6} {f.check} at {f.location}: {e.reason}")
    for f in v.unexplained:
        lines.append(f"  UNEXPLAINED {f.impact:<6} {f.check} at {f.location}: {f.summary}")
    for e in v.stale:
        lines.append(f"  unused triage entry (no such finding now): {e.check} at {e.location}")
    gated = len(v.explained) + len(v.unexplained)
    lines.append(
        f"high/medium: {gated}, explained {len(v.explained)}, unexplained {len(v.unexplained)}"
        + ("" if v.ok else f" (add a reason to {TRIAGE.relative_to(REPO_ROOT)} or fix the contract)")
    )
    return "\n".join(lines)


def run_slither(
    target: str = "contracts/src",
    cwd: Path = REPO_ROOT,
    slither: Path = SLITHER,
    config: Path | None = CONFIG,
    timeout_s: float = 600,
) -> dict[str, Any]:
    """Run slither on `target` (relative to `cwd`) through the solc shim; returns its JSON report.

    slither, the shim and node run in a session of their own; an interrupt or timeout ends that group.
    """
    if not slither.exists():
        raise SlitherError(f"no slither at {slither}: run `./tasks setup` (it creates .venv-slither)")
    with tempfile.TemporaryDirectory(prefix="gridpact-slither-") as tmp:
        out = Path(tmp) / "report.json"
        cmd = [str(slither), target, "--solc-standard-json", "--solc", str(SHIM), "--json", str(out)]
        cmd += ["--fail-none", "--disable-color"]
        if config is not None:
            cmd += ["--config-file", str(config)]
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            with sigterm_interrupts():
                log, _ = proc.communicate(timeout=timeout_s)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)  # slither's own group: the shim and node with it
            proc.wait()
            raise
        if not out.exists():
            text = log.decode(errors="replace")[-3000:]
            raise SlitherError(f"slither exited {proc.returncode} without a report:\n{text}")
        return json.loads(out.read_text())


def check(
    report: dict[str, Any], triage_path: Path = TRIAGE, gated: Sequence[str] = GATED
) -> tuple[Verdict, list[Finding]]:
    """Judge a report against the triage file; returns the verdict and every finding."""
    findings = parse_findings(report)
    triage = load_triage(json.loads(triage_path.read_text()))
    return judge(findings, triage, gated), findings
