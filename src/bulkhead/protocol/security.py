"""The kinds of security event an agent reports (CRA Annex I device security log), shared by agent and server.

A security event is a report event of kind `security` whose `details` carry `event` (one of SecurityEvent),
`message` (the tool's own words, at most MAX_SECURITY_MESSAGE characters) and, where one is concerned, `version`
(the release's version) next to the event's `release_id`.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["INTEGRITY_EVENTS", "MAX_SECURITY_MESSAGE", "SecurityEvent"]

MAX_SECURITY_MESSAGE = 1000


class SecurityEvent(StrEnum):
    SIGNATURE_REFUSED = "signature_refused"  # RAUC refused the bundle's signature or verity/hash check
    TAMPERED_BUNDLE = "tampered_bundle"  # the downloaded bundle does not match the sha256 the server announced
    CREDENTIAL_REJECTED = "credential_rejected"  # the server answered 401 to the device's own credential
    UNEXPECTED_SLOT_CHANGE = "unexpected_slot_change"  # the device booted a slot no update of the agent's asked for
    HEALTH_ROLLBACK = "health_rollback"  # an update failed its health check and the device went back to the old slot


# The events that say a bundle's integrity failed: they raise the `device.integrity_failure` notification.
INTEGRITY_EVENTS = frozenset({SecurityEvent.SIGNATURE_REFUSED, SecurityEvent.TAMPERED_BUNDLE})
