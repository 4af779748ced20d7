"""Secrets: opaque tokens stored only as hashes, the server secret, and signed download URLs."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SignedParams",
    "hash_token",
    "load_secret",
    "new_token",
    "parse_signed_query",
    "seal",
    "sign_url",
    "unseal",
    "verify_url",
]

PREFIX_API = "bht_"
PREFIX_DEVICE = "bhd_"
PREFIX_BOOTSTRAP = "bhb_"
PREFIX_SYSTEM = "bhs_"


def new_token(prefix: str) -> tuple[str, str]:
    """A new random token and the hash under which it is stored."""
    token = prefix + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_secret(data_dir: Path) -> bytes:
    """The HMAC key for signed URLs: BULKHEAD_SECRET (shared by all server processes) or a file."""
    env = os.environ.get("BULKHEAD_SECRET")
    if env:
        return env.encode()
    path = data_dir / "secret.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    # Several server processes start at once: each writes a whole key to a file of its own and links it
    # into place; the first link wins and every process reads that one (never a half-written file).
    tmp = path.with_name(f".secret.key.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


_UINT = re.compile(r"0|[1-9][0-9]{0,18}")  # plain ASCII decimal, no sign, no leading zeros, no spaces
_SIG = re.compile(r"[0-9a-f]{40}")
_SIGNED_KEYS = frozenset({"d", "e", "k", "s"})


@dataclass(frozen=True)
class SignedParams:
    """The parameters of a signed download URL: device, expiry (Unix time), credential epoch, signature."""

    device_id: int
    expires: int
    epoch: int
    sig: str


def _mac(secret: bytes, sha256: str, device_id: int, epoch: int, expires: int) -> str:
    msg = f"bulkhead-dl-v2:{sha256}:{device_id}:{epoch}:{expires}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()[:40]


def sign_url(secret: bytes, sha256: str, device_id: int, epoch: int, ttl: int, now: float | None = None) -> str:
    """Query string for `/dl/{sha256}` that lets `device_id` fetch it until the expiry, while its credential epoch lasts."""
    expires = int((now or time.time()) + ttl)
    return f"d={device_id}&e={expires}&k={epoch}&s={_mac(secret, sha256, device_id, epoch, expires)}"


def parse_signed_query(query: str) -> SignedParams | None:
    """The parameters of a signed URL's query string in its canonical form only (else None).

    Canonical: exactly `d`, `e`, `k` and `s`, each once, nothing else; numbers in plain decimal without sign,
    leading zeros or whitespace, below 2^63; `s` 40 lowercase hex digits. So one URL has one spelling.
    """
    values: dict[str, str] = {}
    for part in query.split("&"):
        key, sep, value = part.partition("=")
        if not sep or key in values or key not in _SIGNED_KEYS:
            return None
        values[key] = value
    if len(values) != len(_SIGNED_KEYS) or not _SIG.fullmatch(values["s"]):
        return None
    if not all(_UINT.fullmatch(values[k]) for k in ("d", "e", "k")):
        return None
    d, e, k = int(values["d"]), int(values["e"]), int(values["k"])
    if max(d, e, k) >= 1 << 63:
        return None
    return SignedParams(d, e, k, values["s"])


def verify_url(secret: bytes, sha256: str, params: SignedParams, now: float | None = None) -> bool:
    """Whether the signature is right and the URL has not expired (the caller checks the epoch is current)."""
    if params.expires < (now or time.time()):
        return False
    return hmac.compare_digest(_mac(secret, sha256, params.device_id, params.epoch, params.expires), params.sig)


def _seal_key(secret: bytes) -> bytes:
    return hashlib.sha256(b"bulkhead-seal-v1\0" + secret).digest()


def seal(secret: bytes, plaintext: str) -> str:
    """Encrypt a stored secret (e.g. registry password) with the server secret: AES-256-GCM, random nonce."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return "v1:" + base64.b64encode(nonce + AESGCM(_seal_key(secret)).encrypt(nonce, plaintext.encode(), None)).decode()


def unseal(secret: bytes, sealed: str) -> str:
    """The plaintext of `seal`; raises ValueError if it was sealed with another secret or altered."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not sealed.startswith("v1:"):
        raise ValueError("not a sealed value")
    raw = base64.b64decode(sealed[3:])
    try:
        return AESGCM(_seal_key(secret)).decrypt(raw[:12], raw[12:], None).decode()
    except InvalidTag:
        raise ValueError("sealed with another server secret, or altered") from None
