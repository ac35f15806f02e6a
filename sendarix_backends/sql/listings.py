"""Reading messages and their events, with keyset pagination.

A cursor is the base64url encoding of the sort key of the last item on the
page, so paging never skips or repeats an item while new ones arrive.
"""

from __future__ import annotations

import base64
import binascii

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.sql import codec
from sendarix_backends.sql.schema import events, messages
from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.ids import is_id
from sendarix_core.model import Event, Message
from sendarix_core.ports import MessageQuery, Page
from sendarix_core.suppression import normalize_recipient

__all__ = [
    "cursor_number",
    "decode_cursor",
    "encode_cursor",
    "get_message",
    "invalid_cursor_error",
    "list_message_events",
    "list_messages",
]


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Return the sort key in ``cursor``; raise ValidationError if it is invalid.

    No sort key contains U+0000, which PostgreSQL rejects in text, so a
    cursor that decodes to one was edited.
    """
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        value = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise invalid_cursor_error(cursor) from None
    if "\0" in value:
        raise invalid_cursor_error(cursor)
    return value


# Numeric sort keys are BIGINT columns, so a larger number is no position.
_MAX_SORT_KEY = 2**63 - 1


def cursor_number(cursor: str, text: str) -> int:
    """Return ``text``, the numeric part of ``cursor``, as an integer.

    Raises ValidationError unless ``text`` is ASCII digits within the range
    of a BIGINT column.
    """
    if not (text.isascii() and text.isdigit()) or int(text) > _MAX_SORT_KEY:
        raise invalid_cursor_error(cursor)
    return int(text)


def invalid_cursor_error(cursor: str) -> ValidationError:
    message = (
        f"cursor {cursor!r} is invalid; "
        "pass the next_cursor of the previous page unchanged"
    )
    return ValidationError([FieldError("cursor", "invalid_cursor", message)])


def get_message(connection: Connection, message_id: str) -> Message | None:
    statement = sa.select(messages).where(messages.c.id == message_id)
    row = connection.execute(statement).mappings().one_or_none()
    return None if row is None else codec.message_from_row(row)


def list_messages(connection: Connection, query: MessageQuery) -> Page[Message]:
    """List messages newest first (by id, which sorts by creation time).

    ``created_after`` is inclusive and ``created_before`` exclusive.
    """
    if query.limit < 1:
        raise ValueError(f"limit must be at least 1, not {query.limit}")
    statement = sa.select(messages).order_by(messages.c.id.desc())
    if query.status is not None:
        # NOTE: status has no index, because every lifecycle move would have
        # to update it. A filter on a rare status in a large table reads many
        # rows, newest first, before it fills a page.
        statement = statement.where(messages.c.status == query.status.value)
    if query.recipient is not None:
        recipient = normalize_recipient(query.recipient)
        statement = statement.where(messages.c.recipient == recipient)
    if query.created_after is not None:
        statement = statement.where(messages.c.created_at >= query.created_after)
    if query.created_before is not None:
        statement = statement.where(messages.c.created_at < query.created_before)
    if query.cursor is not None:
        last_id = decode_cursor(query.cursor)
        if not is_id(last_id, "msg"):
            raise invalid_cursor_error(query.cursor)
        statement = statement.where(messages.c.id < last_id)
    if query.test_mode is not None:
        statement = statement.where(messages.c.test_mode == query.test_mode)

    rows = connection.execute(statement.limit(query.limit + 1)).mappings().all()
    items = [codec.message_from_row(row) for row in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        next_cursor = encode_cursor(items[-1].id)
    return Page(items=items, next_cursor=next_cursor)


def list_message_events(connection: Connection, message_id: str) -> list[Event]:
    statement = (
        sa.select(events)
        .where(events.c.message_id == message_id)
        .order_by(events.c.sequence)
    )
    return [
        codec.event_from_row(row) for row in connection.execute(statement).mappings()
    ]
