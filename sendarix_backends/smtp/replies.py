"""Translation of SMTP replies and lost connections into delivery errors."""

from __future__ import annotations

from sendarix_core.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from sendarix_core.retry import FailureKind, classify_reply, parse_enhanced_code

__all__ = ["HostFailure", "copy_with_recipient", "reply_error"]


class HostFailure(Exception):
    """A host could not be reached or dropped the session, so the next host
    (or a later attempt) may succeed.

    ``reply_code`` and ``reply_text`` are set when the host sent a reply, as
    with a ``421`` greeting.
    """

    def __init__(
        self,
        description: str,
        *,
        reply_code: int | None = None,
        reply_text: str | None = None,
        stage: str = "CONNECT",
    ) -> None:
        self.reply_code = reply_code
        self.reply_text = reply_text
        self.stage = stage
        super().__init__(description)


def reply_error(
    code: int,
    text: str,
    *,
    stage: str,
    mx_host: str,
    recipient: str,
) -> TemporaryDeliveryError | PermanentDeliveryError:
    """Return the error for a negative reply to MAIL, RCPT or DATA.

    The basic code decides retryability: 4xx is temporary and 5xx permanent.
    A code outside 400-599 at this point breaks the protocol, so it is
    treated as temporary.
    """
    enhanced_code = parse_enhanced_code(text)
    details = {"stage": stage}
    if not 400 <= code <= 599:
        return TemporaryDeliveryError(
            text,
            reply_code=code,
            enhanced_code=enhanced_code,
            mx_host=mx_host,
            recipient=recipient,
            details={**details, "unexpected_reply": True},
        )

    kind = classify_reply(code, enhanced_code).kind
    error_class = (
        PermanentDeliveryError
        if kind is FailureKind.PERMANENT
        else TemporaryDeliveryError
    )
    return error_class(
        text,
        reply_code=code,
        enhanced_code=enhanced_code,
        mx_host=mx_host,
        recipient=recipient,
        details=details,
    )


def copy_with_recipient(error: DeliveryError, recipient: str) -> DeliveryError:
    """Return a copy of ``error`` that names ``recipient``."""
    return type(error)(
        error.reply_text,
        reply_code=error.reply_code,
        enhanced_code=error.enhanced_code,
        mx_host=error.mx_host,
        recipient=recipient,
        details=dict(error.details),
    )
