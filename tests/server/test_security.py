"""Sealing stored secrets with the server secret."""

from __future__ import annotations

import pytest

from bulkhead.server.security import seal, unseal


def test_seal_round_trip_and_refusals() -> None:
    a, b = b"a" * 32, b"b" * 32
    sealed = seal(a, "hunter2")
    assert sealed.startswith("v1:") and "hunter2" not in sealed and seal(a, "hunter2") != sealed  # random nonce
    assert unseal(a, sealed) == "hunter2"
    with pytest.raises(ValueError, match="another server secret"):
        unseal(b, sealed)
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(ValueError):
        unseal(a, tampered)
    with pytest.raises(ValueError, match="not a sealed value"):
        unseal(a, "plain")
