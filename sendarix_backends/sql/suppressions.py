"""The suppression list: recipients that must not be sent to.

Listings are newest first; the cursor contains the creation time, in epoch
microseconds, and the recipient of the last entry on the page.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.sql import bulk, codec
from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.listings import (
    cursor_number,
    decode_cursor,
    encode_cursor,
    invalid_cursor_error,
)
from sendarix_backends.sql.schema import from_micros, suppressions, to_micros
from sendarix_core.ports import Page, SuppressionQuery
from sendarix_core.suppression import Suppression, SuppressionReason

__all__ = [
    "add_suppression",
    "get_suppressions",
    "list_suppressions",
    "remove_suppression",
]


def get_suppressions(
    connection: Connection, recipients: Sequence[str]
) -> dict[str, Suppression]:
    if not recipients:
        return {}
    dialect = connection.dialect
    unique = bulk.array_parameter(dialect, sorted(set(recipients)))
    result = connection.exec_driver_sql(_lookup_sql(dialect), (unique,))
    found: dict[str, Suppression] = {}
    for recipient, reason, created_at, message_id in result:
        found[recipient] = Suppression(
            recipient=recipient,
            reason=SuppressionReason(reason),
            created_at=from_micros(created_at),
            message_id=message_id,
        )
    return found


@functools.cache
def _lookup_sql(dialect: sa.Dialect) -> str:
    return (
        "SELECT recipient, reason, created_at, message_id FROM suppressions "  # noqa: S608
        f"WHERE {bulk.in_array(dialect, 'recipient')}"
    )


def add_suppression(connection: Connection, suppression: Suppression) -> Suppression:
    """Insert the entry unless the recipient has one; return the stored entry."""
    statement = (
        dialect_insert(connection, suppressions)
        .values(codec.suppression_row(suppression))
        .on_conflict_do_nothing(index_elements=[suppressions.c.recipient])
    )
    connection.execute(statement)
    stored = get_suppressions(connection, [suppression.recipient])
    return stored[suppression.recipient]


def list_suppressions(
    connection: Connection, query: SuppressionQuery
) -> Page[Suppression]:
    if query.limit < 1:
        raise ValueError(f"limit must be at least 1, not {query.limit}")
    table = suppressions
    statement = sa.select(table).order_by(
        table.c.created_at.desc(), table.c.recipient.desc()
    )
    if query.reasons is not None:
        reasons = sorted(reason.value for reason in query.reasons)
        statement = statement.where(table.c.reason.in_(reasons))
    if query.cursor is not None:
        created_at, recipient = _decode_position(query.cursor)
        statement = statement.where(
            sa.tuple_(table.c.created_at, table.c.recipient)
            < sa.tuple_(
                sa.literal(created_at, type_=table.c.created_at.type),
                sa.literal(recipient),
            )
        )

    rows = connection.execute(statement.limit(query.limit + 1)).mappings().all()
    items = [codec.suppression_from_row(row) for row in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        last = items[-1]
        next_cursor = encode_cursor(f"{to_micros(last.created_at)}:{last.recipient}")
    return Page(items=items, next_cursor=next_cursor)


def _decode_position(cursor: str) -> tuple[datetime, str]:
    micros, separator, recipient = decode_cursor(cursor).partition(":")
    if not separator:
        raise invalid_cursor_error(cursor)
    try:
        return from_micros(cursor_number(cursor, micros)), recipient
    except OverflowError:
        # Past the year 9999, which no stored time reaches.
        raise invalid_cursor_error(cursor) from None


def remove_suppression(connection: Connection, recipient: str) -> bool:
    statement = sa.delete(suppressions).where(suppressions.c.recipient == recipient)
    return connection.execute(statement).rowcount > 0
