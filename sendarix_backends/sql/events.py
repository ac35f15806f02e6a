"""The event log: search, events without a transition, processing, retention.

Events are written by the message lifecycle (``submissions`` and
``transitions``). This module adds what happens to them afterwards:

* ``search_events`` pages through the log with a keyset on ``sequence``.
* ``record_events`` stores events that change no message state (bounce and
  complaint reports, unsubscribes) with their suppression in one commit.
* ``process_events`` takes unprocessed events, creates their webhook
  deliveries, adds them to the analytics rollups and marks them processed,
  in one transaction. On PostgreSQL the events are locked with ``SKIP
  LOCKED``, so processors in several processes share the work. An event
  committed late, after events with higher sequence numbers, is still
  unprocessed and is picked up by a later batch, so none is missed.
* ``prepare_events`` and ``apply_events`` are its two halves, for SQLite:
  the first only reads, so it runs without the write lock, and the second
  raises ``BatchChanged``, for a rollback, when another processor got to
  some of the events first.
* ``delete_expired`` removes old processed events in small batches.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.events.query import EventOrder, EventQuery
from sendarix_backends.sql import analytics, bulk, codec, webhooks
from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.listings import (
    cursor_number,
    decode_cursor,
    encode_cursor,
    invalid_cursor_error,
)
from sendarix_backends.sql.schema import (
    events,
    from_micros,
    messages,
    suppressions,
    to_micros,
)
from sendarix_backends.webhooks.model import SubscriptionPeriod, WebhookEndpoint
from sendarix_core.model import Event
from sendarix_core.ports import Page
from sendarix_core.representation import event_to_dict, format_time
from sendarix_core.states import EventType
from sendarix_core.suppression import (
    Suppression,
    SuppressionReason,
    canonical_recipient,
    normalize_recipient,
)

_UNPROCESSED_COLUMNS = (
    "sequence",
    "event_id",
    "message_id",
    "type",
    "created_at",
    "recipient",
    "data",
)

__all__ = [
    "BatchChanged",
    "PreparedBatch",
    "apply_events",
    "delete_expired",
    "prepare_events",
    "process_events",
    "record_events",
    "record_unsubscribe",
    "search_events",
]

# Containment searches on tags and metadata use these inverted indexes on
# PostgreSQL. SQLite has no such index type, and the condition ``0`` keeps
# the SQLite index empty, so it costs nothing on the send path there.
sa.Index(
    "ix_messages_tags",
    messages.c.tags,
    postgresql_using="gin",
    postgresql_ops={"tags": "jsonb_path_ops"},
    sqlite_where=sa.text("0"),
)
sa.Index(
    "ix_messages_metadata",
    messages.c.metadata,
    postgresql_using="gin",
    postgresql_ops={"metadata": "jsonb_path_ops"},
    sqlite_where=sa.text("0"),
)


# Search


def search_events(connection: Connection, query: EventQuery) -> Page[Event]:
    if query.limit < 1:
        raise ValueError(f"limit must be at least 1, not {query.limit}")
    statement = sa.select(events)
    statement = _filter(statement, connection.dialect.name, query)

    newest_first = query.order is EventOrder.NEWEST_FIRST
    if query.cursor is not None:
        after = _decode_position(query.cursor, query.order)
        statement = statement.where(
            events.c.sequence < after if newest_first else events.c.sequence > after
        )
    order = events.c.sequence.desc() if newest_first else events.c.sequence.asc()
    statement = statement.order_by(order).limit(query.limit + 1)

    rows = connection.execute(statement).mappings().all()
    items = [codec.event_from_row(row) for row in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        last = rows[query.limit - 1]["sequence"]
        next_cursor = encode_cursor(f"{query.order.value}:{last}")
    return Page(items=items, next_cursor=next_cursor)


def _filter(
    statement: sa.Select[Any], dialect: str, query: EventQuery
) -> sa.Select[Any]:
    if query.types:
        statement = statement.where(events.c.type.in_(sorted(query.types)))
    if query.recipient is not None:
        # An IDN domain is stored in A-labels, so the query's is converted.
        # SQLite's lower() folds ASCII letters only; folded by Python first,
        # a query in the case an address was sent in would miss it.
        if dialect == "sqlite":
            recipient = canonical_recipient(query.recipient)
        else:
            recipient = normalize_recipient(query.recipient)
        statement = statement.where(
            sa.func.lower(events.c.recipient) == sa.func.lower(recipient)
        )
    if query.message_id is not None:
        statement = statement.where(events.c.message_id == query.message_id)
    if query.created_after is not None:
        statement = statement.where(events.c.created_at >= query.created_after)
    if query.created_before is not None:
        statement = statement.where(events.c.created_at < query.created_before)
    if query.test_mode is not None:
        of_test_message = _of_test_message()
        statement = statement.where(
            of_test_message if query.test_mode else ~of_test_message
        )
    if query.tag is None and not query.metadata:
        return statement

    statement = statement.join(messages, messages.c.id == events.c.message_id)
    if dialect == "postgresql":
        return _postgresql_message_filter(statement, query)
    return _sqlite_message_filter(statement, query)


def _of_test_message() -> sa.Exists:
    """Return a condition true for events of messages sent with a test key.

    Events without a message (complaint reports and unsubscribes that name
    none) count as live, because they change the suppression list that live
    mail uses.
    """
    test_messages = messages.alias("test_messages")
    return (
        sa.exists()
        .where(
            test_messages.c.id == events.c.message_id,
            test_messages.c.test_mode.is_(True),
        )
        .correlate(events)
    )


def _postgresql_message_filter(
    statement: sa.Select[Any], query: EventQuery
) -> sa.Select[Any]:
    # ``@>`` (containment) is what the GIN indexes on tags and metadata serve.
    if query.tag is not None:
        statement = statement.where(
            sa.text("messages.tags @> CAST(:tags AS jsonb)").bindparams(
                tags=orjson.dumps([query.tag]).decode()
            )
        )
    if query.metadata:
        statement = statement.where(
            sa.text("messages.metadata @> CAST(:metadata AS jsonb)").bindparams(
                metadata=orjson.dumps(dict(query.metadata)).decode()
            )
        )
    return statement


def _sqlite_message_filter(
    statement: sa.Select[Any], query: EventQuery
) -> sa.Select[Any]:
    if query.tag is not None:
        statement = statement.where(
            sa.text(
                "EXISTS (SELECT 1 FROM json_each(messages.tags) AS tag "
                "WHERE tag.value = :tag)"
            ).bindparams(tag=query.tag)
        )
    for index, (key, value) in enumerate(sorted(query.metadata.items())):
        statement = statement.where(
            sa.text(
                # Only the parameter names vary; values are bound.
                "EXISTS (SELECT 1 FROM json_each(messages.metadata) AS entry "  # noqa: S608
                f"WHERE entry.key = :key_{index} AND entry.value = :value_{index})"
            ).bindparams(**{f"key_{index}": key, f"value_{index}": value})
        )
    return statement


def _decode_position(cursor: str, order: EventOrder) -> int:
    prefix, _, sequence = decode_cursor(cursor).partition(":")
    if prefix != order.value:
        raise invalid_cursor_error(cursor)
    return cursor_number(cursor, sequence)


# Events without a transition


def record_events(
    connection: Connection,
    new_events: Sequence[Event],
    new_suppressions: Sequence[Suppression] = (),
) -> None:
    """Store events and suppressions (existing entries are kept) in order."""
    bulk.insert_rows(connection, events, [codec.event_row(e) for e in new_events])
    rows = {s.recipient: codec.suppression_row(s) for s in new_suppressions}
    if not rows:
        return
    statement = (
        dialect_insert(connection, suppressions)
        .values([rows[recipient] for recipient in sorted(rows)])
        .on_conflict_do_nothing(index_elements=[suppressions.c.recipient])
    )
    connection.execute(statement)


def record_report(
    connection: Connection, event: Event, new_suppressions: Sequence[Suppression]
) -> bool:
    """Store a report's event and suppressions, unless the report was recorded.

    A report was recorded when the message has an event of the same type
    with the same ``report_id``. The message's row is locked first on
    PostgreSQL, and SQLite's write transaction excludes other writers, so
    copies of one report that arrive at once are stored once. Returns
    whether the event was stored.
    """
    connection.execute(
        sa.select(messages.c.id)
        .where(messages.c.id == event.message_id)
        .with_for_update()
    ).close()
    report_id = event.data.get("report_id")
    if report_id is not None:
        recorded = connection.scalars(
            sa.select(events.c.data).where(
                events.c.message_id == event.message_id,
                events.c.type == event.type.value,
            )
        )
        if any(data.get("report_id") == report_id for data in recorded):
            return False
    record_events(connection, [event], new_suppressions)
    return True


def record_unsubscribe(
    connection: Connection, suppression: Suppression, event: Event
) -> tuple[Suppression, bool]:
    """Suppress a recipient as unsubscribed and store ``event``.

    A recipient already unsubscribed gets no second event, also while the
    entry keeps an earlier reason (a hard bounce, say): one unsubscribe
    since the entry was created is enough. Returns the stored entry and
    whether the event was recorded.
    """
    existing = (
        connection.execute(
            sa.select(suppressions)
            .where(suppressions.c.recipient == suppression.recipient)
            .with_for_update()
        )
        .mappings()
        .one_or_none()
    )
    if existing is not None:
        stored = codec.suppression_from_row(existing)
        if stored.reason is SuppressionReason.USER_UNSUBSCRIBED:
            return stored, False
        if _unsubscribed_since(connection, event.recipient, stored.created_at):
            return stored, False
        record_events(connection, [event])
        return stored, True
    record_events(connection, [event], [suppression])
    return suppression, True


def _unsubscribed_since(
    connection: Connection, recipient: str, since: datetime
) -> bool:
    found = connection.execute(
        sa.select(events.c.sequence)
        .where(
            sa.func.lower(events.c.recipient) == sa.func.lower(recipient),
            events.c.type == EventType.UNSUBSCRIBED.value,
            events.c.created_at >= since,
        )
        .limit(1)
    ).first()
    return found is not None


# Processing


# An endpoint's id, creation time, event types, enabled and earlier
# subscriptions: what decides which deliveries its events get.
EndpointKey = tuple[
    str, datetime, tuple[str, ...] | None, bool, tuple[SubscriptionPeriod, ...]
]


@attrs.frozen
class PreparedBatch:
    """Unprocessed events and the rows that processing them writes.

    ``prepare_events`` builds it from reads alone, so on SQLite it needs no
    write lock; ``apply_events`` writes it.
    """

    sequences: list[int]
    endpoints: tuple[EndpointKey, ...]
    deliveries: list[dict[str, Any]]
    counts: analytics.Rollup


def process_events(
    connection: Connection,
    *,
    now: datetime,
    limit: int,
    retry_window: timedelta,
) -> tuple[int, int]:
    """Fan out and count up to ``limit`` unprocessed events, oldest first.

    Returns how many events were processed and how many deliveries created.
    """
    prepared = prepare_events(
        connection, now=now, limit=limit, retry_window=retry_window
    )
    if prepared is None:
        return 0, 0
    # Read in this transaction, and locked on PostgreSQL, the batch cannot
    # change before it is written, so the endpoints need no second read.
    return _write_batch(connection, prepared, now=now)


def prepare_events(
    connection: Connection,
    *,
    now: datetime,
    limit: int,
    retry_window: timedelta,
) -> PreparedBatch | None:
    """Read up to ``limit`` unprocessed events and build what processing writes.

    Returns None when no event is waiting.
    """
    dialect = connection.dialect
    # Raw rows: the rollups need five columns of each event, so the
    # mappings with decoded times and documents are built only for fan-out.
    rows = connection.exec_driver_sql(_unprocessed_sql(dialect), (limit,)).all()
    if not rows:
        return None

    # One read of the batch's messages serves the rollups and the payloads.
    message_ids = {message_id for _, _, message_id, *_ in rows if message_id}
    found = analytics.message_facts(connection, message_ids)
    deliveries: list[dict[str, Any]] = []
    endpoints = webhooks.fanout_endpoints(connection)
    if endpoints:
        events_read = [_event_mapping(row) for row in rows]
        for event in events_read:
            facts = found.get(event["message_id"])
            event["test_mode"] = facts is not None and facts.test_mode
        deliveries = webhooks.delivery_rows(
            endpoints, events_read, _payload, now=now, retry_window=retry_window
        )
    counted = [
        analytics.CountedEvent(
            message_id, event_type, created_at, recipient, _document(data)
        )
        for _, _, message_id, event_type, created_at, recipient, data in rows
    ]
    return PreparedBatch(
        sequences=[sequence for sequence, *_ in rows],
        endpoints=_endpoint_keys(endpoints),
        deliveries=deliveries,
        counts=analytics.count_events(counted, found),
    )


class BatchChanged(Exception):
    """Another processor took events of a prepared batch, or the enabled
    webhook endpoints changed, after ``prepare_events`` read them."""


def apply_events(
    connection: Connection, prepared: PreparedBatch, *, now: datetime
) -> tuple[int, int]:
    """Write a prepared batch and mark its events processed.

    Returns how many events were processed and how many deliveries created.
    Raises ``BatchChanged`` when the batch is out of date; the transaction
    must then be rolled back, as ``run_transaction`` does.
    """
    if prepared.endpoints != _endpoint_keys(webhooks.fanout_endpoints(connection)):
        raise BatchChanged("the webhook endpoints or their subscriptions changed")
    return _write_batch(connection, prepared, now=now)


def _write_batch(
    connection: Connection, prepared: PreparedBatch, *, now: datetime
) -> tuple[int, int]:
    """Mark the batch's events processed and write its rows.

    Raises ``BatchChanged`` when another processor marked some of the
    events first.
    """
    dialect = connection.dialect
    result = connection.exec_driver_sql(
        _mark_processed_sql(dialect),
        (to_micros(now), bulk.array_parameter(dialect, prepared.sequences)),
    )
    if result.rowcount != len(prepared.sequences):
        raise BatchChanged("another processor took events of the batch")
    bulk.insert_rows(connection, webhooks.webhook_deliveries, prepared.deliveries)
    analytics.write_rollup(connection, prepared.counts)
    return len(prepared.sequences), len(prepared.deliveries)


def _endpoint_keys(endpoints: Sequence[WebhookEndpoint]) -> tuple[EndpointKey, ...]:
    """Return what decides which deliveries ``delivery_rows`` creates."""
    return tuple(
        (
            endpoint.id,
            endpoint.created_at,
            endpoint.event_types,
            endpoint.enabled,
            endpoint.earlier_subscriptions,
        )
        for endpoint in endpoints
    )


@functools.cache
def _unprocessed_sql(dialect: sa.Dialect) -> str:
    # PostgreSQL skips events another processor has locked.
    lock = " FOR UPDATE SKIP LOCKED" if dialect.name == "postgresql" else ""
    return (
        f"SELECT {', '.join(_UNPROCESSED_COLUMNS)} FROM events "  # noqa: S608
        "WHERE processed_at IS NULL ORDER BY sequence "
        f"LIMIT {bulk.placeholder(dialect)}{lock}"
    )


@functools.cache
def _mark_processed_sql(dialect: sa.Dialect) -> str:
    return (
        f"UPDATE events SET processed_at = {bulk.placeholder(dialect)} "  # noqa: S608
        f"WHERE {bulk.in_array(dialect, 'sequence')} AND processed_at IS NULL"
    )


def _document(value: Any) -> Any:
    # psycopg decodes jsonb itself; SQLite returns the text.
    return orjson.loads(value) if isinstance(value, str) else value


def _event_mapping(row: Sequence[Any]) -> dict[str, Any]:
    """Return a raw row as ``select(events)`` would: times and data decoded."""
    mapping = dict(zip(_UNPROCESSED_COLUMNS, row, strict=True))
    mapping["created_at"] = from_micros(mapping["created_at"])
    mapping["data"] = _document(mapping["data"])
    return mapping


def _payload(row: Any) -> bytes:
    event = codec.event_from_row(row)
    document = {
        "type": str(event.type),
        "timestamp": format_time(event.created_at),
        "test_mode": row["test_mode"],
        "data": event_to_dict(event),
    }
    return orjson.dumps(document)


# Retention


def delete_expired(connection: Connection, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` processed events created before ``cutoff``."""
    oldest = (
        sa.select(events.c.sequence)
        .where(events.c.created_at < cutoff, events.c.processed_at.is_not(None))
        .order_by(events.c.created_at)
        .limit(limit)
    )
    sequences = list(connection.execute(oldest).scalars())
    if not sequences:
        return 0
    connection.execute(sa.delete(events).where(events.c.sequence.in_(sequences)))
    return len(sequences)
