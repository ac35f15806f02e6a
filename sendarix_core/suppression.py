"""The suppression list: recipients Sendarix must not send to."""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from enum import StrEnum

import attrs

from sendarix_core.addresses import AddressError, parse_address, quote_value
from sendarix_core.errors import FieldError, ValidationError

__all__ = [
    "UNSUBSCRIBE_REASONS",
    "Suppression",
    "SuppressionReason",
    "canonical_recipient",
    "check_reason",
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
    return canonical_recipient(email).lower()


def canonical_recipient(email: str) -> str:
    """Return ``email`` as ``normalize_recipient`` keys it, before case folding.

    Text that is no valid address is returned stripped, as it is.
    """
    text = email.strip()
    if _PLAIN.fullmatch(text):
        # Parsing would return this text, up to case, or reject it and keep
        # the text as it is.
        return text
    with contextlib.suppress(AddressError):
        text = parse_address(text).email
    return text


# A dot-atom local part at an ASCII domain that ends in a letter or digit:
# nothing in it for parsing to unquote, convert or strip.
_PLAIN = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]*[A-Za-z0-9]")


def check_reason(value: object) -> SuppressionReason:
    """Return the reason named by ``value``; raise ``ValidationError`` if none is."""
    allowed = ", ".join(SuppressionReason)
    if not isinstance(value, str):
        message = (
            f"expected a string, got {type(value).__name__}; a suppression "
            f"reason is one of {allowed}"
        )
        raise ValidationError([FieldError("reason", "invalid_type", message)])
    try:
        return SuppressionReason(value)
    except ValueError:
        message = (
            f"{quote_value(value)} is not a suppression reason; expected one of "
            f"{allowed}"
        )
        raise ValidationError(
            [FieldError("reason", "invalid_reason", message)]
        ) from None
