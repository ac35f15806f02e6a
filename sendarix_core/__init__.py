"""The pure domain core of Sendarix.

Message lifecycle, validation, retry schedule, idempotency, suppression and
rate-limit decisions, with no I/O: time and randomness arrive as arguments.
Backends in ``sendarix_backends`` implement the interfaces in
``sendarix_core.ports``.
"""

from sendarix_core.errors import (
    AuthenticationError,
    ConfigurationError,
    DeliveryError,
    FieldError,
    IdempotencyConflictError,
    InvalidTransitionError,
    MessageNotCancellableError,
    NotFoundError,
    PermanentDeliveryError,
    PermissionDeniedError,
    RateLimitedError,
    SendarixError,
    StorageError,
    TemporaryDeliveryError,
    ValidationError,
)
from sendarix_core.model import (
    Address,
    Attachment,
    Event,
    Message,
    MessageContent,
    SmtpReply,
)
from sendarix_core.states import EventType, MessageStatus, Priority

__all__ = [
    "Address",
    "Attachment",
    "AuthenticationError",
    "ConfigurationError",
    "DeliveryError",
    "Event",
    "EventType",
    "FieldError",
    "IdempotencyConflictError",
    "InvalidTransitionError",
    "Message",
    "MessageContent",
    "MessageNotCancellableError",
    "MessageStatus",
    "NotFoundError",
    "PermanentDeliveryError",
    "PermissionDeniedError",
    "Priority",
    "RateLimitedError",
    "SendarixError",
    "SmtpReply",
    "StorageError",
    "TemporaryDeliveryError",
    "ValidationError",
]
