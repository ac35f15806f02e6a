"""DKIM "relaxed" canonicalization of header fields and bodies (RFC 6376).

Signer and verifier must turn the message into identical bytes, so these
functions follow RFC 6376 section 3.4.2 (headers) and 3.4.4 (body) step by
step. They work on bytes because a signature covers octets, not text.
"""

from __future__ import annotations

import re

__all__ = ["relaxed_body", "relaxed_header", "split_message"]

_WSP_RUN = re.compile(rb"[ \t]+")
_FOLD = re.compile(rb"\r\n(?=[ \t])")
_SPACE_BEFORE_CRLF = re.compile(rb" \r\n")
_TRAILING_CRLFS = re.compile(rb"(?:\r\n)+\Z")


def split_message(message: bytes) -> tuple[list[bytes], bytes]:
    """Split a CRLF message into its header fields and its body.

    Each field keeps its folding (inner CRLFs) but not its final CRLF. A
    message without an empty line has no body.
    """
    if message.startswith(b"\r\n"):
        return [], message[2:]
    end = message.find(b"\r\n\r\n")
    if end < 0:
        head, body = message.removesuffix(b"\r\n"), b""
    else:
        head, body = message[:end], message[end + 4 :]

    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields, body


def relaxed_header(field: bytes) -> bytes:
    """Return one field as ``name:value``, without CRLF (section 3.4.2).

    The name is lowercased, the value unfolded, runs of spaces and tabs
    become one space, and whitespace around the value is removed.
    """
    name, _, value = field.partition(b":")
    value = _FOLD.sub(b"", value)
    value = _WSP_RUN.sub(b" ", value).strip(b" \t")
    return name.rstrip(b" \t").lower() + b":" + value


def relaxed_body(body: bytes) -> bytes:
    """Return the body in relaxed form (section 3.4.4).

    Runs of spaces and tabs become one space, whitespace at the end of each
    line goes, and empty lines at the end go. A non-empty result ends with
    CRLF; an empty body stays empty.
    """
    if not body:
        return b""
    body = _WSP_RUN.sub(b" ", body)
    body = _SPACE_BEFORE_CRLF.sub(b"\r\n", body)
    # Only an unterminated last line can still end with a space.
    body = body.rstrip(b" ")
    body = _TRAILING_CRLFS.sub(b"", body)
    return body + b"\r\n" if body else b""
