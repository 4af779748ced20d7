"""The preview's phase sizes from counts equal the sizes of the devices themselves (rollout_plan.phase_sizes)."""

from __future__ import annotations

from collections import Counter

import pytest

from bulkhead.server.services.rollout_plan import parse_phases, phase_sizes, phase_sizes_counted


@pytest.mark.parametrize(
    "raw",
    [
        [{"percent": 10}, {"percent": 90}],
        [{"percent": 34}, {"percent": 66}],
        [{"percent": 5}, {"percent": 20}],
        [{"group": "canary"}, {"percent": 50}, {"percent": 50}],
        [{"group": "canary"}, {"group": "line"}],
        [{"percent": 1}, {"group": "line"}, {"percent": 99}],
    ],
)
@pytest.mark.parametrize("n", [0, 1, 3, 7, 100, 1001])
def test_sizes_from_counts_are_the_sizes_of_the_devices(raw: list[dict[str, object]], n: int) -> None:
    phases = parse_phases(raw)
    devices = {i: (["canary"] if i % 11 == 0 else ["line"] if i % 5 == 0 else ["other"]) for i in range(n)}
    counts = Counter(tuple(g) for g in devices.values())
    assert phase_sizes_counted(phases, counts.items()) == phase_sizes(phases, devices)
