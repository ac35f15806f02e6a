"""Fixed-window rate limiting per API key.

The window is one minute, aligned to the Unix clock, so every node agrees on
when it resets without talking to the others; only the counter is shared.
"""

from __future__ import annotations

from datetime import datetime

import attrs

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "WINDOW_SECONDS",
    "RateLimitDecision",
    "decide_rate_limit",
    "window_start",
]

DEFAULT_RATE_LIMIT = 1000
WINDOW_SECONDS = 60


@attrs.frozen
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int
    """Unix time, in seconds, when the window resets."""


def window_start(now: datetime) -> int:
    """Return the Unix time, in seconds, at which the current window began."""
    seconds = int(now.timestamp())
    return seconds - seconds % WINDOW_SECONDS


def decide_rate_limit(count: int, limit: int, now: datetime) -> RateLimitDecision:
    """Decide a request that is the ``count``-th in its window (counting from 1)."""
    reset_at = window_start(now) + WINDOW_SECONDS
    return RateLimitDecision(
        allowed=count <= limit,
        limit=limit,
        remaining=max(limit - count, 0),
        reset_at=reset_at,
    )
