"""`[dashboard.oidc]` without a provider: the config's checks, the identity-to-account mapping, the ID
token's checks (tokens signed here with a key made for the test) and the one-time sign-in cookie.

The whole flow against a real provider in a real browser is in test_dashboard_oidc_browser.py.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError
from joserfc.jwk import RSAKey

from gateway.config import OidcSection, parse_dashboard
from gateway.dashboard.auth import AccountStore
from gateway.dashboard.oidc import (
    OidcClient,
    OidcRefused,
    ProviderMetadata,
    client_auth,
    mapped_account,
    parse_metadata,
    verify_id_token,
)
from gateway.errors import ConfigError
from gridpact.core.config import SecretRef

REPO = Path(__file__).resolve().parents[2]
ISSUER = "https://id.oak-street.example"
CLIENT = "gridpact-dashboard"
NONCE = "n-0S6_WzA2Mj"
GOOD = {
    "issuer": ISSUER,
    "client_id": CLIENT,
    "client_secret_file": "oidc-secret",
    "redirect_uri": "https://192.168.1.20:8088/oidc/callback",
    "accounts": {"248289761001": "alice"},
}


def _oidc(tmp_path: Path, **changes: Any) -> OidcSection:
    table = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    section = parse_dashboard({"dashboard": {"oidc": table}}, tmp_path / "state", tmp_path)
    assert section is not None and section.oidc is not None
    return section.oidc


def test_a_good_table_reads_with_defaults(tmp_path: Path) -> None:
    oidc = _oidc(tmp_path)
    assert oidc.claim == "sub" and oidc.scope == "openid" and oidc.name == "id.oak-street.example"
    assert oidc.client_secret == SecretRef("dashboard.oidc.client_secret_file", tmp_path / "oidc-secret")
    assert _oidc(tmp_path, claim="email").scope == "openid email"
    # a provider on this machine may speak plain http (a test or a LAN-only provider)
    assert (
        _oidc(tmp_path, issuer="http://127.0.0.1:8080/realms/oak").issuer
        == "http://127.0.0.1:8080/realms/oak"
    )
    assert parse_dashboard({"dashboard": {}}, tmp_path).oidc is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"issuer": "http://id.oak-street.example"}, "dashboard.oidc.issuer", "https://"),
        ({"issuer": "id.oak-street.example"}, "dashboard.oidc.issuer", "https://"),
        ({"issuer": "https://id.example/?realm=oak"}, "dashboard.oidc.issuer", "without query"),
        ({"issuer": "https://id.example:99999"}, "dashboard.oidc.issuer", "https://"),
        ({"issuer": None}, "dashboard.oidc.issuer", "missing"),
        ({"client_id": None}, "dashboard.oidc.client_id", "missing"),
        ({"client_id": ""}, "dashboard.oidc.client_id", "1 to 255"),
        ({"client_secret_file": None}, "dashboard.oidc.client_secret_file", "required"),
        ({"client_secret_credential": "oidc"}, "dashboard.oidc.client_secret_file", "not both"),
        (
            {"redirect_uri": "https://192.168.1.20:8088/callback"},
            "dashboard.oidc.redirect_uri",
            "/oidc/callback",
        ),
        ({"redirect_uri": None}, "dashboard.oidc.redirect_uri", "missing"),
        ({"scope": "email"}, "dashboard.oidc.scope", "openid"),
        ({"accounts": {}}, "dashboard.oidc.accounts", "at least one"),
        ({"accounts": None}, "dashboard.oidc.accounts", "missing"),
        ({"accounts": {"248289761001": "Alice!"}}, "dashboard.oidc.accounts.248289761001", "account name"),
        ({"client_secret": "hunter2"}, "dashboard.oidc.client_secret", "unknown key"),
    ],
)
def test_a_bad_table_names_its_key(tmp_path: Path, changes: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        _oidc(tmp_path, **changes)
    assert err.value.key == key


def test_an_identity_maps_to_its_account_or_is_refused(tmp_path: Path) -> None:
    oidc = _oidc(tmp_path)
    assert mapped_account({"sub": "248289761001"}, oidc) == "alice"
    with pytest.raises(OidcRefused, match="not linked") as refused:
        mapped_account({"sub": "90210"}, oidc)
    assert refused.value.status == 403 and refused.value.identity == "90210"
    with pytest.raises(OidcRefused, match="no 'sub' claim"):
        mapped_account({"email": "alice@example.org"}, oidc)
    by_mail = _oidc(tmp_path, claim="email", accounts={"alice@example.org": "alice"})
    assert mapped_account({"email": "alice@example.org", "email_verified": True}, by_mail) == "alice"
    # an e-mail address the provider has not verified proves nothing
    for unverified in ({}, {"email_verified": False}, {"email_verified": "true"}):
        with pytest.raises(OidcRefused, match="not verified"):
            mapped_account({"email": "alice@example.org", **unverified}, by_mail)


def test_discovery_must_name_the_configured_issuer() -> None:
    doc = {
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/auth",
        "token_endpoint": ISSUER + "/token",
        "jwks_uri": ISSUER + "/jwks",
        "id_token_signing_alg_values_supported": ["HS256", "RS256", "none"],
    }
    meta = parse_metadata(doc, ISSUER)
    assert meta.algorithms == ("RS256",)  # never a symmetric or unsigned ID token
    assert meta.auth_methods == ("client_secret_basic",)
    with pytest.raises(OidcRefused, match="another issuer"):
        parse_metadata({**doc, "issuer": "https://evil.example"}, ISSUER)
    with pytest.raises(OidcRefused, match="no token_endpoint"):
        parse_metadata({**doc, "token_endpoint": None}, ISSUER)
    with pytest.raises(OidcRefused, match="no public-key"):
        parse_metadata({**doc, "id_token_signing_alg_values_supported": ["HS256"]}, ISSUER)


def test_client_authentication_encodes_the_secret_as_rfc_6749_says() -> None:
    headers, fields = client_auth(("client_secret_basic",), "my client", "s3cr:t/+")
    assert fields == {}
    pair = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode()
    assert pair == "my%20client:s3cr%3At%2F%2B"
    assert client_auth(("client_secret_post",), "c", "s") == ({}, {"client_id": "c", "client_secret": "s"})
    with pytest.raises(OidcRefused):
        client_auth(("private_key_jwt",), "c", "s")


KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
META = ProviderMetadata(ISSUER, ISSUER + "/auth", ISSUER + "/token", ISSUER + "/jwks", ("RS256",), ())


def _token(key: RSAKey = KEY, kid: str = "k1", **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": CLIENT,
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
    }
    claims = {k: v for k, v in {**claims, **changes}.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": kid}, claims, key)


def _jwks(key: RSAKey = KEY) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False)]}


def test_a_good_id_token_verifies() -> None:
    claims = verify_id_token(_token(), _jwks(), META, CLIENT, NONCE)
    assert claims["sub"] == "248289761001"
    assert verify_id_token(_token(aud=[CLIENT]), _jwks(), META, CLIENT, NONCE)["sub"] == "248289761001"


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"iss": "https://evil.example"}, "iss"),
        ({"aud": "another-client"}, "aud"),
        ({"exp": int(time.time()) - 3600}, "exp"),
        ({"exp": None}, "exp"),
        ({"iat": None}, "iat"),
        ({"nonce": "replayed"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"aud": [CLIENT, "other"], "azp": "other"}, "azp"),
    ],
)
def test_a_wrong_id_token_is_refused(changes: dict[str, Any], why: str) -> None:
    with pytest.raises(OidcRefused, match=why):
        verify_id_token(_token(**changes), _jwks(), META, CLIENT, NONCE)


def test_a_forged_signature_or_unknown_key_is_refused() -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
    with pytest.raises(OidcRefused, match="signature"):
        verify_id_token(_token(key=other), _jwks(), META, CLIENT, NONCE)
    header, body, sig = _token().split(".")
    forged_body = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(body + "==").replace(b"248289761001", b"90210")
    ).rstrip(b"=")
    with pytest.raises(OidcRefused, match="signature"):
        verify_id_token(f"{header}.{forged_body.decode()}.{sig}", _jwks(), META, CLIENT, NONCE)
    with pytest.raises(InvalidKeyIdError):  # the client fetches the provider's keys once more
        verify_id_token(_token(kid="k2"), _jwks(), META, CLIENT, NONCE)


def test_the_sign_in_cookie_is_signed_and_answers_are_checked_before_any_request(tmp_path: Path) -> None:
    client = OidcClient(_oidc(tmp_path), b"client-secret", b"k" * 32)
    assert "client-secret" not in repr(client)
    pending = client.pending(client._pending.dumps(["s", "n", "v"]))
    assert pending is not None and pending.state == "s"
    assert client.pending(client._pending.dumps(["s", "n", "v"]) + "x") is None
    assert (
        OidcClient(_oidc(tmp_path), b"x", b"j" * 32).pending(client._pending.dumps(["s", "n", "v"])) is None
    )
    for bad in (b"", b"\xff\xfe"):
        with pytest.raises(ConfigError, match="client secret") as err:
            OidcClient(_oidc(tmp_path), bad, b"k" * 32)
        assert err.value.key == "dashboard.oidc.client_secret_file"
    # no request is made to the (unreachable) provider: state is checked first
    with pytest.raises(OidcRefused, match="no sign-in is under way"):
        asyncio.run(client.finish({"state": "s", "code": "c"}, None))
    with pytest.raises(OidcRefused, match="state mismatch"):
        asyncio.run(client.finish({"state": "t", "code": "c"}, pending))


def test_an_account_without_password_never_signs_in_with_one(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "accounts.sqlite3")
    store.add("alice", "household", "house-07", None)
    assert store.get("alice") is not None and store.get("bob") is None
    for guess in ("", "-", "correct horse battery"):
        assert store.verify("alice", guess) is None
    store.close()


def test_the_community_dashboard_reads_the_table_and_adds_a_provider_only_account(tmp_path: Path) -> None:
    from gateway.dashboard.community_server import load_dashboard_config

    config = tmp_path / "dashboard.toml"
    config.write_text(f"""
[index]
state_dir = "state"

[dashboard]
listen = "127.0.0.1:8090"

[dashboard.oidc]
issuer = "{ISSUER}"
client_id = "{CLIENT}"
client_secret_file = "oidc-secret"
redirect_uri = "https://192.168.1.2:8090/oidc/callback"

[dashboard.oidc.accounts]
"f3b1c2d4" = "op"

[chain]
rpc_url = "http://127.0.0.1:8545"
market = "0x{"11" * 20}"
keystore = "operator.json"
passphrase_file = "operator-pass"
""")
    oidc = load_dashboard_config(config).dashboard.oidc
    assert oidc is not None
    assert oidc.client_secret.file == tmp_path / "oidc-secret" and oidc.accounts == {"f3b1c2d4": "op"}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "gridpact.cli", "dashboard", "user", "add", "op", "--role", "operator",
         "--no-password", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    store = AccountStore(tmp_path / "state" / "dashboard.sqlite3")
    assert store.get("op") is not None and store.verify("op", "") is None
    store.close()
