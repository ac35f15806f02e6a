"""The MIME builder: the bytes of a message as sent after SMTP ``DATA``.

The builder writes RFC 5322 headers and the RFC 2045-2046 MIME structure
directly with C-backed encoders (``binascii``, ``str.encode``) and avoids
``email.generator``, which is many times slower (benchmarks/mime_build.py
compares the two). Every line ends with CRLF and stays within
998 octets, and header lines are folded to 78 octets wherever whitespace or
encoded words allow it. Non-ASCII header text becomes RFC 2047 encoded words,
as does a display name whose quoted form can't be folded into such lines, and
non-ASCII filenames become RFC 2231 parameters. Local parts that are not ASCII stay
raw UTF-8 (RFC 6532), so such messages need the SMTPUTF8 extension.

Dot-stuffing is left to the SMTP client.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import attrs

from sendarix_core.addresses import parse_address
from sendarix_core.model import Address, Attachment, Message, MessageContent

__all__ = [
    "STRUCTURED_HEADERS",
    "build_message_bytes",
    "longest_folded_line",
    "make_message_id_header",
]

_MAX_LINE = 998

# Structured fields that the API accepts in ``headers``, in lowercase. They
# are the message ids of RFC 5322 section 3.6.4, the URLs of the list fields
# (RFC 2369, RFC 8058), the list id of RFC 2919, Archived-At (RFC 5064) and
# Auto-Submitted (RFC 3834). RFC 2047 section 5 allows encoded words only in
# unstructured text, comments and phrases, so these values are sent as
# ASCII and folded at spaces only. A List-Id description is a phrase, but
# the builder encodes a whole value or nothing, so it must be ASCII too.
STRUCTURED_HEADERS = frozenset(
    {
        "in-reply-to",
        "references",
        "list-archive",
        "list-help",
        "list-id",
        "list-owner",
        "list-post",
        "list-subscribe",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "archived-at",
        "auto-submitted",
    }
)

_FOLD_WIDTH = 78
_MAX_ENCODED_WORD = 75
# The shortest encoded word the builder writes: "=?utf-8?b?" and "?=" around
# the 8 base64 characters of one four-byte UTF-8 character, with some slack.
_MIN_ENCODED_WORD = 24
_BASE64_LINE = 76

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)

# Bytes that stand for themselves in a "Q" encoded word, in unstructured text
# and in a phrase alike (RFC 2047 section 5). A space becomes "_".
_Q_LITERAL = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/"
)


def _q_encoding(byte: int) -> str:
    if byte == 0x20:
        return "_"
    if byte in _Q_LITERAL:
        return chr(byte)
    return f"={byte:02X}"


_Q_BYTE = tuple(_q_encoding(byte) for byte in range(256))
_Q_SHORT_BYTES = bytes(sorted(_Q_LITERAL | {0x20}))
_ASCII_BYTES = bytes(range(128))
# Continuation bytes that follow a UTF-8 lead byte, by its high four bits.
_CONTINUATION_BYTES = (0,) * 12 + (1, 1, 2, 3)

# RFC 2231 attribute-char: any printable ASCII except space, "*", "'", "%"
# and the tspecials of RFC 2045.
_ATTRIBUTE_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~"
)
_PERCENT_BYTE = tuple(
    chr(byte) if byte in _ATTRIBUTE_CHARS else f"%{byte:02X}" for byte in range(256)
)

# A display name made of atoms (RFC 5322 atext) separated by single spaces
# goes out unquoted. A dot is not atext, so "John Q. Public" is quoted.
_ATOM_PHRASE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
)
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_FOLDED_VALUE = re.compile(r"[ -~\t]*(?:\r\n[ \t][ -~\t]*)*")
_MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTENT_ID = re.compile(r"[!-;=?-~]+")


@attrs.frozen
class _Part:
    """One MIME entity: its header lines (folded, without CRLF) and its body.

    The body is already transfer-encoded and ends with CRLF.
    """

    headers: tuple[str, ...]
    body: bytes


def make_message_id_header(message_id: str, sender_domain: str) -> str:
    """Return the Message-ID ``<message_id@sender_domain>``."""
    return f"<{message_id}@{sender_domain}>"


def _prepend_headers(headers: Sequence[tuple[str, str]], raw: bytes) -> bytes:
    if not headers:
        return raw
    lines = [_custom_header(name, value) for name, value in headers]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8") + raw


def build_message_bytes(
    message: Message,
    *,
    date: datetime,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """Build the RFC 5322 message for ``message``, ready for SMTP ``DATA``.

    The headers are From, To, Subject, Date, Message-ID and MIME-Version, then
    ``extra_headers`` and the caller's headers in their order, then the
    content headers. Those added headers are treated as unstructured, so a
    non-ASCII value becomes encoded words, except Reply-To and (where they
    fit) the fields of ``STRUCTURED_HEADERS``, and a value that arrives
    folded already (CRLF followed by a space or tab) is sent as it is.
    ``date`` must be timezone-aware and is written in UTC. Text bodies get
    CRLF line ends and a final line break. The output depends only on the
    arguments.

    A message submitted as finished bytes (``content.raw``, from the SMTP
    relay) is sent unchanged after ``extra_headers``, so re-encoding can't
    break a signature it already carries.

    Raises ``ValueError`` for a date without timezone and for values that
    can't go into a header: line breaks in a subject or display name, an
    invalid header name, media type or Content-ID, text that is not valid
    Unicode (lone surrogates).
    """
    content = message.content
    if content.raw is not None:
        return _prepend_headers(extra_headers, content.raw)
    boundary_prefix = _boundary_prefix(message.id)
    root = _build_root(content, boundary_prefix)

    message_id = message.message_id_header or make_message_id_header(
        message.id, message.sender.domain
    )
    _check_header_text("Message-ID", message_id)
    lines = [
        _address_header("From", message.sender),
        _address_header("To", message.recipient),
        _text_header("Subject", content.subject),
        f"Date: {_format_date(date)}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
    ]

    for name, value in (*extra_headers, *content.headers):
        lines.append(_custom_header(name, value))
    lines.extend(root.headers)
    lines.append("")
    lines.append("")

    return "\r\n".join(lines).encode("utf-8") + root.body


# -- Body structure -------------------------------------------------------


def _boundary_prefix(message_id: str) -> str:
    # Boundaries are "=_", a digest of the message id and a one-digit counter,
    # so the output is reproducible and no boundary is a prefix of another.
    # Quoted-printable writes "=" only before two hex digits or a line break,
    # and base64 uses "=" only as final padding and never "_", so no encoded
    # body can contain "=_". A text part that contains the prefix is never
    # sent as 7bit, see _fits_7bit.
    digest = hashlib.sha256(message_id.encode("utf-8")).hexdigest()
    return f"=_{digest[:28]}"


def _build_root(content: MessageContent, boundary_prefix: str) -> _Part:
    """Nest the parts: mixed(alternative(text, related(html, inline)), files)."""
    boundaries = iter([f"{boundary_prefix}.{index}" for index in range(3)])
    html_exists = content.html is not None
    files = [a for a in content.attachments if not (html_exists and _is_related(a))]
    body = _build_body(content, boundary_prefix, boundaries)

    if not files:
        return body or _text_part("", "plain", boundary_prefix)
    parts = [_attachment_part(a, boundary_prefix) for a in files]
    if body is not None:
        parts.insert(0, body)
    return _multipart("mixed", parts, next(boundaries))


def _build_body(
    content: MessageContent, boundary_prefix: str, boundaries: Iterator[str]
) -> _Part | None:
    """Build the readable part: text, HTML with its inline images, or both."""
    text_part = None
    if content.text is not None:
        text_part = _text_part(content.text, "plain", boundary_prefix)
    if content.html is None:
        return text_part

    html_part = _text_part(content.html, "html", boundary_prefix)
    related = [a for a in content.attachments if _is_related(a)]
    if related:
        inline_parts = [_attachment_part(a, boundary_prefix) for a in related]
        html_part = _multipart(
            "related", [html_part, *inline_parts], next(boundaries), "text/html"
        )

    if text_part is None:
        return html_part
    return _multipart("alternative", [text_part, html_part], next(boundaries))


def _is_related(attachment: Attachment) -> bool:
    return attachment.inline and bool(attachment.content_id)


def _multipart(
    subtype: str, parts: Sequence[_Part], boundary: str, related_type: str = ""
) -> _Part:
    # Each body ends with CRLF and the delimiter starts with another one,
    # because the CRLF before "--boundary" belongs to the delimiter.
    parameters = [f'boundary="{boundary}"']
    if related_type:
        parameters.append(f'type="{related_type}"')
    header = _parameter_header("Content-Type", f"multipart/{subtype}", parameters)

    delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
    chunks = [delimiter[2:]]
    for index, part in enumerate(parts):
        if index:
            chunks.append(delimiter)
        chunks.append("\r\n".join((*part.headers, "", "")).encode("utf-8"))
        chunks.append(part.body)
    chunks.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return _Part((header,), b"".join(chunks))


# -- Text and attachment parts --------------------------------------------


def _text_part(text: str, subtype: str, boundary_prefix: str) -> _Part:
    """Encode text with CRLF line ends as 7bit, quoted-printable or base64."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    content_type = f"Content-Type: text/{subtype}; charset=utf-8"

    if _fits_7bit(text, boundary_prefix):
        body = text.replace("\n", "\r\n").encode("ascii")
        return _Part((content_type, "Content-Transfer-Encoding: 7bit"), body)

    # Quoted-printable grows each non-ASCII byte to three, base64 every byte
    # to 4/3, so quoted-printable is shorter while at most 1 byte in 6 is
    # not ASCII.
    data = text.encode("utf-8")
    non_ascii = len(data.translate(None, _ASCII_BYTES))
    if 6 * non_ascii <= len(data):
        # The data has no CR, so b2a_qp writes LF line ends, soft breaks
        # included, and keeps every line within 76 characters.
        encoded = binascii.b2a_qp(data, istext=True).replace(b"\n", b"\r\n")
        cte = "Content-Transfer-Encoding: quoted-printable"
        return _Part((content_type, cte), encoded)

    encoded = _base64_lines(data.replace(b"\n", b"\r\n"))
    return _Part((content_type, "Content-Transfer-Encoding: base64"), encoded)


def _fits_7bit(text: str, boundary_prefix: str) -> bool:
    # RFC 2045 7bit: ASCII without NUL, in lines of at most 998 octets.
    if not text.isascii() or "\0" in text or boundary_prefix in text:
        return False
    if len(text) <= _MAX_LINE:
        return True
    return max(map(len, text.split("\n"))) <= _MAX_LINE


def _base64_lines(data: bytes) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    lines = [
        encoded[start : start + _BASE64_LINE]
        for start in range(0, len(encoded), _BASE64_LINE)
    ]
    lines.append(b"")
    return b"\r\n".join(lines)


def _attachment_part(attachment: Attachment, boundary_prefix: str) -> _Part:
    media_type = attachment.content_type
    if not _MEDIA_TYPE.fullmatch(media_type):
        raise ValueError(
            f"invalid attachment content type {media_type!r}; expected "
            "'type/subtype' such as 'application/pdf'"
        )
    disposition = "inline" if attachment.inline else "attachment"
    filename = attachment.filename
    media_type, encoding, body = _encode_attachment(
        media_type.lower(), attachment.content, boundary_prefix
    )

    headers = [
        _parameter_header("Content-Type", media_type, _name_parameter(filename)),
        _parameter_header(
            "Content-Disposition", disposition, _filename_parameters(filename)
        ),
        f"Content-Transfer-Encoding: {encoding}",
    ]
    if attachment.content_id:
        headers.append(f"Content-ID: <{_content_id(attachment.content_id)}>")
    return _Part(tuple(headers), body)


def _encode_attachment(
    media_type: str, content: bytes, boundary_prefix: str
) -> tuple[str, str, bytes]:
    """Return the media type, transfer encoding and body of an attachment.

    RFC 2046 allows only 7bit, 8bit or binary for message/* and multipart/*
    parts. A message that fits 7bit goes as it is, with CRLF line ends.
    Otherwise a message/rfc822 becomes message/global, which RFC 6532 lets
    be base64, and any other such part goes as application/octet-stream.
    A multipart/* file has no boundary parameter, so it is always that.
    """
    if media_type.startswith("message/global"):
        return media_type, "base64", _base64_lines(content)
    if media_type.startswith("message/"):
        body = _as_7bit(content, boundary_prefix)
        if body is not None:
            return media_type, "7bit", body
        if media_type == "message/rfc822":
            return "message/global", "base64", _base64_lines(content)
        return "application/octet-stream", "base64", _base64_lines(content)
    if media_type.startswith("multipart/"):
        return "application/octet-stream", "base64", _base64_lines(content)
    return media_type, "base64", _base64_lines(content)


def _as_7bit(content: bytes, boundary_prefix: str) -> bytes | None:
    """Return ``content`` with CRLF line ends if it is valid 7bit, else None."""
    data = content.replace(b"\r\n", b"\n")
    if not data.isascii() or b"\0" in data or b"\r" in data:
        return None
    if boundary_prefix.encode("ascii") in data:
        return None
    if max(map(len, data.split(b"\n"))) > _MAX_LINE:
        return None
    if not data.endswith(b"\n"):
        data += b"\n"
    return data.replace(b"\n", b"\r\n")


def _content_id(content_id: str) -> str:
    if content_id.startswith("<") and content_id.endswith(">"):
        content_id = content_id[1:-1]
    if not _CONTENT_ID.fullmatch(content_id):
        raise ValueError(
            f"invalid Content-ID {content_id!r}; use printable ASCII without "
            "spaces or angle brackets, such as 'logo@example.com'"
        )
    return content_id


# -- Parameters ------------------------------------------------------------


def _parameter_header(name: str, value: str, parameters: Sequence[str]) -> str:
    """Write ``name: value; p1; p2``, one parameter a line when it is long."""
    line = "; ".join((f"{name}: {value}", *parameters))
    if len(line) <= _FOLD_WIDTH:
        return line
    lines = [f"{name}: {value};"]
    for index, parameter in enumerate(parameters):
        separator = ";" if index < len(parameters) - 1 else ""
        lines.append(_fold(f" {parameter}{separator}", 1))
    return "\r\n".join(lines)


def _quote_filename(filename: str) -> str | None:
    """Return the filename as a quoted string, or None if it needs encoding.

    Quoting suits printable ASCII without "=?", which CPython's email package
    decodes as an encoded word even inside quotes, and short enough for one
    line with the parameter name.
    """
    if not (filename.isascii() and filename.isprintable()) or "=?" in filename:
        return None
    quoted = _quote(filename)
    if len(quoted) > _MAX_LINE - len(" filename=;"):
        return None
    return quoted


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name_parameter(filename: str) -> list[str]:
    """Return the Content-Type ``name`` parameter for clients without RFC 2231.

    A name that needs encoding becomes RFC 2047 encoded words in quotes,
    which RFC 2047 does not allow in parameters but such clients decode.
    """
    if not filename:
        return []
    quoted = _quote_filename(filename)
    if quoted is not None:
        return [f"name={quoted}"]
    words = _encoded_words(filename, _FOLD_WIDTH - 9, _FOLD_WIDTH - 4)
    return [f'name="{" ".join(words)}"']


def _filename_parameters(filename: str) -> list[str]:
    """Return the Content-Disposition ``filename`` parameter or continuations.

    A filename that needs encoding becomes RFC 2231 percent-encoded UTF-8,
    split into ``filename*0*``, ``filename*1*``, ... when one line is too
    short for it.
    """
    if not filename:
        return []
    quoted = _quote_filename(filename)
    if quoted is not None:
        return [f"filename={quoted}"]

    # Percent-encode per character, so continuations split whole characters.
    pieces = ["".join(_PERCENT_BYTE[b] for b in c.encode()) for c in filename]
    single = "filename*=utf-8''" + "".join(pieces)
    if len(single) + 2 <= _FOLD_WIDTH:
        return [single]

    parameters: list[str] = []
    current = "filename*0*=utf-8''"
    for piece in pieces:
        if len(current) + len(piece) + 2 > _FOLD_WIDTH:
            parameters.append(current)
            current = f"filename*{len(parameters)}*="
        current += piece
    parameters.append(current)
    return parameters


# -- Header fields ---------------------------------------------------------


def _format_date(date: datetime) -> str:
    if date.utcoffset() is None:
        raise ValueError(
            f"the message date {date.isoformat()} has no timezone; pass an "
            "aware datetime such as datetime.now(UTC)"
        )
    utc = date.astimezone(UTC)
    return (
        f"{_DAYS[utc.weekday()]}, {utc.day:02d} {_MONTHS[utc.month - 1]} "
        f"{utc.year:04d} {utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} +0000"
    )


def _check_header_text(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(
            f"the {name} value {value!r} contains a line break; remove CR and LF"
        )


def _address_header(name: str, address: Address) -> str:
    prefix = f"{name}: "
    _check_header_text(name, address.email)
    if not address.display_name:
        return prefix + address.email
    phrase = _phrase(name, address.display_name, _FOLD_WIDTH - len(prefix))
    folded = _fold(f"{prefix}{phrase} <{address.email}>", len(prefix))
    if _lines_fit(folded):
        return folded
    # A long atom, or a quoted string whose escapes doubled its length, has
    # no space to fold at. Encoded words (RFC 2047 section 5) fold between
    # words, so every line stays within 998 octets.
    words = _encoded_words(address.display_name, _FOLD_WIDTH - len(prefix))
    return _fold(f"{prefix}{' '.join(words)} <{address.email}>", len(prefix))


def _phrase(name: str, display_name: str, first_width: int) -> str:
    """Write a display name as atoms, a quoted string or encoded words."""
    _check_header_text(name, display_name)
    # Parsers decode "=?" words even inside quotes, so those names are encoded.
    if "=?" not in display_name:
        if _ATOM_PHRASE.fullmatch(display_name):
            return display_name
        if display_name.isascii() and display_name.isprintable():
            return _quote(display_name)
    return " ".join(_encoded_words(display_name, first_width))


def _text_header(name: str, value: str) -> str:
    """Write an unstructured header such as Subject, encoding it if needed.

    A field of ``STRUCTURED_HEADERS`` is folded but not encoded, as long as
    it is ASCII and folds into lines of 998 octets. Validation rejects other
    values, but a message stored before it did still goes out, encoded.
    """
    _check_header_text(name, value)
    if name.lower() in STRUCTURED_HEADERS:
        structured = _structured_header(name, value)
        if structured is not None:
            return structured
    prefix = f"{name}: "
    if _is_plain_text(value):
        folded = _fold(prefix + value, len(prefix))
        if len(folded) <= _MAX_LINE or _lines_fit(folded):
            return folded
    words = _encoded_words(value, _FOLD_WIDTH - len(prefix))
    return _fold(prefix + " ".join(words), len(prefix))


def _structured_header(name: str, value: str) -> str | None:
    """Return the field folded at spaces, or None if it is not printable
    ASCII or keeps a line over 998 octets."""
    if not value.isascii() or not value.replace("\t", " ").isprintable():
        return None
    prefix = f"{name}: "
    folded = _fold(prefix + value, len(prefix))
    return folded if _lines_fit(folded) else None


def longest_folded_line(name: str, value: str) -> int:
    """Return the length of the longest line of ``name: value`` once folded.

    The builder folds only before spaces, aiming at 78 characters a line,
    so a part of the value without spaces can make a longer line.
    """
    folded = _fold(f"{name}: {value}", len(name) + 2)
    return max(len(line) for line in folded.split("\r\n"))


def _is_plain_text(value: str) -> bool:
    # Parsers drop leading whitespace and decode anything that looks like an
    # encoded word, so such values are encoded to arrive unchanged.
    return (
        value.isascii()
        and value.replace("\t", " ").isprintable()
        and "=?" not in value
        and value[:1] not in (" ", "\t")
    )


def _custom_header(name: str, value: str) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(
            f"invalid header name {name!r}; use printable ASCII without ':' "
            "or spaces, such as 'X-Campaign'"
        )
    if "\r" not in value and "\n" not in value:
        if name.lower() == "reply-to":
            # An address header: only its display name may become encoded
            # words (RFC 2047, section 5), and an IDN domain its A-labels.
            return _address_header(name, parse_address(value))
        return _text_header(name, value)

    # A value folded by its producer, such as a DKIM signer, is kept
    # byte for byte because its signature may cover the exact folding.
    line = f"{name}: {value}"
    if not _FOLDED_VALUE.fullmatch(value) or not _lines_fit(line):
        raise ValueError(
            f"the {name} value {value!r} contains a line break that is not "
            "folding; use CRLF followed by a space or tab, in ASCII lines of "
            f"at most {_MAX_LINE} octets"
        )
    return line


def _lines_fit(folded: str) -> bool:
    return all(len(line) <= _MAX_LINE and line.strip() for line in folded.split("\r\n"))


def _fold(line: str, value_start: int) -> str:
    """Fold ``line`` before spaces so lines fit in 78 characters if they can.

    A fold goes before the first space of a run, never right after the field
    name and never where only whitespace would follow, so unfolding restores
    the line exactly.
    """
    if len(line) <= _FOLD_WIDTH:
        return line
    end = len(line.rstrip(" \t"))
    pieces = []
    start = 0
    low = value_start + 1
    while len(line) - start > _FOLD_WIDTH:
        cut = _fold_point(line, low, start + _FOLD_WIDTH, end)
        if cut < 0:
            break
        pieces.append(line[start:cut])
        start = cut
        low = cut + 1
    pieces.append(line[start:])
    return "\r\n".join(pieces)


def _fold_point(line: str, low: int, high: int, end: int) -> int:
    """Return the last fold point at or before ``high``, else the next one."""
    position = line.rfind(" ", low, min(high + 1, end))
    while position >= low and line[position - 1] == " ":
        position = line.rfind(" ", low, position)
    if position >= low:
        return position

    position = line.find(" ", max(high + 1, low), end)
    while position >= 0 and line[position - 1] == " ":
        position = line.find(" ", position + 1, end)
    return position


# -- RFC 2047 encoded words ------------------------------------------------


def _encoded_words(
    value: str, first_width: int, width: int = _MAX_ENCODED_WORD
) -> list[str]:
    """Split ``value`` into UTF-8 encoded words on whole characters.

    The first word is at most ``first_width`` characters and the others at
    most ``width`` (both capped at 75), so the words can be folded apart.
    Q is used when it is no longer than B.
    """
    data = value.encode("utf-8")
    width = min(width, _MAX_ENCODED_WORD)
    first_width = min(max(first_width, _MIN_ENCODED_WORD), width)
    escaped = len(data.translate(None, _Q_SHORT_BYTES))
    if len(data) + 2 * escaped <= (len(data) + 2) // 3 * 4:
        return _q_words(data, first_width, width)
    return _b_words(data, first_width, width)


def _b_words(data: bytes, first_width: int, width: int) -> list[str]:
    words: list[str] = []
    start = 0
    limit = (first_width - 12) // 4 * 3
    while start < len(data) or not words:
        cut = min(start + limit, len(data))
        while cut < len(data) and data[cut] & 0xC0 == 0x80:
            cut -= 1
        chunk = binascii.b2a_base64(data[start:cut], newline=False)
        words.append(f"=?utf-8?b?{chunk.decode('ascii')}?=")
        start = cut
        limit = (width - 12) // 4 * 3
    return words


def _q_words(data: bytes, first_width: int, width: int) -> list[str]:
    words = []
    current: list[str] = []
    size = 0
    limit = first_width - 12
    for byte in data:
        encoded = _Q_BYTE[byte]
        # Cut only before the first byte of a UTF-8 character, and leave room
        # for its continuation bytes, each escaped to three characters.
        if byte & 0xC0 == 0x80:
            needed = 0
        else:
            needed = len(encoded) + 3 * _CONTINUATION_BYTES[byte >> 4]
        if current and needed and size + needed > limit:
            words.append(f"=?utf-8?q?{''.join(current)}?=")
            current = []
            size = 0
            limit = width - 12
        current.append(encoded)
        size += len(encoded)
    words.append(f"=?utf-8?q?{''.join(current)}?=")
    return words
