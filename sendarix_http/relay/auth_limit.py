"""Counting failed AUTH attempts per client address.

A client that fails AUTH ``limit`` times within one window is refused
further attempts until the window ends, which slows down guessing of API
keys. Windows are fixed and aligned to the clock, as for API rate limits.
The counts live in this process only.

An attempt counts from the moment its key is checked: ``reserve`` counts
it before the check and ``release`` takes it back when the key turns out
valid. Without that, many sessions of one client checking keys at the same
time would all pass the limit before the first failure was counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["AuthAttempt", "AuthFailureLimiter"]

# Entries kept before those of past windows are dropped.
_MAX_ENTRIES = 10_000

AuthAttempt = tuple[str, int]
"""The client address and the window of a reserved attempt."""


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
        self._failures: dict[AuthAttempt, int] = {}

    def retry_after(self, client: str) -> int | None:
        """Return the seconds until ``client`` may try again, or None if it may now."""
        now = self._clock()
        window = self._window(now)
        if self._failures.get((client, window), 0) < self.limit:
            return None
        window_end = (window + 1) * self.window_seconds
        return max(math.ceil(window_end - now), 1)

    def reserve(self, client: str) -> AuthAttempt | None:
        """Count one attempt of ``client`` as failed until it is released.

        Returns None, counting nothing, when the client is at the limit.
        """
        if self.retry_after(client) is not None:
            return None
        window = self._window(self._clock())
        if len(self._failures) >= _MAX_ENTRIES:
            self._failures = {
                slot: count
                for slot, count in self._failures.items()
                if slot[1] == window
            }
        attempt = (client, window)
        self._failures[attempt] = self._failures.get(attempt, 0) + 1
        return attempt

    def release(self, attempt: AuthAttempt) -> None:
        """Take back a reserved attempt that did not fail."""
        count = self._failures.get(attempt, 0)
        if count > 1:
            self._failures[attempt] = count - 1
        else:
            self._failures.pop(attempt, None)

    def reached_limit(self, attempt: AuthAttempt) -> bool:
        """Return whether the failed ``attempt`` brought its client to the limit.

        At most one failed attempt per client and window returns true while
        attempts run one after another, so a caller can log the block once.
        """
        return self._failures.get(attempt, 0) == self.limit

    def _window(self, now: float) -> int:
        return int(now // self.window_seconds)
