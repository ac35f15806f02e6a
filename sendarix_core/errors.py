"""Exceptions raised by Sendarix.

Every exception derives from one root, so an integrator can catch
``SendarixError`` at the edge of their application::

    SendarixError
    ├── ValidationError             a request failed field validation
    ├── AddressError                an address failed to parse (sendarix_core.addresses)
    ├── InvalidTransitionError      a lifecycle move the state machine forbids
    ├── NotFoundError
    │   └── MessageNotCancellableError
    ├── IdempotencyConflictError    a key reused with another request body
    ├── AuthenticationError         missing, unknown or revoked API key
    ├── PermissionDeniedError       the key lacks a scope or sender domain
    ├── RateLimitedError
    ├── ConfigurationError          invalid settings at start-up
    ├── StorageError                a storage or queue backend failed
    └── DeliveryError               an attempt to hand a message to SMTP failed
        ├── TemporaryDeliveryError  retried on the schedule
        │   └── DeliveryDeadlineError  expires_at passed before DATA
        └── PermanentDeliveryError  bounces at once

Retryability is a type: the worker matches on ``TemporaryDeliveryError`` and
``PermanentDeliveryError``, never on reply text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "DeliveryDeadlineError",
    "DeliveryError",
    "FieldError",
    "IdempotencyConflictError",
    "InvalidTransitionError",
    "MessageNotCancellableError",
    "NotFoundError",
    "PermanentDeliveryError",
    "PermissionDeniedError",
    "RateLimitedError",
    "SendarixError",
    "StorageError",
    "TemporaryDeliveryError",
    "ValidationError",
]


class SendarixError(Exception):
    """Root of every exception Sendarix raises."""


@attrs.frozen
class FieldError:
    """One invalid field of a request.

    ``field`` is a dotted path into the request body (``attachments.0.content``),
    ``code`` a stable machine-readable reason and ``message`` a sentence that
    names the offending value and what is expected instead.
    """

    field: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class ValidationError(SendarixError):
    """A request failed validation; ``errors`` lists every invalid field."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = tuple(errors)
        count = len(self.errors)
        noun = "field is" if count == 1 else "fields are"
        # The count alone, such as "1 field is invalid": the HTTP body's message.
        self.summary = f"{count} {noun} invalid"
        super().__init__(self.summary)

    def __str__(self) -> str:
        # One line a field, so a traceback shows what failed; each message
        # names the offending value.
        lines = [f"{e.field} [{e.code}]: {e.message}" for e in self.errors]
        return "\n".join([f"{self.summary}:", *(f"- {line}" for line in lines)])


class InvalidTransitionError(SendarixError):
    """A message was asked to move between two states that have no edge."""

    def __init__(self, message_id: str, current: str, target: str) -> None:
        self.message_id = message_id
        self.current = str(current)
        self.target = str(target)
        super().__init__(
            f"message {message_id} cannot move from {self.current!r} to {self.target!r}"
        )


class NotFoundError(SendarixError):
    """A resource does not exist (or is not visible to the caller)."""

    def __init__(self, resource: str, identifier: str) -> None:
        # ``resource`` is a snake_case name, as in the error code
        # ``<resource>_not_found``; the message spells it in words.
        self.resource = resource
        self.identifier = identifier
        truncated = identifier if len(identifier) <= 100 else identifier[:100] + "…"
        super().__init__(f"{resource.replace('_', ' ')} {truncated!r} was not found")


class MessageNotCancellableError(NotFoundError):
    """A message exists but delivery has started, so it can't be cancelled."""

    def __init__(self, message_id: str, status: str) -> None:
        super().__init__("message", message_id)
        self.status = str(status)
        self.args = (
            f"message {message_id!r} is {self.status!r}; only scheduled or queued "
            "messages can be cancelled",
        )


class IdempotencyConflictError(SendarixError):
    """An idempotency key was reused with a different request body."""

    def __init__(
        self, key: str, message_id: str | None, *, field: str | None = None
    ) -> None:
        self.key = key
        self.message_id = message_id
        self.field = field
        where = f" of {field}" if field else ""
        super().__init__(
            f"idempotency key {key!r}{where} was already used with a different "
            "request body; use a new key for a new message"
        )


class AuthenticationError(SendarixError):
    """The API key is missing, unknown, expired or revoked."""


class PermissionDeniedError(SendarixError):
    """The API key is valid but may not perform this operation."""

    def __init__(self, message: str, *, scope: str | None = None) -> None:
        self.scope = scope
        super().__init__(message)


class RateLimitedError(SendarixError):
    """A key sent more requests than its limit allows in the current window."""

    def __init__(self, limit: int, reset_at: int) -> None:
        self.limit = limit
        self.reset_at = reset_at
        super().__init__(
            f"rate limit of {limit} requests per minute exceeded; retry after "
            "the seconds in the Retry-After header"
        )


class ConfigurationError(SendarixError):
    """A setting is missing or invalid."""


class StorageError(SendarixError):
    """A storage or queue backend failed; the original error is chained."""


class DeliveryError(SendarixError):
    """An SMTP delivery attempt failed.

    Carries the reply from the remote server when there was one, the MX host
    that produced it and the recipient, so events and logs can show them.
    """

    def __init__(
        self,
        message: str,
        *,
        reply_code: int | None = None,
        enhanced_code: str | None = None,
        mx_host: str | None = None,
        recipient: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.reply_code = reply_code
        self.enhanced_code = enhanced_code
        self.mx_host = mx_host
        self.recipient = recipient
        self.details = details or {}
        super().__init__(message)

    @property
    def reply_text(self) -> str:
        return str(self.args[0]) if self.args else ""


class TemporaryDeliveryError(DeliveryError):
    """A failure worth retrying: 4xx, a refused or dropped connection, SERVFAIL."""


class DeliveryDeadlineError(TemporaryDeliveryError):
    """The message's ``expires_at`` passed before DATA could be sent."""


class PermanentDeliveryError(DeliveryError):
    """A failure that retrying can't fix: 5xx, NXDOMAIN, null MX."""
