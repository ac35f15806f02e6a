"""Validation of the body of ``POST /v1/messages``.

``validate_send_request`` checks every field of a decoded JSON body and
returns a ``SendRequest`` with typed values, or raises ``ValidationError``
listing every invalid field at once, so a client can fix them in one round.
Unknown fields are errors too, because a misspelt optional field would
otherwise be dropped without a word.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from sendarix_core.addresses import AddressError, parse_address, quote_value
from sendarix_core.attachment_checks import check_attachments
from sendarix_core.checks import (
    DEFAULT_LIMITS,
    ErrorCode,
    Errors,
    Limits,
    check_length,
    check_line,
    check_no_nul,
    check_string,
    describe,
)
from sendarix_core.errors import ConfigurationError, ValidationError
from sendarix_core.header_checks import (
    IDEMPOTENCY_KEY_HEADER,
    RESERVED_HEADERS,
    check_headers,
    check_list_unsubscribe,
    check_metadata,
    check_tags,
    validate_idempotency_key,
)
from sendarix_core.model import Address, Attachment
from sendarix_core.states import Priority

__all__ = [
    "DEFAULT_LIMITS",
    "FIELDS",
    "IDEMPOTENCY_KEY_HEADER",
    "RESERVED_HEADERS",
    "ErrorCode",
    "Limits",
    "SendRequest",
    "validate_idempotency_key",
    "validate_send_request",
]

FIELDS = frozenset(
    {
        "recipient",
        "from",
        "subject",
        "text",
        "html",
        "template",
        "template_data",
        "attachments",
        "headers",
        "priority",
        "scheduled_time",
        "expires_at",
        "metadata",
        "tags",
        "list_unsubscribe",
    }
)

# Field names of other email APIs, for the "did you mean" hint.
_MAX_UNKNOWN_FIELDS_LISTED = 20
_FIELD_ALIASES = {"to": "recipient", "sender": "from", "body": "text"}

_SURROGATE = re.compile("[\ud800-\udfff]")


@attrs.frozen(kw_only=True)
class SendRequest:
    """A validated ``POST /v1/messages`` body.

    Times are timezone-aware UTC. ``scheduled_at`` is None for "send now",
    which includes a ``scheduled_time`` that has already passed. ``headers``
    keeps the request's order and no longer contains ``X-Idempotency-Key``,
    whose value is in ``idempotency_key``.
    """

    recipient: Address
    sender: Address
    subject: str | None
    """None only when the template supplies the subject."""
    text: str | None
    html: str | None
    template: str | None
    template_data: Mapping[str, Any]
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...]
    idempotency_key: str | None
    priority: Priority
    scheduled_at: datetime | None
    expires_at: datetime | None
    metadata: Mapping[str, str]
    tags: tuple[str, ...]
    list_unsubscribe: bool = False
    """Add one-click List-Unsubscribe fields (RFC 8058) pointing at Sendarix."""


@attrs.frozen
class _Content:
    subject: str | None
    text: str | None
    html: str | None
    template: str | None
    template_data: Mapping[str, Any]


def validate_send_request(
    body: Mapping[str, Any],
    *,
    now: datetime,
    default_sender: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> SendRequest:
    """Check a decoded JSON body of ``POST /v1/messages``.

    ``now`` must be timezone-aware. ``default_sender`` is used when the body
    has no ``from``. Raises ``ValidationError`` listing every invalid field,
    ``TypeError`` when ``body`` is not a mapping (the HTTP layer responds to
    a non-object with 400 before calling this) and ``ConfigurationError`` when
    ``default_sender`` is not a valid address.
    """
    if not isinstance(body, Mapping):
        raise TypeError(f"body must be a mapping, got {type(body).__name__}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")

    errors = Errors()
    _check_unknown_fields(body, errors)
    recipient = _check_recipient(body.get("recipient"), errors)
    sender = _check_sender(body.get("from"), default_sender, errors)
    content = _check_content(body, limits, errors)

    attachments = check_attachments(body.get("attachments"), limits, errors)
    headers, idempotency_key = check_headers(body.get("headers"), limits, errors)
    priority = _check_priority(body.get("priority"), errors)
    scheduled_at, expires_at = _check_schedule(body, now, limits, errors)
    metadata = check_metadata(body.get("metadata"), limits, errors)
    tags = check_tags(body.get("tags"), limits, errors)
    list_unsubscribe = check_list_unsubscribe(body, headers, errors)

    if errors.items or recipient is None or sender is None:
        raise ValidationError(errors.items)
    return SendRequest(
        recipient=recipient,
        sender=sender,
        subject=content.subject,
        text=content.text,
        html=content.html,
        template=content.template,
        template_data=content.template_data,
        attachments=attachments,
        headers=headers,
        idempotency_key=idempotency_key,
        priority=priority,
        scheduled_at=scheduled_at,
        expires_at=expires_at,
        metadata=metadata,
        tags=tags,
        list_unsubscribe=list_unsubscribe,
    )


def _check_unknown_fields(body: Mapping[str, Any], errors: Errors) -> None:
    unknown = [str(key) for key in body if str(key) not in FIELDS]
    # A suggestion costs a fuzzy match, and a body of many thousand unknown
    # keys would otherwise take seconds and get an error list of megabytes.
    for name in unknown[:_MAX_UNKNOWN_FIELDS_LISTED]:
        suggestion = _FIELD_ALIASES.get(name.lower())
        if suggestion is None:
            matches = difflib.get_close_matches(name, FIELDS, n=1)
            suggestion = matches[0] if matches else None
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        errors.add(name, ErrorCode.UNKNOWN_FIELD, f"unknown field {name!r}{hint}")
    if len(unknown) > _MAX_UNKNOWN_FIELDS_LISTED:
        name = unknown[_MAX_UNKNOWN_FIELDS_LISTED]
        rest = len(unknown) - _MAX_UNKNOWN_FIELDS_LISTED
        errors.add(
            name,
            ErrorCode.UNKNOWN_FIELD,
            f"unknown field {name!r}, and {rest - 1} more unknown fields not "
            f"listed; only the first {_MAX_UNKNOWN_FIELDS_LISTED} are named",
        )


def _check_recipient(value: object, errors: Errors) -> Address | None:
    if value is None:
        errors.add("recipient", ErrorCode.MISSING_FIELD, "a recipient is required")
        return None
    if isinstance(value, list) and len(value) > 1:
        errors.add(
            "recipient",
            ErrorCode.MULTIPLE_ADDRESSES,
            f"expected one address, got a list of {len(value)}; send one message "
            "per recipient",
        )
        return None
    return _check_address("recipient", value, errors)


def _check_sender(
    value: object, default_sender: str | None, errors: Errors
) -> Address | None:
    if value is not None:
        return _check_address("from", value, errors)
    if default_sender is None:
        errors.add(
            "from",
            ErrorCode.MISSING_FIELD,
            "a sender is required because the server has no default sender",
        )
        return None

    try:
        return parse_address(default_sender)
    except AddressError as error:
        raise ConfigurationError(
            f"the default sender {default_sender!r} is invalid: {error}"
        ) from error


def _check_address(field: str, value: object, errors: Errors) -> Address | None:
    if not isinstance(value, str | Mapping):
        errors.add(
            field,
            ErrorCode.INVALID_TYPE,
            "expected an address string or an object with 'name' and 'email', "
            f"got {describe(value)}",
        )
        return None
    try:
        return parse_address(value)
    except AddressError as error:
        errors.add(field, error.code, str(error))
        return None


def _check_content(body: Mapping[str, Any], limits: Limits, errors: Errors) -> _Content:
    """Check the subject and the body: text and/or html, or a template."""
    text = _check_body_part("text", body.get("text"), limits.max_text_bytes, errors)
    html = _check_body_part("html", body.get("html"), limits.max_html_bytes, errors)
    template = _check_template(body.get("template"), errors)
    template_data = _check_template_data(body.get("template_data"), errors)

    has_template = body.get("template") is not None
    has_body = _is_set(body, "text") or _is_set(body, "html")
    if has_template and has_body:
        errors.add(
            "template",
            ErrorCode.CONFLICTING_BODY,
            "a template can't be combined with 'text' or 'html'; send either "
            "a template or the body",
        )
    if not has_template and not has_body:
        errors.add(
            "text",
            ErrorCode.MISSING_BODY,
            "the message has no body; set 'text' and/or 'html', or 'template'",
        )
    if template_data and not has_template:
        errors.add(
            "template_data",
            ErrorCode.MISSING_TEMPLATE,
            "'template_data' is only used with 'template'; set 'template' or "
            "remove 'template_data'",
        )

    subject = _check_subject(body.get("subject"), has_template, limits, errors)
    return _Content(subject, text, html, template, template_data)


def _is_set(body: Mapping[str, Any], field: str) -> bool:
    """Return whether a body field has a value other than null or ""."""
    value = body.get(field)
    return value is not None and value != ""


def _check_body_part(
    field: str, value: object, max_bytes: int, errors: Errors
) -> str | None:
    """Return a text or HTML body, or None when it is absent or empty."""
    if value is None:
        return None
    text = check_string(field, value, errors)
    if not text:
        return None

    if _SURROGATE.search(text):
        errors.add(
            field,
            ErrorCode.INVALID_CHARACTER,
            "the body contains a lone surrogate, which can't be encoded as UTF-8",
        )
        return None
    nul = text.find("\0")
    if nul >= 0:
        # RFC 5322 section 2.3 and RFC 2045 section 2.7 allow no NUL in text.
        errors.add(
            field,
            ErrorCode.INVALID_CHARACTER,
            f"the body contains the NUL character U+0000 at index {nul}, which "
            "email text may not contain; remove it, or send binary data as an "
            "attachment",
        )
        return None
    size = len(text.encode())
    if size > max_bytes:
        errors.add(
            field,
            ErrorCode.TOO_LARGE,
            f"the body is {size} bytes long in UTF-8; the maximum is {max_bytes}",
        )
        return None
    return text


def _check_template(value: object, errors: Errors) -> str | None:
    if value is None:
        return None
    name = check_string("template", value, errors)
    if name is None or not check_line("template", name, errors):
        return None
    if not name.strip():
        errors.add("template", ErrorCode.INVALID_VALUE, "the template name is empty")
        return None
    return name


def _check_template_data(value: object, errors: Errors) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.add(
            "template_data",
            ErrorCode.INVALID_TYPE,
            f"expected an object of template variables, got {describe(value)}",
        )
        return {}
    # Every value is checked, rendered or not, because the request is stored.
    if not check_no_nul("template_data", value, errors):
        return {}
    return dict(value)


def _check_subject(
    value: object, has_template: bool, limits: Limits, errors: Errors
) -> str | None:
    if value is None:
        if not has_template:
            errors.add(
                "subject",
                ErrorCode.MISSING_FIELD,
                "a subject is required unless a template supplies it",
            )
        return None

    subject = check_string("subject", value, errors)
    if subject is None or not check_line("subject", subject, errors):
        return None
    if not subject.strip() and not has_template:
        errors.add(
            "subject", ErrorCode.MISSING_FIELD, "the subject is empty; write one"
        )
        return None
    if not check_length("subject", subject, limits.max_subject_length, errors):
        return None
    return subject


def _check_priority(value: object, errors: Errors) -> Priority:
    if value is None:
        return Priority.NORMAL
    text = check_string("priority", value, errors)
    if text is None:
        return Priority.NORMAL
    try:
        return Priority(text)
    except ValueError:
        errors.add(
            "priority",
            ErrorCode.INVALID_VALUE,
            f"expected 'high', 'normal' or 'low', got {quote_value(text)}",
        )
        return Priority.NORMAL


def _check_schedule(
    body: Mapping[str, Any], now: datetime, limits: Limits, errors: Errors
) -> tuple[datetime | None, datetime | None]:
    """Return ``scheduled_at`` (None for "now") and ``expires_at`` in UTC.

    A scheduled time in the past means "send now", as a client whose clock
    is slightly ahead, or whose request was retried, would expect.
    """
    scheduled = _check_time("scheduled_time", body.get("scheduled_time"), errors)
    if scheduled is not None and scheduled > now + limits.max_scheduled_ahead:
        errors.add(
            "scheduled_time",
            ErrorCode.TOO_FAR_AHEAD,
            f"{scheduled.isoformat()} is more than "
            f"{_format_duration(limits.max_scheduled_ahead)} ahead; schedule it "
            "closer to the send time",
        )
        scheduled = None
    if scheduled is not None and scheduled <= now:
        scheduled = None

    expires = _check_time("expires_at", body.get("expires_at"), errors)
    if expires is None:
        return scheduled, None
    if expires <= now:
        errors.add(
            "expires_at",
            ErrorCode.IN_THE_PAST,
            f"{expires.isoformat()} is not in the future; the message would "
            "expire before its first attempt",
        )
    elif scheduled is not None and expires <= scheduled:
        errors.add(
            "expires_at",
            ErrorCode.BEFORE_SCHEDULED_TIME,
            f"{expires.isoformat()} is not after scheduled_time "
            f"{scheduled.isoformat()}",
        )
    return scheduled, expires


def _format_duration(duration: timedelta) -> str:
    if duration.seconds == 0 and duration.microseconds == 0:
        return f"{duration.days} days"
    return str(duration)


def _check_time(field: str, value: object, errors: Errors) -> datetime | None:
    """Parse an ISO 8601 date and time with a timezone into UTC."""
    if value is None:
        return None
    text = check_string(field, value, errors)
    if text is None:
        return None

    expected = "expected an ISO 8601 date and time such as '2026-04-19T14:30:00Z'"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        errors.add(
            field, ErrorCode.INVALID_DATETIME, f"{expected}, got {describe(text)}"
        )
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        errors.add(
            field,
            ErrorCode.MISSING_TIMEZONE,
            f"{quote_value(text)} has no timezone; add 'Z' for UTC or an offset "
            "such as '+02:00'",
        )
        return None

    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        errors.add(
            field, ErrorCode.INVALID_DATETIME, f"{quote_value(text)} is out of range"
        )
        return None
