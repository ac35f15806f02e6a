"""The SQL schema, shared by SQLite and PostgreSQL.

Timestamps are stored as integer microseconds since the Unix epoch, UTC, so
comparisons and ordering are plain integer comparisons on both databases.
``migrations/versions`` creates the same tables; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

__all__ = [
    "JSON_DOCUMENT",
    "SEQUENCE",
    "UtcTimestamp",
    "api_keys",
    "events",
    "idempotency_keys",
    "messages",
    "metadata",
    "rate_limit_counters",
    "suppressions",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class UtcTimestamp(sa.types.TypeDecorator[datetime]):
    """A timezone-aware datetime stored as integer microseconds since the epoch."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> int | None:
        if value is None:
            return None
        return to_micros(value)

    def process_result_value(self, value: int | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return from_micros(value)


def to_micros(value: datetime) -> int:
    """Return the microseconds since the epoch; raise ValueError on a naive time."""
    if value.tzinfo is None:
        raise ValueError(
            f"naive datetime {value.isoformat()} cannot be stored; "
            "pass a timezone-aware datetime (UTC)"
        )
    return (value - EPOCH) // MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


# Documents that may be queried are JSONB on PostgreSQL; message content is
# plain JSON there, because it is only ever read whole and can be large.
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
CONTENT_DOCUMENT = sa.JSON()

# On SQLite only ``INTEGER PRIMARY KEY`` aliases the rowid.
SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Constraint names are fixed so migrations can refer to them on both databases.
metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    }
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("priority", sa.SmallInteger, nullable=False),
    sa.Column("sender_name", sa.Text, nullable=False),
    sa.Column("sender_local_part", sa.Text, nullable=False),
    sa.Column("sender_domain", sa.Text, nullable=False),
    sa.Column("recipient_name", sa.Text, nullable=False),
    sa.Column("recipient_local_part", sa.Text, nullable=False),
    sa.Column("recipient_domain", sa.Text, nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("content", CONTENT_DOCUMENT, nullable=False),
    sa.Column("metadata", JSON_DOCUMENT, nullable=False),
    sa.Column("tags", JSON_DOCUMENT, nullable=False),
    sa.Column("api_key_id", sa.Text, nullable=True),
    sa.Column("test_mode", sa.Boolean, nullable=False),
    sa.Column("message_id_header", sa.Text, nullable=False),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("updated_at", UtcTimestamp, nullable=False),
    sa.Column("scheduled_at", UtcTimestamp, nullable=True),
    sa.Column("expires_at", UtcTimestamp, nullable=True),
    sa.Column("next_attempt_at", UtcTimestamp, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_reply_code", sa.Integer, nullable=True),
    sa.Column("last_enhanced_code", sa.Text, nullable=True),
    sa.Column("last_reply_text", sa.Text, nullable=True),
    sa.Column("last_mx_host", sa.Text, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("due_at", UtcTimestamp, nullable=True),
    sa.Column("lease_owner", sa.Text, nullable=True),
    sa.Index(
        "ix_messages_due",
        "priority",
        "due_at",
        "id",
        postgresql_where=sa.text("due_at IS NOT NULL"),
        sqlite_where=sa.text("due_at IS NOT NULL"),
    ),
    sa.Index("ix_messages_recipient", "recipient", "id"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("sequence", SEQUENCE, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Text, nullable=False, unique=True),
    sa.Column(
        "message_id",
        sa.Text,
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        nullable=True,
    ),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("data", JSON_DOCUMENT, nullable=False),
    # Set once the event processor has fanned the event out to webhook
    # endpoints and added it to the analytics rollups.
    sa.Column("processed_at", UtcTimestamp, nullable=True),
    sa.Index("ix_events_message", "message_id", "sequence"),
    sa.Index("ix_events_type", "type", "sequence"),
    sa.Index("ix_events_created", "created_at"),
    sa.Index(
        "ix_events_unprocessed",
        "sequence",
        postgresql_where=sa.text("processed_at IS NULL"),
        sqlite_where=sa.text("processed_at IS NULL"),
    ),
    sqlite_autoincrement=True,
)
# Recipient searches are case-insensitive, as suppression keys are.
sa.Index("ix_events_recipient", sa.func.lower(events.c.recipient), events.c.sequence)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("recipient", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("message_id", sa.Text, nullable=True),
    sa.Index("ix_suppressions_created", "created_at", "recipient"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("api_key_id", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", JSON_DOCUMENT, nullable=False),
    sa.Column("created_at", UtcTimestamp, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("scopes", JSON_DOCUMENT, nullable=False),
    sa.Column("environment", sa.Text, nullable=False),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("revoked_at", UtcTimestamp, nullable=True),
    sa.Column("expires_at", UtcTimestamp, nullable=True),
    sa.Column("last_used_at", UtcTimestamp, nullable=True),
    sa.Column("rate_limit", sa.Integer, nullable=False),
    sa.Column("sender_domains", JSON_DOCUMENT, nullable=False),
)

rate_limit_counters = sa.Table(
    "rate_limit_counters",
    metadata,
    sa.Column("api_key_id", sa.Text, primary_key=True),
    sa.Column("window_start", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)
