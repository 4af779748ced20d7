"""The desired-state document checked at the agent's edge: the package parts (a package rollout's action)."""

from __future__ import annotations

from typing import Any

import pytest

from bulkhead.agent.desired import check_state
from bulkhead.agent.errors import BadResponse


def test_packages_and_their_rollout_action_are_checked_before_the_document_is_kept() -> None:
    good = {
        "desired": {
            "packages": [{"name": "hello", "version": "2.10-3+bulkhead1", "hold": False, "remove": False}],
            "packages_action": {"id": 4, "type": "soft", "install": True, "window_opens_at": None},
        }
    }
    assert check_state(good) is good
    bad: list[tuple[dict[str, Any], str]] = [
        ({"packages_action": "soon"}, "packages_action"),
        ({"packages_action": {"id": "4"}}, "integer id"),
        ({"packages_action": {"id": True}}, "integer id"),
        ({"packages": [{"version": "1"}]}, r"packages\[0\].name"),
        ({"packages": {"hello": "1"}}, "must be a list"),
    ]
    for desired, message in bad:
        with pytest.raises(BadResponse, match=message):
            check_state({"desired": desired})
