"""`gridpact simulate --dashboard` as a researcher uses it: a real run, Debian's Chromium watching it.

A real full-stack run (anvil, embedded broker, the firmware nodes, each household's gateway trading)
with `--dashboard`, as a process. The browser signs in with the one-time password the run printed,
sees the community view's index follow the chain and a household's page receive new verified
readings by server push while the run goes, is refused nothing it should see and given nothing
without signing in; after the run, the report links to the dashboard (still served) and following
the link lands on the community view. SIGTERM then ends the process and everything it started
within 2 s, with the run's own exit status. Screenshots go to the test's tmp folder.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.process_helpers import alive, assert_no_survivors, descendants, stop_and_time

GRIDPACT = [sys.executable, "-m", "gridpact.cli"]
LIVE_WAIT_MS = 60_000  # a loaded 2-core machine; the run is several simulated hours long


class Lines:
    """The process's stdout, read on a thread (a full pipe would stall the run)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._proc = proc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self._proc.poll() is not None and not self._thread.is_alive():
                break
            time.sleep(0.1)
        pytest.fail(f"no line matching {pattern!r} (rc {self._proc.poll()}): {self.lines[-20:]}")


def _shot(page: Page, out: Path, name: str) -> None:
    path = out / f"simulate-dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_simulate_dashboard_live_then_report_link_then_sigterm(browser: Browser, tmp_path: Path) -> None:
    out = tmp_path / "run"
    err = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [*GRIDPACT, "simulate", "--households", "3", "--hours", "5", "--dashboard", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=err, text=True,
    )  # fmt: skip
    kids: dict[int, str] = {}
    try:
        lines = Lines(proc)
        urls = lines.wait_for(
            r"dashboard: community (http://127\.0\.0\.1:\d+/) · households (http://\S+/)", 120
        )
        community, households = urls.group(1), urls.group(2)
        password = lines.wait_for(r"sign in as researcher with password (\S+) ", 10).group(1)
        kids = descendants(proc.pid)
        assert any("anvil" in c for c in kids.values()), kids
        assert password not in (out / "simulate.log").read_text()  # the secret is for the terminal only

        # nothing without signing in, on either server
        for base, path in ((community, "community/data.json"), (households, "household/h001/data.json")):
            r = httpx.get(base + path, follow_redirects=False, timeout=10)
            assert r.status_code == 303 and r.headers["location"] == "/login", (base, r.status_code)

        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(community + "login")
        page.fill("#name", "researcher")
        page.fill("#password", password)
        page.click("button[type=submit]")
        expect(page).to_have_url(community + "community")
        expect(page.locator("#link")).to_have_text(re.compile("live"), timeout=LIVE_WAIT_MS)
        indexed = int(page.locator("#indexed").inner_text())
        # the chain moves on (gateways' anchors, the simulated clock's blocks): pushed, not reloaded
        expect(page.locator("#indexed")).not_to_have_text(str(indexed), timeout=LIVE_WAIT_MS)
        # the community broker's peer messages only: nothing the embedded broker hands out is "refused"
        expect(page.locator("#msg-counts")).not_to_contain_text("refused")
        _shot(page, tmp_path, "community")

        # the same sign-in opens the households' server (one cookie per host, the same account store)
        page.goto(households)
        expect(page).to_have_url(households + "households")
        page.click("text=h002")
        expect(page).to_have_url(households + "household/h002")
        expect(page.locator("#link")).to_have_text(re.compile("live"), timeout=LIVE_WAIT_MS)
        seq = page.locator("#seq").inner_text()
        expect(page.locator("#seq")).not_to_have_text(seq, timeout=LIVE_WAIT_MS)  # a new verified reading
        expect(page.locator("#agent-state")).to_have_text(re.compile("waiting|negotiating"))
        _shot(page, tmp_path, "household")

        # the run ends, writes its report and keeps serving
        lines.wait_for(r"its final state stays served until Ctrl-C", 240)
        report = out / "report.html"
        text = report.read_text()
        assert f'href="{community}"' in text and f'href="{households}household/h001"' in text
        assert password not in text
        page.goto(report.as_uri())
        page.click("text=Community view and block explorer")
        # from a file:// page the SameSite=Strict session cookie stays home: the link asks to sign in
        expect(page).to_have_url(community + "login")
        page.fill("#name", "researcher")
        page.fill("#password", password)
        page.click("button[type=submit]")
        expect(page).to_have_url(community + "community")
        _shot(page, tmp_path, "from-report")
        page.close()

        kids = descendants(proc.pid)
        took = stop_and_time(proc, signal.SIGTERM)
        rc = proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        err.close()
    print(f"SIGTERM after the run: exit {rc} in {took:.2f} s; children {sorted(kids.values())}")
    assert_no_survivors(kids)
    assert not alive(proc.pid)
    assert took < 2.0, f"took {took:.2f} s"
    assert rc == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
