"""Sign-in with the community's identity provider, in a real browser against a real OpenID Provider.

The provider is panva's oidc-provider (a certified OpenID Connect implementation, pinned in
package.json) started by `hil.services.OidcProvider` on `localhost`, another site than the
dashboard on 127.0.0.1, so the browser makes the same cross-site round trip as in a community.
A real gateway serves the household dashboard with `[dashboard.oidc]` configured (its client
secret read from a file); accounts are made with the real `dashboard-user add --no-password`.
Debian's Chromium (Playwright) signs in through the provider's own sign-in and consent pages and
lands on the mapped household's page; an identity not mapped is refused (403, no session); an
answer whose `state` was changed on its way back is refused (403, no session).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from hil.services import MosquittoBroker, OidcProvider, free_port

PASSWORD = "correct horse battery"
REPO = Path(__file__).resolve().parents[2]
SIZES = {"laptop": (1366, 768), "phone": (390, 844)}


def _add_account(config: Path, name: str, household: str, password: str | None) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    how = ["--password-stdin"] if password is not None else ["--no-password"]
    out = subprocess.run(
        [sys.executable, "-m", "gridpact.cli", "gateway", "dashboard-user", "add", name, "--role", "household",
         "--household", household, *how, "--config", str(config)],
        input=(password or "") + "\n", capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def _loopback_only(route: Route) -> None:
    """The provider's pages name a web font on the Internet: this test stays on loopback."""
    host = urlsplit(route.request.url).hostname
    if host in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


def _context(browser: Browser) -> BrowserContext:
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    ctx.route("**/*", _loopback_only)
    return ctx


def _shots(page: Page, out: Path, view: str) -> None:
    for size, (w, h) in SIZES.items():
        page.set_viewport_size({"width": w, "height": h})
        path = out / f"dashboard-oidc-{view}-{size}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
    page.set_viewport_size({"width": 1366, "height": 768})


def _at_provider(page: Page, base: str, provider: OidcProvider, login: str) -> None:
    """From the dashboard's sign-in page through the provider's sign-in form to its consent page."""
    page.goto(base + "/login")
    page.get_by_role("link", name="Sign in with Oak Street ID").click()
    expect(page).to_have_url(re.compile(re.escape(provider.issuer) + "/interaction/"), timeout=15_000)
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any password: the test provider takes any")
    page.get_by_role("button", name="Sign-in").click()
    expect(page.get_by_role("button", name="Continue")).to_be_visible(timeout=15_000)


def _consent(page: Page) -> int:
    """Consent at the provider; the HTTP status of the dashboard's callback page."""
    with page.expect_response(lambda r: "/oidc/callback" in r.url, timeout=30_000) as answer:
        page.get_by_role("button", name="Continue").click()
    return answer.value.status


def _session(ctx: BrowserContext) -> list[str]:
    return [str(c.get("name")) for c in ctx.cookies() if c.get("name") in ("gp_session", "gp_oidc")]


def test_oidc_sign_in_against_a_real_provider(
    mosquitto: MosquittoBroker,
    gw_config: Callable[..., Path],
    gw_gateway: Callable,
    browser: Browser,
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    provider = OidcProvider(base + "/oidc/callback")
    provider.start()
    pid = provider.pid
    try:
        config = gw_config(
            mosquitto.info.port,
            f"""
[dashboard]
enabled = true
listen = "127.0.0.1:{port}"

[dashboard.oidc]
issuer = "{provider.issuer}"
client_id = "{provider.client_id}"
client_secret_file = "{provider.secret_file}"
redirect_uri = "{base}/oidc/callback"
name = "Oak Street ID"

[dashboard.oidc.accounts]
alice = "alice"
""",
            gateway_id="house-07",
        )
        _add_account(config, "alice", "house-07", None)  # signs in only through the provider
        _add_account(config, "carol", "house-07", PASSWORD)
        gw_gateway(config)

        # the mapped identity: provider sign-in, consent, back signed in on its household's page
        ctx = _context(browser)
        page = ctx.new_page()
        page.goto(base + "/login")
        expect(page.get_by_label("Account name")).to_be_visible()  # the password form is still there
        _shots(page, tmp_path, "login")
        _at_provider(page, base, provider, "alice")
        assert _consent(page) == 200
        expect(page).to_have_url(base + "/household/house-07", timeout=15_000)
        expect(page.get_by_role("heading", name="Household house-07")).to_be_visible()
        expect(page.get_by_label("Account", exact=True)).to_contain_text("alice (household)")
        cookie = next(c for c in ctx.cookies() if c.get("name") == "gp_session")
        assert cookie.get("httpOnly") and cookie.get("sameSite") == "Strict"
        assert _session(ctx) == ["gp_session"]  # the one-time sign-in cookie is gone
        # the same rules as a password session: another household is 403, a forged POST is 403
        assert page.request.get(base + "/household/house-09").status == 403
        assert page.request.post(base + "/logout", form={"csrf": "forged"}).status == 403
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(base + "/login")
        ctx.close()

        # an identity the config does not map: refused with a page saying so, and no session
        ctx = _context(browser)
        page = ctx.new_page()
        _at_provider(page, base, provider, "mallory")
        assert _consent(page) == 403
        expect(page.get_by_role("heading", name="Sign-in refused")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("not linked to a dashboard account")
        expect(page.get_by_text("sub = mallory")).to_be_visible()
        _shots(page, tmp_path, "refused")
        assert _session(ctx) == []
        page.goto(base + "/household/house-07")
        expect(page).to_have_url(base + "/login")
        ctx.close()

        # the provider's answer with its `state` changed on the way back: refused, no session
        ctx = _context(browser)
        page = ctx.new_page()

        def tamper(route: Route) -> None:
            """The consent's redirects, followed here, the last (to the dashboard) with another state."""
            if route.request.method != "POST":
                route.continue_()
                return
            resume = urljoin(route.request.url, route.fetch(max_redirects=0).headers["location"])
            back = urlsplit(ctx.request.get(resume, max_redirects=0).headers["location"])
            assert back.path == "/oidc/callback" and "code=" in back.query
            query = [(k, "forged" + v[6:] if k == "state" else v) for k, v in parse_qsl(back.query)]
            route.fulfill(status=303, headers={"Location": urlunsplit(back._replace(query=urlencode(query)))})

        _at_provider(page, base, provider, "alice")
        page.route(re.compile(re.escape(provider.issuer) + "/interaction/"), tamper)  # the consent's POST
        assert _consent(page) == 403
        expect(page.get_by_role("alert")).to_contain_text("state mismatch")
        assert _session(ctx) == []
        ctx.close()

        # password sign-in still works beside the provider
        ctx = _context(browser)
        page = ctx.new_page()
        page.goto(base + "/login")
        page.get_by_label("Account name").fill("carol")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page).to_have_url(base + "/household/house-07")
        ctx.close()
    finally:
        provider.close()
    assert pid is not None and not os.path.exists(f"/proc/{pid}"), "the provider outlived its test"
