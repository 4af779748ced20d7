"""Security events (CRA Annex I device security log): which failures are one, and reporting them through the outbox.

The outbox keeps every event on disk until the server acknowledges it (fsync'd, numbered), so a security event
survives a reboot or an offline period and reaches the server once (the server skips a seq it has seen).
"""

from __future__ import annotations

import re

from bulkhead.protocol import MAX_SECURITY_MESSAGE, EventKind, SecurityEvent

from .outbox import Outbox

__all__ = ["rauc_refusal", "report"]

# RAUC's words when a bundle's signature, verity data or image hashes do not verify (RAUC 1.8 to 1.15: signature.c,
# bundle.c, verity_hash.c). "Verifying bundle signature..." is a progress line, not a refusal: not matched.
_REFUSED = re.compile(
    r"signature verification failed|failed to verify|verification failure|verify error|invalid signature"
    r"|signature is invalid|bundle is not signed|unsigned bundle|\bverity\b.*(fail|mismatch|error|corrupt)"
    r"|(fail|mismatch|error|corrupt).*\bverity\b|hash (mismatch|check failed)|checksum mismatch|digest mismatch"
    r"|payload (is )?corrupt",
    re.IGNORECASE,
)


def rauc_refusal(message: str) -> bool:
    """Whether RAUC's install error says the bundle failed its signature or integrity check."""
    return _REFUSED.search(message) is not None


def report(
    outbox: Outbox, event: SecurityEvent, message: str, release_id: int | None = None, version: str | None = None, **extra: object
) -> None:
    """Append a security event to the outbox: its kind, the tool's own message (bounded) and the release concerned."""
    text = message if len(message) <= MAX_SECURITY_MESSAGE else message[: MAX_SECURITY_MESSAGE - 3] + "..."
    details: dict[str, object] = {"event": event.value, "message": text, **extra}
    if version is not None:
        details["version"] = version
    outbox.add(EventKind.SECURITY, None, release_id, **details)
