"""The household dashboard in a real browser (Debian's Chromium via Playwright) against a real gateway.

A gateway runs with `[dashboard]` enabled, reading its meter through a real Mosquitto; accounts are
made with the real `gridpact gateway dashboard-user add` command; an agreement is in the real trading
journal. The browser signs in, watches a signed reading published to the broker arrive by server
push, is refused another household's page (403) and a forged POST without the CSRF token (403).
Screenshots of every view at 1366x768 and 390x844 are written to the test's tmp folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, Page, expect

from gateway.chain.journal import Journal
from gridpact.core.wire import encode_reading
from hil.services import MosquittoBroker, free_port

KEY = bytes(range(32))
SIZES = {"laptop": (1366, 768), "phone": (390, 844)}
PASSWORD = "correct horse battery"
REPO = Path(__file__).resolve().parents[2]


def _add_account(config: Path, name: str, role: str, household: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "gridpact.cli", "gateway", "dashboard-user", "add", name, "--role", role,
         "--household", household, "--password-stdin", "--config", str(config)],
        input=PASSWORD + "\n", capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert PASSWORD not in out.stdout + out.stderr


def _shots(page: Page, out: Path, view: str) -> list[Path]:
    paths = []
    for size, (w, h) in SIZES.items():
        page.set_viewport_size({"width": w, "height": h})
        path = out / f"dashboard-{view}-{size}.png"
        page.screenshot(path=str(path), full_page=True)
        paths.append(path)
        print(f"screenshot: {path}")
    page.set_viewport_size({"width": 1366, "height": 768})
    return paths


def _sign_in(page: Page, base: str, name: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_household_dashboard_in_a_browser(
    mosquitto: MosquittoBroker,
    gw_config: Callable[..., Path],
    gw_gateway: Callable,
    gw_topic: Callable[[str], str],
    browser: Browser,
    tmp_path: Path,
) -> None:
    port = free_port()
    config = gw_config(
        mosquitto.info.port,
        f'\n[dashboard]\nenabled = true\nlisten = "127.0.0.1:{port}"\n',
        gateway_id="house-07",
    )
    _add_account(config, "alice", "household", "house-07")
    _add_account(config, "bob", "household", "house-09")
    state = tmp_path / "state"
    journal = Journal(state / "trading.db")
    terms = {"seller": "0x" + "11" * 20, "buyer": "0x" + "22" * 20, "quantityWh": 1500, "unitPrice": 21}
    journal.put_agreement("0x" + "ab" * 32, "buyer", "0x" + "11" * 20, terms, "0xsig", 1_767_229_200)
    journal.set_agreement_state("0x" + "ab" * 32, "closed", measured_wh=1480)
    journal.close()
    gw = gw_gateway(config)
    base = f"http://127.0.0.1:{port}"

    page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
    page.goto(base + "/household/house-07")
    expect(page).to_have_url(base + "/login")
    shots = _shots(page, tmp_path, "login")

    # a wrong password is refused with the form again
    page.get_by_label("Account name").fill("alice")
    page.get_by_label("Password").fill("wrong password!")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong name or password")

    _sign_in(page, base, "alice")
    expect(page).to_have_url(base + "/household/house-07")
    expect(page.get_by_role("heading", name="Household house-07")).to_be_visible()
    expect(page.locator("#link")).to_have_text("live", timeout=10_000)
    row = page.get_by_role("row").filter(has_text="1480")
    expect(row).to_contain_text("closed")
    expect(row).to_contain_text("1500")
    cookie = next(c for c in page.context.cookies() if c.get("name") == "gp_session")
    assert cookie.get("httpOnly") and cookie.get("secure") and cookie.get("sameSite") == "Strict"

    # a signed reading published to the real broker arrives on the open page by server push
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dash-test-{time.monotonic_ns()}")
    client.connect(mosquitto.info.host, mosquitto.info.port)
    client.loop_start()
    try:
        now = int(time.time())
        payload = encode_reading(KEY, "node-01", 7, now, 0, "sdm120",
                                 {"p1_W": 1234.5, "e_imp_kWh": 10.0, "e_exp_kWh": 2.0})  # fmt: skip
        sent = time.monotonic()
        client.publish(gw_topic("gridpact/meter/node-01/reading"), payload, qos=1).wait_for_publish(5)
        expect(page.locator("#power")).to_have_text("1234.5", timeout=5_000)
        print(f"push latency (publish -> page shows it): {time.monotonic() - sent:.3f} s")
        expect(page.locator("#seq")).to_have_text("7")
    finally:
        client.loop_stop()
        client.disconnect()
    page.wait_for_timeout(300)  # the chart's first layout
    shots += _shots(page, tmp_path, "household")

    # another household's private page: 403, for the page, its data and its stream
    for suffix in ("", "/data.json", "/events"):
        resp = page.request.get(base + "/household/house-09" + suffix)
        assert resp.status == 403, suffix
    page.goto(base + "/household/house-09")
    shots += _shots(page, tmp_path, "forbidden")

    # a forged POST (no CSRF token) is refused; the session survives it
    forged = page.request.post(base + "/logout", form={"csrf": "forged"})
    assert forged.status == 403
    assert page.request.post(base + "/logout").status == 403
    page.goto(base + "/household/house-07")
    expect(page.get_by_role("heading", name="Household house-07")).to_be_visible()

    # keyboard only: the sign-out button is reachable and works
    page.get_by_role("button", name="Sign out").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(base + "/login")

    # bob (house-09) signs in and is refused alice's page
    page2 = browser.new_context().new_page()
    _sign_in(page2, base, "bob")
    assert page2.request.get(base + "/household/house-07").status == 403
    assert gw.alive
    for path in shots:
        assert path.stat().st_size > 1000
