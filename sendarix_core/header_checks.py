"""Checks of headers, the idempotency key, metadata, tags and List-Unsubscribe."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sendarix_core.addresses import (
    AddressError,
    find_control_character,
    find_header_injection,
    parse_address,
    quote_value,
)
from sendarix_core.checks import (
    ErrorCode,
    Errors,
    Limits,
    check_length,
    check_line,
    check_list,
    check_no_nul,
    check_string,
    describe,
    name_character,
)
from sendarix_core.errors import ValidationError
from sendarix_core.mime import STRUCTURED_HEADERS, longest_folded_line

IDEMPOTENCY_KEY_HEADER = "x-idempotency-key"

# Headers Sendarix writes itself, compared in lowercase. Every ``Content-*``
# header is reserved as well, because Sendarix builds the MIME structure.
RESERVED_HEADERS = frozenset(
    {
        "bcc",
        "dkim-signature",
        "received",
        # Trace and authentication results are added by receiving servers
        # (RFC 8601, RFC 7208 section 9.1). Set by a sender, they could make
        # a careless receiver show a check that never ran.
        "authentication-results",
        "received-spf",
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

__all__ = [
    "IDEMPOTENCY_KEY_HEADER",
    "IDEMPOTENCY_KEY_PATTERN",
    "RESERVED_HEADERS",
    "TAG_PATTERN",
    "check_headers",
    "check_list_unsubscribe",
    "check_metadata",
    "check_metadata_value",
    "check_tags",
    "validate_idempotency_key",
]

# Resent-* fields describe a re-sending that Sendarix never performs.
# ARC-* fields are added by forwarding servers (RFC 8617), never by the sender.
# X-Sendarix-* are the relay's control headers: sent on, they would set the
# priority, tags or metadata of the message at a Sendarix relay downstream.
_RESERVED_PREFIXES = ("arc-", "content-", "resent-", "x-sendarix-")

# A field name is printable ASCII except the colon (RFC 5322 section 2.2).
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")

# A header name can't be folded, so it must fit on the 78-character line that
# RFC 5322 recommends, together with ": ".
_MAX_HEADER_NAME_LENGTH = 76

# RFC 5322 section 2.1.1: at most 998 octets a line before the CRLF.
_MAX_LINE_OCTETS = 998

_NON_ASCII = re.compile(r"[^\x00-\x7f]")

IDEMPOTENCY_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")

TAG_PATTERN = re.compile(r"[A-Za-z0-9_.:-]+")


def check_headers(
    value: object, limits: Limits, errors: Errors
) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """Return the extra headers in request order and the idempotency key."""
    if value is None:
        return (), None
    if not isinstance(value, Mapping):
        errors.add(
            "headers",
            ErrorCode.INVALID_TYPE,
            f"expected an object of header names to values, got {describe(value)}",
        )
        return (), None

    # One more than the maximum may be X-Idempotency-Key, which is not a
    # header of the message. Far more are refused before each is checked.
    if len(value) > limits.max_headers + 1:
        errors.add(
            "headers",
            ErrorCode.TOO_MANY,
            f"{len(value)} headers were given; the maximum is {limits.max_headers}",
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
        elif checked is not None and str(name).lower() in STRUCTURED_HEADERS:
            checked = _check_structured_value(field, str(name), checked, errors)
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


def _check_header_name(field: str, name: str, seen: set[str], errors: Errors) -> bool:
    """Check a header name, recording it in ``seen`` (lowercase) when valid."""
    if not check_line(field, name, errors):
        return False
    if not _HEADER_NAME.fullmatch(name):
        errors.add(
            field,
            ErrorCode.INVALID_HEADER_NAME,
            f"the header name {quote_value(name)} is invalid; names are printable "
            "ASCII without spaces or ':'",
        )
        return False
    if not check_length(field, name, _MAX_HEADER_NAME_LENGTH, errors):
        return False

    lowered = name.lower()
    if lowered in RESERVED_HEADERS or lowered.startswith(_RESERVED_PREFIXES):
        errors.add(
            field,
            ErrorCode.RESERVED_HEADER,
            f"the header {name!r} is reserved and can't be set in 'headers'; "
            "Sendarix writes the addresses, subject, date and MIME structure "
            "from the request fields, and takes priority, tags and metadata "
            "from fields of those names",
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


def _check_reply_to(field: str, value: str, errors: Errors) -> str | None:
    try:
        parse_address(value)
    except AddressError as exc:
        errors.add(field, exc.code, f"Reply-To must be one address: {exc}")
        return None
    return value


def _check_structured_value(
    field: str, name: str, value: str, errors: Errors
) -> str | None:
    """Check that the MIME builder can send a structured field unencoded."""
    non_ascii = _NON_ASCII.search(value)
    if non_ascii is not None:
        errors.add(
            field,
            ErrorCode.INVALID_CHARACTER,
            f"{quote_value(value)} contains the non-ASCII character "
            f"U+{ord(non_ascii.group()):04X}; {name} is a structured header, "
            "where RFC 2047 allows no encoded words, so write it in ASCII and "
            "percent-encode other characters in URLs (RFC 3986)",
        )
        return None

    longest = longest_folded_line(name, value)
    if longest > _MAX_LINE_OCTETS:
        errors.add(
            field,
            ErrorCode.TOO_LONG,
            f"{quote_value(value)} can't be folded into lines of at most "
            f"{_MAX_LINE_OCTETS} octets (RFC 5322): a structured header is "
            "folded only at spaces, and its longest part makes a line of "
            f"{longest} octets with '{name}: '; shorten that part or put "
            "spaces between the message ids or URLs",
        )
        return None
    return value


def _check_header_value(
    field: str, value: object, limits: Limits, errors: Errors
) -> str | None:
    text = check_string(field, value, errors)
    if text is None or not check_line(field, text, errors):
        return None
    if not check_length(field, text, limits.max_header_value_length, errors):
        return None
    return text


def validate_idempotency_key(value: str, *, field: str = "Idempotency-Key") -> str:
    """Return ``value`` if it is a valid idempotency key; raise ValidationError."""
    errors = Errors()
    key = _check_idempotency_key(field, value, errors)
    if key is None:
        raise ValidationError(errors.items)
    return key


def _check_idempotency_key(field: str, value: object, errors: Errors) -> str | None:
    key = check_string(field, value, errors)
    if key is None:
        return None
    if not IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
        errors.add(
            field,
            ErrorCode.INVALID_IDEMPOTENCY_KEY,
            f"{quote_value(key)} is not a valid idempotency key; expected 1 to 255 "
            "printable ASCII characters without spaces, such as a UUID",
        )
        return None
    return key


def check_metadata(value: object, limits: Limits, errors: Errors) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.add(
            "metadata",
            ErrorCode.INVALID_TYPE,
            f"expected an object of strings, got {describe(value)}",
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
        text = check_metadata_value(field, item, limits, errors)
        valid_key = _check_metadata_key(field, name, limits, errors)
        if text is not None and valid_key:
            metadata[name] = text
    return metadata


def _check_metadata_key(field: str, key: str, limits: Limits, errors: Errors) -> bool:
    rejected = find_header_injection(key) or find_control_character(key)
    if rejected is not None:
        errors.add(
            field,
            ErrorCode.INVALID_CHARACTER,
            f"the metadata key {quote_value(key)} contains {name_character(rejected)}",
        )
        return False
    return check_length(field, key, limits.max_metadata_key_length, errors)


def check_metadata_value(
    field: str, value: object, limits: Limits, errors: Errors
) -> str | None:
    if not isinstance(value, str):
        errors.add(
            field,
            ErrorCode.INVALID_TYPE,
            f"expected a string, got {describe(value)}; send numbers and other "
            "values as strings",
        )
        return None
    # Line breaks are allowed, as metadata never becomes a header line, but
    # NUL is not: PostgreSQL can't store it in text.
    if not check_no_nul(field, value, errors):
        return None
    rejected = find_control_character(value)
    if rejected is not None:
        errors.add(
            field,
            ErrorCode.INVALID_CHARACTER,
            f"{quote_value(value)} contains {name_character(rejected)}",
        )
        return None
    if not check_length(field, value, limits.max_metadata_value_length, errors):
        return None
    return value


def check_tags(value: object, limits: Limits, errors: Errors) -> tuple[str, ...]:
    tags: list[str] = []
    for index, item in enumerate(check_list("tags", value, limits.max_tags, errors)):
        field = f"tags.{index}"
        tag = check_string(field, item, errors)
        if tag is None or not check_length(field, tag, limits.max_tag_length, errors):
            continue
        if not TAG_PATTERN.fullmatch(tag):
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


def check_list_unsubscribe(
    body: Mapping[str, Any], headers: Sequence[tuple[str, str]], errors: Errors
) -> bool:
    value = body.get("list_unsubscribe")
    if value is None:
        return False
    if not isinstance(value, bool):
        errors.add(
            "list_unsubscribe",
            ErrorCode.INVALID_TYPE,
            f"expected true or false, got {describe(value)}",
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
