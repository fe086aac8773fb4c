"""The household dashboard as a Starlette app: sign-in, the household page, its SSE stream.

Every page needs a signed session cookie (HttpOnly, SameSite=Strict, Secure unless configured off
for a plain-HTTP LAN); every POST needs the session's CSRF token; sign-in is rate-limited per client
address and per account name. A household account may open only its own household's pages (403).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from gateway.dashboard.auth import AccountStore, LoginLimiter, Session, SessionCodec, csrf_ok
from gateway.dashboard.live import LiveHub

HERE = Path(__file__).resolve().parent
COOKIE = "gp_session"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def vendor_dir() -> Path:
    """uPlot's files as npm installed them (package.json pins the version); served, never a CDN."""
    return HERE.parents[1] / "node_modules" / "uplot" / "dist"


@dataclass
class HouseholdSite:
    """What the app serves: this gateway's id and a callable giving the page's snapshot."""

    gateway_id: str
    snapshot: Callable[[float], dict[str, Any]]
    hub: LiveHub
    accounts: AccountStore
    secure_cookies: bool = True
    now: Callable[[], float] = time.time


def create_app(site: HouseholdSite) -> Starlette:
    codec = SessionCodec(site.accounts.secret_key())
    limiter = LoginLimiter()
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    def session_of(request: Request) -> Session | None:
        return codec.read(request.cookies.get(COOKIE))

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        resp = templates.TemplateResponse(request, name, context, status_code=status)
        resp.headers.update(SECURITY_HEADERS)
        return resp

    async def home(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return RedirectResponse("/login", 303)
        return RedirectResponse(f"/household/{session.account.household}", 303)

    async def login_form(request: Request) -> Response:
        return page(request, "login.html", {"error": None})

    async def login(request: Request) -> Response:
        form = await request.form()
        name = str(form.get("name", ""))[:64]
        password = str(form.get("password", ""))[:256]
        client = request.client.host if request.client else "?"
        now = time.monotonic()
        keys = (f"ip:{client}", f"name:{name}")
        if not all(limiter.allowed(k, now) for k in keys):
            resp = page(request, "login.html", {"error": "Too many attempts: wait a minute."}, 429)
            resp.headers["Retry-After"] = str(int(limiter.window_s))
            return resp
        account = site.accounts.verify(name, password)
        if account is None:
            for k in keys:
                limiter.failed(k, now)
            return page(request, "login.html", {"error": "Wrong name or password."}, 401)
        for k in keys:
            limiter.succeeded(k)
        resp = RedirectResponse(f"/household/{account.household}", 303)
        resp.set_cookie(
            COOKIE,
            codec.issue(account),
            max_age=codec.max_age_s,
            httponly=True,
            secure=site.secure_cookies,
            samesite="strict",
        )
        return resp

    async def logout(request: Request) -> Response:
        session = session_of(request)
        form = await request.form()
        if not csrf_ok(session, str(form.get("csrf", "")) or None):
            return PlainTextResponse("CSRF token missing or wrong", 403)
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE)
        return resp

    def authorise(request: Request) -> tuple[Session | None, Response | None]:
        session = session_of(request)
        if session is None:
            return None, RedirectResponse("/login", 303)
        household = request.path_params["household"]
        if not session.account.may_see(household):
            return session, PlainTextResponse("403: this household's pages are private", 403)
        if household != site.gateway_id:
            return session, PlainTextResponse("404: no such household on this gateway", 404)
        return session, None

    async def household_page(request: Request) -> Response:
        session, refused = authorise(request)
        if refused is not None or session is None:
            return refused or RedirectResponse("/login", 303)
        data = site.snapshot(site.now())
        return page(request, "household.html", {"session": session, "data": data, "account": session.account})

    async def household_json(request: Request) -> Response:
        session, refused = authorise(request)
        if refused is not None or session is None:
            return refused or RedirectResponse("/login", 303)
        return JSONResponse(site.snapshot(site.now()))

    async def household_events(request: Request) -> Response:
        _, refused = authorise(request)
        if refused is not None:
            return refused
        if not site.hub.admit():
            return PlainTextResponse("too many live viewers", 503, headers={"Retry-After": "30"})
        return StreamingResponse(
            site.hub.stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/healthz", health),
        Route("/household/{household}", household_page),
        Route("/household/{household}/data.json", household_json),
        Route("/household/{household}/events", household_events),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        Mount("/vendor/uplot", StaticFiles(directory=str(vendor_dir()), check_dir=False), name="uplot"),
    ]
    return Starlette(routes=routes)
