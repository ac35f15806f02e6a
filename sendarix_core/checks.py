"""Error codes, limits and the checks that every request field shares."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any

import attrs

from sendarix_core.addresses import (
    find_control_character,
    find_header_injection,
    quote_value,
)
from sendarix_core.errors import FieldError, ValidationError

__all__ = [
    "DEFAULT_LIMITS",
    "ErrorCode",
    "Errors",
    "Limits",
    "check_length",
    "check_line",
    "check_list",
    "check_no_nul",
    "check_required_string",
    "check_string",
    "describe",
    "json_excerpt",
    "reject_unknown_fields",
]


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
    # The default is 50 MB (decimal), just under the 50 MiB request limit of
    # the HTTP layer. Base64 makes the request limit the tighter one, so only
    # that limit applies unless an operator lowers this one.
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


@attrs.define
class Errors:
    items: list[FieldError] = attrs.Factory(list)

    def add(self, field: str, code: str, message: str) -> None:
        self.items.append(FieldError(field, code, message))


def reject_unknown_fields(body: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise ``ValidationError`` naming the keys of ``body`` not in ``known``.

    At most 20 are named, in body order, so a flood of keys stays cheap.
    """
    expected = sorted(known)
    unknown = [str(key) for key in body if key not in expected]
    if unknown:
        listed = ", ".join(expected)
        raise ValidationError(
            [
                FieldError(
                    key, "unknown_field", f"unknown field {key!r}; expected {listed}"
                )
                for key in unknown[:20]
            ]
        )


def describe(value: object) -> str:
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


def json_excerpt(value: object, limit: int = 60) -> str:
    """Render a request value as JSON for an error message.

    Strings keep the quotes of ``quote_value``. Other values are written as
    JSON (true, null, ["pending"]), cut to ``limit`` characters with "…".
    """
    if isinstance(value, str):
        return quote_value(value, limit)
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def check_string(field: str, value: object, errors: Errors) -> str | None:
    """Return ``value`` if it is a string, else record an error."""
    if isinstance(value, str):
        return value
    errors.add(
        field, ErrorCode.INVALID_TYPE, f"expected a string, got {describe(value)}"
    )
    return None


def name_character(character: str) -> str:
    """Return the name of a rejected character for an error message, such as
    "the line separator U+2028"."""
    code_point = ord(character)
    if character == "\u2028":
        kind = "line separator"
    elif character == "\u2029":
        kind = "paragraph separator"
    elif 0xD800 <= code_point <= 0xDFFF:
        kind = "lone surrogate"
    else:
        kind = "control character"
    return f"the {kind} U+{code_point:04X}"


def check_line(field: str, value: str, errors: Errors) -> bool:
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
            f"{quote_value(value)} contains {name_character(control)}",
        )
        return False
    return True


def check_no_nul(field: str, value: object, errors: Errors) -> bool:
    """Return whether no string in a JSON value contains U+0000.

    Object keys count as strings. Records an ``invalid_character`` error for
    each of the first 20 such strings, with its path below ``field``.
    PostgreSQL can't store U+0000 in text, and no field of an email may
    contain it.
    """
    found = 0
    stack: list[tuple[object, str]] = [(value, field)]
    while stack and found < _MAX_NUL_ERRORS:
        item, path = stack.pop()
        if isinstance(item, str):
            if "\0" in item:
                errors.add(path, ErrorCode.INVALID_CHARACTER, _nul_message(item))
                found += 1
            continue
        if isinstance(item, Mapping):
            children: Iterable[tuple[object, object]] = item.items()
        elif isinstance(item, list):
            children = enumerate(item)
        else:
            continue
        for key, child in reversed(list(children)):
            child_path = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and "\0" in key:
                message = f"the key {_nul_message(key)}"
                errors.add(child_path, ErrorCode.INVALID_CHARACTER, message)
                found += 1
            stack.append((child, child_path))
    return found == 0


_MAX_NUL_ERRORS = 20


def _nul_message(text: str) -> str:
    return (
        f"{quote_value(text)} contains the NUL character U+0000 at index "
        f"{text.index(chr(0))}; remove it"
    )


def check_length(field: str, value: str, maximum: int, errors: Errors) -> bool:
    if len(value) <= maximum:
        return True
    errors.add(
        field,
        ErrorCode.TOO_LONG,
        f"{quote_value(value)} is {len(value)} characters long; "
        f"the maximum is {maximum}",
    )
    return False


def check_list(field: str, value: object, maximum: int, errors: Errors) -> list[Any]:
    """Return the items of a list of at most ``maximum``, or none on an error.

    A missing list (null) has no items.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(
            field,
            ErrorCode.INVALID_TYPE,
            f"expected a list of {field}, got {describe(value)}",
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


def check_required_string(field: str, value: object, errors: Errors) -> str | None:
    if value is None:
        errors.add(field, ErrorCode.MISSING_FIELD, "this field is required")
        return None
    return check_string(field, value, errors)
