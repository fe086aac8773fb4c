"""What every dashboard shares: sign-in and sign-out, the session cookie, CSRF checks, pages, SSE.

The household view (on each gateway) and the community view (`gridpact dashboard`) are two
Starlette apps built on this one module, so the security rules live in one place: every page
needs a signed session cookie (HttpOnly, SameSite=Strict, Secure unless configured off for a
plain-HTTP LAN); every POST needs the session's CSRF token; sign-in is rate-limited per client
address and per account name; pages carry a strict Content-Security-Policy (no inline script).
With `[dashboard.oidc]` configured, the sign-in page also offers the community's identity provider
(`gateway.dashboard.oidc`); its sessions are the same signed cookies, with the same CSRF token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from gateway.config import OIDC_CALLBACK, OidcSection
from gateway.dashboard.auth import Account, AccountStore, LoginLimiter, Session, SessionCodec, csrf_ok
from gateway.dashboard.live import LiveHub
from gateway.dashboard.oidc import PENDING_COOKIE, PENDING_MAX_AGE_S, OidcClient, OidcRefused
from gridpact.core.config import read_secret

log = logging.getLogger("gridpact.dashboard")

HERE = Path(__file__).resolve().parent
COOKIE = "gp_session"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
UPLOT_FILES = ("uPlot.iife.min.js", "uPlot.min.css")


def vendor_dir() -> Path:
    """uPlot's files: the copy shipped inside the package (wheels, pip installs), else npm's.

    `package.json` pins uPlot; `tests/gateway/test_dashboard_auth.py` checks the shipped copy is
    byte for byte the pinned npm build, so both are the same files and neither is a CDN.
    """
    shipped = HERE / "vendor" / "uplot"
    if all((shipped / name).exists() for name in UPLOT_FILES):
        return shipped
    return HERE.parents[1] / "node_modules" / "uplot" / "dist"


class WebAuth:
    """Sessions, CSRF and sign-in for one app; `landing` says where an account goes after signing in."""

    def __init__(
        self,
        accounts: AccountStore,
        landing: Callable[[Account], str],
        secure_cookies: bool = True,
        oidc: OidcSection | None = None,
    ) -> None:
        self.accounts = accounts
        self.codec = SessionCodec(accounts.secret_key())
        self.limiter = LoginLimiter()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.landing = landing
        self.secure_cookies = secure_cookies
        # the client secret is read at start, so a missing one stops the dashboard with the key's name
        self.oidc = (
            OidcClient(oidc, read_secret(oidc.client_secret), accounts.secret_key())
            if oidc is not None
            else None
        )

    def session_of(self, request: Request) -> Session | None:
        return self.codec.read(request.cookies.get(COOKIE))

    def page(self, request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        resp = self.templates.TemplateResponse(request, name, context, status_code=status)
        resp.headers.update(SECURITY_HEADERS)
        return resp

    async def csrf_form(self, request: Request) -> tuple[Session, FormData] | Response:
        """The session and form of a POST carrying the right CSRF token; else the 303 or 403 to send."""
        session = self.session_of(request)
        form = await request.form()
        if session is None:
            return RedirectResponse("/login", 303)
        if not csrf_ok(session, str(form.get("csrf", "")) or None):
            return PlainTextResponse("403: CSRF token missing or wrong", 403)
        return session, form

    async def home(self, request: Request) -> Response:
        session = self.session_of(request)
        if session is None:
            return RedirectResponse("/login", 303)
        return RedirectResponse(self.landing(session.account), 303)

    def login_page(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        """The sign-in form (and the identity provider's button when one is configured)."""
        oidc = self.oidc.name if self.oidc is not None else None
        return self.page(request, "login.html", {"error": error, "oidc": oidc}, status)

    def _signed_in(self, resp: Response, account: Account) -> Response:
        resp.set_cookie(
            COOKIE,
            self.codec.issue(account),
            max_age=self.codec.max_age_s,
            httponly=True,
            secure=self.secure_cookies,
            samesite="strict",
        )
        return resp

    async def login_form(self, request: Request) -> Response:
        return self.login_page(request)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        name = str(form.get("name", ""))[:64]
        password = str(form.get("password", ""))[:256]
        client = request.client.host if request.client else "?"
        now = time.monotonic()
        keys = (f"ip:{client}", f"name:{name}")
        if not all(self.limiter.allowed(k, now) for k in keys):
            resp = self.login_page(request, "Too many attempts: wait a minute.", 429)
            resp.headers["Retry-After"] = str(int(self.limiter.window_s))
            return resp
        account = self.accounts.verify(name, password)
        if account is None:
            for k in keys:
                self.limiter.failed(k, now)
            return self.login_page(request, "Wrong name or password.", 401)
        for k in keys:
            self.limiter.succeeded(k)
        return self._signed_in(RedirectResponse(self.landing(account), 303), account)

    async def oidc_login(self, request: Request) -> Response:
        """Off to the identity provider, with this browser's state, nonce and PKCE verifier in a cookie."""
        assert self.oidc is not None
        try:
            url, pending = await self.oidc.begin()
        except OidcRefused as exc:
            log.warning("event=oidc_refused reason=%r", exc.reason)
            return self.login_page(
                request, f"Sign-in with {self.oidc.name} is unavailable: {exc.reason}.", exc.status
            )
        resp = RedirectResponse(url, 303)
        # Lax, not Strict: it must come back on the provider's (cross-site) redirect to the callback
        resp.set_cookie(PENDING_COOKIE, pending, max_age=PENDING_MAX_AGE_S, path="/oidc/", httponly=True,
                        secure=self.secure_cookies, samesite="lax")  # fmt: skip
        return resp

    async def oidc_callback(self, request: Request) -> Response:
        """The provider's answer: a session for the mapped account, or a 403 page saying why not."""
        assert self.oidc is not None
        pending = self.oidc.pending(request.cookies.get(PENDING_COOKIE))
        try:
            name = await self.oidc.finish(request.query_params, pending)
            account = self.accounts.get(name)
            if account is None:
                raise OidcRefused(
                    f"the linked dashboard account {name!r} does not exist: ask the community operator"
                )
        except OidcRefused as exc:
            log.warning("event=oidc_refused reason=%r", exc.reason)
            ctx = {"reason": exc.reason, "identity": exc.identity, "claim": self.oidc.cfg.claim,
                   "provider": self.oidc.name}  # fmt: skip
            resp = self.page(request, "oidc_refused.html", ctx, exc.status)
        else:
            log.info("event=oidc_signin account=%s role=%s", account.name, account.role)
            # a page of our own that moves on (not a redirect): the Strict session cookie is then sent,
            # since that navigation starts on this site, not at the provider's
            resp = self._signed_in(
                self.page(
                    request, "oidc_done.html", {"landing": self.landing(account), "name": account.name}
                ),
                account,
            )
        resp.delete_cookie(PENDING_COOKIE, path="/oidc/")
        return resp

    async def logout(self, request: Request) -> Response:
        checked = await self.csrf_form(request)
        if isinstance(checked, Response):
            return checked
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE)
        return resp

    def routes(self) -> list[BaseRoute]:
        """Sign-in, sign-out, health and the static files every dashboard serves."""
        return [
            Route("/", self.home),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/healthz", health),
            *self._oidc_routes(),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
            Mount("/vendor/uplot", StaticFiles(directory=str(vendor_dir()), check_dir=False), name="uplot"),
        ]

    def _oidc_routes(self) -> list[BaseRoute]:
        if self.oidc is None:
            return []
        return [Route("/oidc/login", self.oidc_login), Route(OIDC_CALLBACK, self.oidc_callback)]


async def health(_: Request) -> Response:
    return PlainTextResponse("ok")


def sse(hub: LiveHub, kinds: frozenset[str] | None = None) -> Response:
    """The live stream of a hub for one viewer, or 503 when the viewer bound is reached."""
    if not hub.admit():
        return PlainTextResponse("too many live viewers", 503, headers={"Retry-After": "30"})
    return StreamingResponse(
        hub.stream(kinds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
