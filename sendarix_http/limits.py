"""Limits on a request's headers and JSON structure, checked before any work.

The HTTP server limits the header block as a whole: ``sendarix serve`` sets
h11's ``max_incomplete_event_size`` to ``MAX_HEADER_BLOCK_BYTES``. A larger
block that arrives in pieces gets uvicorn's plain-text ``400`` and the
connection is closed, because the request never reaches the application.
The count and size of single fields, and the size of a block that arrived
whole, are checked here and rejected with ``422``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sendarix_core.errors import FieldError, ValidationError

__all__ = [
    "MAX_HEADER_BLOCK_BYTES",
    "MAX_HEADER_FIELDS",
    "MAX_HEADER_FIELD_BYTES",
    "MAX_JSON_DEPTH",
    "check_json_depth",
    "check_request_headers",
]

MAX_HEADER_BLOCK_BYTES = 32 * 1024
MAX_HEADER_FIELDS = 100
MAX_HEADER_FIELD_BYTES = 8 * 1024
# Deep enough for any message body; a deeper document is an attack on the
# parser or on code that walks it recursively.
MAX_JSON_DEPTH = 32


def check_request_headers(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Raise ``ValidationError`` for too many or too large header fields."""
    fields = list(headers)
    if len(fields) > MAX_HEADER_FIELDS:
        message = (
            f"the request has {len(fields)} header fields; the maximum is "
            f"{MAX_HEADER_FIELDS}"
        )
        raise ValidationError([FieldError("http_headers", "too_many", message)])

    total = 0
    for name, value in fields:
        size = len(name) + len(value)
        if size > MAX_HEADER_FIELD_BYTES:
            label = name.decode("latin-1")
            message = (
                f"the header field {label!r} is {size} bytes long; the maximum "
                f"is {MAX_HEADER_FIELD_BYTES}"
            )
            raise ValidationError(
                [FieldError(f"http_headers.{label}", "too_long", message)]
            )
        # Each field's line also has ": " and CRLF.
        total += size + 4
    if total > MAX_HEADER_BLOCK_BYTES:
        # h11 limits only a block that arrives in pieces; one that arrives
        # whole in a single read reaches the application.
        message = (
            f"the header fields are {total} bytes in all; the maximum is "
            f"{MAX_HEADER_BLOCK_BYTES}"
        )
        raise ValidationError([FieldError("http_headers", "too_long", message)])


def check_json_depth(document: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise ``ValidationError`` when arrays and objects nest past ``max_depth``.

    The top-level object is depth 1. The walk uses a list as its stack, so a
    deep document can't exhaust Python's recursion limit here.
    """
    stack: list[tuple[Any, int, str]] = [(document, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict):
            children: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, list):
            children = enumerate(value)
        else:
            continue

        if depth > max_depth:
            message = (
                f"the JSON nests more than {max_depth} arrays and objects deep; "
                "flatten the data"
            )
            raise ValidationError([FieldError(path, "too_deep", message)])
        for key, child in children:
            stack.append((child, depth + 1, f"{path}.{key}" if path else str(key)))
