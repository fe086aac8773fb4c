"""The household dashboard of a trading gateway, in a real browser, while it negotiates and settles.

Two real `gridpact gateway run` processes (a seller and a buyer) trade over a real Mosquitto and
settle on a real anvil, as in test_trade_full_gateway.py; the buyer's gateway serves its dashboard.
Debian's Chromium (Playwright) signs in before the first negotiation and watches, by server push:
the agent's sessions appear with this household's and the peer's offers drawn against its Eq. 1
concession curve, the agreement enters the schedule with contracted and delivered energy, and
the tokens (free, in escrow, as collateral) and the savings against the config's tariff show.
Screenshots at 1366x768 and 390x844 are written to the test's tmp folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright
from test_trade_full_gateway import HMAC_HEX, gateway_toml, meters
from trade_helpers import community_on, households

from gateway.chain.journal import Journal
from hil.services import AnvilNode, MosquittoBroker, free_port

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
SIZES = {"laptop": (1366, 768), "phone": (390, 844)}
PASSWORD = "correct horse battery"


def _add_account(config: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "gridpact.cli", "gateway", "dashboard-user", "add", "bea", "--role", "household",
         "--household", "buyer", "--password-stdin", "--config", str(config)],
        input=PASSWORD + "\n", capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def _wait_http(url: str, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {limit_s} s")


def test_dashboard_shows_a_negotiation_its_agreement_and_tokens(
    mosquitto: MosquittoBroker, mined_anvil: AnvilNode, tmp_path: Path
) -> None:
    com = community_on(mined_anvil)
    specs = households(tmp_path, com, mosquitto.port, 1_200_000, mined_anvil.info.url)
    port = free_port()
    configs = []
    for spec in specs:
        (tmp_path / f"{spec['name']}.hmac").write_text(HMAC_HEX + "\n")
        text = gateway_toml(spec["name"], spec, tmp_path / spec["name"], mosquitto.port)
        if spec["name"] == "buyer":
            text = text.replace("[agent]\n", "[agent]\nimport_tariff = 250\nexport_tariff = 50\n")
            text += f'[dashboard]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
        config = tmp_path / f"{spec['name']}.toml"
        config.write_text(text)
        configs.append(config)
    _add_account(configs[1])
    # what the buyer's demand-response task journals for an event it was paid for (the flow itself is
    # tests/gateway/trading/test_trade_demand.py's; here: how the page shows it)
    (tmp_path / "buyer").mkdir(exist_ok=True)
    seeded = Journal(tmp_path / "buyer" / "trading.db")
    seeded.set("dr:ev:1", json.dumps({"window_start": 1_800_003_600, "claim_by": 1_800_010_800,
                                      "reward_per_kwh": 200, "budget": 10**6}))  # fmt: skip
    seeded.set("dr:claim:1", json.dumps({"actual_wh": 400, "baseline_wh": 1100, "reduction_wh": 700}))
    seeded.set("dr:1", "paid")
    seeded.set("dr:paid:1", "140")
    seeded.close()
    gridpact = str(ROOT / ".venv" / "bin" / "gridpact")
    logs = [open(tmp_path / f"{s['name']}.log", "wb") for s in specs]  # noqa: SIM115
    procs = [subprocess.Popen([gridpact, "gateway", "run", "--config", str(c)], stdout=log, stderr=log)
             for c, log in zip(configs, logs, strict=True)]  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    feeder = threading.Thread(target=loop.run_until_complete, args=(meters(mosquitto.port, specs, stop),))
    feeder.start()
    base = f"http://127.0.0.1:{port}"
    shots: list[Path] = []
    try:
        _wait_http(base + "/healthz", 30)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
                page.goto(base + "/login")
                page.get_by_label("Account name").fill("bea")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                expect(page.get_by_role("heading", name="Household buyer")).to_be_visible()
                expect(page.locator("#link")).to_have_text("live", timeout=10_000)
                at_load = set(
                    page.locator("figure.session").evaluate_all("els => els.map(e => e.dataset.session)")
                )

                # a negotiation that starts after the page loaded appears by push, offers of both sides on it
                new_agreed = ("(old) => [...document.querySelectorAll('figure.session[data-outcome=agreed]')]"
                              ".map(e => e.dataset.session).find(s => !old.includes(s))")  # fmt: skip
                session = page.wait_for_function(new_agreed, arg=sorted(at_load), timeout=45_000).json_value()
                assert isinstance(session, str) and session not in at_load
                fig = page.locator(f'figure.session[data-session="{session}"]')
                expect(fig).to_contain_text("Buying from")
                expect(fig.locator("svg polyline")).to_have_count(1)  # the own Eq. 1 curve (ip 100, rp 200)
                expect(fig).to_contain_text("ip 100, rp 200, dl 10, cr 1")
                assert fig.locator("svg circle").count() >= 1  # this household's offers
                assert fig.locator("svg rect").count() >= 1  # the seller's counter-offers
                summary = fig.locator("summary")  # the offers' table unfolds from the keyboard
                summary.focus()
                page.keyboard.press("Enter")
                expect(fig.get_by_role("row").filter(has_text="this household").first).to_be_visible()
                expect(fig.get_by_role("row").filter(has_text="peer").first).to_be_visible()
                expect(page.locator("#agent-state")).to_have_text("waiting", timeout=10_000)

                # the agreement enters the schedule, then follows its states to settlement
                schedule = page.locator("#schedule tbody tr")
                expect(schedule.first).to_be_visible(timeout=15_000)
                expect(schedule.first).to_contain_text("1000")  # contracted Wh
                settled = schedule.filter(has_text="settled")
                expect(settled.first).to_be_visible(timeout=45_000)
                expect(settled.first).to_contain_text("buyer")
                tokens = {k: page.locator(f"#tok-{k}").inner_text() for k in ("free", "escrow", "collateral")}
                assert tokens["free"].isdigit() and int(tokens["free"]) > 0, tokens
                assert tokens["escrow"].isdigit() and tokens["collateral"] == "0", tokens
                expect(page.locator("#tok-history tbody tr").filter(has_text="paid").first).to_be_visible()
                assert page.locator("#sav-grid").inner_text() not in ("", "–")
                event = page.locator("#demand tbody tr")
                expect(page.get_by_role("heading", name="Demand response")).to_be_visible()
                expect(event).to_have_count(1)
                for text in ("200", "paid", "1100", "700", "140"):
                    expect(event.first).to_contain_text(text)
                page.wait_for_timeout(300)
                for size, (w, h) in SIZES.items():
                    page.set_viewport_size({"width": w, "height": h})
                    path = tmp_path / f"dashboard-trading-{size}.png"
                    page.screenshot(path=str(path), full_page=True)
                    shots.append(path)
                    print(f"screenshot: {path}")
                # keyboard: the schedule's scroll region and the sign-out button are reachable by Tab
                page.locator("body").focus()
                focused = set()
                for _ in range(40):
                    page.keyboard.press("Tab")
                    focused.add(
                        page.evaluate(
                            "document.activeElement.getAttribute('aria-labelledby') || document.activeElement.textContent"
                        )
                    )
                assert "ag-h" in focused and "Sign out" in focused, focused
            finally:
                browser.close()
        assert all(p.poll() is None for p in procs), "a gateway exited"
    finally:
        loop.call_soon_threadsafe(stop.set)
        feeder.join(10)
        loop.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(20) for p in procs]
        for log in logs:
            log.close()
    output = "".join((tmp_path / f"{s['name']}.log").read_text(errors="replace")[-3000:] for s in specs)
    assert codes == [0, 0], output
    for path in shots:
        assert path.stat().st_size > 1000
