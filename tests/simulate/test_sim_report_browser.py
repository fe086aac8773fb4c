"""The simulate report as a real browser shows it: Debian's chromium, headless, via playwright.

At laptop (1366x768) and phone (390x844) sizes: nothing wider than the screen, the token
balances and the events present; full-page screenshots are left in the test's folder.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hil.community.agentledger import apply_to_result
from hil.community.engine import EngineConfig, run_engine
from hil.community.summary import timeline, token_path

GRIDPACT = [sys.executable, "-m", "gridpact.cli"]
CHROMIUM = Path("/usr/bin/chromium")
SIZES = {"laptop": (1366, 768), "phone": (390, 844)}


def test_token_path_moves_where_the_gateway_path_drew_flat_lines() -> None:
    cfg = EngineConfig(households=6, hours=24, seed=3)
    r = run_engine(cfg)
    hourly = r.balance / r.ledger.unit  # the engine's own end-of-hour balances: the truth
    assert r.settled, "the engine made no trades: the test would prove nothing"
    apply_to_result(r, r.ledger, r.settled)  # what --agents gateway does: final balance repeated
    assert np.ptp(r.balance, axis=1).max() == 0  # the old flat lines
    path = token_path(r)
    assert path.shape == (6, 25)
    assert np.allclose(path[:, 0], cfg.start_tokens)
    assert np.allclose(path[:, 1:], hourly)
    assert np.ptp(path, axis=1).max() > 0  # it moves


def test_timeline_lists_pv_trips_and_refunds() -> None:
    from hil.community.engine import PvTrip

    r = run_engine(EngineConfig(households=6, hours=24, seed=1, pv_trips=(PvTrip(2, 9, 13),)))
    events = timeline(r, [{"t": r.config.t0 + 3600 * 14 + 1200, "event": "broker restart", "detail": "x"}])
    kinds = [e["event"] for e in events]
    assert "PV trip" in kinds and "broker restart" in kinds
    assert kinds.count("refund") == sum(st.refund > 0 for st in r.settled) > 0
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    assert next(e for e in events if e["event"] == "broker restart")["time"] == "h14:20"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    proc = subprocess.run(
        [*GRIDPACT, "simulate", "--engine-only", "--faults", "--households", "8", "--hours", "24",
         "--seed", "1", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out / "report.html"


def wait_for_chromium() -> None:
    deadline = time.monotonic() + 300  # chromium may still be being installed on a fresh machine
    while not CHROMIUM.exists() and time.monotonic() < deadline:
        time.sleep(2)
    assert CHROMIUM.exists(), f"{CHROMIUM} missing: `apt-get install -y chromium`"


def test_partial_report_is_marked_and_fits_a_phone(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from hil.community.report import write_partial_report

    hours = [
        {"hour": h, "settled": 2 * h, "refunds": h // 2, "tokens_in_escrow": 0.25, "balances": [50 + h, 50 - h],
         "wall_s": 0.5 * h}
        for h in range(1, 4)
    ]  # fmt: skip
    paths = write_partial_report(
        tmp_path, hours, 24, "SIGTERM", 1.5, {"households": 2, "out": tmp_path}, ["h001", "h002"]
    )
    wait_for_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(paths["html"].as_uri())
            page.screenshot(path=str(tmp_path / "partial-phone.png"), full_page=True)
            print(f"screenshots: {tmp_path}")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            assert "stopped by SIGTERM after 3 of 24" in page.locator(".partial").inner_text()
            assert page.locator("#balances td").all_inner_texts()[-2:] == ["h002", "47"]
        finally:
            browser.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_report_fits_laptop_and_phone(report: Path, size: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    wait_for_chromium()
    width, height = SIZES[size]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            metrics = page.evaluate(
                """() => ({
                    page: document.documentElement.scrollWidth,
                    body: document.body.scrollWidth,
                    view: window.innerWidth,
                    widest: Math.max(...[...document.body.querySelectorAll('img, .scroll, p, ul')]
                        .map(e => e.getBoundingClientRect().right)),
                    font: parseFloat(getComputedStyle(document.body).fontSize),
                    viewport: !!document.querySelector('meta[name=viewport]'),
                })"""
            )
            shot = tmp_path / f"report-{size}.png"
            page.screenshot(path=str(shot), full_page=True)
            page.locator("#balances").screenshot(path=str(tmp_path / f"balances-{size}.png"))
            print(f"screenshots: {tmp_path}")
            assert metrics["viewport"]
            assert metrics["page"] <= metrics["view"] and metrics["body"] <= metrics["view"], metrics
            assert metrics["widest"] <= metrics["view"] + 0.5, metrics
            assert metrics["font"] >= 14, metrics
            balances = page.locator("#balances")
            assert balances.is_visible()
            assert balances.locator("img").first.is_visible()
            assert balances.locator("img").first.evaluate("e => e.naturalWidth > 0")
            changes = [float(t) for t in balances.locator("tbody tr td:nth-child(4)").all_inner_texts()]
            assert len(changes) == 8 and any(abs(c) > 0 for c in changes)  # balances moved over the run
            events = page.locator("#events")
            assert events.is_visible()
            text = events.inner_text()
            assert "PV trip" in text and "refund" in text and "none" not in text.split("\n")[1]
        finally:
            browser.close()
    assert shot.read_bytes().startswith(b"\x89PNG")
