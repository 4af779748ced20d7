"""A real OpenID Connect provider for the tests: panva's oidc-provider (npm, OpenID Certified), run with node from
`tests/data/oidc/provider.mjs` with its development sign-in pages (any login name and password; the login name is
the account's `sub`). Installed once into the test cache, as the CSAF validator is (tests/csaf_validators.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import httpx

from tests.live import free_port
from tests.npm_cache import cache_dir, npm_install

NPM_PACKAGE = "oidc-provider@8.8.1"
SCRIPT = Path(__file__).parent / "data" / "oidc" / "provider.mjs"
CACHE = cache_dir("oidc-provider")


@cache
def _provider_dir() -> Path:
    npm_install(CACHE, NPM_PACKAGE, "oidc-provider", "the OpenID Connect provider of the tests")
    shutil.copy(SCRIPT, CACHE / "provider.mjs")
    return CACHE


@dataclass(frozen=True)
class Provider:
    issuer: str
    client_id: str
    client_secret: str
    log: Path  # what the provider printed (its errors)


@contextmanager
def oidc_provider(redirect_uri: str, usernames: dict[str, str] | None = None) -> Iterator[Provider]:
    """A provider on a free loopback port with one confidential client whose redirect URI is `redirect_uri`."""
    where = _provider_dir()
    port, client_id, secret = free_port(), "bulkhead-tests", "a client secret for the tests"
    env = {**os.environ, "OIDC_USERNAMES": json.dumps(usernames or {})}
    log = tempfile.NamedTemporaryFile(prefix="oidc-provider-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        ["node", "provider.mjs", str(port), client_id, secret, redirect_uri],
        cwd=where, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(issuer + "/.well-known/openid-configuration", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = Path(log.name).read_text(errors="replace")
                raise AssertionError(f"the OpenID Connect provider did not start: {out[-2000:]}")
            time.sleep(0.2)
        yield Provider(issuer, client_id, secret, Path(log.name))
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
_INPUT = re.compile(r"<input([^>]*)>")
_ATTR = re.compile(r'([a-z-]+)="([^"]*)"')


def sign_in_at_provider(b: httpx.Client, start: httpx.Response, login: str, issuer: str) -> httpx.Response:
    """Follow a browser's way from our redirect to the provider, through its sign-in and consent pages, back to us:
    the answer of our callback (unfollowed)."""
    r = start
    for _ in range(20):
        if r.status_code in (302, 303) and "location" in r.headers:
            url = urljoin(str(r.url), r.headers["location"])
            if not url.startswith(issuer):
                return b.get(url)  # back at the server under test: its callback's own answer
            r = b.get(url)
            continue
        assert r.status_code == 200 and str(r.url).startswith(issuer), (r.status_code, r.url, r.text[:500])
        m = _FORM.search(r.text)
        assert m, f"no form on the provider's page: {r.text[:500]}"
        inputs = [dict(_ATTR.findall(attrs)) for attrs in _INPUT.findall(m.group(2))]
        fields = {i["name"]: unescape(i.get("value", "")) for i in inputs if "name" in i}
        if "login" in fields:
            fields |= {"login": login, "password": "any password"}
        r = b.post(urljoin(str(r.url), unescape(m.group(1))), data=fields)
    raise AssertionError("the provider's pages never sent the browser back")
