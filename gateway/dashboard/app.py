"""The household dashboard as a Starlette app: the household page, its data and its SSE stream.

Sign-in, sessions, CSRF and the security headers come from `gateway.dashboard.web` (shared with
the community view). A household account may open only its own household's pages (403).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.config import OidcSection
from gateway.dashboard.auth import AccountStore, Session
from gateway.dashboard.live import LiveHub
from gateway.dashboard.web import COOKIE, SECURITY_HEADERS, WebAuth, sse, vendor_dir

__all__ = ["COOKIE", "SECURITY_HEADERS", "HouseholdSite", "create_app", "vendor_dir"]


@dataclass
class HouseholdSite:
    """What the app serves: this gateway's id and a callable giving the page's snapshot."""

    gateway_id: str
    snapshot: Callable[[float], dict[str, Any]]
    hub: LiveHub
    accounts: AccountStore
    secure_cookies: bool = True
    now: Callable[[], float] = time.time
    oidc: OidcSection | None = None  # sign-in with the community's identity provider, when configured


def create_app(site: HouseholdSite) -> Starlette:
    web = WebAuth(
        site.accounts, lambda account: f"/household/{account.household}", site.secure_cookies, site.oidc
    )

    def authorise(request: Request) -> tuple[Session | None, Response | None]:
        session = web.session_of(request)
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
        return web.page(
            request, "household.html", {"session": session, "data": data, "account": session.account}
        )

    async def household_json(request: Request) -> Response:
        session, refused = authorise(request)
        if refused is not None or session is None:
            return refused or RedirectResponse("/login", 303)
        return JSONResponse(site.snapshot(site.now()))

    async def household_events(request: Request) -> Response:
        _, refused = authorise(request)
        if refused is not None:
            return refused
        return sse(site.hub)

    routes = [
        *web.routes(),
        Route("/household/{household}", household_page),
        Route("/household/{household}/data.json", household_json),
        Route("/household/{household}/events", household_events),
    ]
    return Starlette(routes=routes)
