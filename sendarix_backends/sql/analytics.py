"""Hourly rollups of events for ``GET /v1/analytics``.

The event processor adds each batch of events to ``event_counts`` and
``delivery_latency`` in the transaction that marks the events processed, so
every event is counted exactly once. Keys are upserted in sorted order, so
two processors that share keys lock them in one order and cannot deadlock.
Events of test messages are counted apart (``test_mode``), so a report
covers either live or test traffic.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.events.analytics import (
    AnalyticsQuery,
    GroupBy,
    Interval,
    LatencySample,
    OutcomeCount,
    group_keys,
    latency_bucket,
    outcome_of,
)
from sendarix_backends.sql import bulk
from sendarix_backends.sql.schema import (
    UtcTimestamp,
    from_micros,
    metadata,
)
from sendarix_core.states import EventType

__all__ = [
    "CountedEvent",
    "MessageFacts",
    "Rollup",
    "count_events",
    "delete_rollups_before",
    "delivery_latency",
    "event_counts",
    "message_facts",
    "read_rollups",
    "write_rollup",
]

event_counts = sa.Table(
    "event_counts",
    metadata,
    sa.Column("dimension", sa.Text, primary_key=True),
    sa.Column("hour", UtcTimestamp, primary_key=True),
    sa.Column("value", sa.Text, primary_key=True),
    sa.Column("outcome", sa.Text, primary_key=True),
    sa.Column("test_mode", sa.Boolean, primary_key=True, server_default=sa.false()),
    sa.Column("count", sa.BigInteger, nullable=False),
)

delivery_latency = sa.Table(
    "delivery_latency",
    metadata,
    sa.Column("dimension", sa.Text, primary_key=True),
    sa.Column("hour", UtcTimestamp, primary_key=True),
    sa.Column("value", sa.Text, primary_key=True),
    sa.Column("bucket", sa.Integer, primary_key=True),
    sa.Column("test_mode", sa.Boolean, primary_key=True, server_default=sa.false()),
    sa.Column("count", sa.BigInteger, nullable=False),
)

_HOUR_MICROS = 3_600_000_000
_DAY_MICROS = 24 * _HOUR_MICROS
_DIMENSIONS = {None: "", GroupBy.TAG: "tag", GroupBy.DOMAIN: "domain"}


class CountedEvent(NamedTuple):
    """The columns of one row of ``events`` that the rollups count by.

    ``created_at`` is in microseconds since the epoch, as stored.
    """

    message_id: str | None
    type: str
    created_at: int
    recipient: str | None
    data: Mapping[str, Any]


class Rollup(NamedTuple):
    """The counts a batch of events adds to the rollup tables."""

    counts: Counter[tuple[str, int, str, str, bool]]
    latencies: Counter[tuple[str, int, str, int, bool]]


def count_events(
    counted: Sequence[CountedEvent], found: Mapping[str, MessageFacts]
) -> Rollup:
    """Return what ``counted`` adds to the rollups, given the ``message_facts``
    of their messages."""
    counts: Counter[tuple[str, int, str, str, bool]] = Counter()
    latencies: Counter[tuple[str, int, str, int, bool]] = Counter()
    for message_id, event_type, created_at, recipient, data in counted:
        hour = created_at // _HOUR_MICROS * _HOUR_MICROS
        facts = found.get(message_id) if message_id else None
        keys = _keys_without_message(recipient) if facts is None else facts.keys
        # An event without a message (a complaint report that names none) is
        # counted as live traffic.
        test_mode = facts is not None and facts.test_mode
        outcomes = outcome_of(event_type, data)
        for dimension, value in keys:
            for outcome in outcomes:
                counts[(dimension, hour, value, outcome, test_mode)] += 1
        if facts is not None and event_type == EventType.DELIVERED:
            latency = timedelta(microseconds=created_at - facts.accepted_at)
            bucket = latency_bucket(latency)
            for dimension, value in keys:
                latencies[(dimension, hour, value, bucket, test_mode)] += 1
    return Rollup(counts, latencies)


def _keys_without_message(recipient: str | None) -> list[tuple[str, str]]:
    """Return the rollup keys of an event that belongs to no message.

    Such an event, an API unsubscribe for example, counts under its
    recipient's domain, so the domain rows add up to the totals.
    """
    if recipient is None or "@" not in recipient:
        return [("", "")]
    domain = recipient.rpartition("@")[2].lower()
    return [("", ""), ("domain", domain)]


def write_rollup(connection: Connection, rollup: Rollup) -> None:
    """Add the counts of ``count_events`` to the stored rollups."""
    _upsert(connection, event_counts, "outcome", rollup.counts)
    _upsert(connection, delivery_latency, "bucket", rollup.latencies)


class MessageFacts:
    """The rollup keys of a message's events, and what its latency counts from.

    ``accepted_at`` is in microseconds since the epoch.
    """

    __slots__ = ("accepted_at", "keys", "test_mode")

    def __init__(
        self, keys: list[tuple[str, str]], accepted_at: int, test_mode: bool
    ) -> None:
        self.keys = keys
        self.accepted_at = accepted_at
        self.test_mode = test_mode


def message_facts(
    connection: Connection, message_ids: Iterable[str]
) -> dict[str, MessageFacts]:
    """Return what the rollups and webhook payloads need of each message."""
    if not message_ids:
        return {}
    dialect = connection.dialect
    ids = bulk.array_parameter(dialect, sorted(message_ids))
    rows = connection.exec_driver_sql(_facts_sql(dialect), (ids,)).all()
    found = {}
    for message_id, stored_tags, domain, created_at, scheduled_at, test_mode in rows:
        # psycopg parses jsonb itself; SQLite returns the text.
        tags = stored_tags
        if isinstance(tags, str):
            tags = orjson.loads(tags)
        found[message_id] = MessageFacts(
            group_keys(tags, domain),
            scheduled_at if scheduled_at is not None else created_at,
            bool(test_mode),
        )
    return found


@functools.cache
def _facts_sql(dialect: sa.Dialect) -> str:
    return (
        "SELECT id, tags, recipient_domain, created_at, scheduled_at, "  # noqa: S608
        f"test_mode FROM messages WHERE {bulk.in_array(dialect, 'id')}"
    )


def _upsert(
    connection: Connection,
    table: sa.Table,
    last_key: str,
    counts: Mapping[tuple[Any, ...], int],
) -> None:
    """Add ``counts``, keyed by the table's primary key, to the stored counts.

    The statement text is built once per table and the rows travel as
    parameters. SQLAlchemy compiles a statement that contains its rows in
    ``VALUES`` anew for every batch, which took most of the upsert's time
    in a profile of a delivering worker.
    """
    if not counts:
        return
    # Sorted keys make concurrent processors update rows in one order.
    # The hour stays in microseconds, as the column stores it.
    rows = [(*key, n) for key, n in sorted(counts.items())]
    dialect = connection.dialect
    head, tail = _upsert_sql(dialect, table, last_key)
    if dialect.name == "postgresql":
        names = _upsert_columns(last_key)
        document = bulk.dump_rows(dict(zip(names, row, strict=True)) for row in rows)
        connection.exec_driver_sql(head + tail, (document,))
        return
    bulk.run_in_chunks(connection, head, tail, rows)


def _upsert_columns(last_key: str) -> tuple[str, ...]:
    """Return the columns of a rollup row, in the order of its counter key."""
    return ("dimension", "hour", "value", last_key, "test_mode", "count")


@functools.cache
def _upsert_sql(dialect: sa.Dialect, table: sa.Table, last_key: str) -> tuple[str, str]:
    """Return the text before and after the rows of ``_upsert``'s statement.

    On PostgreSQL the rows come from one JSON parameter, so the first part is
    the whole ``INSERT … SELECT`` and the rows go in no ``VALUES`` list.
    """
    quote = dialect.identifier_preparer.quote
    *key, count = [quote(name) for name in _upsert_columns(last_key)]
    columns = ", ".join([*key, count])
    table_name = quote(table.name)
    conflict = (
        f" ON CONFLICT ({', '.join(key)}) DO UPDATE "
        f"SET {count} = {table_name}.{count} + excluded.{count}"
    )
    if dialect.name == "postgresql":
        source = bulk.recordset(
            dialect, table, _upsert_columns(last_key), ordinality=True
        )
        return (
            f"INSERT INTO {table_name} ({columns}) "  # noqa: S608
            f"SELECT {columns} FROM {source} ORDER BY position",
            conflict,
        )
    return f"INSERT INTO {table_name} ({columns}) VALUES ", conflict  # noqa: S608


def read_rollups(
    connection: Connection, query: AnalyticsQuery
) -> tuple[list[OutcomeCount], list[LatencySample]]:
    """Sum the rollups of [start, end) per interval bucket and group."""
    dimension = _DIMENSIONS[query.group_by]
    size = _HOUR_MICROS if query.interval is Interval.HOUR else _DAY_MICROS
    counts = [
        OutcomeCount(from_micros(bucket), value, outcome, int(total))
        for bucket, value, outcome, total in _sums(
            connection,
            event_counts,
            last_key="outcome",
            dimension=dimension,
            size=size,
            query=query,
        )
    ]
    latencies = [
        LatencySample(from_micros(bucket), value, latency, int(total))
        for bucket, value, latency, total in _sums(
            connection,
            delivery_latency,
            last_key="bucket",
            dimension=dimension,
            size=size,
            query=query,
        )
    ]
    return counts, latencies


def _sums(
    connection: Connection,
    table: sa.Table,
    *,
    last_key: str,
    dimension: str,
    size: int,
    query: AnalyticsQuery,
) -> list[Sequence[Any]]:
    hour = sa.type_coerce(table.c.hour, sa.BigInteger)
    bucket = (hour // size * size).label("bucket")
    statement = (
        sa.select(
            bucket, table.c.value, table.c[last_key], sa.func.sum(table.c["count"])
        )
        .where(
            table.c.dimension == dimension,
            table.c.hour >= query.start,
            table.c.hour < query.end,
            table.c.test_mode.is_(query.test_mode),
        )
        .group_by(bucket, table.c.value, table.c[last_key])
    )
    return list(connection.execute(statement).all())


def delete_rollups_before(connection: Connection, cutoff: datetime) -> int:
    deleted = 0
    for table in (event_counts, delivery_latency):
        result = connection.execute(sa.delete(table).where(table.c.hour < cutoff))
        deleted += int(result.rowcount)
    return deleted
