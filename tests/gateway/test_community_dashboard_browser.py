"""The community dashboard (`gridpact dashboard run`) in a real browser against a real anvil and Mosquitto.

The real command runs with a real operator keystore; the community's Market is deployed on its own
anvil and households trade through signed transactions (contracts.harness). Debian's Chromium
(Playwright) signs in as the operator, sees an agreement appear by server push, follows it to its
settlement in the explorer, rules on a disputed one from its page (evidence in view, a confirmation
step, a real signed transaction), sees a signed market offer from the community broker; a household
is refused another's page (403) and the explorer's lists, and forged form posts are refused (CSRF).
Screenshots of every view at 1366x768 and 390x844 go to the test's tmp folder (paths printed).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from eth_account import Account
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, Page, expect
from web3 import Web3

from contracts.harness import Community, advance_time, household_key
from gateway.chain.keystore import create_keystore
from gateway.trading.protocol import Envelope, encode, sign_envelope
from hil.services import DEV_PRIVATE_KEYS, AnvilNode, MosquittoBroker, free_port, wait_for_port
from tests.process_helpers import stop_and_time

SIZES = {"laptop": (1366, 768), "phone": (390, 844)}
PASSWORD = "correct horse battery"
REPO = Path(__file__).resolve().parents[2]
LIVE_S = 2.0  # the bound: a chain event on the page within 2 s


@dataclass
class Running:
    base: str
    community: Community
    proc: subprocess.Popen
    config: Path
    prefix: str


def _gridpact(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "gridpact.cli", *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=120, check=False)  # fmt: skip


@pytest.fixture
def dashboard(fresh_anvil: AnvilNode, mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[Running]:
    w3 = Web3(Web3.HTTPProvider(fresh_anvil.info.url, request_kwargs={"timeout": 30}))
    c = Community(w3, DEV_PRIVATE_KEYS[0])
    for i in range(3):
        c.add_household(household_key(i), deposit=10**21)
    create_keystore(tmp_path / "operator.json", "operator-pass-1", DEV_PRIVATE_KEYS[0], work=2**10)
    (tmp_path / "operator-pass").write_text("operator-pass-1\n")
    port = free_port()
    prefix = f"dash{secrets.token_hex(3)}"
    config = tmp_path / "dashboard.toml"
    config.write_text(f"""
[index]
state_dir = "state"
reorg_depth = 16

[dashboard]
listen = "127.0.0.1:{port}"
secure_cookies = false

[chain]
rpc_url = "{fresh_anvil.info.url}"
market = "{c.market.address}"
keystore = "operator.json"
passphrase_file = "operator-pass"

[community]
id = "oak-street"
host = "127.0.0.1"
port = {mosquitto.info.port}
topic_prefix = "{prefix}"
""")
    a, b, _ = c.households
    for name, role, household in (("op", "operator", None), ("alice", "household", a.address),
                                  ("bob", "household", b.address)):  # fmt: skip
        extra = ("--household", household) if household else ()
        out = _gridpact("dashboard", "user", "add", name, "--role", role, *extra, "--password-stdin",
                        "--config", str(config), stdin=PASSWORD + "\n")  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert PASSWORD not in out.stdout + out.stderr
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "gridpact.cli", "dashboard", "run", "--config", str(config)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 60, proc)
        yield Running(f"http://127.0.0.1:{port}", c, proc, config, prefix)
    finally:
        stopped_in = stop_and_time(proc, signal.SIGTERM)
        log = proc.stdout.read() if proc.stdout else ""
        print(log[-3000:])
        assert stopped_in < 2.0, f"SIGTERM took {stopped_in:.2f} s"
        assert "password" not in log.lower() or PASSWORD not in log
        with pytest.raises(ProcessLookupError):
            os.kill(proc.pid, 0)


def _shots(page: Page, out: Path, view: str) -> list[Path]:
    paths = []
    for size, (w, h) in SIZES.items():
        page.set_viewport_size({"width": w, "height": h})
        page.wait_for_timeout(150)
        path = out / f"community-{view}-{size}.png"
        page.screenshot(path=str(path), full_page=True)
        paths.append(path)
        print(f"screenshot: {path}")
    page.set_viewport_size({"width": 1366, "height": 768})
    return paths


def _sign_in(page: Page, base: str, name: str, password: str = PASSWORD) -> None:
    page.goto(base + "/login")
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _offer(broker: MosquittoBroker, topic: str, key: str) -> None:
    """A signed market offer from a household, published to the real community broker."""
    account = Account.from_key(key)
    env = Envelope("offer", account.address, None, secrets.token_hex(16), int(time.time()), "oak-street",
                   {"window": int(time.time()) // 3600 * 3600 + 3600, "window_s": 3600, "side": "sell",
                    "quantity_wh": 777, "price": 120})  # fmt: skip
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dash-offer-{time.monotonic_ns()}")
    client.connect(broker.info.host, broker.info.port)
    client.loop_start()
    try:
        client.publish(topic, encode(sign_envelope(env, account)), qos=1).wait_for_publish(5)
        client.publish(topic, b'{"v":1,"forged":true}', qos=1).wait_for_publish(5)
        # well signed, but by a key that is no registered participant: refused too
        stranger = Account.create()
        env2 = Envelope("offer", stranger.address, None, secrets.token_hex(16), int(time.time()), "oak-street",
                        {**env.body, "quantity_wh": 666})  # fmt: skip
        client.publish(topic, encode(sign_envelope(env2, stranger)), qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def test_community_dashboard_in_a_browser(
    dashboard: Running, mosquitto: MosquittoBroker, browser: Browser, tmp_path: Path
) -> None:
    base, c = dashboard.base, dashboard.community
    a, b, x = c.households
    m = c.market
    shots: list[Path] = []
    page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
    page.goto(base + "/community")
    expect(page).to_have_url(base + "/login")
    _sign_in(page, base, "op", "not the password")
    expect(page.get_by_role("alert")).to_contain_text("Wrong name or password")
    _sign_in(page, base, "op")
    expect(page).to_have_url(base + "/community")
    expect(page.locator("#link")).to_have_text("live", timeout=10_000)
    expect(page.locator("#participants li")).to_have_count(3)

    # an agreement submitted on chain appears on the open page by server push, within 2 s
    t1 = c.terms(a, b)
    aid1 = "0x" + c.agreement_id(t1).hex()
    c.admin.transact(m.functions.submitAgreement(t1.as_tuple(), *c.sign(t1, a, b)))
    mined = time.monotonic()
    row = page.locator(f'#agreements tr[data-id="{aid1}"]')
    expect(row).to_contain_text("active", timeout=LIVE_S * 1000)
    print(f"push latency (agreement mined -> row on the page): {time.monotonic() - mined:.3f} s")

    # a signed offer on the community broker shows up; a forged message is counted as refused
    topic = f"{dashboard.prefix}/oak-street/v1/market"
    _offer(mosquitto, topic, a.key)
    expect(page.locator("#offers")).to_contain_text("777", timeout=5_000)
    expect(page.locator("#msg-counts")).to_contain_text("2 refused")
    expect(page.locator("#offers")).not_to_contain_text("666")
    shots += _shots(page, tmp_path, "overview")

    # follow it to its settlement in the explorer: the agreement page follows the chain live
    row.get_by_role("link").click()
    expect(page).to_have_url(base + f"/explorer/agreement/{aid1}")
    expect(page.locator("#ag-status")).to_have_text("active")
    expect(page.locator("#link")).to_have_text("live", timeout=10_000)
    advance_time(c.w3, 2 * 3600 + 1)
    c.admin.transact(m.functions.settleBatch([c.settle_item(t1, a, b, 1000, 1000)]))
    expect(page.locator("#ag-status")).to_have_text("settled", timeout=5_000)
    expect(page.get_by_role("heading", name="Signatures (EIP-712, compact)")).to_be_visible()
    settle_link = page.locator("#settle-tx")
    expect(settle_link).to_be_visible()
    shots += _shots(page, tmp_path, "agreement-settled")
    settle_link.click()
    expect(page.get_by_text("settleBatch", exact=True)).to_be_visible()
    expect(page.get_by_text("AgreementSettled")).to_be_visible()
    shots += _shots(page, tmp_path, "transaction")

    # a disputed agreement: the operator rules from its page, evidence in view, after a confirmation
    t2 = c.terms(a, x)
    aid2 = "0x" + c.agreement_id(t2).hex()
    c.admin.transact(m.functions.submitAgreement(t2.as_tuple(), *c.sign(t2, a, x)))
    advance_time(c.w3, 2 * 3600 + 1)
    c.admin.transact(m.functions.settleBatch([c.settle_item(t2, a, x, 1000, 600)]))
    page.goto(base + "/community")
    dispute = page.locator("#disputes tr").filter(has_text="600")
    expect(dispute).to_contain_text("1000", timeout=5_000)
    dispute.get_by_role("link").click()
    expect(page).to_have_url(base + f"/explorer/agreement/{aid2}")
    expect(page.locator("#ag-status")).to_have_text("disputed")
    page.get_by_label("Delivered energy (Wh), by the evidence above").fill("800")
    page.get_by_role("button", name="Review the ruling…").click()
    expect(page.get_by_text("800 Wh delivered of 1000 Wh contracted")).to_be_visible()
    expect(page.get_by_text("Dry run: the chain accepts this call.")).to_be_visible()
    expect(page.get_by_text("Buyer says")).to_be_visible()
    shots += _shots(page, tmp_path, "confirm")
    page.get_by_role("button", name="Sign and send").click()
    expect(page.get_by_role("heading", name="Done")).to_be_visible(timeout=20_000)
    page.locator("#sent-tx").click()
    expect(page.get_by_text("resolveDispute", exact=True)).to_be_visible()
    expect(page.get_by_text("DisputeResolved")).to_be_visible()
    assert int(m.functions.agreementOf(t2.as_tuple()).call()[0]) == 3  # Settled, on chain
    page.goto(base + f"/explorer/agreement/{aid2}")
    expect(page.locator("#ag-status")).to_have_text("settled", timeout=5_000)

    # search by agreement id, transaction hash and address
    page.goto(base + "/explorer")
    for query, expected in (
        (aid1, f"/explorer/agreement/{aid1}"),
        (a.address, f"/explorer/address/{a.address}"),
    ):
        page.goto(base + "/explorer")
        page.get_by_label("Search by address, transaction hash or agreement id").fill(query)
        page.get_by_role("button", name="Search").click()
        expect(page).to_have_url(base + expected)
    page.goto(base + "/explorer")
    expect(page.locator("#events")).to_contain_text("DisputeResolved")
    shots += _shots(page, tmp_path, "explorer")

    # forged form posts (no CSRF token, a wrong one) are refused, the action and its confirmation alike
    forms: list[dict[str, str | float | bool]] = [
        {"gateway": x.address},
        {"gateway": x.address, "csrf": "forged"},
    ]
    for form in forms:
        assert page.request.post(base + "/operator/action/remove", form=form).status == 403
    assert page.request.post(base + "/operator/confirm", form={"token": "x", "csrf": "forged"}).status == 403
    assert m.functions.isParticipant(x.address).call()

    # a household sees the aggregates and its own pages only
    hh = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
    _sign_in(hh, base, "alice")
    expect(hh).to_have_url(base + "/community")
    expect(hh.locator(f'#agreements tr[data-id="{aid1}"]')).to_be_visible()
    assert "disputes" not in hh.request.get(base + "/community/data.json").json()
    # alice's own agreements follow the chain on her open page too
    t3 = c.terms(a, x)
    aid3 = "0x" + c.agreement_id(t3).hex()
    c.admin.transact(m.functions.submitAgreement(t3.as_tuple(), *c.sign(t3, a, x)))
    expect(hh.locator(f'#agreements tr[data-id="{aid3}"]')).to_contain_text("active", timeout=LIVE_S * 1000)
    assert all(
        r["seller"] == a.address or r["buyer"] == a.address
        for r in hh.request.get(base + "/community/mine.json").json()
    )
    shots += _shots(hh, tmp_path, "household-overview")
    assert hh.request.get(base + f"/household/{a.address}").status == 200
    assert hh.request.get(base + f"/household/{b.address}").status == 403
    assert hh.request.get(base + "/explorer").status == 403
    assert hh.request.get(base + f"/explorer/agreement/{aid1}").status == 200  # alice sold it
    bob = browser.new_context().new_page()
    _sign_in(bob, base, "bob")
    assert bob.request.get(base + f"/explorer/agreement/{aid2}").status == 403  # between alice and x
    assert bob.request.get(base + f"/household/{a.address}").status == 403
    hh.goto(base + f"/household/{b.address}")
    shots += _shots(hh, tmp_path, "forbidden")
    # a household's session cannot act even with its own valid CSRF token
    token = (
        hh.locator("input[name=csrf]").first.get_attribute("value")
        if hh.locator("input[name=csrf]").count()
        else None
    )
    hh.goto(base + "/community")
    token = hh.locator("input[name=csrf]").first.get_attribute("value")
    resp = hh.request.post(base + "/operator/action/remove", form={"gateway": x.address, "csrf": token or ""})
    assert resp.status == 403
    for path in shots:
        assert path.stat().st_size > 1000
    print(f"screenshots in {tmp_path}")
