"""The household dashboard as a Starlette app: the household page, its data and its SSE stream.

Sign-in, sessions, CSRF and the security headers come from `gateway.dashboard.web` (shared with
the community view). A household account may open only its own household's pages (403).
One app serves one household (a gateway) or several (`gridpact simulate --dashboard` mounts every
household of the run on one server; the operator role sees the list of them at `/households`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.config import OidcSection
from gateway.dashboard.auth import Account, AccountStore, Session
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


def create_app(site: HouseholdSite | Sequence[HouseholdSite]) -> Starlette:
    """The app of one household's site, or of several on one server (all sharing one account store)."""
    sites = {s.gateway_id: s for s in ([site] if isinstance(site, HouseholdSite) else site)}
    first = next(iter(sites.values()))

    def landing(account: Account) -> str:
        if account.role == "operator" and account.household not in sites:
            return "/households"
        return f"/household/{account.household}"

    web = WebAuth(first.accounts, landing, first.secure_cookies, first.oidc)

    def authorise(request: Request) -> tuple[Session | None, HouseholdSite | None, Response | None]:
        session = web.session_of(request)
        if session is None:
            return None, None, RedirectResponse("/login", 303)
        household = request.path_params["household"]
        if not session.account.may_see(household):
            return session, None, PlainTextResponse("403: this household's pages are private", 403)
        found = sites.get(household)
        if found is None:
            return session, None, PlainTextResponse("404: no such household on this gateway", 404)
        return session, found, None

    async def households_page(request: Request) -> Response:
        session = web.session_of(request)
        if session is None:
            return RedirectResponse("/login", 303)
        if session.account.role != "operator":
            return PlainTextResponse("403: the list of households is the operator's", 403)
        return web.page(
            request,
            "households.html",
            {"session": session, "account": session.account, "households": sorted(sites)},
        )

    async def household_page(request: Request) -> Response:
        session, site, refused = authorise(request)
        if refused is not None or session is None or site is None:
            return refused or RedirectResponse("/login", 303)
        data = site.snapshot(site.now())
        return web.page(
            request, "household.html", {"session": session, "data": data, "account": session.account}
        )

    async def household_json(request: Request) -> Response:
        session, site, refused = authorise(request)
        if refused is not None or session is None or site is None:
            return refused or RedirectResponse("/login", 303)
        return JSONResponse(site.snapshot(site.now()))

    async def household_events(request: Request) -> Response:
        _, site, refused = authorise(request)
        if refused is not None or site is None:
            return refused or RedirectResponse("/login", 303)
        return sse(site.hub)

    routes = [
        *web.routes(),
        Route("/households", households_page),
        Route("/household/{household}", household_page),
        Route("/household/{household}/data.json", household_json),
        Route("/household/{household}/events", household_events),
    ]
    return Starlette(routes=routes)
