"""Counting failed AUTH attempts per client address.

A client that fails AUTH ``limit`` times within one window is refused
further attempts until the window ends, which slows down guessing of API
keys. Windows are fixed and aligned to the clock, as for API rate limits.
The counts live in this process only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["AuthFailureLimiter"]

# Entries kept before those of past windows are dropped.
_MAX_ENTRIES = 10_000


class AuthFailureLimiter:
    def __init__(
        self,
        limit: int,
        *,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: dict[tuple[str, int], int] = {}

    def retry_after(self, client: str) -> int | None:
        """Return the seconds until ``client`` may try again, or None if it may now."""
        now = self._clock()
        window = self._window(now)
        if self._failures.get((client, window), 0) < self.limit:
            return None
        window_end = (window + 1) * self.window_seconds
        return max(math.ceil(window_end - now), 1)

    def record_failure(self, client: str) -> bool:
        """Count one failed attempt; return whether it reached the limit.

        Only the attempt that reaches the limit returns true, so a caller can
        log the block once per window.
        """
        window = self._window(self._clock())
        if len(self._failures) >= _MAX_ENTRIES:
            self._failures = {
                slot: count
                for slot, count in self._failures.items()
                if slot[1] == window
            }
        slot = (client, window)
        self._failures[slot] = self._failures.get(slot, 0) + 1
        return self._failures[slot] == self.limit

    def _window(self, now: float) -> int:
        return int(now // self.window_seconds)
