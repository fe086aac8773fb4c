"""Sign-in with the community's OpenID Provider (`[dashboard.oidc]`, optional): the relying party.

The dashboard is a confidential client using the authorization-code flow with PKCE (S256), built
on authlib (PKCE, random tokens, the ID token's claim checks) and joserfc (authlib's JOSE library,
the signature check). The provider is found by discovery (`/.well-known/openid-configuration`,
whose `issuer` must be the configured one); the ID token's signature is verified against the
provider's JWKS (fetched again once when a new key id appears: key rotation), and its issuer,
audience, expiry, issue time and nonce are checked. `state`, `nonce` and the PKCE verifier travel
in a short-lived signed cookie (SameSite=Lax, so it comes back on the provider's redirect) and are
used once. The person's identity (a configured claim, `sub` by default, or a verified e-mail) must
be mapped to a local account in the config: an identity not mapped is refused, never created.
Nothing secret (client secret, codes, tokens) is logged or shown.
"""

from __future__ import annotations

import base64
import hmac
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from gateway.config import OidcSection
from gridpact.core.config import ConfigError

PENDING_COOKIE = "gp_oidc"
PENDING_MAX_AGE_S = 600  # a sign-in at the provider must be finished within 10 minutes
METADATA_TTL_S = 3600.0  # discovery and keys are fetched again after an hour (or on a new key id)
LEEWAY_S = 60  # clock skew allowed between the provider and this device
HTTP_TIMEOUT_S = 10.0
# Only public-key signatures: a symmetric (HS*) ID token would be signed with the client secret.
ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class OidcRefused(Exception):
    """A sign-in that does not go through: `reason` is shown to the person and logged (never a secret);
    `status` is the HTTP answer (403 refused, 502 the provider unreachable or misbehaving);
    `identity` is the person's own claim value, shown on the page so the operator can map it."""

    def __init__(self, reason: str, status: int = 403, identity: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.identity = identity


@dataclass(frozen=True)
class Pending:
    """One sign-in under way: what the provider's answer must match."""

    state: str
    nonce: str
    verifier: str


@dataclass(frozen=True)
class ProviderMetadata:
    """What discovery says, the parts this client uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    auth_methods: tuple[str, ...]


def parse_metadata(doc: object, issuer: str) -> ProviderMetadata:
    """The discovery document, checked: its `issuer` is exactly the configured one (OpenID Connect
    Discovery 1.0, section 4.3) and the endpoints the flow needs are there."""
    if not isinstance(doc, dict):
        raise OidcRefused("the identity provider's discovery document is not a JSON object", 502)
    if doc.get("issuer") != issuer:
        raise OidcRefused(
            "the identity provider's discovery names another issuer than the configured one", 502
        )
    urls = {}
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = doc.get(key)
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            raise OidcRefused(f"the identity provider's discovery has no {key}", 502)
        urls[key] = value
    offered = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = tuple(a for a in offered if a in ASYMMETRIC_ALGS)
    if not algorithms:
        raise OidcRefused("the identity provider signs ID tokens with no public-key algorithm", 502)
    methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    return ProviderMetadata(
        issuer,
        urls["authorization_endpoint"],
        urls["token_endpoint"],
        urls["jwks_uri"],
        algorithms,
        tuple(m for m in methods if isinstance(m, str)),
    )


def verify_id_token(
    id_token: str,
    jwks: Mapping[str, Any],
    meta: ProviderMetadata,
    client_id: str,
    nonce: str,
    access_token: str | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """The ID token's claims once its signature (the provider's keys, a public-key algorithm it
    offers), issuer, audience, expiry, issue time, nonce, azp and at_hash are checked.

    Raises InvalidKeyIdError when no key has the token's key id (the caller fetches the keys again),
    OidcRefused for anything else wrong.
    """
    listed = jwks.get("keys")
    if not isinstance(listed, list):
        raise OidcRefused("the identity provider's keys (JWKS) have no key list", 502)
    try:
        keys = KeySet.import_key_set({"keys": listed})
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise OidcRefused("the identity provider's keys (JWKS) cannot be read", 502) from exc
    try:
        token = jwt.decode(id_token, keys, algorithms=list(meta.algorithms))
    except InvalidKeyIdError:
        raise
    except (JoseError, ValueError) as exc:
        raise OidcRefused("the ID token's signature does not verify") from exc
    options = {
        "iss": {"essential": True, "value": meta.issuer},
        "aud": {"essential": True, "value": client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "nonce": {"essential": True, "value": nonce},
    }
    params: dict[str, Any] = {"nonce": nonce, "client_id": client_id}
    if access_token is not None:
        params["access_token"] = access_token
    claims = CodeIDToken(token.claims, token.header, options, params)
    try:
        claims.validate(now=now, leeway=LEEWAY_S)
    except JoseError as exc:
        raise OidcRefused(f"the ID token was refused ({exc.error}: {exc.description})") from exc
    return dict(claims)


def mapped_account(claims: Mapping[str, Any], oidc: OidcSection) -> str:
    """The local account the identity is mapped to in `[dashboard.oidc.accounts]`; OidcRefused when
    the claim is missing, an e-mail is not verified by the provider, or the identity is not mapped."""
    value = claims.get(oidc.claim)
    if not isinstance(value, str) or not value:
        raise OidcRefused(f"the identity provider sent no {oidc.claim!r} claim")
    if oidc.claim == "email" and claims.get("email_verified") is not True:
        raise OidcRefused("the identity provider has not verified this e-mail address", identity=value)
    account = oidc.accounts.get(value)
    if account is None:
        raise OidcRefused(
            "this identity is not linked to a dashboard account: ask the community operator to link it",
            identity=value,
        )
    return account


def client_auth(
    methods: tuple[str, ...], client_id: str, secret: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The token request's client authentication: (headers, form fields), client_secret_basic first."""
    if "client_secret_basic" in methods:
        # RFC 6749 section 2.3.1: the id and the secret are form-encoded before base64
        pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}, {}
    if "client_secret_post" in methods:
        return {}, {"client_id": client_id, "client_secret": secret}
    raise OidcRefused("the identity provider takes neither client_secret_basic nor client_secret_post", 502)


class OidcClient:
    """The relying party for one provider: `begin` sends the browser there, `finish` reads its answer."""

    def __init__(self, cfg: OidcSection, secret: bytes, cookie_key: bytes) -> None:
        self.cfg = cfg
        try:
            self._secret = secret.decode()
        except UnicodeDecodeError:
            raise ConfigError(cfg.client_secret.key, "the client secret is not UTF-8 text") from None
        if not self._secret:
            raise ConfigError(cfg.client_secret.key, "the client secret is empty")
        self._pending = URLSafeTimedSerializer(cookie_key, salt="gridpact-dashboard-oidc")
        self._meta: ProviderMetadata | None = None
        self._jwks: dict[str, Any] | None = None
        self._fetched_at = 0.0

    def __repr__(self) -> str:  # never the secret
        return f"OidcClient(issuer={self.cfg.issuer!r}, client_id={self.cfg.client_id!r})"

    @property
    def name(self) -> str:
        return self.cfg.name

    def _http(self) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = True
        if self.cfg.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(self.cfg.ca_file))
        return httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, verify=verify, follow_redirects=False)

    async def _get_json(self, url: str, what: str) -> Any:
        try:
            async with self._http() as http:
                resp = await http.get(url, headers={"Accept": "application/json"})
            resp.raise_for_status()
            return resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcRefused(f"the identity provider's {what} could not be fetched", 502) from exc

    async def metadata(self) -> ProviderMetadata:
        """Discovery, fetched on first use and again after METADATA_TTL_S."""
        if self._meta is None or time.monotonic() - self._fetched_at > METADATA_TTL_S:
            doc = await self._get_json(
                self.cfg.issuer.rstrip("/") + "/.well-known/openid-configuration", "discovery document"
            )
            self._meta = parse_metadata(doc, self.cfg.issuer)
            self._jwks = None
            self._fetched_at = time.monotonic()
        return self._meta

    async def _keys(self, meta: ProviderMetadata, again: bool = False) -> dict[str, Any]:
        if self._jwks is None or again:
            keys = await self._get_json(meta.jwks_uri, "keys (JWKS)")
            if not isinstance(keys, dict):
                raise OidcRefused("the identity provider's keys (JWKS) are not a JSON object", 502)
            self._jwks = keys
        return self._jwks

    async def begin(self) -> tuple[str, str]:
        """(the provider's authorization URL, the pending cookie's value) for a new sign-in."""
        meta = await self.metadata()
        pending = Pending(generate_token(43), generate_token(43), generate_token(64))
        url = add_params_to_uri(
            meta.authorization_endpoint,
            [
                ("response_type", "code"),
                ("client_id", self.cfg.client_id),
                ("redirect_uri", self.cfg.redirect_uri),
                ("scope", self.cfg.scope),
                ("state", pending.state),
                ("nonce", pending.nonce),
                ("code_challenge", create_s256_code_challenge(pending.verifier)),
                ("code_challenge_method", "S256"),
            ],
        )
        return url, self._pending.dumps([pending.state, pending.nonce, pending.verifier])

    def pending(self, cookie: str | None) -> Pending | None:
        """The sign-in under way in this browser (None: none, expired or tampered with)."""
        if not cookie:
            return None
        try:
            data = self._pending.loads(cookie, max_age=PENDING_MAX_AGE_S)
        except BadSignature:
            return None
        if not (isinstance(data, list) and len(data) == 3 and all(isinstance(x, str) for x in data)):
            return None
        return Pending(data[0], data[1], data[2])

    async def finish(self, query: Mapping[str, str], pending: Pending | None) -> str:
        """The local account name for the provider's answer on the redirect URI; OidcRefused otherwise."""
        if pending is None:
            raise OidcRefused(
                "no sign-in is under way in this browser (or it took over 10 minutes): start again"
            )
        if not hmac.compare_digest(query.get("state", "").encode(), pending.state.encode()):
            raise OidcRefused("the answer does not belong to this browser's sign-in (state mismatch)")
        meta = await self.metadata()
        if "iss" in query and query["iss"] != meta.issuer:  # RFC 9207: an answer from another provider
            raise OidcRefused("the answer comes from another identity provider (iss mismatch)")
        if "error" in query:
            raise OidcRefused(f"the identity provider did not sign you in ({query['error'][:64]})")
        code = query.get("code", "")
        if not code:
            raise OidcRefused("the identity provider's answer has no authorization code")
        tokens = await self._exchange(meta, code, pending)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise OidcRefused("the identity provider sent no ID token", 502)
        access = tokens.get("access_token")
        access = access if isinstance(access, str) else None
        try:
            claims = verify_id_token(
                id_token, await self._keys(meta), meta, self.cfg.client_id, pending.nonce, access
            )
        except InvalidKeyIdError:  # the provider rolled its keys: fetch them once more
            try:
                claims = verify_id_token(
                    id_token,
                    await self._keys(meta, again=True),
                    meta,
                    self.cfg.client_id,
                    pending.nonce,
                    access,
                )
            except InvalidKeyIdError as exc:
                raise OidcRefused("the ID token is signed with a key the provider does not publish") from exc
        return mapped_account(claims, self.cfg)

    async def _exchange(self, meta: ProviderMetadata, code: str, pending: Pending) -> dict[str, Any]:
        headers, auth_fields = client_auth(meta.auth_methods, self.cfg.client_id, self._secret)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.cfg.redirect_uri,
            "code_verifier": pending.verifier,
            **auth_fields,
        }
        try:
            async with self._http() as http:
                resp = await http.post(
                    meta.token_endpoint, data=form, headers={**headers, "Accept": "application/json"}
                )
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcRefused("the identity provider's token endpoint could not be reached", 502) from exc
        if resp.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            raise OidcRefused(f"the identity provider refused the code ({str(error)[:64]})")
        return body
