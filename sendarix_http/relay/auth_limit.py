"""Counting failed AUTH attempts per client address.

A client that fails AUTH ``limit`` times within one window is refused
further attempts until the window ends, which slows down guessing of API
keys. Windows are fixed and aligned to the clock, as for API rate limits.
The counts live in this process only.

An attempt is pending from ``acquire`` until ``release`` (the key was
valid) or ``fail``. While a client's failures and pending attempts together
reach the limit, its next attempt waits for a pending one to end. Without
the wait, many sessions of one client checking wrong keys at the same time
would all pass the limit before the first failure was counted. Sessions
logging in with a valid key still all get in, because their attempts end
without a failure.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

__all__ = ["AuthAttempt", "AuthFailureLimiter"]

# Entries kept before those of past windows are dropped.
_MAX_ENTRIES = 10_000

AuthAttempt = tuple[str, int]
"""The client address and the window of an acquired attempt."""


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
        self._pending: dict[AuthAttempt, int] = {}
        self._ended = asyncio.Event()

    def retry_after(self, client: str) -> int | None:
        """Return the seconds until ``client`` may try again, or None if it may now."""
        now = self._clock()
        window = self._window(now)
        if self._failures.get((client, window), 0) < self.limit:
            return None
        window_end = (window + 1) * self.window_seconds
        return max(math.ceil(window_end - now), 1)

    async def acquire(self, client: str) -> AuthAttempt | None:
        """Start one attempt of ``client``; return None when it is blocked.

        Waits while the client's failures and pending attempts fill the
        limit, until one of the pending attempts ends.
        """
        while True:
            if self.retry_after(client) is not None:
                return None
            attempt = (client, self._window(self._clock()))
            pending = self._pending.get(attempt, 0)
            if self._failures.get(attempt, 0) + pending < self.limit:
                self._drop_past_windows(attempt[1])
                self._pending[attempt] = pending + 1
                return attempt
            ended = self._ended
            await ended.wait()

    def release(self, attempt: AuthAttempt) -> None:
        """End a pending attempt that did not fail."""
        self._end(attempt)

    def fail(self, attempt: AuthAttempt) -> bool:
        """Count a pending attempt as failed; return whether it hit the limit.

        At most one failed attempt per client and window returns true, so a
        caller can log the block once.
        """
        self._end(attempt)
        count = self._failures.get(attempt, 0) + 1
        self._failures[attempt] = count
        return count == self.limit

    def _end(self, attempt: AuthAttempt) -> None:
        pending = self._pending.get(attempt, 0)
        if pending > 1:
            self._pending[attempt] = pending - 1
        else:
            self._pending.pop(attempt, None)
        # Wake every waiter; each checks the counts again.
        self._ended.set()
        self._ended = asyncio.Event()

    def _drop_past_windows(self, window: int) -> None:
        if len(self._failures) >= _MAX_ENTRIES:
            self._failures = {
                slot: count
                for slot, count in self._failures.items()
                if slot[1] == window
            }

    def _window(self, now: float) -> int:
        return int(now // self.window_seconds)
