"""The suppression list: recipients Sendarix must not send to."""

from __future__ import annotations

import contextlib
from datetime import datetime
from enum import StrEnum

import attrs

from sendarix_core.addresses import AddressError, parse_address

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
    ``Ada@Example.com`` and ``ada@example.com`` share one entry. An IDN
    domain is converted to A-labels, as stored addresses are, so
    ``user@bücher.test`` finds ``user@xn--bcher-kva.test``.
    """
    text = email.strip()
    with contextlib.suppress(AddressError):
        text = parse_address(text).email
    return text.lower()
