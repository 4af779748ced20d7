"""Retry delays: full-jitter exponential backoff, so that a fleet that lost its server does not retry in lockstep."""

from __future__ import annotations

import random

__all__ = ["full_jitter"]


def full_jitter(attempt: int, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first): uniform in [0, min(cap, base * 2**attempt)].

    "Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"): every device picks anywhere in the
    whole window, which spreads a fleet's retries best while the window still grows with each failure.
    """
    window = min(cap, base * 2.0 ** min(max(attempt, 0), 64))
    return (rng or random).uniform(0.0, window)
