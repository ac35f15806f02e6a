"""One table from exception class to HTTP status and stable error code.

Every error response has the same body::

    {"error": {"code": "validation_failed", "message": "2 fields are invalid",
               "errors": [{"field": "recipient", "code": "invalid_address",
                           "message": "'bob@' has no domain"}]}}
"""

from __future__ import annotations

from typing import Any

from sendarix_core.errors import (
    AuthenticationError,
    ConfigurationError,
    FieldError,
    IdempotencyConflictError,
    MessageNotCancellableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    SendarixError,
    StorageError,
    ValidationError,
)

__all__ = ["ERROR_TABLE", "HttpError", "error_body", "status_and_code"]


class HttpError(SendarixError):
    """An error found by the HTTP layer itself: a bad body, route or method."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        errors: tuple[FieldError, ...] = (),
    ) -> None:
        self.status = status
        self.code = code
        self.headers = headers or {}
        self.errors = errors
        super().__init__(message)


# Most specific first: the first class the exception is an instance of wins.
ERROR_TABLE: tuple[tuple[type[SendarixError], int, str], ...] = (
    (ValidationError, 422, "validation_failed"),
    (IdempotencyConflictError, 409, "idempotency_key_reused"),
    (MessageNotCancellableError, 404, "message_not_cancellable"),
    (NotFoundError, 404, "not_found"),
    (AuthenticationError, 401, "invalid_api_key"),
    (PermissionDeniedError, 403, "permission_denied"),
    (RateLimitedError, 429, "rate_limited"),
    (StorageError, 503, "storage_unavailable"),
    (ConfigurationError, 500, "internal_error"),
    (SendarixError, 500, "internal_error"),
)


# A field name or message this long repeats the request, such as an unknown
# key of 5 MB, so it is cut and the error stays small.
_MAX_FIELD_CHARS = 200
_MAX_MESSAGE_CHARS = 2_000


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_and_code(error: SendarixError) -> tuple[int, str]:
    if isinstance(error, HttpError):
        return error.status, error.code
    for error_class, status, code in ERROR_TABLE:
        if isinstance(error, error_class):
            if isinstance(error, NotFoundError) and code == "not_found":
                return status, f"{error.resource}_not_found"
            return status, code
    return 500, "internal_error"


def error_body(error: SendarixError) -> dict[str, Any]:
    _, code = status_and_code(error)
    # A ValidationError's str() also lists the fields, which "errors" holds.
    message = error.summary if isinstance(error, ValidationError) else str(error)
    body: dict[str, Any] = {"code": code, "message": message}
    field_errors = getattr(error, "errors", ())
    if field_errors:
        body["errors"] = [
            {
                "field": _shortened(field_error.field, _MAX_FIELD_CHARS),
                "code": field_error.code,
                "message": _shortened(field_error.message, _MAX_MESSAGE_CHARS),
            }
            for field_error in field_errors
        ]
    scope = getattr(error, "scope", None)
    if scope:
        body["scope"] = scope
    return {"error": body}
