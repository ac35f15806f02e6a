"""When a failed webhook delivery is tried again, and when it is given up.

The delay after the n-th failed attempt is 10 s times 3^(n-1), capped at
4 hours, scaled by a random factor from 0.8 to 1.2 so that endpoints that
failed together are not retried in lockstep.

A delivery is retried until its ``retry_until`` (24 hours after it was
created or replayed) has passed, and then marked failed. The last attempt
therefore falls 24 to about 29 hours after the first.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

__all__ = ["DEFAULT_WEBHOOK_POLICY", "WebhookPolicy"]


@attrs.frozen(kw_only=True)
class WebhookPolicy:
    """Retry, give-up and disable rules of webhook deliveries."""

    first_delay: timedelta = timedelta(seconds=10)
    factor: float = 3.0
    max_delay: timedelta = timedelta(hours=4)
    jitter: float = 0.2
    retry_window: timedelta = timedelta(hours=24)
    """How long after its creation (or replay) a delivery is still retried."""
    disable_after: timedelta = timedelta(days=5)
    """How long every attempt to an endpoint must fail before it is disabled."""

    def next_attempt_at(
        self, failed_attempts: int, now: datetime, retry_until: datetime, random: float
    ) -> datetime | None:
        """Return when to try again after ``failed_attempts`` failures.

        ``random`` is a number in [0, 1) that picks the jitter. Returns
        ``None`` once ``retry_until`` has passed: the delivery has failed.
        """
        if now >= retry_until:
            return None
        # The exponent is capped so the power stays a finite float.
        exponent = min(max(failed_attempts - 1, 0), 64)
        seconds = self.first_delay.total_seconds() * self.factor**exponent
        seconds = min(seconds, self.max_delay.total_seconds())
        scale = 1 - self.jitter + 2 * self.jitter * random
        return now + timedelta(seconds=seconds * scale)


DEFAULT_WEBHOOK_POLICY = WebhookPolicy()
