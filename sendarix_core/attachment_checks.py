"""Checks of the attachments of a ``POST /v1/messages`` body."""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from typing import Any

from sendarix_core.addresses import quote_value
from sendarix_core.checks import (
    ErrorCode,
    Errors,
    Limits,
    check_length,
    check_line,
    check_list,
    check_required_string,
    check_string,
    describe,
)
from sendarix_core.model import Attachment

_ATTACHMENT_FIELDS = frozenset(
    {"filename", "content_type", "content", "content_id", "inline"}
)

# type "/" subtype with the restricted-name characters of RFC 6838.
_CONTENT_TYPE = re.compile(
    r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
)

__all__ = [
    "check_attachments",
]

# A Content-ID without its angle brackets: a msg-id of RFC 5322 section 3.6.4
# (RFC 2392), two dot-atoms joined by "@", as in ``logo@acme.example``.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_CONTENT_ID = re.compile(rf"{_DOT_ATOM}@{_DOT_ATOM}")
_MAX_CONTENT_ID_LENGTH = 250

# Unicode bidirectional embedding, override and isolate controls. In a file
# name they can reorder what a mail client shows, so "invoice\u202efdp.exe"
# reads as "invoiceexe.pdf".
_BIDI_CONTROL = re.compile("[\u202a-\u202e\u2066-\u2069]")


def check_attachments(
    value: object, limits: Limits, errors: Errors
) -> tuple[Attachment, ...]:
    items = check_list("attachments", value, limits.max_attachments, errors)
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


def _check_attachment(
    prefix: str, item: object, limits: Limits, errors: Errors
) -> Attachment | None:
    if not isinstance(item, Mapping):
        errors.add(
            prefix,
            ErrorCode.INVALID_TYPE,
            "expected an object with filename, content_type and content, got "
            f"{describe(item)}",
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


def _check_filename(
    field: str, value: object, limits: Limits, errors: Errors
) -> str | None:
    filename = check_required_string(field, value, errors)
    if filename is None or not check_line(field, filename, errors):
        return None
    if not filename.strip() or "/" in filename or "\\" in filename:
        errors.add(
            field,
            ErrorCode.INVALID_FILENAME,
            f"{quote_value(filename)} is not a file name; give a name such as "
            "'invoice.pdf', without directories",
        )
        return None
    bidi = _BIDI_CONTROL.search(filename)
    if bidi is not None:
        errors.add(
            field,
            ErrorCode.INVALID_CHARACTER,
            f"{quote_value(filename)} contains the bidirectional control "
            f"U+{ord(bidi.group()):04X} at index {bidi.start()}, which can make "
            "a mail client show another file name; remove it",
        )
        return None
    if not check_length(field, filename, limits.max_filename_length, errors):
        return None
    return filename


def _check_content_type(field: str, value: object, errors: Errors) -> str | None:
    content_type = check_required_string(field, value, errors)
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
    field: str, value: object, max_bytes: int, errors: Errors
) -> bytes | None:
    """Decode standard base64, tolerating line breaks and missing padding."""
    encoded = check_required_string(field, value, errors)
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


def _check_content_id(field: str, value: object, errors: Errors) -> str | None:
    if value is None:
        return None
    content_id = check_string(field, value, errors)
    if content_id is None:
        return None
    if len(content_id) > _MAX_CONTENT_ID_LENGTH or not _CONTENT_ID.fullmatch(
        content_id
    ):
        errors.add(
            field,
            ErrorCode.INVALID_CONTENT_ID,
            f"{quote_value(content_id)} is not a valid content_id; expected the "
            "form local@domain, such as 'logo@acme.example', without angle "
            f"brackets, at most {_MAX_CONTENT_ID_LENGTH} characters, each side "
            "letters, digits and !#$%&'*+/=?^_`{|}~- in parts joined by single dots",
        )
        return None
    return content_id


def _check_inline(
    prefix: str, item: Mapping[str, Any], content_id: str | None, errors: Errors
) -> bool | None:
    inline = item.get("inline")
    if inline is None:
        return False
    if not isinstance(inline, bool):
        errors.add(
            f"{prefix}.inline",
            ErrorCode.INVALID_TYPE,
            f"expected true or false, got {describe(inline)}",
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
