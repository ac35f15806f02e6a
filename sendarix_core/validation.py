"""Validation of the body of ``POST /v1/messages``.

``validate_send_request`` checks every field of a decoded JSON body and
returns a ``SendRequest`` with typed values, or raises ``ValidationError``
listing every invalid field at once, so a client can fix them in one round.
Unknown fields are errors too, because a misspelt optional field would
otherwise be dropped without a word.
"""

from __future__ import annotations

import binascii
import difflib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import attrs

from sendarix_core.addresses import (
    AddressError,
    find_control_character,
    find_header_injection,
    parse_address,
    quote_value,
)
from sendarix_core.errors import ConfigurationError, FieldError, ValidationError
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
_FIELD_ALIASES = {"to": "recipient", "sender": "from", "body": "text"}

_ATTACHMENT_FIELDS = frozenset(
    {"filename", "content_type", "content", "content_id", "inline"}
)

IDEMPOTENCY_KEY_HEADER = "x-idempotency-key"

# Headers Sendarix writes itself, compared in lowercase. Every ``Content-*``
# header is reserved as well, because Sendarix builds the MIME structure.
RESERVED_HEADERS = frozenset(
    {
        "bcc",
        "dkim-signature",
        "received",
        "return-path",
        "mime-version",
        "message-id",
        "date",
        "from",
        "to",
        "subject",
        "sender",
        # Sendarix sends to ``recipient`` only, so a Cc header would name
        # addresses that never get a copy.
        "cc",
    }
)

# Resent-* fields describe a re-sending that Sendarix never performs.
_RESERVED_PREFIXES = ("content-", "resent-")

# A field name is printable ASCII except the colon (RFC 5322 section 2.2).
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")

# A header name can't be folded, so it must fit on the 78-character line that
# RFC 5322 recommends, together with ": ".
_MAX_HEADER_NAME_LENGTH = 76

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")

# type "/" subtype with the restricted-name characters of RFC 6838.
_CONTENT_TYPE = re.compile(
    r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
)

# A Content-ID without its angle brackets: atext, dots and "@" (``logo@acme``).
_CONTENT_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]{1,250}")

_TAG = re.compile(r"[A-Za-z0-9_.:-]+")

_SURROGATE = re.compile("[\ud800-\udfff]")


class ErrorCode(StrEnum):
    """Stable ``FieldError.code`` values besides the ``AddressErrorCode`` ones."""

    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    INVALID_TYPE = "invalid_type"
    INVALID_VALUE = "invalid_value"
    INVALID_CHARACTER = "invalid_character"
    HEADER_INJECTION = "header_injection"
    TOO_LONG = "too_long"
    TOO_LARGE = "too_large"
    TOO_MANY = "too_many"
    DUPLICATE = "duplicate"
    MULTIPLE_ADDRESSES = "multiple_addresses"
    MISSING_BODY = "missing_body"
    CONFLICTING_BODY = "conflicting_body"
    MISSING_TEMPLATE = "missing_template"
    INVALID_HEADER_NAME = "invalid_header_name"
    RESERVED_HEADER = "reserved_header"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    INVALID_DATETIME = "invalid_datetime"
    MISSING_TIMEZONE = "missing_timezone"
    TOO_FAR_AHEAD = "too_far_ahead"
    IN_THE_PAST = "in_the_past"
    BEFORE_SCHEDULED_TIME = "before_scheduled_time"
    INVALID_FILENAME = "invalid_filename"
    INVALID_CONTENT_TYPE = "invalid_content_type"
    INVALID_CONTENT_ID = "invalid_content_id"
    MISSING_CONTENT_ID = "missing_content_id"
    INVALID_BASE64 = "invalid_base64"
    INVALID_TAG = "invalid_tag"
    CONFLICTING_HEADER = "conflicting_header"


@attrs.frozen(kw_only=True)
class Limits:
    """Size and count limits on a request.

    Lengths count characters. ``*_bytes`` limits count UTF-8 bytes for bodies
    and decoded bytes for attachments.
    """

    max_subject_length: int = 998
    # A chosen default, not a protocol limit. Raise it for large newsletters.
    max_text_bytes: int = 5_000_000
    max_html_bytes: int = 5_000_000
    max_attachments: int = 100
    # The default equals the 50 MB request limit of the HTTP layer, which
    # base64 makes the tighter one, so only that limit applies unless an
    # operator lowers this one.
    max_attachment_bytes: int = 50_000_000
    max_filename_length: int = 255
    max_headers: int = 50
    max_header_value_length: int = 998
    max_metadata_keys: int = 50
    max_metadata_key_length: int = 40
    max_metadata_value_length: int = 500
    max_tags: int = 10
    max_tag_length: int = 128
    max_scheduled_ahead: timedelta = timedelta(days=30)


DEFAULT_LIMITS = Limits()


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


@attrs.define
class _Errors:
    items: list[FieldError] = attrs.Factory(list)

    def add(self, field: str, code: str, message: str) -> None:
        self.items.append(FieldError(field, code, message))


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

    errors = _Errors()
    _check_unknown_fields(body, errors)
    recipient = _check_recipient(body.get("recipient"), errors)
    sender = _check_sender(body.get("from"), default_sender, errors)
    content = _check_content(body, limits, errors)

    attachments = _check_attachments(body.get("attachments"), limits, errors)
    headers, idempotency_key = _check_headers(body.get("headers"), limits, errors)
    priority = _check_priority(body.get("priority"), errors)
    scheduled_at, expires_at = _check_schedule(body, now, limits, errors)
    metadata = _check_metadata(body.get("metadata"), limits, errors)
    tags = _check_tags(body.get("tags"), limits, errors)
    list_unsubscribe = _check_list_unsubscribe(body, headers, errors)

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


def _describe(value: object) -> str:
    """Describe a value in JSON terms (null, true, a list) for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return quote_value(repr(value)).strip("'")
    if isinstance(value, str):
        return quote_value(value)
    if isinstance(value, Sequence):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _check_unknown_fields(body: Mapping[str, Any], errors: _Errors) -> None:
    for key in body:
        name = str(key)
        if name in FIELDS:
            continue
        suggestion = _FIELD_ALIASES.get(name.lower())
        if suggestion is None:
            matches = difflib.get_close_matches(name, FIELDS, n=1)
            suggestion = matches[0] if matches else None
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        errors.add(name, ErrorCode.UNKNOWN_FIELD, f"unknown field {name!r}{hint}")


def _check_recipient(value: object, errors: _Errors) -> Address | None:
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
    value: object, default_sender: str | None, errors: _Errors
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


def _check_address(field: str, value: object, errors: _Errors) -> Address | None:
    if not isinstance(value, str | Mapping):
        errors.add(
            field,
            ErrorCode.INVALID_TYPE,
            "expected an address string or an object with 'name' and 'email', "
            f"got {_describe(value)}",
        )
        return None
    try:
        return parse_address(value)
    except AddressError as error:
        errors.add(field, error.code, str(error))
        return None


def _check_string(field: str, value: object, errors: _Errors) -> str | None:
    """Return ``value`` if it is a string, else record an error."""
    if isinstance(value, str):
        return value
    errors.add(
        field, ErrorCode.INVALID_TYPE, f"expected a string, got {_describe(value)}"
    )
    return None


def _check_line(field: str, value: str, errors: _Errors) -> bool:
    """Return whether a header value is free of line breaks and controls.

    Records an error when it is not.
    """
    injected = find_header_injection(value)
    if injected is not None:
        errors.add(
            field,
            ErrorCode.HEADER_INJECTION,
            f"{quote_value(value)} contains the line break or NUL character "
            f"U+{ord(injected):04X}; header values must be on one line",
        )
        return False

    control = find_control_character(value)
    if control is not None:
        errors.add(
            field,
            ErrorCode.INVALID_CHARACTER,
            f"{quote_value(value)} contains the control character U+{ord(control):04X}",
        )
        return False
    return True


def _check_length(field: str, value: str, maximum: int, errors: _Errors) -> bool:
    if len(value) <= maximum:
        return True
    errors.add(
        field,
        ErrorCode.TOO_LONG,
        f"{quote_value(value)} is {len(value)} characters long; "
        f"the maximum is {maximum}",
    )
    return False


def _check_content(
    body: Mapping[str, Any], limits: Limits, errors: _Errors
) -> _Content:
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
    field: str, value: object, max_bytes: int, errors: _Errors
) -> str | None:
    """Return a text or HTML body, or None when it is absent or empty."""
    if value is None:
        return None
    text = _check_string(field, value, errors)
    if not text:
        return None

    if _SURROGATE.search(text):
        errors.add(
            field,
            ErrorCode.INVALID_CHARACTER,
            "the body contains a lone surrogate, which can't be encoded as UTF-8",
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


def _check_template(value: object, errors: _Errors) -> str | None:
    if value is None:
        return None
    name = _check_string("template", value, errors)
    if name is None or not _check_line("template", name, errors):
        return None
    if not name.strip():
        errors.add("template", ErrorCode.INVALID_VALUE, "the template name is empty")
        return None
    return name


def _check_template_data(value: object, errors: _Errors) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.add(
            "template_data",
            ErrorCode.INVALID_TYPE,
            f"expected an object of template variables, got {_describe(value)}",
        )
        return {}
    return dict(value)


def _check_subject(
    value: object, has_template: bool, limits: Limits, errors: _Errors
) -> str | None:
    if value is None:
        if not has_template:
            errors.add(
                "subject",
                ErrorCode.MISSING_FIELD,
                "a subject is required unless a template supplies it",
            )
        return None

    subject = _check_string("subject", value, errors)
    if subject is None or not _check_line("subject", subject, errors):
        return None
    if not subject.strip() and not has_template:
        errors.add(
            "subject", ErrorCode.MISSING_FIELD, "the subject is empty; write one"
        )
        return None
    if not _check_length("subject", subject, limits.max_subject_length, errors):
        return None
    return subject


def _check_headers(
    value: object, limits: Limits, errors: _Errors
) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """Return the extra headers in request order and the idempotency key."""
    if value is None:
        return (), None
    if not isinstance(value, Mapping):
        errors.add(
            "headers",
            ErrorCode.INVALID_TYPE,
            f"expected an object of header names to values, got {_describe(value)}",
        )
        return (), None

    headers: list[tuple[str, str]] = []
    idempotency_key: str | None = None
    seen: set[str] = set()
    for name, header_value in value.items():
        field = f"headers.{name}"
        if not _check_header_name(field, str(name), seen, errors):
            continue
        if str(name).lower() == IDEMPOTENCY_KEY_HEADER:
            idempotency_key = _check_idempotency_key(field, header_value, errors)
            continue
        checked = _check_header_value(field, header_value, limits, errors)
        if checked is not None and str(name).lower() == "reply-to":
            checked = _check_reply_to(field, checked, errors)
        if checked is not None:
            headers.append((str(name), checked))

    count = len(seen - {IDEMPOTENCY_KEY_HEADER})
    if count > limits.max_headers:
        errors.add(
            "headers",
            ErrorCode.TOO_MANY,
            f"{count} headers were given; the maximum is {limits.max_headers}",
        )
    return tuple(headers), idempotency_key


def _check_header_name(field: str, name: str, seen: set[str], errors: _Errors) -> bool:
    """Check a header name, recording it in ``seen`` (lowercase) when valid."""
    if not _check_line(field, name, errors):
        return False
    if not _HEADER_NAME.fullmatch(name):
        errors.add(
            field,
            ErrorCode.INVALID_HEADER_NAME,
            f"the header name {quote_value(name)} is invalid; names are printable "
            "ASCII without spaces or ':'",
        )
        return False
    if not _check_length(field, name, _MAX_HEADER_NAME_LENGTH, errors):
        return False

    lowered = name.lower()
    if lowered in RESERVED_HEADERS or lowered.startswith(_RESERVED_PREFIXES):
        errors.add(
            field,
            ErrorCode.RESERVED_HEADER,
            f"the header {name!r} is reserved and can't be set in 'headers'; "
            "Sendarix writes the addresses, subject, date and MIME structure "
            "from the request fields",
        )
        return False
    if lowered in seen:
        errors.add(
            field,
            ErrorCode.DUPLICATE,
            f"the header {name!r} is given twice (names are case-insensitive)",
        )
        return False
    seen.add(lowered)
    return True


def _check_reply_to(field: str, value: str, errors: _Errors) -> str | None:
    try:
        parse_address(value)
    except AddressError as exc:
        errors.add(field, exc.code, f"Reply-To must be one address: {exc}")
        return None
    return value


def _check_header_value(
    field: str, value: object, limits: Limits, errors: _Errors
) -> str | None:
    text = _check_string(field, value, errors)
    if text is None or not _check_line(field, text, errors):
        return None
    if not _check_length(field, text, limits.max_header_value_length, errors):
        return None
    return text


def validate_idempotency_key(value: str, *, field: str = "Idempotency-Key") -> str:
    """Return ``value`` if it is a valid idempotency key; raise ValidationError."""
    errors = _Errors()
    key = _check_idempotency_key(field, value, errors)
    if key is None:
        raise ValidationError(errors.items)
    return key


def _check_idempotency_key(field: str, value: object, errors: _Errors) -> str | None:
    key = _check_string(field, value, errors)
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        errors.add(
            field,
            ErrorCode.INVALID_IDEMPOTENCY_KEY,
            f"{quote_value(key)} is not a valid idempotency key; expected 1 to 255 "
            "printable ASCII characters without spaces, such as a UUID",
        )
        return None
    return key


def _check_priority(value: object, errors: _Errors) -> Priority:
    if value is None:
        return Priority.NORMAL
    text = _check_string("priority", value, errors)
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
    body: Mapping[str, Any], now: datetime, limits: Limits, errors: _Errors
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


def _check_time(field: str, value: object, errors: _Errors) -> datetime | None:
    """Parse an ISO 8601 date and time with a timezone into UTC."""
    if value is None:
        return None
    text = _check_string(field, value, errors)
    if text is None:
        return None

    expected = "expected an ISO 8601 date and time such as '2026-04-19T14:30:00Z'"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        errors.add(
            field, ErrorCode.INVALID_DATETIME, f"{expected}, got {_describe(text)}"
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


def _check_attachments(
    value: object, limits: Limits, errors: _Errors
) -> tuple[Attachment, ...]:
    items = _check_list("attachments", value, limits.max_attachments, errors)
    attachments: list[Attachment] = []
    content_ids: set[str] = set()
    for index, item in enumerate(items):
        attachment = _check_attachment(f"attachments.{index}", item, limits, errors)
        if attachment is None or attachment.content_id is None:
            pass
        elif attachment.content_id in content_ids:
            errors.add(
                f"attachments.{index}.content_id",
                ErrorCode.DUPLICATE,
                f"the content_id {attachment.content_id!r} is used by an earlier "
                "attachment; each inline part needs its own",
            )
        else:
            content_ids.add(attachment.content_id)
        if attachment is not None:
            attachments.append(attachment)
    return tuple(attachments)


def _check_list(field: str, value: object, maximum: int, errors: _Errors) -> list[Any]:
    """Return the items of a list of at most ``maximum``, or none on an error.

    A missing list (null) has no items.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(
            field,
            ErrorCode.INVALID_TYPE,
            f"expected a list of {field}, got {_describe(value)}",
        )
        return []
    if len(value) > maximum:
        errors.add(
            field,
            ErrorCode.TOO_MANY,
            f"{len(value)} {field} were given; the maximum is {maximum}",
        )
        return []
    return value


def _check_attachment(
    prefix: str, item: object, limits: Limits, errors: _Errors
) -> Attachment | None:
    if not isinstance(item, Mapping):
        errors.add(
            prefix,
            ErrorCode.INVALID_TYPE,
            "expected an object with filename, content_type and content, got "
            f"{_describe(item)}",
        )
        return None
    for key in item:
        if key not in _ATTACHMENT_FIELDS:
            errors.add(
                f"{prefix}.{key}",
                ErrorCode.UNKNOWN_FIELD,
                f"unknown attachment field {str(key)!r}; expected "
                f"{', '.join(sorted(_ATTACHMENT_FIELDS))}",
            )

    filename = _check_filename(
        f"{prefix}.filename", item.get("filename"), limits, errors
    )
    content_type = _check_content_type(
        f"{prefix}.content_type", item.get("content_type"), errors
    )
    content = _check_base64(
        f"{prefix}.content", item.get("content"), limits.max_attachment_bytes, errors
    )
    content_id = _check_content_id(
        f"{prefix}.content_id", item.get("content_id"), errors
    )
    inline = _check_inline(prefix, item, content_id, errors)

    if filename is None or content_type is None or content is None or inline is None:
        return None
    return Attachment(filename, content_type, content, content_id, inline)


def _check_required_string(field: str, value: object, errors: _Errors) -> str | None:
    if value is None:
        errors.add(field, ErrorCode.MISSING_FIELD, "this field is required")
        return None
    return _check_string(field, value, errors)


def _check_filename(
    field: str, value: object, limits: Limits, errors: _Errors
) -> str | None:
    filename = _check_required_string(field, value, errors)
    if filename is None or not _check_line(field, filename, errors):
        return None
    if not filename.strip() or "/" in filename or "\\" in filename:
        errors.add(
            field,
            ErrorCode.INVALID_FILENAME,
            f"{quote_value(filename)} is not a file name; give a name such as "
            "'invoice.pdf', without directories",
        )
        return None
    if not _check_length(field, filename, limits.max_filename_length, errors):
        return None
    return filename


def _check_content_type(field: str, value: object, errors: _Errors) -> str | None:
    content_type = _check_required_string(field, value, errors)
    if content_type is None:
        return None
    lowered = content_type.lower()
    if not _CONTENT_TYPE.fullmatch(lowered):
        errors.add(
            field,
            ErrorCode.INVALID_CONTENT_TYPE,
            f"expected a media type 'type/subtype' such as 'application/pdf', "
            f"without parameters, got {quote_value(content_type)}",
        )
        return None
    return lowered


def _check_base64(
    field: str, value: object, max_bytes: int, errors: _Errors
) -> bytes | None:
    """Decode standard base64, tolerating line breaks and missing padding."""
    encoded = _check_required_string(field, value, errors)
    if encoded is None:
        return None
    compact = "".join(encoded.split())
    compact += "=" * (-len(compact) % 4)

    size = len(compact) // 4 * 3 - compact[-2:].count("=")
    if size > max_bytes:
        errors.add(
            field,
            ErrorCode.TOO_LARGE,
            f"the attachment is {size} bytes long; the maximum is {max_bytes}",
        )
        return None

    try:
        return binascii.a2b_base64(compact.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        hint = ""
        if "-" in compact or "_" in compact:
            hint = "; use the standard alphabet with '+' and '/', not the URL-safe one"
        errors.add(
            field,
            ErrorCode.INVALID_BASE64,
            f"the content is not valid base64{hint}",
        )
        return None


def _check_content_id(field: str, value: object, errors: _Errors) -> str | None:
    if value is None:
        return None
    content_id = _check_string(field, value, errors)
    if content_id is None:
        return None
    if not _CONTENT_ID.fullmatch(content_id):
        errors.add(
            field,
            ErrorCode.INVALID_CONTENT_ID,
            f"{quote_value(content_id)} is not a valid content_id; use 1 to 250 "
            "letters, digits and !#$%&'*+/=?^_`{|}~.@- without angle brackets, "
            "such as 'logo@acme'",
        )
        return None
    return content_id


def _check_inline(
    prefix: str, item: Mapping[str, Any], content_id: str | None, errors: _Errors
) -> bool | None:
    inline = item.get("inline")
    if inline is None:
        return False
    if not isinstance(inline, bool):
        errors.add(
            f"{prefix}.inline",
            ErrorCode.INVALID_TYPE,
            f"expected true or false, got {_describe(inline)}",
        )
        return None
    if inline and content_id is None and item.get("content_id") is None:
        errors.add(
            f"{prefix}.content_id",
            ErrorCode.MISSING_CONTENT_ID,
            "an inline attachment needs a content_id for the HTML to refer to "
            "as 'cid:…'",
        )
        return None
    return inline


def _check_metadata(value: object, limits: Limits, errors: _Errors) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.add(
            "metadata",
            ErrorCode.INVALID_TYPE,
            f"expected an object of strings, got {_describe(value)}",
        )
        return {}
    if len(value) > limits.max_metadata_keys:
        errors.add(
            "metadata",
            ErrorCode.TOO_MANY,
            f"{len(value)} keys were given; the maximum is {limits.max_metadata_keys}",
        )
        return {}

    metadata: dict[str, str] = {}
    for key, item in value.items():
        field = f"metadata.{key}"
        name = str(key)
        if not name:
            errors.add(field, ErrorCode.INVALID_VALUE, "metadata keys can't be empty")
            continue
        text = _check_metadata_value(field, item, limits, errors)
        valid_key = _check_metadata_key(field, name, limits, errors)
        if text is not None and valid_key:
            metadata[name] = text
    return metadata


def _check_metadata_key(field: str, key: str, limits: Limits, errors: _Errors) -> bool:
    if find_header_injection(key) or find_control_character(key):
        errors.add(
            field,
            ErrorCode.INVALID_CHARACTER,
            f"the metadata key {quote_value(key)} contains a control character",
        )
        return False
    return _check_length(field, key, limits.max_metadata_key_length, errors)


def _check_metadata_value(
    field: str, value: object, limits: Limits, errors: _Errors
) -> str | None:
    if not isinstance(value, str):
        errors.add(
            field,
            ErrorCode.INVALID_TYPE,
            f"expected a string, got {_describe(value)}; send numbers and other "
            "values as strings",
        )
        return None
    if find_control_character(value):
        errors.add(
            field,
            ErrorCode.INVALID_CHARACTER,
            f"{quote_value(value)} contains a control character",
        )
        return None
    if not _check_length(field, value, limits.max_metadata_value_length, errors):
        return None
    return value


def _check_tags(value: object, limits: Limits, errors: _Errors) -> tuple[str, ...]:
    tags: list[str] = []
    for index, item in enumerate(_check_list("tags", value, limits.max_tags, errors)):
        field = f"tags.{index}"
        tag = _check_string(field, item, errors)
        if tag is None or not _check_length(field, tag, limits.max_tag_length, errors):
            continue
        if not _TAG.fullmatch(tag):
            errors.add(
                field,
                ErrorCode.INVALID_TAG,
                f"{quote_value(tag)} is not a valid tag; use letters, digits "
                "and _ . : -",
            )
        elif tag in tags:
            errors.add(field, ErrorCode.DUPLICATE, f"the tag {tag!r} is given twice")
        else:
            tags.append(tag)
    return tuple(tags)


def _check_list_unsubscribe(
    body: Mapping[str, Any], headers: Sequence[tuple[str, str]], errors: _Errors
) -> bool:
    value = body.get("list_unsubscribe")
    if value is None:
        return False
    if not isinstance(value, bool):
        errors.add(
            "list_unsubscribe",
            ErrorCode.INVALID_TYPE,
            f"expected true or false, got {_describe(value)}",
        )
        return False
    own = [name for name, _ in headers if name.lower().startswith("list-unsubscribe")]
    if value and own:
        errors.add(
            "list_unsubscribe",
            ErrorCode.CONFLICTING_HEADER,
            f"the request sets {own[0]!r} in 'headers' and asks for Sendarix's "
            "unsubscribe link; use one or the other",
        )
        return False
    return value
