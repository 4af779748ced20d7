"""The ID token checks of services/oidc.py, with tokens a real provider would never send: signed by another key,
with a shared-secret or no algorithm, for another client, expired, replayed with another nonce, from another issuer.
Each is refused (401) naming what was wrong. The good path runs against a real provider in test_oidc.py."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from bulkhead.server.errors import Invalid, Unauthorized
from bulkhead.server.services.oidc import OidcService, Pending, check_issuer
from bulkhead.server.ui_models import OidcProvider

ISSUER, CLIENT, NONCE = "https://idp.example.test", "bulkhead", "the-nonce"
META = {"issuer": ISSUER, "jwks_uri": ISSUER + "/jwks", "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"]}
KEY = RSAKey.generate_key(2048, parameters={"kid": "good"})


def _jwks(request: httpx.Request) -> httpx.Response:
    """The provider's JWKS endpoint (asked again when a signature does not verify: keys may have rotated)."""
    assert str(request.url) == META["jwks_uri"]
    return httpx.Response(200, json={"keys": [KEY.as_dict(private=False)]})


def _service() -> OidcService:
    http = lambda: httpx.Client(transport=httpx.MockTransport(_jwks))  # noqa: E731
    svc = OidcService(db=None, secret=b"s" * 32, http=http)  # type: ignore[arg-type]  # only the token checks run
    svc._jwks[META["jwks_uri"]] = KeySet([KEY])  # as fetched before
    return svc


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "sub": "u1", "aud": CLIENT, "exp": now + 300, "iat": now, "nonce": NONCE, **over}


def _verify(token: str) -> dict[str, Any]:
    return _service()._verify(META, OidcProvider(issuer=ISSUER, client_id=CLIENT), token, NONCE)


def test_a_token_signed_by_the_providers_key_for_this_client_passes() -> None:
    token = jwt.encode({"alg": "RS256", "kid": "good"}, _claims(), KEY)
    assert _verify(token)["sub"] == "u1"


OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "good"})  # same kid, another key


@pytest.mark.parametrize(
    ("header", "changes", "key", "why"),
    [
        ({"alg": "RS256", "kid": "good"}, {}, OTHER_KEY, "signature"),
        ({"alg": "HS256"}, {}, OctKey.import_key(b"k" * 32), "signature"),
        ({"alg": "RS256", "kid": "good"}, {"aud": "another-client"}, KEY, "another client"),
        ({"alg": "RS256", "kid": "good"}, {"aud": [CLIENT, "x"], "azp": "x"}, KEY, "another client"),
        ({"alg": "RS256", "kid": "good"}, {"exp": -3600}, KEY, "refused"),
        ({"alg": "RS256", "kid": "good"}, {"nonce": "an-old-nonce"}, KEY, "refused"),
        ({"alg": "RS256", "kid": "good"}, {"iss": "https://evil.example.test"}, KEY, "refused"),
        ({"alg": "RS256", "kid": "good"}, {"sub": None}, KEY, "refused"),
    ],
    ids=["other-key", "hs256", "audience", "azp", "expired", "nonce", "issuer", "no-sub"],
)
def test_a_forged_or_misdirected_token_is_refused(header: dict[str, Any], changes: dict[str, Any], key: Any, why: str) -> None:
    """`changes` to good claims made now (an `exp` is relative to now; None removes the claim)."""
    claims = _claims()
    for name, value in changes.items():
        if value is None:
            claims.pop(name)
        else:
            claims[name] = claims["iat"] + value if name == "exp" else value
    token = jwt.encode(header, claims, key, algorithms=[header["alg"]])
    with pytest.raises(Unauthorized) as exc:
        _verify(token)
    assert why in exc.value.message


def test_an_unsigned_token_is_refused() -> None:
    import base64
    import json

    def part(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    with pytest.raises(Unauthorized):
        _verify(f"{part({'alg': 'none'})}.{part(_claims())}.")


def test_issuers_must_use_https_except_on_this_host() -> None:
    assert check_issuer("https://idp.example.test/realms/x") == "https://idp.example.test/realms/x"
    assert check_issuer("http://127.0.0.1:8080") and check_issuer("http://localhost:9000/x")
    for bad in ("http://idp.example.test", "ftp://idp", "https://idp/?q=1", "idp.example.test"):
        with pytest.raises(Invalid):
            check_issuer(bad)


def test_the_pending_cookie_reads_back_and_refuses_garbage() -> None:
    p = Pending("t", "s", "n", "v", "/ui/", 123)
    assert Pending.decode(p.encode()) == p
    for bad in (None, "", "!!!", "W10=", "x" * 5000, Pending("t" * 600, "s", "n", "v", "/", 1).encode()):
        assert Pending.decode(bad) is None
