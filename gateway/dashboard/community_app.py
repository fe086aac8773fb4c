"""The community view (`gridpact dashboard`) as a Starlette app: overview, explorer, operator actions.

Roles: the operator sees and acts on everything; a household account (its `household` is its
gateway address) sees the community's aggregates, its own page and the explorer pages of its own
agreements, and gets 403 for another household's page or agreement. Every POST is CSRF-checked
(`gateway.dashboard.web`) and every operator action goes through a confirmation page first.
"""

from __future__ import annotations

import asyncio
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
from gateway.dashboard.community_site import CommunitySite
from gateway.dashboard.live import LiveHub
from gateway.dashboard.operator import ActionError, Confirmations, parse_action
from gateway.dashboard.web import WebAuth, sse

HOUSEHOLD_KINDS = frozenset({"summary"})


@dataclass
class OperatorSend:
    """How a confirmed action reaches the chain: `dry_run` (eth_call) and `send` (sign, journal, wait)."""

    address: str
    dry_run: Callable[[str, tuple[Any, ...]], str | None]  # None when the chain would accept the call
    send: Callable[
        [str, str, tuple[Any, ...]], dict[str, Any]
    ]  # (idempotency key, function, args) -> outcome


@dataclass
class CommunityApp:
    site: CommunitySite
    hub: LiveHub
    accounts: AccountStore
    operator: OperatorSend | None = None
    secure_cookies: bool = True
    oidc: OidcSection | None = None  # sign-in with the community's identity provider, when configured


def _is_operator(session: Session) -> bool:
    return session.account.role == "operator"


def _is_me(session: Session, address: str) -> bool:
    return session.account.household.lower() == address.lower()


def forbidden(why: str) -> Response:
    return PlainTextResponse(f"403: {why}", 403)


async def _indexed(site: CommunitySite, block: int | None, within_s: float = 3.0) -> None:
    """Wait (briefly) until the index holds `block`, so the links on the answer lead to indexed pages."""
    if block is None:
        return
    sent_at = time.time()
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and (site.index.next_block <= block or site.built_at < sent_at):
        await asyncio.sleep(0.05)


def create_community_app(c: CommunityApp) -> Starlette:
    web = WebAuth(c.accounts, lambda account: "/community", c.secure_cookies, c.oidc)
    confirmations = Confirmations(c.accounts.secret_key())

    def signed_in(request: Request) -> Session | Response:
        session = web.session_of(request)
        return session if session is not None else RedirectResponse("/login", 303)

    def page(request: Request, session: Session, name: str, status: int = 200, **ctx: Any) -> Response:
        return web.page(
            request,
            name,
            {"session": session, "account": session.account, "operator": _is_operator(session), **ctx},
            status,
        )

    async def overview(request: Request) -> Response:
        session = signed_in(request)
        if isinstance(session, Response):
            return session
        data = c.site.snapshot if _is_operator(session) else c.site.aggregates()
        mine = [] if _is_operator(session) else c.site.own(session.account.household)
        return page(request, session, "community.html", data=data, mine=mine, can_act=c.operator is not None)

    async def data_json(request: Request) -> Response:
        session = signed_in(request)
        if isinstance(session, Response):
            return session
        return JSONResponse(c.site.snapshot if _is_operator(session) else c.site.aggregates())

    async def mine_json(request: Request) -> Response:
        session = signed_in(request)
        if isinstance(session, Response):
            return session
        return JSONResponse(c.site.own(session.account.household))

    async def events(request: Request) -> Response:
        session = signed_in(request)
        if isinstance(session, Response):
            return session
        return sse(c.hub, None if _is_operator(session) else HOUSEHOLD_KINDS)

    async def household(request: Request) -> Response:
        session = signed_in(request)
        if isinstance(session, Response):
            return session
        address = request.path_params["address"]
        if not (_is_operator(session) or _is_me(session, address)):
            return forbidden("this household's page is private")
        return page(request, session, "address.html", data=c.site.address(address))

    async def explorer(request: Request) -> Response:
        session = signed_in(request)
        if isinstance(session, Response):
            return session
        if not _is_operator(session):
            return forbidden("the explorer's lists are the operator's; your agreements are on your page")
        return page(request, session, "explorer.html", data=c.site.snapshot, query="", missing=False)

    async def search(request: Request) -> Response:
        session = signed_in(request)
        if isinstance(session, Response):
            return session
        text = str(request.query_params.get("q", ""))[:100]
        target = c.site.search(text)
        if target is None:
            if not _is_operator(session):
                return forbidden("nothing of yours matches")
            return page(
                request, session, "explorer.html", data=c.site.snapshot, query=text, missing=True, status=404
            )
        return RedirectResponse(target, 303)

    async def agreement(request: Request) -> Response:
        session = signed_in(request)
        if isinstance(session, Response):
            return session
        data = c.site.agreement(str(request.path_params["aid"]).lower())
        if data is None:
            return PlainTextResponse("404: no such agreement in the index", 404)
        a = data["agreement"]
        if not (_is_operator(session) or _is_me(session, a["seller"]) or _is_me(session, a["buyer"])):
            return forbidden("this agreement is between other households")
        return page(request, session, "agreement.html", data=data, can_act=c.operator is not None)

    async def tx(request: Request) -> Response:
        session = signed_in(request)
        if isinstance(session, Response):
            return session
        data = c.site.tx(str(request.path_params["hash"]))
        if data is None:
            return PlainTextResponse("404: no such transaction in the index", 404)
        if not (_is_operator(session) or _is_me(session, data["sender"])):
            return forbidden("this transaction is another household's")
        return page(request, session, "tx.html", data=data, outcome=None)

    async def address(request: Request) -> Response:
        return await household(request)

    def refused(request: Request, session: Session, exc: ActionError) -> Response:
        """The confirmation page saying why the action cannot go ahead (nothing was signed)."""
        return page(
            request, session, "confirm.html", action=None, error=str(exc), token="", refusal=None, status=400
        )

    def operator_refusal(session: Session) -> Response | None:
        """Why this session may not act on the Market, or None when it may."""
        if not _is_operator(session):
            return forbidden("only the community operator acts on the Market")
        if c.operator is None:
            return PlainTextResponse("409: this dashboard has no operator key configured", 409)
        return None

    async def action(request: Request) -> Response:
        checked = await web.csrf_form(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        if (no := operator_refusal(session)) is not None:
            return no
        assert c.operator is not None  # operator_refusal answered a dashboard without one
        kind = str(request.path_params["kind"])
        fields = {k: str(v) for k, v in form.items()}
        try:
            act = parse_action(kind, fields, c.site.disputed_terms())
        except ActionError as exc:
            return refused(request, session, exc)
        evidence = c.site.agreement(fields.get("agreement", "").lower()) if kind == "resolve" else None
        refusal = await asyncio.to_thread(c.operator.dry_run, act.function, act.args)
        token = confirmations.issue(act, session.csrf)
        return page(
            request,
            session,
            "confirm.html",
            action=act,
            error=None,
            token=token,
            refusal=refusal,
            evidence=evidence,
            sender=c.operator.address,
        )

    async def confirm(request: Request) -> Response:
        checked = await web.csrf_form(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        if (no := operator_refusal(session)) is not None:
            return no
        assert c.operator is not None  # operator_refusal answered a dashboard without one
        try:
            kind, fields, token_id = confirmations.read(str(form.get("token", "")), session.csrf)
            act = parse_action(kind, fields, c.site.disputed_terms())
        except ActionError as exc:
            return refused(request, session, exc)
        outcome = await asyncio.to_thread(
            c.operator.send, f"operator:{kind}:{token_id}", act.function, act.args
        )
        await _indexed(c.site, outcome.get("block"))
        return page(
            request,
            session,
            "done.html",
            action=act,
            outcome=outcome,
            status=200 if outcome.get("ok") else 502,
        )

    routes = [
        *web.routes(),
        Route("/community", overview),
        Route("/community/data.json", data_json),
        Route("/community/mine.json", mine_json),
        Route("/community/events", events),
        Route("/household/{address}", household),
        Route("/explorer", explorer),
        Route("/explorer/search", search),
        Route("/explorer/agreement/{aid}", agreement),
        Route("/explorer/tx/{hash}", tx),
        Route("/explorer/address/{address}", address),
        Route("/operator/action/{kind}", action, methods=["POST"]),
        Route("/operator/confirm", confirm, methods=["POST"]),
    ]
    return Starlette(routes=routes)
