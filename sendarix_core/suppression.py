"""The suppression list: recipients Sendarix must not send to."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import attrs

__all__ = [
    "UNSUBSCRIBE_REASONS",
    "Suppression",
    "SuppressionReason",
    "normalize_recipient",
]


class SuppressionReason(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    USER_UNSUBSCRIBED = "user_unsubscribed"
    MANUAL = "manual"


# Reasons listed by the ``/v1/unsubscribes`` endpoints.
UNSUBSCRIBE_REASONS = frozenset({SuppressionReason.USER_UNSUBSCRIBED})


@attrs.frozen(kw_only=True)
class Suppression:
    recipient: str
    reason: SuppressionReason
    created_at: datetime
    message_id: str | None = None


def normalize_recipient(email: str) -> str:
    """Return the key a recipient is suppressed under.

    Mailbox providers treat local parts case-insensitively in practice, so
    ``Ada@Example.com`` and ``ada@example.com`` share one entry.
    """
    return email.strip().lower()
