"""Limits on a request's headers and JSON structure, checked before any work.

The HTTP server of ``sendarix serve`` limits a request head that arrives
in pieces to ``MAX_HEADER_BLOCK_BYTES`` (``sendarix_http.protocol``): once
it is past the limit and still incomplete, the server responds with the
same ``422`` as here and closes the connection, because the request never
reaches the application. The count and size of single fields, and the size
of a head that arrived whole (request line and fields), are checked here
and rejected with ``422``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import orjson

from sendarix_core.errors import FieldError, ValidationError

__all__ = [
    "MAX_HEADER_BLOCK_BYTES",
    "MAX_HEADER_FIELDS",
    "MAX_HEADER_FIELD_BYTES",
    "MAX_JSON_DEPTH",
    "check_json_depth",
    "check_request_headers",
    "contains_escape",
    "deep_json_path",
    "find_repeated_key",
    "request_line_bytes",
]

MAX_HEADER_BLOCK_BYTES = 32 * 1024
MAX_HEADER_FIELDS = 100
MAX_HEADER_FIELD_BYTES = 8 * 1024
# Deep enough for any message body; a deeper document is an attack on the
# parser or on code that walks it recursively.
MAX_JSON_DEPTH = 32

# The tokens of JSON text that give its structure: strings (which may hold
# brackets) and punctuation. Numbers and literals are skipped.
_STRUCTURE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')


def request_line_bytes(method: str, raw_path: bytes, query_string: bytes) -> int:
    """Return the size of an HTTP/1.1 request line for an origin-form target.

    A request with an absolute-form target has a longer line, so for it the
    result is a lower bound.
    """
    size = len(method) + 1 + len(raw_path) + len(b" HTTP/1.1\r\n")
    if query_string:
        size += 1 + len(query_string)
    return size


def check_request_headers(
    headers: Iterable[tuple[bytes, bytes]], request_line: int = 0
) -> None:
    """Raise ``ValidationError`` for too many or too large header fields.

    ``request_line`` is the size of the request line in bytes, which counts
    towards ``MAX_HEADER_BLOCK_BYTES`` with the fields.
    """
    fields = list(headers)
    if len(fields) > MAX_HEADER_FIELDS:
        message = (
            f"the request has {len(fields)} header fields; the maximum is "
            f"{MAX_HEADER_FIELDS}"
        )
        raise ValidationError([FieldError("http_headers", "too_many", message)])

    total = request_line
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
        # The HTTP server limits only a head that arrives in pieces; one
        # that arrives whole in a single read reaches the application.
        message = (
            f"the request line and header fields are {total} bytes in all; "
            f"the maximum is {MAX_HEADER_BLOCK_BYTES}"
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


def deep_json_path(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> str:
    """Return the path of the first array or object deeper than ``max_depth``.

    The path is written as ``check_json_depth`` writes it; where several
    branches nest too deep, this names the first in the text. This reads the
    text rather than parsed values, for documents too deep for the parser;
    it returns "" when nothing nests that deep.
    """
    # One entry per open container: [is_object, key or index of the child].
    open_containers: list[list[Any]] = []
    last_string = b'""'
    for match in _STRUCTURE.finditer(raw):
        token = match.group()
        if token[0] == ord('"'):
            last_string = token
        elif token == b":" and open_containers:
            open_containers[-1][1] = _key_text(last_string)
        elif token in (b"{", b"["):
            if len(open_containers) == max_depth:
                return ".".join(str(entry[1]) for entry in open_containers)
            open_containers.append([token == b"{", "" if token == b"{" else 0])
        elif token in (b"}", b"]"):
            if open_containers:
                open_containers.pop()
        elif token == b"," and open_containers and not open_containers[-1][0]:
            open_containers[-1][1] += 1
    return ""


def _key_text(token: bytes) -> str:
    try:
        return str(json.loads(token))
    except ValueError:
        return token[1:-1].decode("utf-8", "replace")


def find_repeated_key(raw: bytes, document: Any) -> tuple[str, str] | None:
    """Return the path of the first object with a repeated key, and the key.

    ``document`` is ``raw`` as a parser that keeps the last value of a
    repeated key (orjson 3) read it. The result is None when no object in
    ``raw`` repeats a key.
    """
    if not _may_repeat_key(raw, document):
        return None
    try:
        parsed = json.loads(raw, object_pairs_hook=_KeyedObject.of)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[Any, str]] = [(parsed, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _KeyedObject):
            if value.repeated is not None:
                return path, value.repeated
            children: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, list):
            children = enumerate(value)
        else:
            continue
        for key, child in reversed(list(children)):
            stack.append((child, f"{path}.{key}" if path else str(key)))
    return None


def _may_repeat_key(raw: bytes, document: Any) -> bool:
    """Return False when the colons of ``raw`` prove that no key repeats.

    Each key in JSON text is followed by one colon, and any other colon is
    inside a string. orjson writes the parsed document back with a colon
    for each key it kept and escapes no colon, so unless ``raw`` escapes
    one (\\u003a), both texts have as many colons only when no key with
    its value was dropped. Writing the document back costs less than
    walking it in Python.
    """
    if contains_escape(raw, (b"\\u003a", b"\\u003A")):
        return True
    try:
        written = orjson.dumps(document)
    except orjson.JSONEncodeError:
        return True
    return raw.count(b":") != written.count(b":")


# Past this many escapes, one search of the rest costs less than a step
# of Python per escape.
_MAX_ESCAPES_STEPPED = 64


def contains_escape(raw: bytes, escapes: tuple[bytes, ...]) -> bool:
    """Return whether the JSON text ``raw`` may contain one of ``escapes``.

    Each escape starts with a backslash. Going from one backslash to the
    next skips an escaped backslash, so ``\\u0000`` (a backslash and the
    text u0000) is not taken for ``\u0000``. Past ``_MAX_ESCAPES_STEPPED``
    backslashes the rest is searched as plain bytes, which may give a false
    True, so callers use the result only to skip work. CPython finds one
    byte with memchr, far faster than it finds a longer string.
    """
    position = raw.find(b"\\")
    for _ in range(_MAX_ESCAPES_STEPPED):
        if position < 0:
            return False
        if raw.startswith(escapes, position):
            return True
        position = raw.find(b"\\", position + 2)
    if position < 0:
        return False
    return any(escape in raw[position:] for escape in escapes)


class _KeyedObject(dict[str, Any]):
    """A JSON object that records the first key its text repeats."""

    repeated: str | None = None

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> _KeyedObject:
        keyed = cls(pairs)
        if len(keyed) < len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    keyed.repeated = key
                    break
                seen.add(key)
        return keyed
